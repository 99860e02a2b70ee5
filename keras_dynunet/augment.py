"""Augmentations applied identically to an image and its per-pixel targets.

Geometric transforms (random crop, flips, 90-degree rotations, optional
elastic deformation) move the image, the targets and the weight map
together; intensity transforms (brightness, contrast, gamma, noise) touch
the image only. Everything is numpy and driven by an explicit
``numpy.random.Generator``, so a data pipeline is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass(frozen=True)
class Augmentation:
    """Which augmentations to apply, and how strongly.

    Attributes:
        flips: Random horizontal and vertical flips.
        rot90: Random rotations by multiples of 90 degrees (square crops keep
            their shape; non-square arrays are only rotated by 0 or 180).
        brightness: Largest additive shift, as a fraction of the image range.
        contrast: Largest relative contrast change around the mean.
        gamma: Largest log-gamma change (``x ** exp(u)``, ``|u| <= gamma``) on
            images scaled to ``[0, 1]``.
        noise: Standard deviation of additive Gaussian noise (fraction of range).
        elastic_alpha: Elastic deformation strength in pixels (0 disables it).
        elastic_sigma: Smoothness of the elastic displacement field.

    >>> Augmentation(noise=0.02).flips
    True
    """

    flips: bool = True
    rot90: bool = True
    brightness: float = 0.1
    contrast: float = 0.2
    gamma: float = 0.2
    noise: float = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 8.0

    def __call__(
        self, rng: np.random.Generator, image: np.ndarray, targets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment ``image`` (H, W, C) and ``targets`` (H, W, K) together.

        >>> aug = Augmentation()
        >>> img, tgt = aug(np.random.default_rng(0), np.ones((8, 8, 3)), np.zeros((8, 8, 2)))
        >>> img.shape, tgt.shape
        ((8, 8, 3), (8, 8, 2))
        """
        image, targets = _check_pair(image, targets)
        if self.flips:
            if rng.random() < 0.5:
                image, targets = image[::-1], targets[::-1]
            if rng.random() < 0.5:
                image, targets = image[:, ::-1], targets[:, ::-1]
        if self.rot90:
            square = image.shape[0] == image.shape[1]
            k = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
            image, targets = np.rot90(image, k), np.rot90(targets, k)
        if self.elastic_alpha > 0:
            image, targets = elastic(rng, image, targets, self.elastic_alpha, self.elastic_sigma)
        image = adjust_intensity(rng, image, self.brightness, self.contrast, self.gamma, self.noise)
        return np.ascontiguousarray(image), np.ascontiguousarray(targets)


def _check_pair(image: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image, targets = np.asarray(image), np.asarray(targets)
    if image.ndim != 3 or targets.ndim != 3 or image.shape[:2] != targets.shape[:2]:
        raise ValueError(
            f"image {image.shape} and targets {targets.shape} must both be (H, W, channels) "
            "with the same H and W."
        )
    return image, targets


def random_crop(
    rng: np.random.Generator, image: np.ndarray, targets: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Crop the same random window from image and targets (reflect-pad if too small).

    >>> rng = np.random.default_rng(0)
    >>> img, tgt = random_crop(rng, np.ones((10, 6, 1)), np.ones((10, 6, 2)), (8, 8))
    >>> img.shape, tgt.shape
    ((8, 8, 1), (8, 8, 2))
    """
    image, targets = _check_pair(image, targets)
    height, width = int(size[0]), int(size[1])
    pad_h, pad_w = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if pad_h or pad_w:
        pads = ((0, pad_h), (0, pad_w), (0, 0))
        image, targets = np.pad(image, pads, mode="reflect"), np.pad(targets, pads, mode="reflect")
    top = int(rng.integers(image.shape[0] - height + 1))
    left = int(rng.integers(image.shape[1] - width + 1))
    window = (slice(top, top + height), slice(left, left + width))
    return image[window], targets[window]


def adjust_intensity(
    rng: np.random.Generator,
    image: np.ndarray,
    brightness: float = 0.1,
    contrast: float = 0.2,
    gamma: float = 0.2,
    noise: float = 0.0,
) -> np.ndarray:
    """Random brightness, contrast, gamma and noise for an image in ``[0, 1]``.

    The result is clipped to ``[0, 1]``.

    >>> out = adjust_intensity(np.random.default_rng(0), np.full((4, 4, 1), 0.5))
    >>> bool(0 <= out.min() and out.max() <= 1)
    True
    """
    x = np.asarray(image, np.float32)
    if gamma:
        x = np.clip(x, 0.0, 1.0) ** np.float32(np.exp(rng.uniform(-gamma, gamma)))
    if contrast:
        mean = x.mean()
        x = (x - mean) * np.float32(1.0 + rng.uniform(-contrast, contrast)) + mean
    if brightness:
        x = x + np.float32(rng.uniform(-brightness, brightness))
    if noise:
        x = x + rng.normal(0.0, noise, size=x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0)


def elastic(
    rng: np.random.Generator,
    image: np.ndarray,
    targets: np.ndarray,
    alpha: float,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Elastic deformation (Simard et al. 2003) with one displacement field for both.

    The image is interpolated linearly, targets with nearest neighbour (so
    label-like maps stay crisp).

    >>> rng = np.random.default_rng(0)
    >>> img, tgt = elastic(rng, np.ones((16, 16, 1)), np.ones((16, 16, 1)), 4, 3)
    >>> img.shape
    (16, 16, 1)
    """
    height, width = image.shape[:2]
    dy = ndi.gaussian_filter(rng.uniform(-1, 1, (height, width)), sigma) * alpha
    dx = ndi.gaussian_filter(rng.uniform(-1, 1, (height, width)), sigma) * alpha
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    coords = [yy + dy, xx + dx]

    def warp(array: np.ndarray, order: int) -> np.ndarray:
        channels = [
            ndi.map_coordinates(array[..., c], coords, order=order, mode="reflect")
            for c in range(array.shape[-1])
        ]
        return np.stack(channels, axis=-1).astype(array.dtype, copy=False)

    return warp(image, 1), warp(targets, 0)
