"""Synthetic fluorescence-like nuclei images with exact instance labels.

Nuclei are ellipses with random size, elongation and orientation. A fraction of them is
placed next to an already placed nucleus so that they touch or overlap; where ellipses
overlap, the pixels stay with the nucleus placed first (the new one is "underneath"), and
a nucleus is only accepted if its visible part is one connected piece covering at least
``1 - overlap`` of its ellipse. The image adds per-nucleus brightness, a darker rim
(which also darkens contacts between touching nuclei), smooth inner texture, an uneven
background, blur, Poisson (shot) noise and Gaussian read noise. Everything is drawn from
``numpy.random.default_rng(seed)``, so a given ``seed`` always gives the same output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import ellipse
from skimage.segmentation import find_boundaries

__all__ = ["synthetic_dataset", "synthetic_labels", "synthetic_nuclei"]

SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def synthetic_labels(
    shape: tuple[int, int] = (256, 256),
    n_nuclei: int | tuple[int, int] = (20, 60),
    radius: tuple[float, float] = (6.0, 16.0),
    overlap: float = 0.3,
    seed: SeedLike = None,
    *,
    cluster: float = 0.5,
    max_tries: int = 20,
) -> np.ndarray:
    """Random instance label image of elliptical, possibly touching/overlapping nuclei.

    Args:
        shape: Image shape (H, W).
        n_nuclei: Number of nuclei to place, or an inclusive ``(low, high)`` range to draw
            it from. Fewer are placed if the image is too crowded (each nucleus gets
            ``max_tries`` attempts).
        radius: Inclusive range of the semi-major axis in pixels; the semi-minor axis is
            0.6 to 1.0 times the semi-major one.
        overlap: Largest fraction of a new nucleus's ellipse that may be hidden under
            earlier nuclei (0 = no overlap; they may still touch).
        seed: Anything accepted by ``numpy.random.default_rng``.
        cluster: Probability that a nucleus is placed against an existing one.
        max_tries: Placement attempts per nucleus.

    Returns:
        ``int32`` labels (H, W), background 0, instances 1..n in placement order.

    Examples:
        >>> lab = synthetic_labels((64, 64), n_nuclei=5, radius=(5, 8), seed=0)
        >>> lab.shape, lab.dtype, int(lab.max()) <= 5
        ((64, 64), dtype('int32'), True)
    """
    h, w = _check_shape(shape)
    lo_r, hi_r = _check_range(radius, "radius", minimum=2.0)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}; e.g. overlap=0.3.")
    if not 0.0 <= cluster <= 1.0:
        raise ValueError(f"cluster must be in [0, 1], got {cluster}; e.g. cluster=0.5.")
    rng = np.random.default_rng(seed)
    if isinstance(n_nuclei, (int, np.integer)):
        if n_nuclei < 0:
            raise ValueError(f"n_nuclei must be >= 0, got {n_nuclei}.")
        n_target = int(n_nuclei)
    else:
        lo_n, hi_n = _check_range(n_nuclei, "n_nuclei", minimum=0)
        n_target = int(rng.integers(int(lo_n), int(hi_n) + 1))

    labels = np.zeros((h, w), dtype=np.int32)
    centers: list[tuple[float, float, float]] = []  # (row, col, semi-major axis)
    min_area = 0.5 * np.pi * lo_r * lo_r * 0.6
    for _ in range(n_target):
        for _try in range(max_tries):
            a = rng.uniform(lo_r, hi_r)
            b = a * rng.uniform(0.6, 1.0)
            angle = rng.uniform(0.0, np.pi)
            if centers and rng.random() < cluster:
                r0, c0, a0 = centers[int(rng.integers(len(centers)))]
                theta = rng.uniform(0.0, 2.0 * np.pi)
                dist = (a0 + b) * rng.uniform(0.7, 1.05)
                r, c = r0 + dist * np.sin(theta), c0 + dist * np.cos(theta)
            else:
                r, c = rng.uniform(0, h), rng.uniform(0, w)
            rr, cc = ellipse(r, c, a, b, shape=(h, w), rotation=angle)
            if rr.size < min_area:
                continue
            taken = labels[rr, cc] > 0
            if taken.mean() > overlap:
                continue
            rr, cc = rr[~taken], cc[~taken]
            if not _is_connected(rr, cc):
                continue
            labels[rr, cc] = len(centers) + 1
            centers.append((r, c, a))
            break
    return labels


def synthetic_nuclei(
    shape: tuple[int, int] = (256, 256),
    n_nuclei: int | tuple[int, int] = (20, 60),
    radius: tuple[float, float] = (6.0, 16.0),
    overlap: float = 0.3,
    seed: SeedLike = None,
    *,
    rgb: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic nuclei image and its instance labels.

    Args:
        shape: Image shape (H, W).
        n_nuclei: Number of nuclei, or an inclusive ``(low, high)`` range.
        radius: Inclusive range of the semi-major axis in pixels.
        overlap: Largest hidden fraction of a nucleus (see :func:`synthetic_labels`).
        seed: Anything accepted by ``numpy.random.default_rng``.
        rgb: If True the image is (H, W, 3) with a random colour tint (grey half of the
            time); else (H, W).

    Returns:
        ``(image, labels)``: ``float32`` image in [0, 1] and ``int32`` labels (H, W).

    Examples:
        >>> img, lab = synthetic_nuclei((64, 64), n_nuclei=6, radius=(5, 8), seed=1)
        >>> img.shape, img.dtype, bool(img.min() >= 0 and img.max() <= 1), lab.dtype
        ((64, 64, 3), dtype('float32'), True, dtype('int32'))
    """
    rng = np.random.default_rng(seed)
    labels = synthetic_labels(shape, n_nuclei, radius, overlap, rng)
    return _render(labels, rng, rgb), labels


