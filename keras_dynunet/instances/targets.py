"""Training targets derived from an instance label image.

An *instance label image* is a 2-D integer array in which ``0`` is background and every
other value identifies one object (nucleus). Ids may be arbitrary, non-contiguous and
unsorted; only equality matters.

The targets follow the Data Science Bowl 2018 "interior / border / background" scheme:
pixels where two *different* instances touch (or nearly touch) are marked as ``border``
so that a semantic network can learn to separate touching nuclei, and a watershed
(:mod:`keras_dynunet.instances.watershed`) can split them again.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk

__all__ = [
    "BACKGROUND",
    "BORDER",
    "INTERIOR",
    "MAX_LABEL_ID",
    "binary_mask",
    "instance_borders",
    "sigmoid_targets",
    "softmax_class_ids",
    "softmax_targets",
    "validate_labels",
]

#: Class id of instance pixels that are not border pixels (softmax targets).
INTERIOR = 0
#: Class id of border pixels (softmax targets).
BORDER = 1
#: Class id of background pixels (softmax targets).
BACKGROUND = 2
#: Largest instance id accepted (ids are processed as int32).
MAX_LABEL_ID = 2**31 - 1


def validate_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Check that ``labels`` is a valid 2-D instance label image and return it as int32.

    Args:
        labels: Array-like of shape (H, W) with integer dtype; 0 is background, any
            other non-negative id is an instance.
        name: Argument name used in error messages.

    Returns:
        The labels as a C-contiguous ``int32`` array (a copy only when needed).

    Raises:
        ValueError: If the array is not 2-D, empty, not of integer dtype, or contains
            negative ids or ids larger than ``2**31 - 1``.

    Examples:
        >>> validate_labels(np.array([[0, 7], [7, 3]], dtype=np.uint8)).dtype
        dtype('int32')
    """
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (H, W) instance label image, got shape {arr.shape}; "
            "squeeze channel/batch axes or call the function once per image."
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass a non-empty image.")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{name} must have an integer dtype, got {arr.dtype}; convert an instance "
            "image with labels.astype(np.int32) or label a binary mask with "
            "scipy.ndimage.label first."
        )
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise ValueError(
            f"{name} contains negative ids (min {lo}); use 0 for background and "
            "positive ids for instances (e.g. skimage.segmentation.relabel_sequential)."
        )
    if hi > MAX_LABEL_ID:
        raise ValueError(
            f"{name} contains ids up to {hi}, above the supported maximum 2**31-1; "
            "relabel with skimage.segmentation.relabel_sequential first."
        )
    return np.ascontiguousarray(arr, dtype=np.int32)


def binary_mask(labels: np.ndarray) -> np.ndarray:
    """Foreground mask: ``True`` wherever ``labels`` is non-zero.

    Args:
        labels: Instance label image (H, W), integer dtype, 0 = background.

    Returns:
        Boolean array of shape (H, W).

    Examples:
        >>> binary_mask(np.array([[0, 5], [2, 0]])).tolist()
        [[False, True], [True, False]]
    """
    return validate_labels(labels) > 0


