"""Tiled (sliding-window) inference for images of any size.

:func:`predict_tiled` runs a segmentation model over a large image one tile at a
time and blends the overlapping tile predictions, so memory is bounded by the
tile size (plus the float32 output and weight maps of the image's size).

Design:

* **Grid.** Tiles lie on a regular grid with stride ``tile - overlap``; the last
  tile of each row/column is shifted back to end exactly at the image border (it
  overlaps its neighbour by more than ``overlap``), so no padding is needed and
  every tile has the same shape (one compiled model function is reused).
* **Images smaller than a tile.** For a model that accepts any input size (every
  :class:`~keras_dynunet.DynUNet`), the tile shrinks to the image along that axis:
  one tile of the image's own size, which gives exactly the whole-image
  prediction. For a model with a fixed input size, ``tile`` must equal that size
  and a smaller image is reflect-padded at the bottom/right up to the tile (the
  padded part of the prediction is discarded).
* **Blending.** Each tile's prediction is multiplied by a window and accumulated
  into a float32 ``(H, W, classes)`` sum and a float32 ``(H, W)`` weight map; the
  result is their ratio.

  - ``"gaussian"`` (default) is nnU-Net's window: a separable 2-D Gaussian with
    sigma = tile / 8 per axis, peak 1, never zero (its corners are about
    ``exp(-16)``). It down-weights tile borders, where convolutions see zero
    padding, but does not discard them, so a model with a receptive field larger
    than one pixel leaks a little border error into the blend.
  - ``"mean"`` (alias ``"linear"``) weighs every tile pixel equally: plain
    averaging of the overlaps, which keeps the most border error.
  - ``"crop"`` (crop-and-stitch) drops ``overlap // 2`` pixels at every tile
    edge that is inside the image and averages what is left. When
    ``overlap // 2`` is at least the model's receptive-field radius (for a
    translation-equivariant model) the result equals the whole-image
    prediction up to float rounding.
* **TTA.** ``tta=True`` averages the 8 dihedral transforms (horizontal flip or
  not, times rotation by 0/90/180/270 degrees), each inverted before averaging;
  it costs 8 model calls per batch of tiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

BLENDS = ("gaussian", "mean", "linear", "crop")
_DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles covering ``[0, length)`` along one axis.

    Tiles are ``tile`` long with stride ``tile - overlap``; the last one is
    aligned to the end (so it may overlap its neighbour by more than
    ``overlap``). A length of at most ``tile`` gives one tile at 0.

    Args:
        length: Image size along the axis.
        tile: Tile size along the axis.
        overlap: Overlap between neighbouring tiles, ``0 <= overlap < tile``.

    Returns:
        Strictly increasing start offsets, the first 0 and the last
        ``max(length - tile, 0)``.

    >>> tile_starts(200, 64, 16)
    [0, 48, 96, 136]
    >>> tile_starts(50, 64, 16)
    [0]
    """
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"Need 0 <= overlap < tile, got tile={tile}, overlap={overlap}.")
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    return [i * stride for i in range(n - 1)] + [length - tile]


def blend_window(shape: int | Sequence[int], blend: str = "gaussian") -> np.ndarray:
    """The float32 ``(height, width)`` weight window used to blend one tile.

    Args:
        shape: Tile size, an int or ``(height, width)``.
        blend: ``"gaussian"`` (nnU-Net: sigma = size / 8 per axis, peak 1,
            strictly positive everywhere), or ``"mean"``/``"linear"``/``"crop"``
            (all ones; :func:`predict_tiled` zeroes the crop margins per tile).

    Returns:
        The window, shape ``(height, width)``, float32.

    >>> w = blend_window(64)
    >>> w.shape, float(w.max()), bool(w.min() > 0), bool(w[0, 0] < 1e-6)
    ((64, 64), 1.0, True, True)
    >>> float(blend_window((4, 6), "mean").sum())
    24.0
    """
    height, width = _pair(shape, "shape")
    if height < 1 or width < 1:
        raise ValueError(f"Window shape must be positive, got {(height, width)}.")
    blend = _check_blend(blend)
    if blend != "gaussian":
        return np.ones((height, width), np.float32)

    def gauss(n: int) -> np.ndarray:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        return np.exp(-0.5 * (x / (n / 8)) ** 2)

    window = np.outer(gauss(height), gauss(width))
    window /= window.max()
    # Corners are ~exp(-16) > 0; the floor only guards against float32 underflow.
    return np.maximum(window, np.finfo(np.float32).tiny).astype(np.float32)


