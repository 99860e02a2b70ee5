"""Data Science Bowl 2018 instance-segmentation score.

For each IoU threshold ``t`` a predicted object matches a true object when their
intersection-over-union is **strictly greater** than ``t``. For ``t >= 0.5`` a true object
can overlap at most one prediction with IoU > 0.5 (and vice versa), so the matching is
one-to-one without any assignment step. With ``TP`` matched pairs, ``FP`` unmatched
predictions and ``FN`` unmatched true objects, the image score is the mean over thresholds
of ``TP / (TP + FP + FN)``; the default thresholds are 0.50, 0.55, ..., 0.95.

IoUs are computed sparsely from the label overlaps (only pairs that share at least one
pixel are ever formed), so images with thousands of instances are cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from skimage.segmentation import relabel_sequential

from keras_dynunet.instances.targets import validate_labels

__all__ = ["DEFAULT_THRESHOLDS", "DSBScore", "dsb_score", "iou_matrix"]

#: IoU thresholds of the DSB 2018 metric: 0.50, 0.55, ..., 0.95 (rounded, 10 values).
DEFAULT_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)


@dataclass(frozen=True)
class DSBScore:
    """Result of :func:`dsb_score`. Per-threshold arrays have one entry per threshold.

    Attributes:
        score: Mean over thresholds of ``TP / (TP + FP + FN)``.
        thresholds: IoU thresholds (float64).
        tp: True positives per threshold (int64).
        fp: False positives per threshold (int64).
        fn: False negatives per threshold (int64).
        precision: ``TP / (TP + FP)`` per threshold.
        recall: ``TP / (TP + FN)`` per threshold.
        f1: ``2 TP / (2 TP + FP + FN)`` per threshold.
        n_true: Number of true instances.
        n_pred: Number of predicted instances.
    """

    score: float
    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    n_true: int
    n_pred: int


def iou_matrix(true_labels: np.ndarray, pred_labels: np.ndarray) -> sparse.csr_matrix:
    """Sparse IoU matrix between the instances of two label images.

    Row ``i`` is the ``i``-th smallest non-zero id of ``true_labels`` and column ``j`` the
    ``j``-th smallest non-zero id of ``pred_labels`` (i.e. ``np.unique(x[x > 0])``).
    Only pairs that overlap are stored. Pair counts come from a COO matrix of
    (true, pred) index pairs on the pixels where both are foreground; converting to CSR
    sums duplicates in linear time.

    Args:
        true_labels: Ground-truth instance labels (H, W), integer dtype, 0 = background.
        pred_labels: Predicted instance labels (H, W), same shape.

    Returns:
        ``scipy.sparse.csr_matrix`` of float64 IoUs, shape (n_true, n_pred).

    Raises:
        ValueError: For invalid label images or mismatched shapes.

    Examples:
        >>> t = np.array([[1, 1, 0, 9]])
        >>> p = np.array([[4, 0, 0, 4]])
        >>> iou_matrix(t, p).toarray().tolist()
        [[0.3333333333333333], [0.5]]
    """
    t_seq, n_t = _sequential(validate_labels(true_labels, "true_labels"))
    p_seq, n_p = _sequential(validate_labels(pred_labels, "pred_labels"))
    if t_seq.shape != p_seq.shape:
        raise ValueError(
            f"true_labels {t_seq.shape} and pred_labels {p_seq.shape} must have the same "
            "shape; resize or crop the prediction to the ground-truth shape."
        )
    t_flat, p_flat = t_seq.ravel(), p_seq.ravel()
    area_t = np.bincount(t_flat, minlength=n_t + 1)
    area_p = np.bincount(p_flat, minlength=n_p + 1)
    both = (t_flat > 0) & (p_flat > 0)
    ti, pi = t_flat[both] - 1, p_flat[both] - 1
    inter = sparse.coo_matrix(
        (np.ones(ti.size, dtype=np.int64), (ti, pi)), shape=(n_t, n_p)
    ).tocsr()  # duplicates are summed: data = intersection areas
    inter.sum_duplicates()
    rows = np.repeat(np.arange(n_t), np.diff(inter.indptr))
    cols = inter.indices
    counts = inter.data.astype(np.float64)
    union = area_t[rows + 1] + area_p[cols + 1] - counts
    return sparse.csr_matrix((counts / union, cols, inter.indptr.copy()), shape=(n_t, n_p))


def dsb_score(
    true_labels: np.ndarray,
    pred_labels: np.ndarray,
    thresholds: np.ndarray | None = None,
) -> DSBScore:
    """DSB 2018 score of one predicted instance image against the ground truth.

    Edge cases: if both images are empty (no instances) every per-threshold value is 1.0
    and ``score == 1.0`` (a perfect empty prediction); if exactly one is empty the score is
    0.0. Ratios with a zero denominator are 1.0 when both images are empty, else 0.0.

    Args:
        true_labels: Ground-truth instance labels (H, W), integer dtype, 0 = background.
        pred_labels: Predicted instance labels (H, W), same shape. Ids are arbitrary.
        thresholds: IoU thresholds, each in [0.5, 1); default :data:`DEFAULT_THRESHOLDS`.

    Returns:
        A :class:`DSBScore`.

    Raises:
        ValueError: For invalid label images, mismatched shapes or thresholds < 0.5
            (the one-to-one matching needs IoU > 0.5).

    Examples:
        >>> t = np.array([[1, 1, 1, 1, 0, 2, 2]])
        >>> p = np.array([[5, 5, 5, 0, 0, 0, 0]])   # IoU 0.75 with true 1; true 2 missed
        >>> s = dsb_score(t, p)
        >>> s.tp.tolist()
        [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
        >>> round(s.score, 3)  # 5 thresholds at 1/2, 5 at 0/2
        0.25
    """
    thr = DEFAULT_THRESHOLDS if thresholds is None else np.asarray(thresholds, np.float64)
    thr = np.atleast_1d(thr).astype(np.float64)
    if thr.ndim != 1 or thr.size == 0 or not np.all(np.isfinite(thr)):
        raise ValueError(f"thresholds must be a non-empty 1-D array of floats, got {thr!r}.")
    if np.any(thr < 0.5) or np.any(thr >= 1.0):
        raise ValueError(
            f"thresholds must lie in [0.5, 1), got {thr.tolist()}; below 0.5 the matching "
            "is no longer one-to-one (use e.g. np.arange(0.5, 1.0, 0.05))."
        )
    ious = iou_matrix(true_labels, pred_labels)
    n_t, n_p = ious.shape
    values = np.sort(ious.data)
    tp = (values.size - np.searchsorted(values, thr, side="right")).astype(np.int64)
    fp = n_p - tp
    fn = n_t - tp
    both_empty = n_t == 0 and n_p == 0
    ratio = _safe_ratio(tp, tp + fp + fn, both_empty)
    return DSBScore(
        score=float(ratio.mean()),
        thresholds=thr,
        tp=tp,
        fp=fp,
        fn=fn,
        precision=_safe_ratio(tp, tp + fp, both_empty),
        recall=_safe_ratio(tp, tp + fn, both_empty),
        f1=_safe_ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        n_true=int(n_t),
        n_pred=int(n_p),
    )


def _sequential(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel to 1..n in sorted id order (background stays 0); return labels and n."""
    seq = relabel_sequential(labels)[0].astype(np.intp, copy=False)
    return seq, int(seq.max(initial=0))


def _safe_ratio(num: np.ndarray, den: np.ndarray, both_empty: bool) -> np.ndarray:
    """``num / den`` with 0/0 replaced by 1.0 if both images are empty, else 0.0."""
    out = np.full(num.shape, 1.0 if both_empty else 0.0)
    np.divide(num, den, out=out, where=den > 0)
    return out