def instance_borders(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels of an instance that lie within ``width`` pixels of a *different* instance.

    A pixel ``p`` is marked iff ``labels[p] = a > 0`` and there is a pixel ``q`` with
    ``labels[q] = b > 0``, ``b != a`` and Euclidean distance ``|p - q| <= width``
    (the neighbourhood is ``skimage.morphology.disk(width)``). The outer boundary of an
    instance towards background is **not** marked, and background pixels are never
    marked. Where two instances touch, a band of ``width`` pixels is therefore marked on
    *each* side of the contact line (``2 * width`` pixels in total). Pixels outside the
    image are treated as background. ``width=0`` marks nothing.

    Implementation: a grey dilation of the labels (largest id in the neighbourhood) and a
    grey erosion of the labels with background replaced by ``+inf`` (smallest non-zero id
    in the neighbourhood); a foreground pixel whose id differs from either has a different
    instance within reach.

    Args:
        labels: Instance label image (H, W), integer dtype, 0 = background.
        width: Neighbourhood radius in pixels (non-negative int).

    Returns:
        Boolean array of shape (H, W).

    Raises:
        ValueError: For invalid labels or a negative/non-integer ``width``.

    Examples:
        >>> labels = np.array([[1, 1, 2, 2, 0, 3]])
        >>> instance_borders(labels, width=1).astype(int).tolist()
        [[0, 1, 1, 0, 0, 0]]
    """
    lab = validate_labels(labels)
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 0:
        raise ValueError(f"width must be a non-negative int, got {width!r}; e.g. width=2.")
    if width == 0:
        return np.zeros(lab.shape, dtype=bool)
    footprint = disk(int(width)).astype(bool)
    largest = ndi.grey_dilation(lab, footprint=footprint, mode="constant", cval=0)
    sentinel = np.iinfo(np.int32).max
    # An instance whose id equals the sentinel is still detected: its neighbours see it
    # through the dilation, and it sees lower ids through the erosion.
    fg_or_inf = np.where(lab > 0, lab, sentinel)
    smallest = ndi.grey_erosion(fg_or_inf, footprint=footprint, mode="constant", cval=sentinel)
    return (lab > 0) & ((largest > lab) | (smallest < lab))


def sigmoid_targets(labels: np.ndarray, border_width: int = 2) -> np.ndarray:
    """Two-channel sigmoid targets: ``[..., 0]`` = mask minus border, ``[..., 1]`` = border.

    The channels are mutually exclusive, so their sum is the binary foreground mask.

    Args:
        labels: Instance label image (H, W), integer dtype, 0 = background.
        border_width: ``width`` passed to :func:`instance_borders`.

    Returns:
        ``float32`` array of shape (H, W, 2) with values in {0, 1}.

    Examples:
        >>> t = sigmoid_targets(np.array([[1, 1, 2, 2, 0]]), border_width=1)
        >>> t[..., 0].tolist(), t[..., 1].tolist()
        ([[1.0, 0.0, 0.0, 1.0, 0.0]], [[0.0, 1.0, 1.0, 0.0, 0.0]])
    """
    lab = validate_labels(labels)
    border = instance_borders(lab, border_width)
    out = np.zeros((*lab.shape, 2), dtype=np.float32)
    out[..., 0] = (lab > 0) & ~border
    out[..., 1] = border
    return out


def softmax_class_ids(labels: np.ndarray, border_width: int = 2) -> np.ndarray:
    """Per-pixel class ids: 0 = interior, 1 = border, 2 = background.

    Args:
        labels: Instance label image (H, W), integer dtype, 0 = background.
        border_width: ``width`` passed to :func:`instance_borders`.

    Returns:
        ``int32`` array of shape (H, W) with values in {0, 1, 2}
        (:data:`INTERIOR`, :data:`BORDER`, :data:`BACKGROUND`).

    Examples:
        >>> softmax_class_ids(np.array([[1, 1, 2, 2, 0]]), border_width=1).tolist()
        [[0, 1, 1, 0, 2]]
    """
    lab = validate_labels(labels)
    ids = np.full(lab.shape, BACKGROUND, dtype=np.int32)
    ids[lab > 0] = INTERIOR
    ids[instance_borders(lab, border_width)] = BORDER
    return ids


def softmax_targets(labels: np.ndarray, border_width: int = 2) -> np.ndarray:
    """One-hot softmax targets with channels (interior, border, background).

    Args:
        labels: Instance label image (H, W), integer dtype, 0 = background.
        border_width: ``width`` passed to :func:`instance_borders`.

    Returns:
        ``float32`` array of shape (H, W, 3); exactly one channel is 1 per pixel.

    Examples:
        >>> softmax_targets(np.array([[1, 0]]))[0].tolist()
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    ids = softmax_class_ids(labels, border_width)
    return np.eye(3, dtype=np.float32)[ids]
