"""PNG overlays a person can look at: instance outlines or mask tints on the image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from skimage.segmentation import find_boundaries


def outline_overlay(
    image: np.ndarray, labels: np.ndarray, color: tuple[float, float, float] = (1.0, 0.9, 0.0)
) -> np.ndarray:
    """Draw each instance's outline in ``color`` on an image in ``[0, 1]``.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)`` float image in ``[0, 1]``.
        labels: Instance labels ``(H, W)``, 0 = background.
        color: RGB outline colour in ``[0, 1]``.

    Returns:
        A float32 ``(H, W, 3)`` image.

    >>> out = outline_overlay(np.zeros((8, 8)), np.pad(np.ones((4, 4), int), 2))
    >>> out.shape, float(out[2, 2, 0])
    ((8, 8, 3), 1.0)
    """
    rgb = np.asarray(image, np.float32)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    if rgb.shape[:2] != np.shape(labels):
        raise ValueError(f"image {rgb.shape[:2]} and labels {np.shape(labels)} differ in size.")
    out = np.clip(rgb[..., :3], 0.0, 1.0).copy()
    out[find_boundaries(labels, mode="inner")] = color
    return out


def mask_overlay(
    image: np.ndarray, mask: np.ndarray, color: tuple[float, float, float] = (1.0, 0.2, 0.2),
    alpha: float = 0.4,
) -> np.ndarray:  # fmt: skip
    """Tint the pixels of a binary mask on an image in ``[0, 1]``.

    >>> [round(float(v), 2) for v in mask_overlay(np.zeros((2, 2, 3)), np.eye(2, dtype=bool))[0, 0]]
    [0.4, 0.08, 0.08]
    """
    rgb = np.asarray(image, np.float32)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    out = np.clip(rgb[..., :3], 0.0, 1.0).copy()
    mask = np.asarray(mask, bool)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(color, np.float32)
    return out


def save_png(path: str | os.PathLike[str], image: np.ndarray) -> str:
    """Write a ``[0, 1]`` float image (or a label/mask array) as PNG, atomically.

    Label images are written as 8- or 16-bit integers; float images are
    scaled to 8 bits. The file appears complete or not at all.

    >>> import tempfile
    >>> p = save_png(Path(tempfile.mkdtemp()) / "a.png", np.zeros((4, 4, 3)))
    >>> Path(p).exists()
    True
    """
    from PIL import Image

    array = np.asarray(image)
    if array.dtype.kind == "f":
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.max(initial=0) < 256:
        array = array.astype(np.uint8)
    else:
        array = array.astype(np.uint16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)
    return str(path)
