"""Resumable, deterministic training of a :class:`~keras_dynunet.DynUNet` from a config.

:func:`train` builds a U-Net, a :class:`~keras_dynunet.SegmentationDataset` and an
optimizer from a :class:`TrainConfig` and fits it, checkpointing into ``workdir``:

- ``workdir/config.json``: the training config (written once, atomically).
- ``workdir/ckpt-eEEEE-sSSSSSS.weights.h5``: model weights **and** optimizer state
  (Keras ``save_weights`` of the compiled model), written to a temporary file,
  fsynced and renamed into place.
- ``workdir/state.json``: ``epoch`` and ``step`` (the position the checkpoint was
  taken at), the checkpoint file name and its SHA-256, and the state of every
  Keras ``SeedGenerator`` in the model (dropout and other random layers, which
  ``save_weights`` does not store). Written to a temporary file and renamed.

``state.json`` is the commit point: a checkpoint file is only ever used once
``state.json`` names it, and older checkpoints are deleted after the new
``state.json`` is in place, so a run killed at any instant (even ``SIGKILL``
mid-write) resumes from the last complete checkpoint. Leftover temporary files
(``.*.tmp*``) are ignored and removed on the next start.

Batch ``i`` of epoch ``e`` is a function of ``(seed, e, i)`` (see
:class:`~keras_dynunet.SegmentationDataset`) and the global NumPy/Python/backend
seeds are reset to ``(seed, e)`` at the start of every epoch, so an interrupted
and resumed run ends with the same weights as an uninterrupted one (on CPU
TensorFlow: bit-identical, measured in ``tests/test_training.py``).

``TrainConfig.distribution`` trains data-parallel on several devices or hosts with
Keras' or TensorFlow's own engines (:mod:`keras_dynunet.distributed`): the model is
built, compiled and fitted inside the chosen scope, ``batch_size`` is the global batch,
BatchNorm is synchronized on TensorFlow, and only the chief (worker 0) writes to
``workdir``; other workers write their checkpoints to a temporary folder that is deleted
at the end. ``workdir`` must be on storage all workers see (they resume from it).

A config names the data either as synthetic nuclei
(:func:`~keras_dynunet.instances.synthetic_dataset`) or as two folders of images
and instance label images paired by file stem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_dynunet.checkpoint import file_sha256

__all__ = [
    "STATE_FILE",
    "TRAIN_CONFIG_FILE",
    "DataConfig",
    "TrainConfig",
    "TrainingStateError",
    "build_dataset",
    "build_model",
    "load_config",
    "read_state",
    "save_checkpoint",
    "train",
]

STATE_FILE = "state.json"
TRAIN_CONFIG_FILE = "config.json"
FINAL_DIR = "final"
_TARGET_CHANNELS = {"mask": 1, "sigmoid": 2, "softmax": 3}
_CLASS_NAMES = {
    "mask": ["foreground"],
    "sigmoid": ["interior", "border"],
    "softmax": ["interior", "border", "background"],
}
_TMP_MARK = ".tmp"


class TrainingStateError(ValueError):
    """A work directory holds a checkpoint that cannot be resumed with this config."""


def _fail(message: str) -> None:
    raise ValueError(f"Invalid training config: {message}")


def _int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        _fail(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        _fail(f"{name} must be an integer or [height, width], got {value!r}.")
    return (_int(value[0], name), _int(value[1], name))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the training images come from.

    Either synthetic nuclei (``kind="synthetic"``: ``n_images`` images of
    ``image_size`` with ``n_nuclei`` nuclei of ``radius``), or folders
    (``kind="folders"``: ``image_dir`` and ``label_dir``, paired by file stem).

    >>> DataConfig(n_images=4, image_size=(48, 48)).kind
    'synthetic'
    """

    kind: str = "synthetic"
    n_images: int = 16
    image_size: tuple[int, int] = (128, 128)
    n_nuclei: tuple[int, int] = (8, 20)
    radius: tuple[float, float] = (4.0, 10.0)
    image_dir: str | None = None
    label_dir: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("synthetic", "folders"):
            _fail(f"data.kind must be 'synthetic' or 'folders', got {self.kind!r}.")
        set_ = object.__setattr__
        if self.kind == "synthetic":
            set_(self, "n_images", _int(self.n_images, "data.n_images"))
            set_(self, "image_size", _pair(self.image_size, "data.image_size"))
            set_(self, "n_nuclei", _pair(self.n_nuclei, "data.n_nuclei"))
            radius = self.radius
            if (
                isinstance(radius, str)
                or not isinstance(radius, Sequence)
                or len(radius) != 2
                or not all(
                    isinstance(r, int | float) and not isinstance(r, bool) and r > 0 for r in radius
                )
            ):
                _fail(f"data.radius must be [low, high] positive numbers, got {radius!r}.")
            set_(self, "radius", (float(radius[0]), float(radius[1])))
        else:
            for name in ("image_dir", "label_dir"):
                value = getattr(self, name)
                if not isinstance(value, str | os.PathLike) or not str(value):
                    _fail(f"data.{name} must be a folder path for kind='folders', got {value!r}.")
                set_(self, name, str(value))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataConfig:
        """Build from a mapping, refusing unknown keys.

        >>> DataConfig.from_dict({"kind": "folders", "image_dir": "x", "label_dir": "y"}).kind
        'folders'
        """
        return cls(**_known_keys(cls, data, "data"))


