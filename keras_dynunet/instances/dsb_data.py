"""A real Data Science Bowl 2018 image with instance labels, and a train/hold-out split.

The image ships inside the PyPI package ``stardist`` (0.9.2:
``stardist/data/images/img2d.tif`` and ``mask2d.tif``, 512 x 512, 125 nuclei). It is read
with ``tifffile`` from the installed package's folder, **without importing** ``stardist``
(whose import pulls TensorFlow/CSBDeep). Install it with::

    pip install --no-deps stardist tifffile
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from skimage.segmentation import relabel_sequential

from keras_dynunet.instances.targets import validate_labels

__all__ = ["dsb_example_paths", "dsb_split", "load_dsb_example"]

_INSTALL_HINT = "pip install --no-deps stardist tifffile"


def dsb_example_paths() -> tuple[Path, Path]:
    """Paths of the example image and mask inside the installed ``stardist`` package.

    Returns:
        ``(image_path, mask_path)``.

    Raises:
        ModuleNotFoundError: If ``stardist`` is not installed (the message gives the fix).
        FileNotFoundError: If the installed version does not ship the files.

    Examples:
        >>> dsb_example_paths()[0].name
        'img2d.tif'
    """
    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The DSB 2018 example image is read from the 'stardist' package, which is not "
            f"installed; run `{_INSTALL_HINT}` (no other stardist dependency is needed)."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "images"
    paths = (folder / "img2d.tif", folder / "mask2d.tif")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found in the installed stardist package; install the version "
                "that ships it with `pip install --no-deps stardist==0.9.2 tifffile`."
            )
    return paths


def load_dsb_example() -> tuple[np.ndarray, np.ndarray]:
    """Load the DSB 2018 fluorescence image and its instance labels shipped by stardist.

    Returns:
        ``(image, labels)``: ``uint16`` image (512, 512) as stored, and ``int32`` instance
        labels (512, 512) with 125 nuclei (ids are not contiguous; max id 183).

    Raises:
        ModuleNotFoundError: If ``stardist`` or ``tifffile`` is not installed.
        FileNotFoundError: If the installed stardist does not ship the files.

    Examples:
        >>> image, labels = load_dsb_example()
        >>> image.shape, image.dtype, len(np.unique(labels)) - 1
        ((512, 512), dtype('uint16'), 125)
    """
    image_path, mask_path = dsb_example_paths()
    try:
        import tifffile
    except ModuleNotFoundError as err:  # pragma: no cover - tifffile is a listed dependency
        raise ModuleNotFoundError(
            f"Reading the DSB example needs tifffile; run `{_INSTALL_HINT}`."
        ) from err
    image = np.asarray(tifffile.imread(image_path))
    labels = validate_labels(tifffile.imread(mask_path), "mask2d.tif")
    return image, labels


def dsb_split(
    image: np.ndarray,
    labels: np.ndarray,
    holdout: float = 0.25,
    *,
    relabel: bool = True,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Deterministic spatial split into a training region and a held-out region.

    The right-most ``round(holdout * W)`` columns are held out; the remaining left columns
    are the training region. Nothing is random. An instance cut by the split line keeps
    its pixels on each side: the training labels hold the part left of the line and the
    held-out labels the part right of it (both cropped, never moved), so each region's
    labels are exactly the labels of its pixels. A cut instance therefore appears, cropped,
    in both regions; if that leakage matters, drop those ids from one side. With
    ``relabel=True`` each region's ids are made sequential 1..n independently.

    Args:
        image: Image of shape (H, W) or (H, W, C).
        labels: Instance labels (H, W), integer dtype, 0 = background.
        holdout: Fraction of columns held out, strictly between 0 and 1.
        relabel: Relabel each region sequentially (else keep the original ids).

    Returns:
        ``((train_image, train_labels), (holdout_image, holdout_labels))`` as copies.

    Raises:
        ValueError: If shapes mismatch or ``holdout`` leaves an empty region.

    Examples:
        >>> lab = np.array([[1, 1, 2, 2]])
        >>> (xi, yi), (xh, yh) = dsb_split(np.zeros((1, 4)), lab, holdout=0.25)
        >>> yi.tolist(), yh.tolist()
        ([[1, 1, 2]], [[1]])
    """
    lab = validate_labels(labels)
    img = np.asarray(image)
    if img.shape[:2] != lab.shape or img.ndim not in (2, 3):
        raise ValueError(
            f"image shape {img.shape} must be (H, W) or (H, W, C) with (H, W) = labels "
            f"shape {lab.shape}; pass the image that the labels annotate."
        )
    width = lab.shape[1]
    n_hold = round(holdout * width)
    if not 0.0 < holdout < 1.0 or not 0 < n_hold < width:
        raise ValueError(
            f"holdout={holdout} gives {n_hold} of {width} held-out columns; choose a "
            "fraction strictly between 0 and 1 that leaves columns on both sides."
        )
    cut = width - n_hold
    parts = []
    for cols in (slice(0, cut), slice(cut, width)):
        part = lab[:, cols].copy()
        if relabel:
            part = relabel_sequential(part)[0].astype(np.int32, copy=False)
        parts.append((img[:, cols].copy(), part))
    return parts[0], parts[1]
