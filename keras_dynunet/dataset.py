"""A ``keras.utils.PyDataset`` of images and instance labels for segmentation training.

Targets (binary mask, the 2-channel sigmoid target or the 3-channel softmax
target of :mod:`keras_dynunet.instances`) and, optionally, the U-Net weight
map are computed once per full image, so instance contacts cut by a crop are
still marked; random crops and augmentations then move image, targets and
weight map together. With ``weight_map=True`` the weight map travels as the
last channel of ``y``, the convention of :mod:`keras_dynunet.losses`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_dynunet.augment import Augmentation, random_crop
from keras_dynunet.instances import (
    binary_mask,
    sigmoid_targets,
    softmax_targets,
    unet_weight_map,
    validate_labels,
)
from keras_dynunet.preprocessing import preprocess_input

TARGET_KINDS = ("mask", "sigmoid", "softmax")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def normalize_image(
    image: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.8)
) -> np.ndarray:
    """Scale an image to float32 ``[0, 1]`` with 3 channels.

    Integer images wider than 8 bits (microscopy) are stretched between the
    given percentiles; 8-bit images are divided by 255; float images are
    assumed to be in ``[0, 1]``. Grey images are repeated to RGB; an alpha
    channel is dropped.

    Raises:
        ValueError: Wrong rank, zero size, a non-numeric dtype (object,
            string, complex), or NaN/inf values.

    >>> normalize_image(np.array([[0, 255]], np.uint8)).shape
    (1, 2, 3)
    """
    array = np.asarray(image)
    if array.size == 0 or array.ndim not in (2, 3):
        raise ValueError(
            f"An image must be a non-empty (H, W) or (H, W, C) array, got {array.shape}."
        )
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"The image must be a real numeric array (bool, integer or float), got dtype "
            f"{array.dtype}; convert it, e.g. np.asarray(image, dtype=np.float32)."
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("The image contains NaN or inf values; clean or mask them first.")
    if array.dtype == bool:
        x = array.astype(np.float32)
    elif array.dtype == np.uint8:
        x = array.astype(np.float32) / 255.0
    elif array.dtype.kind in "iu":
        low, high = np.percentile(array, percentiles)
        x = (array.astype(np.float32) - low) / max(float(high - low), 1e-6)
    else:
        x = array.astype(np.float32)
    x = np.clip(x, 0.0, 1.0)
    if x.ndim == 2:
        x = x[..., None]
    if x.shape[-1] == 4:
        x = x[..., :3]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[-1] != 3:
        raise ValueError(f"Expected 1, 3 or 4 channels, got {x.shape[-1]}.")
    return x


def make_targets(
    labels: np.ndarray,
    kind: str = "sigmoid",
    *,
    border_width: int = 2,
    weight_map: bool = False,
    w0: float = 10.0,
    sigma: float = 5.0,
) -> np.ndarray:
    """Per-pixel training targets ``(H, W, K)`` from an instance label image.

    Args:
        labels: Instance labels (H, W), 0 = background.
        kind: ``"mask"`` (1 channel), ``"sigmoid"`` (interior, border) or
            ``"softmax"`` (interior, border, background; one-hot).
        border_width: Width of the contact borders between instances.
        weight_map: Append the U-Net weight map as a last channel.
        w0: Weight-map border weight.
        sigma: Weight-map border width.

    >>> make_targets(np.array([[0, 1], [1, 2]]), "sigmoid", weight_map=True).shape
    (2, 2, 3)
    """
    labels = validate_labels(labels)
    if kind == "mask":
        targets = binary_mask(labels)[..., None].astype(np.float32)
    elif kind == "sigmoid":
        targets = sigmoid_targets(labels, border_width=border_width)
    elif kind == "softmax":
        targets = softmax_targets(labels, border_width=border_width)
    else:
        raise ValueError(f"Unknown target kind {kind!r}; choose one of {TARGET_KINDS}.")
    if weight_map:
        weights = unet_weight_map(labels, w0=w0, sigma=sigma)[..., None]
        targets = np.concatenate([targets, weights.astype(np.float32)], axis=-1)
    return targets.astype(np.float32, copy=False)


def _read(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    import skimage.io

    return skimage.io.imread(path)


def paired_files(image_dir: str | Path, label_dir: str | Path) -> list[tuple[Path, Path]]:
    """Pair image and label files by file stem (label stems may end in ``_mask``/``_labels``).

    Raises:
        FileNotFoundError: A folder is missing, empty, or an image has no label file.

    >>> import tempfile
    >>> paired_files(tempfile.mkdtemp(), tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: No images (...) in ...
    """
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"Folder {str(folder)!r} does not exist.")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {str(image_dir)!r}.")
    labels = {}
    for path in label_dir.iterdir():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            stem = path.stem
            for suffix in ("_mask", "_masks", "_labels", "_label"):
                stem = stem.removesuffix(suffix)
            labels[stem] = path
    missing = [p.name for p in images if p.stem not in labels]
    if missing:
        raise FileNotFoundError(
            f"No label file in {str(label_dir)!r} for {missing[:5]} (expected the same stem, "
            "optionally ending in _mask or _labels)."
        )
    return [(p, labels[p.stem]) for p in images]


class SegmentationDataset(keras.utils.PyDataset):
    """Batches of augmented crops with instance-segmentation targets.

    Args:
        images: Images ``(H, W)`` or ``(H, W, C)``, any sizes (see
            :func:`normalize_image`).
        labels: Instance label images matching the images.
        batch_size: Crops per batch.
        crop_size: ``(height, width)`` of random crops; ``None`` uses whole
            images (which must then share one size).
        target: ``"mask"``, ``"sigmoid"`` or ``"softmax"`` (see :func:`make_targets`).
        border_width: Contact-border width for the targets.
        weight_map: Append the U-Net weight map to ``y`` as its last channel.
        augment: An :class:`~keras_dynunet.augment.Augmentation`, or ``None``.
        preprocessing: Encoder preprocessing mode or encoder name, applied to
            ``[0, 255]`` pixels (see :func:`~keras_dynunet.preprocess_input`).
        steps_per_epoch: Batches per epoch; default ``ceil(len(images) / batch_size)``.
        seed: Seed; batch ``i`` of epoch ``e`` is a function of ``(seed, e, i)``.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size``.

    >>> from keras_dynunet.instances import synthetic_dataset
    >>> imgs, labs = synthetic_dataset(4, (64, 64), seed=0)
    >>> ds = SegmentationDataset(list(imgs), list(labs), batch_size=2, crop_size=(32, 32))
    >>> x, y = ds[0]
    >>> x.shape, y.shape, len(ds)
    ((2, 32, 32, 3), (2, 32, 32, 2), 2)
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        *,
        batch_size: int = 8,
        crop_size: tuple[int, int] | None = (256, 256),
        target: str = "sigmoid",
        border_width: int = 2,
        weight_map: bool = False,
        augment: Augmentation | None = None,
        preprocessing: str = "none",
        steps_per_epoch: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(images) != len(labels) or not len(images):
            raise ValueError(
                f"Got {len(images)} images and {len(labels)} label images; pass the same "
                "non-zero number of each."
            )
        self.images = [normalize_image(image) for image in images]
        self.targets = [
            make_targets(lab, target, border_width=border_width, weight_map=weight_map)
            for lab in labels
        ]
        for index, (image, tgt) in enumerate(zip(self.images, self.targets, strict=True)):
            if image.shape[:2] != tgt.shape[:2]:
                raise ValueError(
                    f"Image {index} has shape {image.shape[:2]} but its labels "
                    f"{tgt.shape[:2]}; pass labels that annotate the image."
                )
        if crop_size is None and len({i.shape for i in self.images}) > 1:
            raise ValueError("Images differ in size: pass crop_size=(height, width).")
        self.batch_size = int(batch_size)
        self.crop_size = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        self.augment = augment
        self.preprocessing = preprocessing
        self.steps_per_epoch = steps_per_epoch
        self.seed = int(seed)
        self.epoch = 0

    @classmethod
    def from_folders(
        cls, image_dir: str | Path, label_dir: str | Path, **kwargs: Any
    ) -> SegmentationDataset:
        """Read image/label pairs from two folders (PNG, TIFF, JPEG), paired by stem."""
        pairs = paired_files(image_dir, label_dir)
        return cls([_read(i) for i, _ in pairs], [_read(lab) for _, lab in pairs], **kwargs)

    def __len__(self) -> int:
        return self.steps_per_epoch or math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} out of range (0..{len(self) - 1}).")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.steps_per_epoch:
            ids = rng.integers(len(self.images), size=self.batch_size)
        else:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))
            ids = order[index * self.batch_size : (index + 1) * self.batch_size]
        xs, ys = [], []
        for i in ids:
            image, targets = self.images[i], self.targets[i]
            if self.crop_size is not None:
                image, targets = random_crop(rng, image, targets, self.crop_size)
            if self.augment is not None:
                image, targets = self.augment(rng, image, targets)
            xs.append(image)
            ys.append(targets)
        x = keras.ops.convert_to_numpy(preprocess_input(np.stack(xs) * 255.0, self.preprocessing))
        return x.astype(np.float32), np.stack(ys).astype(np.float32)

    def on_epoch_end(self) -> None:
        self.epoch += 1