def synthetic_dataset(
    n: int,
    shape: tuple[int, int] = (256, 256),
    seed: int | None = None,
    **kwargs: object,
) -> tuple[np.ndarray, np.ndarray]:
    """Stack of independent :func:`synthetic_nuclei` samples.

    Sample ``i`` uses the ``i``-th child of ``numpy.random.SeedSequence(seed)``, so the
    first ``k`` samples do not depend on ``n``.

    Args:
        n: Number of samples.
        shape: Image shape (H, W).
        seed: Integer seed (or None for fresh entropy).
        **kwargs: Further keyword arguments of :func:`synthetic_nuclei`.

    Returns:
        ``(images, labels)`` of shapes (n, H, W, 3) [or (n, H, W) with ``rgb=False``]
        float32 and (n, H, W) int32.

    Examples:
        >>> x, y = synthetic_dataset(2, (32, 32), seed=0, n_nuclei=3, radius=(4, 6))
        >>> x.shape, y.shape
        ((2, 32, 32, 3), (2, 32, 32))
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}.")
    h, w = _check_shape(shape)
    children = np.random.SeedSequence(seed).spawn(int(n))
    pairs = [synthetic_nuclei((h, w), seed=child, **kwargs) for child in children]
    rgb = bool(kwargs.get("rgb", True))
    img_shape = (0, h, w, 3) if rgb else (0, h, w)
    images = np.stack([p[0] for p in pairs]) if pairs else np.zeros(img_shape, np.float32)
    labels = np.stack([p[1] for p in pairs]) if pairs else np.zeros((0, h, w), np.int32)
    return images, labels


def _render(labels: np.ndarray, rng: np.random.Generator, rgb: bool) -> np.ndarray:
    """Render a fluorescence-like float image in [0, 1] from instance labels."""
    h, w = labels.shape
    n = int(labels.max())
    fg = labels > 0
    brightness = np.concatenate([[0.0], rng.uniform(0.35, 1.0, n)])
    # Distance to the instance's own outline (contacts included), normalised per nucleus.
    inside = ~find_boundaries(labels, mode="inner") & fg
    dist = ndi.distance_transform_edt(inside)
    peak = np.ones(n + 1)
    if n:
        peak[1:] = np.maximum(ndi.maximum(dist, labels, np.arange(1, n + 1)), 1.0)
    shading = 0.55 + 0.45 * np.sqrt(np.clip(dist / peak[labels], 0.0, 1.0))
    texture = ndi.gaussian_filter(rng.standard_normal((h, w)), rng.uniform(1.0, 2.5))
    texture /= max(float(np.abs(texture).max()), 1e-6)
    nuclei = brightness[labels] * shading * (1.0 + 0.25 * texture) * fg
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    background = rng.uniform(0.0, 0.08) + rng.uniform(0.0, 0.06) * (
        np.cos(theta) * xx + np.sin(theta) * yy
    )
    img = ndi.gaussian_filter(nuclei + background, rng.uniform(0.5, 1.5))
    photons = rng.uniform(30.0, 300.0)
    img = rng.poisson(np.clip(img, 0.0, None) * photons) / photons
    img = img + rng.normal(0.0, rng.uniform(0.005, 0.03), img.shape)
    img = np.clip(img * rng.uniform(0.7, 1.0), 0.0, 1.0)
    if not rgb:
        return img.astype(np.float32)
    tint = np.ones(3) if rng.random() < 0.5 else rng.uniform(0.3, 1.0, 3)
    tint = tint / tint.max()
    return (img[..., None] * tint).astype(np.float32)


def _is_connected(rr: np.ndarray, cc: np.ndarray) -> bool:
    """True if the pixels (rr, cc) form one 4-connected component."""
    r0, c0 = rr.min(), cc.min()
    local = np.zeros((rr.max() - r0 + 1, cc.max() - c0 + 1), dtype=bool)
    local[rr - r0, cc - c0] = True
    return ndi.label(local)[1] == 1


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2 or any(int(s) != s or s < 8 for s in shape):
        raise ValueError(f"shape must be two ints >= 8 (H, W), got {shape!r}; e.g. (256, 256).")
    return int(shape[0]), int(shape[1])


def _check_range(value: Sequence[float], name: str, minimum: float) -> tuple[float, float]:
    if len(value) != 2 or not minimum <= value[0] <= value[1]:
        raise ValueError(
            f"{name} must be an inclusive (low, high) pair with {minimum} <= low <= high, "
            f"got {value!r}."
        )
    return float(value[0]), float(value[1])