def _known_keys(cls: type, data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        _fail(f"{where} must be a mapping, got {type(data).__name__}.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        _fail(f"unknown key(s) {unknown} in {where}; known keys: {sorted(names)}.")
    return dict(data)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and must not change on resume).

    Attributes:
        encoder: Registry encoder name (``"resnet18"``...).
        target: ``"mask"``, ``"sigmoid"`` (interior, border) or ``"softmax"``.
        classes: Output channels; ``None`` takes the target's (1, 2 or 3).
        decoder_channels: Decoder widths, deep to shallow (``None``: default).
        data: A :class:`DataConfig` (or a mapping for one).
        epochs: Epochs to train.
        steps_per_epoch: Batches per epoch.
        batch_size: Crops per batch.
        crop: Crop ``(height, width)``.
        lr: Adam learning rate.
        seed: Seed of weights, data order, crops and augmentation.
        augment: Use the default :class:`~keras_dynunet.Augmentation`.
        weight_map: Train with the U-Net weight map (pixel-weighted loss).
        checkpoint_every: Also checkpoint every this many steps (0: epoch ends only).
        run_eagerly: Run train steps eagerly (no graph tracing; for debugging and
            tiny runs such as tests, where tracing dominates).
        distribution: Data-parallel engine (see
            :func:`~keras_dynunet.distributed.data_parallel`): ``"none"`` (default),
            ``"auto"``, ``"mirrored"``, ``"multi-worker"`` or ``"jax-data-parallel"``.
            ``batch_size`` is then the global batch (a multiple of the replica count).
            It is the only field that may change when a run is resumed.

    >>> cfg = TrainConfig(encoder="resnet18", epochs=2, crop=32)
    >>> cfg.crop, cfg.num_classes
    ((32, 32), 2)
    """

    encoder: str = "resnet18"
    target: str = "sigmoid"
    classes: int | None = None
    decoder_channels: tuple[int, ...] | None = None
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    epochs: int = 10
    steps_per_epoch: int = 50
    batch_size: int = 8
    crop: tuple[int, int] = (128, 128)
    lr: float = 1e-3
    seed: int = 0
    augment: bool = True
    weight_map: bool = False
    checkpoint_every: int = 0
    run_eagerly: bool = False
    distribution: str = "none"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.encoder, str):
            _fail(f"encoder must be a registry name (str), got {self.encoder!r}.")
        from keras_dynunet.registry import get_encoder_spec

        try:
            get_encoder_spec(self.encoder)
        except (KeyError, ValueError) as error:
            message = error.args[0] if error.args else error
            _fail(f"encoder {self.encoder!r}: {message}")
        if self.target not in _TARGET_CHANNELS:
            _fail(f"target must be one of {sorted(_TARGET_CHANNELS)}, got {self.target!r}.")
        if self.classes is not None:
            classes = _int(self.classes, "classes")
            if classes != _TARGET_CHANNELS[self.target]:
                _fail(
                    f"classes={classes} but target {self.target!r} has "
                    f"{_TARGET_CHANNELS[self.target]} channel(s); leave classes out."
                )
        if self.decoder_channels is not None:
            if isinstance(self.decoder_channels, str | int) or not isinstance(
                self.decoder_channels, Sequence
            ):
                _fail(f"decoder_channels must be a list of ints, got {self.decoder_channels!r}.")
            set_(
                self,
                "decoder_channels",
                tuple(_int(c, "decoder_channels") for c in self.decoder_channels),
            )
        if isinstance(self.data, Mapping):
            set_(self, "data", DataConfig.from_dict(self.data))
        elif not isinstance(self.data, DataConfig):
            _fail(f"data must be a mapping or DataConfig, got {type(self.data).__name__}.")
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            set_(self, name, _int(getattr(self, name), name))
        set_(self, "crop", _pair(self.crop, "crop"))
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or not self.lr > 0:
            _fail(f"lr must be a positive number, got {self.lr!r}.")
        set_(self, "lr", float(self.lr))
        set_(self, "seed", _int(self.seed, "seed", minimum=0))
        set_(self, "checkpoint_every", _int(self.checkpoint_every, "checkpoint_every", 0))
        for name in ("augment", "weight_map", "run_eagerly"):
            if not isinstance(getattr(self, name), bool):
                _fail(f"{name} must be true or false, got {getattr(self, name)!r}.")
        from keras_dynunet.distributed import DistributionError, check_kind

        try:
            check_kind(self.distribution)
        except DistributionError as error:
            _fail(str(error))
        if self.data.kind == "synthetic":
            size = self.data.image_size
            if size[0] < self.crop[0] or size[1] < self.crop[1]:
                _fail(f"crop {self.crop} is larger than data.image_size {size}.")

    @property
    def num_classes(self) -> int:
        """Output channels of the model (the target's channel count)."""
        return _TARGET_CHANNELS[self.target]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (lists instead of tuples).

        >>> TrainConfig(crop=32).to_dict()["crop"]
        [32, 32]
        """
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping (as read from JSON/YAML), refusing unknown keys.

        >>> TrainConfig.from_dict({"encoder": "resnet18", "data": {"n_images": 4}}).data.n_images
        4
        """
        return cls(**_known_keys(cls, data, "the config"))


def load_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Read a :class:`TrainConfig` from a ``.json`` or ``.yaml``/``.yml`` file.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not valid JSON/YAML, or invalid values (the message names them).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
    >>> _ = p.write_text("encoder: resnet18\\nepochs: 2\\ncrop: 32\\n")
    >>> load_config(p).epochs
    2
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Training config {str(path)!r} does not exist.")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as error:
        kind = "YAML" if path.suffix.lower() in (".yaml", ".yml") else "JSON"
        first = str(error).splitlines()[0] if str(error) else ""
        raise ValueError(
            f"Training config {str(path)!r} is not valid {kind} ({type(error).__name__}: {first})."
        ) from None
    if not isinstance(data, Mapping):
        raise ValueError(f"Training config {str(path)!r} must hold a mapping of settings.")
    return TrainConfig.from_dict(data)


# === Atomic files ===


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: Path, writer: Any) -> None:
    """Call ``writer(tmp_path)``, fsync, then rename the temporary file onto ``path``."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}{_TMP_MARK}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        writer(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write_json_atomic(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2) + "\n"
    _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_state(workdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The committed training state of a work directory, or ``None`` if there is none.

    Returns:
        ``{"epoch", "step", "checkpoint", "sha256", "seed_generators"}``:
        the checkpoint was taken after ``step`` batches of epoch ``epoch`` (0-based).

    Raises:
        TrainingStateError: ``state.json`` is unreadable or names a missing or
            corrupt checkpoint file.

    >>> import tempfile
    >>> read_state(tempfile.mkdtemp()) is None
    True
    """
    workdir = Path(workdir)
    path = workdir / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        epoch, step, name = int(state["epoch"]), int(state["step"]), str(state["checkpoint"])
    except (ValueError, KeyError, TypeError) as error:
        raise TrainingStateError(
            f"{path} is malformed ({type(error).__name__}: {error}); delete the work directory "
            "to start over."
        ) from None
    if Path(name).name != name or not name.endswith(".weights.h5"):
        raise TrainingStateError(f"{path} names an invalid checkpoint file {name!r}.")
    checkpoint = workdir / name
    if not checkpoint.is_file():
        raise TrainingStateError(f"{path} names {name}, which is missing from {workdir}.")
    if file_sha256(checkpoint) != state.get("sha256"):
        raise TrainingStateError(
            f"{checkpoint} does not match the SHA-256 recorded in {path}: the checkpoint is "
            "corrupt. Delete the work directory to start over."
        )
    state["epoch"], state["step"] = epoch, step
    return state


def _clean_temporaries(workdir: Path, keep: str | None) -> None:
    for entry in workdir.iterdir():
        stale_checkpoint = entry.name.startswith("ckpt-") and entry.name != keep
        if (entry.name.startswith(".") and _TMP_MARK in entry.name) or stale_checkpoint:
            with contextlib.suppress(OSError):
                entry.unlink()


# === Model, data, RNG ===


def _seed_generators(model: keras.Model) -> list[Any]:
    found = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        found.extend(getattr(layer, "_seed_generators", []) or [])
    return found


def _seed_epoch(seed: int, epoch: int) -> None:
    """Reset Python/NumPy/backend global RNGs to a function of ``(seed, epoch)``."""
    keras.utils.set_random_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


def build_model(config: TrainConfig) -> keras.Model:
    """The compiled model for a config (same weights for the same seed).

    >>> m = build_model(TrainConfig(decoder_channels=(8, 8, 8, 8, 8), crop=32))
    >>> m.output_shape, m.optimizer.__class__.__name__
    ((None, None, None, 2), 'Adam')
    """
    from keras_dynunet.losses import (
        CombinedLoss,
        DiceLoss,
        WeightedBinaryCrossentropy,
        WeightedCategoricalCrossentropy,
    )
    from keras_dynunet.model import DynUNet

    keras.utils.set_random_seed(config.seed)
    softmax = config.target == "softmax"
    model = DynUNet(
        config.encoder,
        config.num_classes,
        input_shape=(None, None, 3),
        decoder_channels=config.decoder_channels,
        activation="softmax" if softmax else "sigmoid",
    )
    loss = (
        WeightedCategoricalCrossentropy()
        if softmax
        else CombinedLoss([WeightedBinaryCrossentropy(), DiceLoss()], [1.0, 1.0])
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.lr), loss=loss, run_eagerly=config.run_eagerly
    )
    model.optimizer.build(model.trainable_variables)
    return model