def predict_tiled(
    model: keras.Model,
    image: np.ndarray,
    tile: int | Sequence[int] = 256,
    overlap: int | Sequence[int] = 32,
    blend: str = "gaussian",
    tta: bool = False,
    batch_size: int = 4,
    progress: bool = False,
) -> np.ndarray:
    """Predict a large image tile by tile and blend the overlapping tiles.

    Only ``batch_size`` tiles go through the model at a time (through
    ``model.predict_on_batch``), so memory is bounded by the tile size plus the
    float32 output ``(H, W, classes)`` and weight ``(H, W)`` maps. See the module
    docstring for the grid, small images, blending and TTA.

    Args:
        model: A Keras model with one image input ``(None, h, w, C)`` and one
            output of the input's spatial size, e.g. :func:`keras_dynunet.build_unet`.
        image: One image ``(H, W, C)`` or a batch ``(N, H, W, C)`` (processed one
            image at a time); any numeric dtype, cast to float32 tile by tile.
        tile: Tile size, an int or ``(height, width)``. Shrunk to the image
            where the image is smaller (variable-size models); must equal the
            model's input size for a fixed-size model.
        overlap: Overlap between neighbouring tiles (int or pair), ``< tile``.
            Use at least the model's effective receptive-field radius.
        blend: ``"gaussian"`` (default, nnU-Net), ``"mean"`` or ``"linear"``
            (uniform averaging; the two names are aliases), or ``"crop"``
            (discard ``overlap // 2`` pixels at inner tile edges; exact for
            ``overlap >= 2 * receptive-field radius``).
        tta: Average the 8 flips/rotations (8x the model calls).
        batch_size: Tiles per model call.
        progress: Show a tqdm progress bar (counts tiles).

    Returns:
        float32 predictions ``(H, W, classes)``, or ``(N, H, W, classes)`` for a
        batch.

    Raises:
        ValueError: Wrong image rank, empty image, NaN/inf values, channel count
            different from the model input, ``tile <= overlap``, bad ``blend``
            or ``batch_size``, or a model whose output size differs from its
            input size.

    >>> import keras, numpy as np
    >>> inputs = keras.Input((None, None, 3))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    >>> image = np.random.default_rng(0).uniform(size=(100, 70, 3)).astype("float32")
    >>> pred = predict_tiled(model, image, tile=64, overlap=16)
    >>> pred.shape, pred.dtype
    ((100, 70, 2), dtype('float32'))
    >>> bool(np.allclose(pred, model.predict_on_batch(image[None])[0], atol=1e-5))
    True
    """
    tile_hw = _pair(tile, "tile")
    overlap_hw = _pair(overlap, "overlap")
    for t, o in zip(tile_hw, overlap_hw, strict=True):
        if t < 1 or o < 0:
            raise ValueError(
                f"tile must be >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}."
            )
        if t <= o:
            raise ValueError(
                f"tile ({tile}) must be larger than overlap ({overlap}): tiles advance by "
                "tile - overlap pixels. Use e.g. overlap = tile // 8."
            )
    blend = _check_blend(blend)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")

    images = np.asarray(image)
    if images.ndim not in (3, 4):
        hint = " Add a channel axis: image[..., None]." if images.ndim == 2 else ""
        raise ValueError(
            f"image must be (H, W, C) or a batch (N, H, W, C), got shape {images.shape}.{hint}"
        )
    single = images.ndim == 3
    if single:
        images = images[None]
    if 0 in images.shape:
        raise ValueError(f"image is empty: shape {np.asarray(image).shape}.")
    if images.dtype.kind not in "biuf":
        raise ValueError(f"image must be a real numeric array, got dtype {images.dtype}.")

    channels, fixed_hw, in_dtype = _model_input(model)
    if channels is not None and images.shape[-1] != channels:
        raise ValueError(
            f"The image has {images.shape[-1]} channels but the model takes {channels}; "
            f"image shape {np.asarray(image).shape}, model input shape {model.inputs[0].shape}."
        )
    if fixed_hw is not None and tile_hw != fixed_hw:
        raise ValueError(
            f"The model takes a fixed input size {fixed_hw}; pass tile={fixed_hw} "
            f"(got tile={tile})."
        )
    _check_finite(images)

    height, width = images.shape[1:3]
    if fixed_hw is None:
        tile_hw = (min(tile_hw[0], height), min(tile_hw[1], width))
    overlap_hw = (min(overlap_hw[0], tile_hw[0] - 1), min(overlap_hw[1], tile_hw[1] - 1))
    ys = tile_starts(height, tile_hw[0], overlap_hw[0])
    xs = tile_starts(width, tile_hw[1], overlap_hw[1])
    positions = [(y, x) for y in ys for x in xs]
    window = blend_window(tile_hw, blend)
    margins = (overlap_hw[0] // 2, overlap_hw[1] // 2) if blend == "crop" else (0, 0)
    predict = _predictor(model)

    out: np.ndarray | None = None
    with tqdm(
        total=len(images) * len(positions),
        desc="predict_tiled",
        unit="tile",
        disable=not progress,
    ) as bar:
        for i, img in enumerate(images):
            pred = _predict_image(
                predict, img, positions, tile_hw, window, margins, tta, batch_size, in_dtype, bar
            )
            if single:
                return pred
            if out is None:
                out = np.empty((len(images), *pred.shape), np.float32)
            out[i] = pred
    return out


# === Helpers ===


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a (height, width) pair, got {value!r}.")
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a (height, width) pair, got {value!r}.")


def _check_blend(blend: str) -> str:
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}.")
    return blend


