"""Instance labels from semantic (interior / border) probability maps via watershed.

Pipeline of :func:`instances_from_predictions`:

1. foreground mask: ``fg > mask_threshold`` with ``fg = clip(interior + border, 0, 1)``
   (``fg = interior`` when no border map is given);
2. markers: connected components (4-connectivity) of
   ``(interior > marker_threshold) & (border < border_threshold) & mask``;
3. marker-controlled watershed (``skimage.segmentation.watershed``) restricted to the
   mask, on the elevation ``border - interior`` (``-interior`` without a border map), so
   regions grow from the confident interiors over the border pixels;
4. foreground components that contain no marker (watershed leaves them at 0) become
   instances of their own;
5. instances with fewer than ``min_size`` pixels are removed, holes inside each instance
   are filled (only background pixels are filled), and ids are made sequential 1..n.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential, watershed

__all__ = ["instances_from_predictions", "instances_from_softmax"]


def instances_from_predictions(
    interior_prob: np.ndarray,
    border_prob: np.ndarray | None = None,
    *,
    mask_threshold: float = 0.5,
    marker_threshold: float = 0.5,
    border_threshold: float = 0.5,
    min_size: int = 20,
    fill_holes: bool = True,
) -> np.ndarray:
    """Split predicted foreground into instances with a marker-controlled watershed.

    Args:
        interior_prob: Probability (H, W) of "instance interior" (mask minus border), e.g.
            channel 0 of a two-channel sigmoid output.
        border_prob: Optional probability (H, W) of "border between touching instances",
            e.g. channel 1 of the sigmoid output.
        mask_threshold: Foreground threshold on ``clip(interior + border, 0, 1)``.
        marker_threshold: A marker pixel needs ``interior > marker_threshold``.
        border_threshold: A marker pixel needs ``border < border_threshold``.
        min_size: Instances with fewer pixels are removed (0 or 1 keeps all).
        fill_holes: Fill background holes enclosed by a single instance.

    Returns:
        ``int32`` instance labels (H, W), background 0, ids 1..n.

    Raises:
        ValueError: On wrong dimensions, mismatched shapes, NaN/inf values, values outside
            [0, 1] (pass probabilities, not logits) or invalid parameters.

    Examples:
        >>> interior = np.zeros((5, 10)); border = np.zeros((5, 10))
        >>> interior[1:4, 1:4] = interior[1:4, 6:9] = 1.0
        >>> border[1:4, 4:6] = 1.0  # two touching squares, one border column each
        >>> instances_from_predictions(interior, border, min_size=1)[2].tolist()
        [0, 1, 1, 1, 1, 2, 2, 2, 2, 0]
    """
    interior = _check_prob(interior_prob, "interior_prob")
    if border_prob is None:
        border = np.zeros_like(interior)
    else:
        border = _check_prob(border_prob, "border_prob")
        if border.shape != interior.shape:
            raise ValueError(
                f"border_prob shape {border.shape} differs from interior_prob shape "
                f"{interior.shape}; pass the two channels of the same prediction."
            )
    for name, value in (
        ("mask_threshold", mask_threshold),
        ("marker_threshold", marker_threshold),
        ("border_threshold", border_threshold),
    ):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}; e.g. {name}=0.5.")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size must be a non-negative int, got {min_size!r}.")

    mask = np.clip(interior + border, 0.0, 1.0) > mask_threshold
    seeds = (interior > marker_threshold) & (border < border_threshold) & mask
    markers, n_markers = ndi.label(seeds)
    labels = watershed(border - interior, markers=markers, mask=mask).astype(np.int32)
    unseeded, _ = ndi.label(mask & (labels == 0))
    labels[unseeded > 0] = unseeded[unseeded > 0] + n_markers

    if min_size > 1:
        # Same rule as skimage.morphology.remove_small_objects(max_size=min_size - 1) on a
        # label image; done directly because skimage warns when only one label exists.
        too_small = np.bincount(labels.ravel(), minlength=1) < min_size
        too_small[0] = False
        labels[too_small[labels]] = 0
    if fill_holes:
        _fill_holes_per_instance(labels)
    return relabel_sequential(labels)[0].astype(np.int32, copy=False)


def instances_from_softmax(probs: np.ndarray, **kwargs: object) -> np.ndarray:
    """Instances from a 3-class softmax output with channels (interior, border, background).

    Args:
        probs: Array (H, W, 3) of class probabilities, channel order as produced by
            :func:`keras_dynunet.instances.softmax_targets`.
        **kwargs: Keyword arguments of :func:`instances_from_predictions`.

    Returns:
        ``int32`` instance labels (H, W).

    Raises:
        ValueError: If ``probs`` is not (H, W, 3) or not a valid probability map.

    Examples:
        >>> p = np.zeros((4, 4, 3)); p[..., 2] = 1.0
        >>> p[1:3, 1:3] = [1.0, 0.0, 0.0]
        >>> instances_from_softmax(p, min_size=1).tolist()[1]
        [0, 1, 1, 0]
    """
    arr = np.asarray(probs)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(
            f"probs must have shape (H, W, 3) with channels (interior, border, background), "
            f"got {arr.shape}; drop the batch axis and pass one image at a time."
        )
    return instances_from_predictions(arr[..., 0], arr[..., 1], **kwargs)


def _check_prob(prob: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(prob)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (H, W) probability map, got shape {arr.shape}; "
            "select one channel and drop the batch axis."
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass a non-empty image.")
    if arr.dtype != bool and not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(
            f"{name} must be a float (or bool/int 0-1) array, got dtype {arr.dtype}; "
            "pass the model's probabilities, e.g. probs.astype(np.float32)."
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} contains NaN or inf values; check the model output (e.g. "
            "np.nan_to_num) before post-processing."
        )
    if arr.min() < -1e-6 or arr.max() > 1.0 + 1e-6:
        raise ValueError(
            f"{name} has values in [{arr.min():.3g}, {arr.max():.3g}], outside [0, 1]; "
            "apply sigmoid/softmax to logits first."
        )
    return arr


def _fill_holes_per_instance(labels: np.ndarray) -> None:
    """Fill, in place, background holes fully enclosed by a single instance."""
    for idx, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        crop = labels[box]
        own = crop == idx
        holes = ndi.binary_fill_holes(own) & ~own & (crop == 0)
        crop[holes] = idx