def build_dataset(config: TrainConfig) -> Any:
    """The :class:`~keras_dynunet.SegmentationDataset` for a config.

    >>> cfg = TrainConfig(crop=32, batch_size=2, steps_per_epoch=3,
    ...                   data={"n_images": 2, "image_size": (48, 48)})
    >>> ds = build_dataset(cfg)
    >>> len(ds), ds[0][0].shape
    (3, (2, 32, 32, 3))
    """
    from keras_dynunet.augment import Augmentation
    from keras_dynunet.dataset import SegmentationDataset
    from keras_dynunet.registry import get_encoder_spec

    kwargs: dict[str, Any] = {
        "batch_size": config.batch_size,
        "crop_size": config.crop,
        "target": config.target,
        "weight_map": config.weight_map,
        "augment": Augmentation() if config.augment else None,
        "preprocessing": get_encoder_spec(config.encoder).preprocessing,
        "steps_per_epoch": config.steps_per_epoch,
        "seed": config.seed,
    }
    data = config.data
    if data.kind == "folders":
        return SegmentationDataset.from_folders(data.image_dir, data.label_dir, **kwargs)
    from keras_dynunet.instances import synthetic_dataset

    images, labels = synthetic_dataset(
        data.n_images,
        data.image_size,
        seed=config.seed,
        n_nuclei=data.n_nuclei,
        radius=data.radius,
    )
    return SegmentationDataset(list(images), list(labels), **kwargs)


