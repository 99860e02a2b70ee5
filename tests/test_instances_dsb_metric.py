"""Tests for keras_dynunet.instances.dsb_metric with hand-computed expectations."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import sparse

from keras_dynunet.instances import DEFAULT_THRESHOLDS, dsb_score, iou_matrix, synthetic_labels

small_labels = hnp.arrays(
    dtype=np.int32,
    shape=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    elements=st.integers(0, 5),
)


def hand_made_case() -> tuple[np.ndarray, np.ndarray]:
    """3 true objects, 4 predictions with IoUs 1.0, 0.6, 0.4 and one unmatched."""
    true = np.zeros((10, 20), dtype=np.int32)
    pred = np.zeros((10, 20), dtype=np.int32)
    true[0:2, 0:5] = 10  # 10 px
    pred[0:2, 0:5] = 3  # identical: IoU 1.0
    true[3:5, 0:5] = 20  # 10 px
    pred[3:5, 0:3] = 7  # 6 px inside: IoU 6 / 10 = 0.6
    true[6:8, 0:5] = 30  # 10 px
    pred[6:8, 0:2] = 1  # 4 px inside: IoU 4 / 10 = 0.4
    pred[0:2, 10:15] = 99  # overlaps nothing: a false positive
    return true, pred


def test_default_thresholds() -> None:
    np.testing.assert_array_equal(
        DEFAULT_THRESHOLDS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    )


def test_iou_matrix_hand_made() -> None:
    true, pred = hand_made_case()
    ious = iou_matrix(true, pred)
    assert sparse.issparse(ious) and ious.shape == (3, 4) and ious.nnz == 3
    # rows: true ids 10, 20, 30; columns: pred ids 1, 3, 7, 99 (sorted)
    np.testing.assert_allclose(
        ious.toarray(), [[0, 1.0, 0, 0], [0, 0, 0.6, 0], [0.4, 0, 0, 0]], rtol=0, atol=1e-12
    )


def test_score_hand_made() -> None:
    true, pred = hand_made_case()
    s = dsb_score(true, pred)
    # IoU 1.0 matches at every threshold; IoU 0.6 only at 0.50 and 0.55 (strictly greater);
    # IoU 0.4 never. n_pred = 4, n_true = 3.
    np.testing.assert_array_equal(s.tp, [2, 2, 1, 1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(s.fp, [2, 2, 3, 3, 3, 3, 3, 3, 3, 3])
    np.testing.assert_array_equal(s.fn, [1, 1, 2, 2, 2, 2, 2, 2, 2, 2])
    # per threshold: 2 / (2 + 2 + 1) = 0.4 twice, then 1 / (1 + 3 + 2) = 1/6 eight times
    assert s.score == pytest.approx((2 * 0.4 + 8 / 6) / 10)
    assert s.precision[0] == pytest.approx(2 / 4) and s.precision[2] == pytest.approx(1 / 4)
    assert s.recall[0] == pytest.approx(2 / 3) and s.recall[2] == pytest.approx(1 / 3)
    assert s.f1[0] == pytest.approx(4 / 7)
    assert (s.n_true, s.n_pred) == (3, 4)
    np.testing.assert_array_equal(s.thresholds, DEFAULT_THRESHOLDS)


def test_iou_exactly_at_threshold_does_not_match() -> None:
    true = np.zeros((2, 4), dtype=np.int32)
    true[0, :] = 1  # 4 px
    half = np.zeros_like(true)
    half[0, :2] = 5  # IoU exactly 0.5
    assert dsb_score(true, half).tp.sum() == 0
    three_quarters = np.zeros_like(true)
    three_quarters[0, :3] = 5  # IoU exactly 0.75: matches at 0.50 .. 0.70 only
    np.testing.assert_array_equal(dsb_score(true, three_quarters).tp, [1] * 5 + [0] * 5)


def test_merged_prediction_matches_nothing() -> None:
    true = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    pred = np.full_like(true, 4)  # covers both: IoU 0.5 with each
    s = dsb_score(true, pred)
    assert s.score == 0.0
    np.testing.assert_array_equal(s.fp, 1)
    np.testing.assert_array_equal(s.fn, 2)


def test_empty_cases() -> None:
    empty = np.zeros((4, 4), dtype=np.int32)
    one = empty.copy()
    one[1:3, 1:3] = 2
    both = dsb_score(empty, empty)
    assert both.score == 1.0 and (both.precision == 1).all() and (both.f1 == 1).all()
    assert iou_matrix(empty, empty).shape == (0, 0)
    missed = dsb_score(one, empty)
    assert missed.score == 0.0 and (missed.fn == 1).all() and (missed.precision == 0).all()
    spurious = dsb_score(empty, one)
    assert spurious.score == 0.0 and (spurious.fp == 1).all() and (spurious.recall == 0).all()


def test_custom_thresholds_and_errors() -> None:
    true, pred = hand_made_case()
    s = dsb_score(true, pred, thresholds=[0.5, 0.9])
    np.testing.assert_array_equal(s.tp, [2, 1])
    with pytest.raises(ValueError, match="one-to-one"):
        dsb_score(true, pred, thresholds=[0.3])
    with pytest.raises(ValueError, match="thresholds"):
        dsb_score(true, pred, thresholds=[])
    with pytest.raises(ValueError, match="same shape"):
        dsb_score(true, pred[:, :10])
    with pytest.raises(ValueError, match="integer dtype"):
        dsb_score(true.astype(float), pred)


def brute_force_iou(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    t_ids = [i for i in np.unique(true) if i]
    p_ids = [j for j in np.unique(pred) if j]
    out = np.zeros((len(t_ids), len(p_ids)))
    for a, i in enumerate(t_ids):
        for b, j in enumerate(p_ids):
            inter = np.sum((true == i) & (pred == j))
            out[a, b] = inter / np.sum((true == i) | (pred == j))
    return out


@settings(max_examples=80, deadline=None, database=None)
@given(true=small_labels, data=st.data())
def test_iou_matrix_matches_brute_force(true: np.ndarray, data: st.DataObject) -> None:
    pred = data.draw(hnp.arrays(np.int32, true.shape, elements=st.integers(0, 5)))
    np.testing.assert_allclose(iou_matrix(true, pred).toarray(), brute_force_iou(true, pred))


@settings(max_examples=80, deadline=None, database=None)
@given(labels=small_labels, data=st.data())
def test_score_invariant_under_relabelling(labels: np.ndarray, data: st.DataObject) -> None:
    new_ids = data.draw(st.lists(st.integers(1, 2**31 - 1), min_size=5, max_size=5, unique=True))
    relabelled = np.array([0, *new_ids], dtype=np.int64)[labels]
    s = dsb_score(labels, relabelled)
    assert s.score == 1.0
    assert (s.fp == 0).all() and (s.fn == 0).all()


@settings(max_examples=80, deadline=None, database=None)
@given(true=small_labels, data=st.data())
def test_score_properties(true: np.ndarray, data: st.DataObject) -> None:
    pred = data.draw(hnp.arrays(np.int32, true.shape, elements=st.integers(0, 5)))
    a, b = dsb_score(true, pred), dsb_score(pred, true)
    assert 0.0 <= a.score <= 1.0
    assert a.score == pytest.approx(b.score)
    np.testing.assert_array_equal(a.tp, b.tp)
    np.testing.assert_array_equal(a.fp, b.fn)
    assert (np.diff(a.tp) <= 0).all()  # stricter thresholds never add matches
    assert (a.tp <= min(a.n_true, a.n_pred)).all()


def test_large_image_with_many_instances() -> None:
    true = synthetic_labels((2048, 2048), n_nuclei=1500, radius=(6, 12), overlap=0.3, seed=0)
    n_true = len(np.unique(true)) - 1
    assert n_true >= 1400
    # Prediction: the same objects shifted right by 2 px (cut at the image edge), with
    # shuffled, non-contiguous ids.
    shifted = np.zeros_like(true)
    shifted[:, 2:] = true[:, :-2]
    rng = np.random.default_rng(0)
    lut = np.concatenate([[0], rng.permutation(n_true) * 7 + 1000]).astype(np.int64)
    pred = lut[shifted]

    start = time.perf_counter()
    s = dsb_score(true, pred)
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0, f"dsb_score took {elapsed:.2f} s on 2048x2048"

    # Reference with a different method: np.unique over paired codes on shared pixels.
    t_ids, t_area = np.unique(true[true > 0], return_counts=True)
    p_ids, p_area = np.unique(pred[pred > 0], return_counts=True)
    both = (true > 0) & (pred > 0)
    pairs, inter = np.unique(
        np.stack([true[both], pred[both]]).astype(np.int64), axis=1, return_counts=True
    )
    union = (
        t_area[np.searchsorted(t_ids, pairs[0])] + p_area[np.searchsorted(p_ids, pairs[1])] - inter
    )
    ref_iou = inter / union
    ious = iou_matrix(true, pred).tocoo()
    got = dict(zip(zip(t_ids[ious.row], p_ids[ious.col], strict=True), ious.data, strict=True))
    ref = dict(zip(zip(pairs[0], pairs[1], strict=True), ref_iou, strict=True))
    assert got.keys() == ref.keys()
    np.testing.assert_allclose([got[k] for k in ref], list(ref.values()), rtol=1e-12)
    expected_tp = [(ref_iou > t).sum() for t in DEFAULT_THRESHOLDS]
    np.testing.assert_array_equal(s.tp, expected_tp)
    np.testing.assert_array_equal(s.fp, len(p_ids) - s.tp)
    np.testing.assert_array_equal(s.fn, n_true - s.tp)
    # A 2-px shift keeps nearly every object matched at IoU > 0.5 (thin, partly hidden
    # ones can drop below), but not at 0.95.
    assert s.tp[0] >= 0.99 * n_true and s.tp[-1] < 0.5 * n_true
    assert dsb_score(true, lut[true]).score == 1.0