def _model_input(model: Any) -> tuple[int | None, tuple[int, int] | None, str]:
    """``(channels, fixed (h, w) or None, input dtype)`` from a model's signature."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):  # subclassed / unbuilt model: nothing to check
        return None, None, "float32"
    if inputs is None or outputs is None:
        return None, None, "float32"
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"predict_tiled needs a model with one image input and one output; "
            f"this one has {len(inputs)} inputs and {len(outputs)} outputs."
        )
    shape = tuple(inputs[0].shape)
    if len(shape) != 4:
        raise ValueError(
            f"predict_tiled needs a model taking (batch, height, width, channels) images; "
            f"its input shape is {shape}."
        )
    fixed = None if None in shape[1:3] else (int(shape[1]), int(shape[2]))
    dtype = str(getattr(inputs[0], "dtype", None) or "float32")
    try:
        np.dtype(dtype)
    except TypeError:  # e.g. bfloat16: feed float32 and let the model cast
        dtype = "float32"
    return (None if shape[3] is None else int(shape[3])), fixed, dtype


def _predictor(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    if hasattr(model, "predict_on_batch"):

        def predict(batch: np.ndarray) -> np.ndarray:
            return model.predict_on_batch(batch)

    else:

        def predict(batch: np.ndarray) -> np.ndarray:
            return model(batch, training=False)

    def run(batch: np.ndarray) -> np.ndarray:
        pred = predict(batch)
        if isinstance(pred, dict | list | tuple):
            raise ValueError("predict_tiled needs a model with a single output tensor.")
        pred = np.asarray(keras.ops.convert_to_numpy(pred), dtype=np.float32)
        if pred.ndim != 4 or pred.shape[:3] != batch.shape[:3]:
            raise ValueError(
                f"The model maps tiles of shape {batch.shape} to {pred.shape}; predict_tiled "
                "needs an output of the input's spatial size (batch, height, width, classes)."
            )
        return pred

    return run


def _check_finite(images: np.ndarray, rows: int = 256) -> None:
    """Raise on NaN/inf, scanning a few rows at a time (bounded memory)."""
    if images.dtype.kind != "f":
        return
    for n, img in enumerate(images):
        for y in range(0, img.shape[0], rows):
            block = img[y : y + rows]
            ok = np.isfinite(block)
            if not ok.all():
                by, bx, _ = np.argwhere(~ok)[0]
                where = f"image {n}, " if len(images) > 1 else ""
                raise ValueError(
                    f"image contains NaN or inf values ({where}first at row {y + by}, "
                    f"column {bx}); clean it first, e.g. np.nan_to_num(image)."
                )


def _extract(img: np.ndarray, y: int, x: int, tile_hw: tuple[int, int]) -> np.ndarray:
    """The tile at (y, x), reflect-padded at the bottom/right if the image is smaller."""
    crop = img[y : y + tile_hw[0], x : x + tile_hw[1]]
    pad_h, pad_w = tile_hw[0] - crop.shape[0], tile_hw[1] - crop.shape[1]
    if pad_h or pad_w:
        mode = "reflect" if min(crop.shape[:2]) > 1 else "edge"
        crop = np.pad(crop, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)
    return crop


def _dihedral(x: np.ndarray, k: int, flip: bool, inverse: bool = False) -> np.ndarray:
    """Flip (width axis) then rotate by k * 90 degrees a (batch, h, w, c) array; or undo it."""
    if inverse:
        x = np.rot90(x, -k, axes=(1, 2))
        return x[:, :, ::-1] if flip else x
    x = x[:, :, ::-1] if flip else x
    return np.rot90(x, k, axes=(1, 2))


def _crop_margins(
    window: np.ndarray, margins: tuple[int, int], y: int, x: int, image_hw: tuple[int, int]
) -> np.ndarray:
    """Zero ``margins`` pixels at the tile edges that lie inside the image ("crop" blend)."""
    (my, mx), (th, tw) = margins, window.shape
    if not (my or mx):
        return window
    window = window.copy()
    if y > 0:
        window[:my] = 0
    if y + th < image_hw[0]:
        window[th - my :] = 0
    if x > 0:
        window[:, :mx] = 0
    if x + tw < image_hw[1]:
        window[:, tw - mx :] = 0
    return window


def _predict_image(
    predict: Callable[[np.ndarray], np.ndarray],
    img: np.ndarray,
    positions: list[tuple[int, int]],
    tile_hw: tuple[int, int],
    window: np.ndarray,
    margins: tuple[int, int],
    tta: bool,
    batch_size: int,
    in_dtype: str,
    bar: Any,
) -> np.ndarray:
    height, width = img.shape[:2]
    total: np.ndarray | None = None
    weight = np.zeros((height, width), np.float32)
    # Pad a short last batch to batch_size so the compiled predict function is reused.
    full = batch_size if len(positions) > batch_size else None
    for start in range(0, len(positions), batch_size):
        chunk = positions[start : start + batch_size]
        size = full or len(chunk)
        tiles = np.zeros((size, *tile_hw, img.shape[-1]), in_dtype)
        for j, (y, x) in enumerate(chunk):
            tiles[j] = _extract(img, y, x, tile_hw)
        if tta:
            pred = None
            for k, flip in _DIHEDRAL:
                moved = np.ascontiguousarray(_dihedral(tiles, k, flip))
                back = _dihedral(predict(moved), k, flip, inverse=True)
                pred = back if pred is None else pred + back
            pred = pred / np.float32(len(_DIHEDRAL))
        else:
            pred = predict(tiles)
        if total is None:
            total = np.zeros((height, width, pred.shape[-1]), np.float32)
        for j, (y, x) in enumerate(chunk):
            h, w = min(tile_hw[0], height - y), min(tile_hw[1], width - x)
            win = _crop_margins(window, margins, y, x, (height, width))[:h, :w]
            total[y : y + h, x : x + w] += pred[j, :h, :w] * win[..., None]
            weight[y : y + h, x : x + w] += win
        bar.update(len(chunk))
    np.divide(total, weight[..., None], out=total)
    return total
