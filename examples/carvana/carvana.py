"""Helpers for the TernausNet UNet11 recipe on the Kaggle Carvana Image Masking Challenge.

Imported by ``train.py`` and ``predict.py`` next to it (and by the tests); nothing here
downloads data. The expected folder is Kaggle's layout::

    <data>/train/<car>_<view>.jpg           # 1918x1280 RGB photos, 16 views per car
    <data>/train_masks/<car>_<view>_mask.gif  # binary masks (optional if the CSV is there)
    <data>/train_masks.csv                  # img,rle_mask (used when a GIF is missing)
    <data>/test/<car>_<view>.jpg            # images to predict for a submission

**Run-length encoding.** Carvana's RLE (``train_masks.csv`` and the submission's
``rle_mask`` column) lists space-separated ``start length`` pairs, starts **1-indexed**,
over the mask flattened in **row-major (C) order**: pixel ``(row, col)`` of a
``(1280, 1918)`` mask has number ``row * 1918 + col + 1``. (The competition page repeats
the "top to bottom, then left to right" sentence of other Kaggle competitions, but the
official ``train_masks.csv`` runs along rows: its first row starts
``879386 40 881253 141 883140 205``, runs one row (1918 pixels) apart that widen around
column 941 of row 458, the roof of the car. ``tests/test_carvana_example.py`` checks this.)

**Loss.** TernausNet's ``L = H - log J``: binary crossentropy plus minus the log of the
soft Jaccard index, pooled over the batch as in TernausNet's code. It is composed from
:class:`keras_dynunet.losses.CombinedLoss`, :class:`~keras_dynunet.losses.
WeightedBinaryCrossentropy` and :class:`LogJaccardLoss` (a :class:`~keras_dynunet.losses.
JaccardLoss` whose score goes through ``-log``), see :func:`ternaus_loss`.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops
from PIL import Image
from scipy.special import expit

import keras_dynunet as kd
from keras_dynunet.augment import Augmentation, random_crop
from keras_dynunet.losses import (
    CombinedLoss,
    JaccardLoss,
    WeightedBinaryCrossentropy,
    split_weight_channel,
)

CARD_NAME = "ternaus-vgg11-carvana"
ENCODER = "vgg11-ternaus"
IMAGE_SHAPE = (1280, 1918)  # (height, width) of every Carvana photo
VIEWS_PER_CAR = 16
SUBMISSION_HEADER = ("img", "rle_mask")


# === Run-length encoding ===


def rle_encode(mask: np.ndarray) -> str:
    """Encode a binary mask as Carvana's run-length string.

    Args:
        mask: ``(height, width)`` array; non-zero pixels are the car.

    Returns:
        Space-separated ``start length`` pairs, 1-indexed starts over the row-major
        (C order) flattened mask; ``""`` for an empty mask.

    Raises:
        ValueError: ``mask`` is not two-dimensional.

    Examples:
        >>> rle_encode(np.array([[0, 1, 1], [1, 0, 0]]))  # pixels 2, 3 and 4 (row major)
        '2 3'
        >>> rle_encode(np.zeros((2, 2)))
        ''
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode needs a (height, width) mask, got shape {mask.shape}.")
    pixels = np.concatenate([[False], mask.ravel(order="C") != 0, [False]])
    runs = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1  # 1-indexed run starts and ends
    runs[1::2] -= runs[::2]
    return " ".join(map(str, runs.tolist()))


