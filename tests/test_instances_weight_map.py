"""Tests for keras_dynunet.instances.weight_map against a per-pixel brute force."""

from __future__ import annotations

import numpy as np
import pytest

from keras_dynunet.instances import (
    class_balance_weights,
    distance_cutoff,
    synthetic_labels,
    two_nearest_distances,
    unet_weight_map,
)


def brute_force_weight_map(labels: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """Direct per-pixel computation of the U-Net weight map (reference, test only)."""
    ids = [i for i in np.unique(labels) if i != 0]
    pixels = {i: np.argwhere(labels == i) for i in ids}
    n = labels.size
    n_fg = int((labels > 0).sum())
    k = int(n_fg > 0) + int(n_fg < n)
    out = np.zeros(labels.shape)
    for r in range(labels.shape[0]):
        for c in range(labels.shape[1]):
            is_fg = labels[r, c] > 0
            wc = n / (k * (n_fg if is_fg else n - n_fg))
            dists = sorted(float(np.min(np.hypot(*(pixels[i] - (r, c)).T))) for i in ids)
            sep = 0.0
            if not is_fg and len(dists) >= 2:
                sep = w0 * np.exp(-((dists[0] + dists[1]) ** 2) / (2 * sigma**2))
            out[r, c] = wc + sep
    return out


def four_instances() -> np.ndarray:
    labels = np.zeros((32, 32), dtype=np.int32)
    rr, cc = np.mgrid[0:32, 0:32]
    labels[(rr - 8) ** 2 + (cc - 9) ** 2 <= 25] = 17
    labels[(rr - 9) ** 2 + (cc - 20) ** 2 <= 16] = 3
    labels[22:28, 5:12] = 250
    labels[(rr - 24) ** 2 / 4 + (cc - 24) ** 2 <= 30] = 6
    return labels


@pytest.mark.parametrize("tol", [None, 1e-6])
def test_matches_brute_force(tol: float | None) -> None:
    labels = four_instances()
    expected = brute_force_weight_map(labels, w0=10.0, sigma=5.0)
    got = unet_weight_map(labels, w0=10.0, sigma=5.0, tol=tol)
    assert got.dtype == np.float32 and got.shape == labels.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_matches_brute_force_other_parameters() -> None:
    labels = four_instances()
    expected = brute_force_weight_map(labels, w0=3.0, sigma=2.0)
    np.testing.assert_allclose(unet_weight_map(labels, w0=3.0, sigma=2.0), expected, atol=1e-5)


def test_two_nearest_distances_hand_computed() -> None:
    labels = np.array([[1, 0, 0, 2, 0, 3]])
    d1, d2 = two_nearest_distances(labels)
    np.testing.assert_array_equal(d1, [[0, 1, 1, 0, 1, 0]])
    # pixel 1: to 1 -> 1, to 2 -> 2, to 3 -> 4; pixel 2: to 2 -> 1, to 1 -> 2;
    # pixel 4: to 2 -> 1, to 3 -> 1; pixel 0: to 2 -> 3 (second nearest)
    np.testing.assert_array_equal(d2, [[3, 2, 2, 2, 1, 2]])


def test_two_nearest_distances_cutoff_never_underestimates() -> None:
    labels = synthetic_labels((96, 96), n_nuclei=12, radius=(4, 8), seed=3)
    e1, e2 = two_nearest_distances(labels)
    c1, c2 = two_nearest_distances(labels, cutoff=6.0)
    assert (c1 >= e1).all() and (c2 >= e2).all()
    np.testing.assert_array_equal(c1[e1 <= 6], e1[e1 <= 6])
    np.testing.assert_array_equal(c2[e2 <= 6], e2[e2 <= 6])


def test_single_and_no_instance() -> None:
    one = np.zeros((6, 6), dtype=np.int32)
    one[1:3, 1:3] = 8
    _, d2 = two_nearest_distances(one)
    assert np.isinf(d2).all()
    np.testing.assert_array_equal(unet_weight_map(one), class_balance_weights(one))
    empty = np.zeros((5, 5), dtype=np.int32)
    np.testing.assert_array_equal(unet_weight_map(empty), np.ones((5, 5), np.float32))


def test_class_balance_hand_computed() -> None:
    labels = np.array([[0, 0, 0, 4]])  # N=4, K=2: bg 4/(2*3), fg 4/(2*1)
    np.testing.assert_allclose(class_balance_weights(labels), [[2 / 3, 2 / 3, 2 / 3, 2.0]])
    labels = four_instances()
    assert class_balance_weights(labels).mean() == pytest.approx(1.0, abs=1e-6)
    unbalanced = unet_weight_map(labels, balance=False)
    np.testing.assert_array_equal(unbalanced[labels > 0], 1.0)


def test_separation_term_only_on_background() -> None:
    labels = four_instances()
    w = unet_weight_map(labels)
    wc = class_balance_weights(labels)
    np.testing.assert_array_equal(w[labels > 0], wc[labels > 0])
    assert (w[labels == 0] > wc[labels == 0]).any()


def test_tolerance_bound_on_larger_image() -> None:
    labels = synthetic_labels((160, 160), n_nuclei=40, radius=(4, 10), seed=11)
    exact = unet_weight_map(labels, tol=None).astype(np.float64)
    for tol in (1e-2, 1e-4):
        approx = unet_weight_map(labels, tol=tol).astype(np.float64)
        assert np.abs(approx - exact).max() < tol + 1e-6


def test_distance_cutoff_solves_equation() -> None:
    c = distance_cutoff(10.0, 5.0, 1e-6)
    assert 10.0 * np.exp(-(c**2) / 50.0) == pytest.approx(1e-6)
    assert distance_cutoff(1.0, 5.0, 2.0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"sigma": 0.0}, "sigma"), ({"w0": -1.0}, "w0"), ({"tol": 0.0}, "tol")],
)
def test_invalid_parameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unet_weight_map(four_instances(), **kwargs)