class _EpochSlice(keras.utils.PyDataset):
    """Batches ``start..`` of epoch ``epoch`` of a SegmentationDataset."""

    def __init__(self, base: Any, epoch: int, start: int) -> None:
        super().__init__()
        self.base, self.start = base, start
        base.epoch = epoch

    def __len__(self) -> int:
        return len(self.base) - self.start

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.base[self.start + index]


class _Checkpointer(keras.callbacks.Callback):
    """Writes weights + optimizer state, then commits ``state.json``."""

    def __init__(self, workdir: Path, config: TrainConfig, epoch: int, start: int) -> None:
        super().__init__()
        self.workdir, self.config, self.epoch, self.start = workdir, config, epoch, start

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        step = self.start + batch + 1
        every = self.config.checkpoint_every
        if every and step % every == 0 and step < self.config.steps_per_epoch:
            save_checkpoint(self.model, self.workdir, self.epoch, step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        save_checkpoint(self.model, self.workdir, self.epoch + 1, 0)


def save_checkpoint(
    model: keras.Model, workdir: str | os.PathLike[str], epoch: int, step: int
) -> Path:
    """Atomically checkpoint a compiled model after ``step`` batches of epoch ``epoch``.

    Writes ``ckpt-e{epoch}-s{step}.weights.h5`` (weights and optimizer state) via a
    temporary file and rename, then commits ``state.json`` (also atomically), then
    deletes older checkpoint files.

    >>> import tempfile
    >>> m = build_model(TrainConfig(decoder_channels=(8, 8, 8, 8, 8), crop=32))
    >>> save_checkpoint(m, tempfile.mkdtemp(), 1, 0).name
    'ckpt-e0001-s000000.weights.h5'
    """
    workdir = Path(workdir)
    name = f"ckpt-e{epoch:04d}-s{step:06d}.weights.h5"
    path = workdir / name
    # Keras insists on the ".weights.h5" suffix, so write under a temporary name that has it.
    tmp = workdir / f".{name}{_TMP_MARK}-{os.getpid()}.weights.h5"
    try:
        model.save_weights(str(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(workdir)
    state = {
        "epoch": epoch,
        "step": step,
        "checkpoint": name,
        "sha256": file_sha256(path),
        "seed_generators": [
            np.asarray(keras.ops.convert_to_numpy(g.state)).tolist()
            for g in _seed_generators(model)
        ],
    }
    _write_json_atomic(workdir / STATE_FILE, state)
    _clean_temporaries(workdir, keep=name)
    return path


def _restore(model: keras.Model, workdir: Path, state: dict[str, Any]) -> None:
    model.load_weights(str(workdir / state["checkpoint"]))
    generators = _seed_generators(model)
    saved = state.get("seed_generators", [])
    if len(saved) != len(generators):
        raise TrainingStateError(
            f"{workdir / STATE_FILE} stores {len(saved)} random-generator states but the model "
            f"has {len(generators)}; was it written by another version? Start a new workdir."
        )
    for generator, value in zip(generators, saved, strict=True):
        generator.state.assign(np.asarray(value, dtype=generator.state.dtype))


_MAY_CHANGE_ON_RESUME = ("distribution",)


def _check_same_config(workdir: Path, config: TrainConfig, write: bool = True) -> None:
    path = workdir / TRAIN_CONFIG_FILE
    if not path.is_file():
        if write:
            _write_json_atomic(path, config.to_dict())
        return
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise TrainingStateError(f"{path} is not valid JSON ({error}).") from None
    current = config.to_dict()
    for key in _MAY_CHANGE_ON_RESUME:
        stored.pop(key, None)
        current.pop(key, None)
    if stored != current:
        keys = sorted(
            k for k in set(stored) | set(current) if stored.get(k, "?") != current.get(k, "?")
        )
        details = "; ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in keys)
        raise TrainingStateError(
            f"{workdir} holds a run with a different config ({details}). Resuming needs the "
            "same config: pass the stored one or choose a new workdir."
        )


def train(
    config: TrainConfig | Mapping[str, Any] | str | os.PathLike[str],
    workdir: str | os.PathLike[str],
    *,
    verbose: int | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> keras.Model:
    """Train (or resume training) a U-Net described by ``config`` in ``workdir``.

    If ``workdir`` holds a checkpoint of the same config, training continues from
    it; a different config raises :class:`TrainingStateError`. The final model is
    saved with :func:`~keras_dynunet.save_pretrained` to ``workdir/final``.

    With ``config.distribution`` (see :mod:`keras_dynunet.distributed`) the model is
    built, compiled and fitted in that data-parallel scope, on global batches of
    ``batch_size``. Only the chief writes ``workdir``; the other workers write to a
    temporary folder that is deleted at the end, and all of them must see the chief's
    ``workdir`` to resume (workers that would start from different checkpoints raise
    :class:`TrainingStateError`).

    Args:
        config: A :class:`TrainConfig`, a mapping for one, or a JSON/YAML file.
        workdir: Work directory (created if missing).
        verbose: Keras ``fit`` verbosity (1: progress bar).
        callbacks: Extra Keras callbacks (run after the checkpointer).

    Returns:
        The trained, compiled model.

    >>> import tempfile
    >>> cfg = TrainConfig(decoder_channels=(8, 8, 8, 8, 8), crop=32, epochs=1,
    ...                   steps_per_epoch=1, batch_size=1,
    ...                   data={"n_images": 1, "image_size": (32, 32)}, run_eagerly=True)
    >>> work = tempfile.mkdtemp()
    >>> model = train(cfg, work, verbose=0)
    >>> read_state(work)["epoch"], sorted(p.name for p in (Path(work) / "final").iterdir())
    (1, ['README.md', 'config.json', 'model.weights.h5'])
    """
    from keras_dynunet.distributed import data_parallel, replica_slices

    if isinstance(config, str | os.PathLike):
        config = load_config(config)
    elif isinstance(config, Mapping):
        config = TrainConfig.from_dict(config)
    elif not isinstance(config, TrainConfig):
        raise TypeError(
            f"config must be a TrainConfig, a mapping or a file path, got {type(config).__name__}."
        )
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise FileExistsError(f"workdir {str(workdir)!r} exists and is not a directory.")
    # First: a multi-worker strategy must start before TensorFlow runs anything else.
    parallel = data_parallel(config.distribution)
    replica_slices(config.batch_size, parallel.num_replicas)  # global batch must divide
    if verbose and parallel.kind != "none":
        print(
            f"data-parallel training: {parallel.kind}, {parallel.num_replicas} replicas, "
            f"{parallel.num_workers} worker(s), this is worker {parallel.worker_index}"
            f"{' (chief)' if parallel.is_chief else ''}; global batch {config.batch_size}",
            flush=True,
        )
    if parallel.is_chief:
        workdir.mkdir(parents=True, exist_ok=True)
        write_dir = workdir
    else:  # the standard pattern: other workers write to a private folder, deleted below
        write_dir = Path(tempfile.mkdtemp(prefix=f"keras-dynunet-worker{parallel.worker_index}-"))
    try:
        with parallel:
            return _train_in_scope(config, workdir, write_dir, parallel, verbose, callbacks)
    finally:
        if write_dir != workdir:
            shutil.rmtree(write_dir, ignore_errors=True)


def _train_in_scope(
    config: TrainConfig,
    workdir: Path,
    write_dir: Path,
    parallel: Any,
    verbose: int | str,
    callbacks: Sequence[keras.callbacks.Callback],
) -> keras.Model:
    from keras_dynunet.checkpoint import save_pretrained
    from keras_dynunet.distributed import synchronize_batch_norm

    _check_same_config(workdir, config, write=parallel.is_chief)
    state = read_state(workdir) if workdir.is_dir() else None
    # All workers must resume from the same checkpoint (the chief's). Compare before any
    # variable is created: collectives must run in the same order on every worker.
    position = "no checkpoint" if state is None else f"epoch {state['epoch']}, step {state['step']}"
    identity = (
        [-1.0, -1.0, -1.0]
        if state is None
        else [state["epoch"], state["step"], float(int(state["sha256"][:12], 16))]
    )
    if not parallel.all_workers_agree(identity):
        raise TrainingStateError(
            f"the workers start from different checkpoints (this one: {position} in "
            f"{workdir}). Every worker must see the chief's work directory: put it on storage "
            "shared by all workers (or start every worker with an empty work directory)."
        )
    if parallel.is_chief:
        _clean_temporaries(workdir, keep=None if state is None else state["checkpoint"])

    model = parallel.prepare(build_model(config))
    dataset = build_dataset(config)
    epoch, step = 0, 0
    if state is not None:
        _restore(model, workdir, state)
        epoch, step = state["epoch"], state["step"]
    if step == 0 and epoch < config.epochs:
        _seed_epoch(config.seed, epoch)
    while epoch < config.epochs:
        checkpointer = _Checkpointer(write_dir, config, epoch, step)
        batches = _EpochSlice(dataset, epoch, step)
        data = parallel.distribute(batches)
        model.fit(
            data,
            steps_per_epoch=None if data is batches else len(batches),
            epochs=epoch + 1,
            initial_epoch=epoch,
            shuffle=False,  # batch order is (seed, epoch, index); Keras would use `random`
            verbose=verbose,
            callbacks=[checkpointer, *callbacks],
        )
        epoch, step = epoch + 1, 0
        if epoch < config.epochs:
            _seed_epoch(config.seed, epoch)
    # `synchronized` only matters in training; a saved layer config must load on any backend.
    synchronize_batch_norm(model, False)
    save_pretrained(
        model,
        write_dir / FINAL_DIR,
        class_names=_CLASS_NAMES[config.target],
        input_size=config.crop,
    )
    return model