def rle_decode(rle: str | None, shape: Sequence[int] = IMAGE_SHAPE) -> np.ndarray:
    """Decode a Carvana run-length string into a mask.

    Args:
        rle: Space-separated ``start length`` pairs (1-indexed, row-major); ``""``,
            ``None`` or NaN (an empty CSV cell) decode to an empty mask.
        shape: ``(height, width)`` of the mask.

    Returns:
        A ``uint8`` mask of ``shape`` with values 0 and 1.

    Raises:
        ValueError: An odd number of values, a start below 1, a length below 1, runs that
            overlap or are out of order, or a run past the last pixel.

    Examples:
        >>> rle_decode("2 3", (2, 3)).tolist()
        [[0, 1, 1], [1, 0, 0]]
    """
    height, width = (int(v) for v in shape)
    size = height * width
    if rle is None or (isinstance(rle, float) and math.isnan(rle)) or not str(rle).strip():
        return np.zeros((height, width), np.uint8)
    values = np.array(str(rle).split(), dtype=np.int64)
    if values.size % 2:
        raise ValueError(f"An RLE string needs start/length pairs, got {values.size} values.")
    starts, lengths = values[0::2] - 1, values[1::2]
    ends = starts + lengths
    if starts.min() < 0 or lengths.min() < 1:
        raise ValueError("RLE starts must be >= 1 and lengths >= 1.")
    if np.any(starts[1:] < ends[:-1]):
        raise ValueError("RLE runs must be sorted and must not overlap.")
    if ends[-1] > size:
        raise ValueError(
            f"An RLE run ends at pixel {int(ends[-1])} but a {height}x{width} mask has {size}."
        )
    flat = np.zeros(size + 1, np.int8)
    np.add.at(flat, starts, 1)
    np.add.at(flat, ends, -1)
    return np.cumsum(flat[:-1]).astype(np.uint8).reshape(height, width)


# === The data folder ===


def parse_image_id(image_id: str) -> tuple[str, int]:
    """Split a Carvana image id (or file name) into car id and view number.

    Args:
        image_id: ``"<car>_<view>"``, optionally with a ``.jpg`` suffix or ``_mask``.

    Returns:
        ``(car id, view)``.

    Raises:
        ValueError: The id does not end in ``_<view number>``.

    Examples:
        >>> parse_image_id("00087a6bd4dc_07.jpg")
        ('00087a6bd4dc', 7)
    """
    stem = Path(image_id).name
    for suffix in (".jpg", ".gif", "_mask"):
        stem = stem.removesuffix(suffix)
    car, sep, view = stem.rpartition("_")
    if not sep or not car or not view.isdigit():
        raise ValueError(f"Carvana image ids look like '<car>_<view:02d>', got {image_id!r}.")
    return car, int(view)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a photo as ``uint8`` RGB ``(height, width, 3)``.

    Args:
        path: JPEG (or any Pillow-readable) file.

    Returns:
        The image.
    """
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_mask_gif(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a Carvana GIF mask as ``uint8`` 0/1 ``(height, width)``.

    Any non-black pixel is the car, so palette GIFs (Kaggle's), and 0/1 or 0/255
    grey GIFs all read the same.

    Args:
        path: GIF file.

    Returns:
        The mask.
    """
    with Image.open(path) as image:
        return (np.asarray(image.convert("L")) > 0).astype(np.uint8)


def read_rle_csv(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read ``train_masks.csv`` (or a submission) into ``{image id: rle}``.

    Args:
        path: CSV with the header ``img,rle_mask``; ``img`` is a file name like
            ``00087a6bd4dc_01.jpg``.

    Returns:
        The RLE strings keyed by image id (the file name without ``.jpg``).

    Raises:
        ValueError: The header lacks ``img`` or ``rle_mask``.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not set(SUBMISSION_HEADER) <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: expected the columns img,rle_mask, got {reader.fieldnames}.")
        return {Path(row["img"]).stem: row["rle_mask"] or "" for row in reader}


class CarvanaFolder:
    """One subset (``train`` or ``test``) of a Kaggle Carvana data folder.

    Masks come from ``<subset>_masks/<id>_mask.gif`` when the GIF exists, else from the
    RLE in ``<subset>_masks.csv`` (read once, on first need).

    Args:
        root: The data folder (holding ``train/``, ``train_masks/``...).
        subset: ``"train"`` or ``"test"`` (any folder of ``.jpg`` photos under ``root``).

    Raises:
        FileNotFoundError: ``root/subset`` is missing or holds no ``.jpg`` files.

    Attributes:
        root: The data folder.
        subset: The subset name.
        ids: Sorted image ids (``<car>_<view>``).
    """

    def __init__(self, root: str | os.PathLike[str], subset: str = "train") -> None:
        self.root = Path(root).expanduser()
        self.subset = subset
        self.image_dir = self.root / subset
        if not self.image_dir.is_dir():
            raise FileNotFoundError(
                f"No folder {str(self.image_dir)!r}: --data must be the Carvana folder that "
                f"holds {subset}/ (Kaggle's carvana-image-masking-challenge layout)."
            )
        self.ids = sorted(p.stem for p in self.image_dir.glob("*.jpg"))
        if not self.ids:
            raise FileNotFoundError(f"No .jpg images in {str(self.image_dir)!r}.")
        self.mask_dir = self.root / f"{subset}_masks"
        self.csv_path = self.root / f"{subset}_masks.csv"
        self._rles: dict[str, str] | None = None

    def image_path(self, image_id: str) -> Path:
        """Path of the photo ``image_id``."""
        return self.image_dir / f"{image_id}.jpg"

    def image(self, image_id: str) -> np.ndarray:
        """The photo ``image_id`` as ``uint8`` RGB ``(height, width, 3)``."""
        return read_image(self.image_path(image_id))

    def image_shape(self, image_id: str) -> tuple[int, int]:
        """``(height, width)`` of the photo, read from its header only."""
        with Image.open(self.image_path(image_id)) as image:
            return image.height, image.width

    def mask(self, image_id: str, shape: Sequence[int] | None = None) -> np.ndarray:
        """The mask of ``image_id`` as ``uint8`` 0/1 ``(height, width)``.

        Args:
            image_id: Image id.
            shape: The photo's ``(height, width)`` if already known (saves a file read).

        Returns:
            The mask, from the GIF if present, else from the CSV's RLE.

        Raises:
            FileNotFoundError: Neither the GIF nor a CSV row for ``image_id`` exists.
            ValueError: The mask's shape differs from the photo's.
        """
        shape = tuple(shape) if shape is not None else self.image_shape(image_id)
        gif = self.mask_dir / f"{image_id}_mask.gif"
        if gif.is_file():
            mask = read_mask_gif(gif)
        else:
            rles = self._rle_table()
            if image_id not in rles:
                raise FileNotFoundError(
                    f"No mask for {image_id!r}: neither {str(gif)!r} nor a row "
                    f"'{image_id}.jpg' in {str(self.csv_path)!r}."
                )
            mask = rle_decode(rles[image_id], shape)
        if mask.shape != shape:
            raise ValueError(f"The mask of {image_id!r} is {mask.shape}, its image {shape}.")
        return mask

    def _rle_table(self) -> dict[str, str]:
        if self._rles is None:
            self._rles = read_rle_csv(self.csv_path) if self.csv_path.is_file() else {}
        return self._rles


def split_by_car(
    ids: Iterable[str], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split image ids into train and validation by car, so no car is in both.

    The sorted car ids are shuffled with ``seed`` and the first
    ``round(val_fraction * cars)`` (at least 1 when ``val_fraction > 0`` and there are
    two or more cars) go to validation, with all their views. The split depends only
    on the set of ids, ``val_fraction`` and ``seed``.

    Args:
        ids: Image ids ``<car>_<view>``.
        val_fraction: Fraction of the cars held out, in ``[0, 1)``.
        seed: Shuffling seed.

    Returns:
        ``(train ids, validation ids)``, each sorted.

    Raises:
        ValueError: ``val_fraction`` outside ``[0, 1)``.

    Examples:
        >>> train, val = split_by_car([f"car{c}_{v:02d}" for c in range(5) for v in (1, 2)])
        >>> len(train), len(val), {i.split("_")[0] for i in val} & {i.split("_")[0] for i in train}
        (8, 2, set())
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    ids = sorted(set(ids))
    cars = sorted({parse_image_id(i)[0] for i in ids})
    n_val = round(val_fraction * len(cars))
    if val_fraction > 0 and len(cars) > 1:
        n_val = min(max(n_val, 1), len(cars) - 1)
    order = np.random.default_rng(seed).permutation(len(cars))
    val_cars = {cars[i] for i in order[:n_val]}
    train = [i for i in ids if parse_image_id(i)[0] not in val_cars]
    val = [i for i in ids if parse_image_id(i)[0] in val_cars]
    return train, val


# === Training data ===


class CarvanaDataset(keras.utils.PyDataset):
    """Batches of ``(image, mask)`` for ``model.fit``, read from disk on demand.

    Training (``augment=True``): random crops of ``crop_size`` (reflect-padded where the
    photo is smaller, e.g. 1918 -> 1920 wide) with :func:`keras_dynunet.augment.
    random_crop`, a random horizontal flip (cars are never upside down, so no vertical
    flips or rotations), and the brightness/contrast/gamma jitter of
    :class:`keras_dynunet.Augmentation`. Evaluation (``augment=False``): the same crop
    size if given (random but seeded, so identical every epoch), else whole photos in
    file order.

    Args:
        folder: The data folder subset.
        ids: Image ids to draw from.
        batch_size: Images per batch.
        crop_size: ``(height, width)`` of the crops, or ``None`` for whole photos.
        augment: Flip and intensity augmentation, and a new shuffle every epoch.
        preprocessing: Mode for :func:`keras_dynunet.preprocess_input` (``"imagenet"``
            for the VGG11 encoder).
        steps_per_epoch: Batches per epoch (ids drawn at random); default one pass,
            ``ceil(len(ids) / batch_size)``.
        seed: Batch ``i`` of epoch ``e`` depends only on ``(seed, e, i)``.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size``.

    Returns ``x`` float32 ``(batch, h, w, 3)`` and ``y`` float32 0/1 ``(batch, h, w, 1)``.
    """

    def __init__(
        self,
        folder: CarvanaFolder,
        ids: Sequence[str],
        *,
        batch_size: int = 1,
        crop_size: Sequence[int] | None = None,
        augment: bool = False,
        preprocessing: str = "imagenet",
        steps_per_epoch: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not ids:
            raise ValueError("CarvanaDataset needs at least one image id.")
        self.folder = folder
        self.ids = list(ids)
        self.batch_size = int(batch_size)
        self.crop_size = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        self.augment = bool(augment)
        self.intensity = Augmentation(flips=False, rot90=False)
        self.preprocessing = preprocessing
        self.steps_per_epoch = steps_per_epoch
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps_per_epoch or math.ceil(len(self.ids) / self.batch_size)

    def load(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The photo (float32 ``[0, 1]``, ``(H, W, 3)``) and mask (``(H, W, 1)``) of an id."""
        image = self.folder.image(image_id)
        mask = self.folder.mask(image_id, image.shape[:2])
        return image.astype(np.float32) / 255.0, mask[..., None].astype(np.float32)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} out of range (0..{len(self) - 1}).")
        epoch = self.epoch if self.augment else 0
        rng = np.random.default_rng([self.seed, epoch, index])
        if self.steps_per_epoch:
            picks = rng.integers(len(self.ids), size=self.batch_size)
        else:
            order = np.arange(len(self.ids))
            if self.augment:
                order = np.random.default_rng([self.seed, epoch]).permutation(len(self.ids))
            picks = order[index * self.batch_size : (index + 1) * self.batch_size]
        xs, ys = [], []
        for pick in picks:
            image, mask = self.load(self.ids[int(pick)])
            if self.crop_size is not None:
                image, mask = random_crop(rng, image, mask, self.crop_size)
            if self.augment:
                if rng.random() < 0.5:
                    image, mask = image[:, ::-1], mask[:, ::-1]
                image, mask = self.intensity(rng, image, mask)
            xs.append(image)
            ys.append(mask)
        x = ops.convert_to_numpy(kd.preprocess_input(np.stack(xs) * 255.0, self.preprocessing))
        return x.astype(np.float32), np.stack(ys).astype(np.float32)

    def on_epoch_end(self) -> None:
        self.epoch += 1


# === Model, loss, weights ===


@keras.saving.register_keras_serializable(package="carvana_example")
class LogJaccardLoss(JaccardLoss):
    """``-log(soft Jaccard)``, the second term of TernausNet's loss ``H - log J``.

    The soft Jaccard score is :class:`keras_dynunet.losses.JaccardLoss`'s (same smoothing,
    ``from_logits``, weight-channel handling); only ``1 - J`` becomes ``-log J``, computed
    from ``J`` directly (not from ``1 - loss``) so small scores keep their precision.
    With several channels the loss is the mean of ``-log J`` over the channels.

    Args:
        from_logits: Apply a sigmoid to ``y_pred`` first.
        smooth: Added to intersection and union (TernausNet uses ``1e-15``; ``1`` keeps an
            empty crop predicted empty at loss 0 and is negligible on whole cars).
        per_image: Score each image separately; default ``False``, one Jaccard for the
            whole batch, as TernausNet's code.
        reduction: Keras loss reduction.
        name: Loss name.
        dtype: Computation dtype.

    Examples:
        >>> y = np.array([[[[1.0], [1.0]], [[0.0], [0.0]]]])  # one 2x2 image
        >>> p = np.array([[[[1.0], [0.0]], [[0.0], [1.0]]]])
        >>> round(float(LogJaccardLoss(smooth=0.0)(y, p)), 4)  # -log(1 / 3)
        1.0986
    """

    def __init__(
        self,
        from_logits: bool = False,
        smooth: float = 1.0,
        per_image: bool = False,
        reduction: str | None = "sum_over_batch_size",
        name: str = "log_jaccard_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(from_logits, smooth, per_image, reduction, name, dtype)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Per-image (or per-batch) ``-log J``, averaged over channels."""
        y_true, _ = split_weight_channel(y_true, y_pred)
        if len(y_true.shape) == len(y_pred.shape) - 1:
            y_true = ops.expand_dims(y_true, -1)
        y_true = ops.cast(y_true, y_pred.dtype)
        if self.from_logits:
            y_pred = ops.sigmoid(y_pred)
        axes = tuple(range(1 if self.per_image else 0, len(y_pred.shape) - 1))
        intersection = ops.sum(y_true * y_pred, axis=axes)
        score = self._score(intersection, ops.sum(y_true, axis=axes), ops.sum(y_pred, axis=axes))
        score = ops.maximum(score, keras.backend.epsilon() ** 2)  # only when smooth == 0
        return ops.mean(-ops.log(score), axis=-1)


def ternaus_loss(jaccard_weight: float = 1.0, smooth: float = 1.0) -> CombinedLoss:
    """TernausNet's loss ``L = H - w log J`` on logits (``w = 1`` in the paper).

    Args:
        jaccard_weight: Weight ``w`` of ``-log J``.
        smooth: Soft-Jaccard smoothing (see :class:`LogJaccardLoss`).

    Returns:
        ``CombinedLoss([WeightedBinaryCrossentropy, LogJaccardLoss], [1, w])``.

    Examples:
        >>> y = np.array([[[[1.0], [0.0]]]])
        >>> logits = np.array([[[[0.0], [0.0]]]])  # p = 0.5 everywhere
        >>> round(float(ternaus_loss(smooth=0.0)(y, logits)), 4)  # ln 2 - ln(0.5 / 1.5)
        1.7918
    """
    return CombinedLoss(
        [
            WeightedBinaryCrossentropy(from_logits=True),
            LogJaccardLoss(from_logits=True, smooth=smooth),
        ],
        weights=[1.0, float(jaccard_weight)],
        name="bce_minus_log_jaccard",
    )


def load_encoder_weights(model: keras.Model, encoder: keras.Model) -> list[str]:
    """Copy weights into ``model``'s nested ``"encoder"`` by layer name.

    Args:
        model: A :class:`keras_dynunet.TernausUNet11`.
        encoder: A ``vgg11-ternaus`` encoder, e.g.
            ``kd.get_encoder("vgg11-ternaus", weights="imagenet")``.

    Returns:
        Names of the layers whose weights were copied (``conv1``, ``conv2``, ``conv3s``...).

    Raises:
        ValueError: A weighted layer of the model's encoder is missing from ``encoder``
            or has other weight shapes.
    """
    target = model.get_layer("encoder")
    copied = []
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            source = encoder.get_layer(layer.name)
        except ValueError:
            raise ValueError(f"The encoder has no layer {layer.name!r} to copy from.") from None
        weights = source.get_weights()
        shapes = [w.shape for w in weights]
        if shapes != [tuple(w.shape) for w in layer.weights]:
            raise ValueError(f"Layer {layer.name!r}: weight shapes {shapes} do not match.")
        layer.set_weights(weights)
        copied.append(layer.name)
    return copied


def build_ternaus(num_filters: int = 32, encoder_weights: str | None = "imagenet") -> keras.Model:
    """TernausUNet11 (1 logit per pixel), optionally with ImageNet VGG11 encoder weights.

    Args:
        num_filters: Decoder base width (TernausNet: 32).
        encoder_weights: ``"imagenet"`` (torchvision's VGG11, converted by
            ``kd.get_encoder``), or ``None``/``"none"`` for random initialisation.

    Returns:
        The model.

    Raises:
        keras_dynunet.WeightsUnavailableError: The ImageNet weights cannot be obtained
            (offline without a cached copy); the message says where to put the file.
    """
    model = kd.TernausUNet11(classes=1, num_filters=num_filters, input_shape=(None, None, 3))
    if encoder_weights not in (None, "none"):
        encoder = kd.get_encoder(ENCODER, weights=encoder_weights)
        load_encoder_weights(model, encoder)
    return model


# === Prediction and scoring ===


def binarize(logits: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``sigmoid(logits) > threshold`` as a boolean array (the zoo card's rule).

    Examples:
        >>> binarize(np.array([-1.0, 0.0, 2.0])).tolist()
        [False, False, True]
    """
    return expit(np.asarray(logits, np.float32)) > threshold


def predict_mask(
    model: keras.Model,
    image: np.ndarray,
    *,
    preprocessing: str = "imagenet",
    threshold: float = 0.5,
    tile: int | None = None,
    overlap: int = 64,
) -> np.ndarray:
    """Full-resolution boolean car mask ``(H, W)`` of one ``uint8`` RGB photo.

    Args:
        model: A TernausUNet11 (logits); any input size (padded to a multiple of 32
            inside the model and cropped back).
        image: ``(H, W, 3)`` photo in ``[0, 255]``.
        preprocessing: The checkpoint's preprocessing mode.
        threshold: Probability threshold.
        tile: Predict tile by tile with :func:`keras_dynunet.predict_tiled` (Gaussian
            blending) instead of the whole photo at once; saves memory.
        overlap: Tile overlap in pixels.

    Returns:
        The mask.
    """
    x = ops.convert_to_numpy(kd.preprocess_input(np.asarray(image, np.float32), preprocessing))
    if tile:
        logits = kd.predict_tiled(model, x, tile=tile, overlap=overlap, blend="gaussian")
    else:
        logits = ops.convert_to_numpy(model.predict_on_batch(x[None]))[0]
    return binarize(logits[..., 0], threshold)


def dice_iou(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two binary masks; both are 1 when both masks are empty.

    Examples:
        >>> dice_iou(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
        (0.5, 0.3333333333333333)
    """
    pred, true = np.asarray(pred) != 0, np.asarray(true) != 0
    intersection = float(np.logical_and(pred, true).sum())
    total = float(pred.sum() + true.sum())
    if total == 0:
        return 1.0, 1.0
    return 2.0 * intersection / total, intersection / (total - intersection)


def evaluate(
    model: keras.Model,
    folder: CarvanaFolder,
    ids: Sequence[str],
    *,
    preprocessing: str = "imagenet",
    threshold: float = 0.5,
    tile: int | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Mean per-image Dice (the Kaggle metric) and IoU at full resolution.

    Args:
        model: The model (logits).
        folder: Data folder with masks.
        ids: Image ids to score.
        preprocessing: The checkpoint's preprocessing mode.
        threshold: Probability threshold.
        tile: Tile size for :func:`predict_mask`, or ``None`` for whole photos.
        progress: Show a tqdm progress bar.

    Returns:
        ``{"dice": mean Dice, "iou": mean IoU, "images": number of images}``.
    """
    from tqdm.auto import tqdm

    dices, ious = [], []
    for image_id in tqdm(ids, desc="validation", unit="img", disable=not progress):
        image = folder.image(image_id)
        pred = predict_mask(
            model, image, preprocessing=preprocessing, threshold=threshold, tile=tile
        )
        dice, iou = dice_iou(pred, folder.mask(image_id, image.shape[:2]))
        dices.append(dice)
        ious.append(iou)
    return {"dice": float(np.mean(dices)), "iou": float(np.mean(ious)), "images": len(ids)}


def write_submission(rows: Iterable[tuple[str, str]], path: str | os.PathLike[str]) -> Path:
    """Write a Kaggle submission ``img,rle_mask`` atomically.

    Rows are streamed into a temporary file next to ``path`` (the full test set's
    100,064 rows never sit in memory), which replaces ``path`` only once complete.

    Args:
        rows: ``(file name such as "0004d4463b50_01.jpg", rle string)`` pairs.
        path: Output CSV.

    Returns:
        The written path.
    """
    path = Path(path).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(SUBMISSION_HEADER)
            for name, rle in rows:
                writer.writerow((name, rle))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
