"""Checkpoint directories: ``config.json`` + ``model.weights.h5`` + ``README.md``.

A checkpoint is a plain directory (the same layout is pushed to and pulled
from the Hugging Face Hub by :mod:`keras_dynunet.hub`):

- ``config.json``: ``format_version``, ``library`` (``"keras-dynunet"``),
  ``library_version``, ``model_class`` (a registered name such as
  ``"keras_dynunet>DynUNet"``), ``model_config`` (the model's
  ``get_config()``), ``preprocessing`` (a :func:`~keras_dynunet.preprocess_input`
  mode), ``class_names``, ``input_size`` (``[height, width]`` used in training,
  or ``null``), ``weights_file`` and ``weights_sha256``.
- ``model.weights.h5``: Keras weights (HDF5 arrays only; nothing is unpickled).
- ``README.md``: the model card (see :func:`keras_dynunet.hub.model_card`).

Loading never imports a class named by the checkpoint: ``model_class`` is
looked up in an allow-list of this library's model classes, the model is
rebuilt with that class's ``from_config`` under Keras' safe mode, and the
weights file's SHA-256 is checked before it is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

FORMAT_VERSION = 1
LIBRARY = "keras-dynunet"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "README.md"
CHECKPOINT_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)
REQUIRED_KEYS = (
    "format_version",
    "library",
    "library_version",
    "model_class",
    "model_config",
    "preprocessing",
    "class_names",
    "input_size",
    "weights_file",
    "weights_sha256",
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(ValueError):
    """A checkpoint directory is missing, malformed or cannot be rebuilt."""


class ChecksumMismatchError(CheckpointError):
    """A checkpoint's weights file does not have the SHA-256 its config.json records."""


def model_classes() -> dict[str, type[keras.Model]]:
    """The allow-list: registered name -> model class that checkpoints may name.

    >>> sorted(model_classes())
    ['keras_dynunet>DynUNet', 'keras_dynunet>TernausUNet11', 'keras_dynunet>VanillaUNet']
    """
    from keras_dynunet.model import DynUNet
    from keras_dynunet.models import TernausUNet11, VanillaUNet

    return {
        keras.saving.get_registered_name(cls): cls for cls in (DynUNet, TernausUNet11, VanillaUNet)
    }


def _model_class_name(model: keras.Model) -> str:
    for name, cls in model_classes().items():
        if type(model) is cls:
            return name
    raise TypeError(
        f"save_pretrained() writes keras-dynunet models ({sorted(model_classes())}); got "
        f"{type(model).__name__}. Save other Keras models with model.save('model.keras')."
    )


def default_preprocessing(model: keras.Model) -> str:
    """The preprocessing mode a model's encoder expects (stored in checkpoints).

    A registry encoder declares its mode; TernausNet's VGG11 uses ``"imagenet"``;
    the 2015 U-Net and models built on your own encoder default to ``"none"``.

    >>> import keras_dynunet as kd
    >>> default_preprocessing(kd.build_unet("efficientnet-lite0"))
    'lite'
    """
    from keras_dynunet.model import DynUNet
    from keras_dynunet.models import TernausUNet11
    from keras_dynunet.registry import get_encoder_spec

    if isinstance(model, DynUNet) and isinstance(model.get_config().get("encoder"), str):
        return get_encoder_spec(model.get_config()["encoder"]).preprocessing
    if isinstance(model, TernausUNet11):
        return get_encoder_spec("vgg11-ternaus").preprocessing
    return "none"


def _check_preprocessing(mode: Any, where: str) -> str:
    from keras_dynunet.taps import PREPROCESSING_MODES

    if mode not in PREPROCESSING_MODES:
        raise CheckpointError(
            f"{where}: preprocessing must be one of {sorted(PREPROCESSING_MODES)}, got {mode!r}."
        )
    return mode


def _check_input_size(size: Any, where: str) -> list[int] | None:
    if size is None:
        return None
    if (
        not isinstance(size, Sequence)
        or isinstance(size, str)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise CheckpointError(
            f"{where}: input_size must be [height, width] (two positive integers) or null, "
            f"got {size!r}."
        )
    return [int(v) for v in size]


def _check_class_names(names: Any, where: str) -> list[str]:
    if (
        not isinstance(names, Sequence)
        or isinstance(names, str)
        or not all(isinstance(n, str) for n in names)
    ):
        raise CheckpointError(f"{where}: class_names must be a list of strings, got {names!r}.")
    return list(names)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> _ = p.write_bytes(b"abc")
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_config(
    model: keras.Model,
    *,
    preprocessing: str | None = None,
    class_names: Sequence[str] | None = None,
    input_size: Sequence[int] | None = None,
    weights_sha256: str | None = None,
) -> dict[str, Any]:
    """The ``config.json`` content for a model (``weights_sha256`` filled in by saving).

    Args:
        model: A :class:`~keras_dynunet.DynUNet`, ``TernausUNet11`` or ``VanillaUNet``.
        preprocessing: Input mode; default :func:`default_preprocessing`.
        class_names: One name per output channel; default ``class_0``, ``class_1``...
        input_size: ``[height, width]`` the model was trained at, or ``None``.
        weights_sha256: SHA-256 of the weights file, when known.

    >>> import keras_dynunet as kd
    >>> cfg = checkpoint_config(kd.build_unet("resnet18", classes=2))
    >>> cfg["model_class"], cfg["preprocessing"], cfg["class_names"]
    ('keras_dynunet>DynUNet', 'imagenet', ['class_0', 'class_1'])
    """
    from keras_dynunet.version import __version__

    model_class = _model_class_name(model)
    outputs = model.output_shape[-1]
    preprocessing = _check_preprocessing(
        default_preprocessing(model) if preprocessing is None else preprocessing,
        "save_pretrained",
    )
    names = (
        [f"class_{i}" for i in range(outputs)]
        if class_names is None
        else _check_class_names(class_names, "save_pretrained")
    )
    if len(names) != outputs:
        raise CheckpointError(
            f"save_pretrained: {len(names)} class_names for a model with {outputs} output "
            f"channels; give one name per channel."
        )
    return {
        "format_version": FORMAT_VERSION,
        "library": LIBRARY,
        "library_version": __version__,
        "model_class": model_class,
        "model_config": json.loads(json.dumps(model.get_config())),
        "preprocessing": preprocessing,
        "class_names": names,
        "input_size": _check_input_size(input_size, "save_pretrained"),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": weights_sha256,
    }


def _is_checkpoint_dir(path: Path) -> bool:
    """True for an empty directory or one holding a keras-dynunet checkpoint."""
    entries = list(path.iterdir())
    if not entries:
        return True
    try:
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    names = {entry.name for entry in entries}
    return (
        isinstance(config, dict)
        and config.get("library") == LIBRARY
        and names <= set(CHECKPOINT_FILES)
    )


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _replace_dir(new: Path, target: Path) -> None:
    """Move the finished directory ``new`` to ``target`` (replacing a checkpoint there)."""
    if not target.exists():
        try:
            os.rename(new, target)
            return
        except OSError:
            if not target.exists():
                raise
    if not target.is_dir() or not _is_checkpoint_dir(target):
        raise CheckpointError(
            f"{target} exists and is not a keras-dynunet checkpoint directory; refusing to "
            "replace it. Choose a new (or empty) directory."
        )
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        os.rename(old, target)  # put the previous checkpoint back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _save_model_weights(model: keras.Model, path: Path) -> None:
    """Save only the model's variables: a compiled model's optimizer state is left out.

    ``model.save_weights`` also writes the optimizer's slots (for Adam, twice the
    model's size); a rebuilt, uncompiled copy with the same weights does not.
    """
    if getattr(model, "optimizer", None) is None or not model.optimizer.variables:
        model.save_weights(str(path))
        return
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    clone.save_weights(str(path))


def save_pretrained(
    model: keras.Model,
    directory: str | os.PathLike[str],
    *,
    preprocessing: str | None = None,
    class_names: Sequence[str] | None = None,
    input_size: Sequence[int] | None = None,
    card: Mapping[str, Any] | str | None = None,
) -> Path:
    """Write a checkpoint directory atomically.

    Everything is written into a temporary directory next to ``directory`` and
    then renamed into place, so readers never see a half-written checkpoint.
    An existing checkpoint (or empty directory) at ``directory`` is replaced;
    any other existing path is refused.

    Args:
        model: A :class:`~keras_dynunet.DynUNet`, ``TernausUNet11`` or ``VanillaUNet``.
        directory: Target directory.
        preprocessing: Input mode stored for inference; default: the encoder's
            (``card["preprocessing"]`` when a zoo card is given).
        class_names: One name per output channel (default from ``card``, else
            ``class_0``...).
        input_size: ``[height, width]`` used in training (default from ``card``).
        card: A zoo card dict (see :mod:`keras_dynunet.zoo`) to render the
            README from, a ready README string, or ``None`` for a minimal card.

    Returns:
        The checkpoint directory.

    Raises:
        TypeError: ``model`` is not one of this library's model classes.
        CheckpointError: Invalid metadata, or ``directory`` is something else.

    >>> import tempfile, keras_dynunet as kd
    >>> model = kd.build_unet("resnet18", classes=1, decoder_channels=(8, 8, 8, 8, 8))
    >>> path = save_pretrained(model, tempfile.mkdtemp() + "/ckpt", input_size=(64, 64))
    >>> sorted(p.name for p in path.iterdir())
    ['README.md', 'config.json', 'model.weights.h5']
    """
    target = Path(directory).expanduser().absolute()
    if isinstance(card, Mapping):
        preprocessing = card.get("preprocessing") if preprocessing is None else preprocessing
        class_names = card.get("class_names") if class_names is None else class_names
        input_size = card.get("input_size") if input_size is None else input_size
    config = checkpoint_config(
        model, preprocessing=preprocessing, class_names=class_names, input_size=input_size
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        weights = tmp / WEIGHTS_FILE
        _save_model_weights(model, weights)
        _fsync(weights)
        config["weights_sha256"] = file_sha256(weights)
        (tmp / CONFIG_FILE).write_text(
            json.dumps(config, indent=2, sort_keys=False) + "\n", encoding="utf-8"
        )
        if isinstance(card, str):
            readme = card
        else:
            from keras_dynunet.hub import model_card

            readme = model_card(config, card)
        (tmp / CARD_FILE).write_text(readme, encoding="utf-8")
        for name in (CONFIG_FILE, CARD_FILE):
            _fsync(tmp / name)
        _replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _safe_member(directory: Path, name: Any, key: str) -> Path:
    """``directory / name`` for a plain file name (no separators, no ``..``)."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or Path(name).is_absolute()
    ):
        raise CheckpointError(
            f"config.json in {directory}: {key} must be a plain file name inside the "
            f"checkpoint directory, got {name!r}."
        )
    return directory / name


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint's ``config.json`` (the weights are not read).

    Args:
        directory: Checkpoint directory.

    Returns:
        The config dict.

    Raises:
        FileNotFoundError: ``directory`` does not exist.
        CheckpointError: Missing or malformed ``config.json``; the message names
            the key and what to do.

    >>> import tempfile, keras_dynunet as kd
    >>> path = save_pretrained(kd.VanillaUNet(input_shape=(None, None, 1), padding="same",
    ...                        base_filters=2, depth=2), tempfile.mkdtemp() + "/v")
    >>> read_config(path)["model_class"]
    'keras_dynunet>VanillaUNet'
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"No checkpoint directory at {directory} (expected a folder with {CONFIG_FILE}, "
            f"{WEIGHTS_FILE} and {CARD_FILE}, as written by save_pretrained)."
        )
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"{directory} has no {CONFIG_FILE}: it is not a keras-dynunet checkpoint (expected "
            f"{CONFIG_FILE}, {WEIGHTS_FILE} and {CARD_FILE}, as written by save_pretrained)."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise CheckpointError(
            f"{config_path} is not UTF-8 text ({error.reason}); the file is corrupt: "
            "download the checkpoint again or re-save it with save_pretrained."
        ) from None
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{config_path} is not valid JSON ({error.msg} at line {error.lineno} column "
            f"{error.colno}); the file is truncated or was edited by hand: download the "
            "checkpoint again or re-save it with save_pretrained."
        ) from None
    where = f"config.json in {directory}"
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{where} must hold a JSON object, got {type(config).__name__}; re-save the "
            "checkpoint with save_pretrained."
        )
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise CheckpointError(
            f"{where} is missing key(s) {missing}; it was not written by save_pretrained or "
            "was edited by hand: re-save the checkpoint with save_pretrained."
        )
    if config["library"] != LIBRARY:
        raise CheckpointError(
            f"{where}: library is {config['library']!r}, not {LIBRARY!r}; this is another "
            "library's checkpoint."
        )
    version = config["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f"{where}: format_version must be a positive integer, got {version!r}."
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: format_version {version} is newer than this keras-dynunet supports "
            f"({FORMAT_VERSION}); upgrade: pip install -U keras-dynunet."
        )
    classes = model_classes()
    if config["model_class"] not in classes:
        raise CheckpointError(
            f"{where}: unknown model_class {config['model_class']!r}; this keras-dynunet "
            f"loads {sorted(classes)} (classes are never imported by name from a checkpoint). "
            "If the checkpoint comes from a newer keras-dynunet, upgrade it."
        )
    if not isinstance(config["model_config"], dict):
        raise CheckpointError(
            f"{where}: model_config must be a JSON object (the model's get_config()), got "
            f"{type(config['model_config']).__name__}."
        )
    _check_preprocessing(config["preprocessing"], where)
    _check_class_names(config["class_names"], where)
    _check_input_size(config["input_size"], where)
    _safe_member(directory, config["weights_file"], "weights_file")
    if not config["weights_file"].endswith(".weights.h5"):
        raise CheckpointError(
            f"{where}: weights_file must be a Keras '.weights.h5' file, got "
            f"{config['weights_file']!r}."
        )
    sha = config["weights_sha256"]
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise CheckpointError(
            f"{where}: weights_sha256 must be 64 lowercase hex digits, got {sha!r}."
        )
    return config


def verify_checkpoint(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate ``config.json`` and check the weights file's SHA-256.

    Args:
        directory: Checkpoint directory.

    Returns:
        The config dict.

    Raises:
        ChecksumMismatchError: The weights file is truncated or corrupt (the
            message names the file, the expected and the actual hash).
        CheckpointError: See :func:`read_config`; or the weights file is missing.

    >>> import tempfile, keras_dynunet as kd
    >>> path = save_pretrained(kd.VanillaUNet(input_shape=(None, None, 1), padding="same",
    ...                        base_filters=2, depth=2), tempfile.mkdtemp() + "/v")
    >>> _ = (path / "model.weights.h5").open("ab").write(b"x")
    >>> verify_checkpoint(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_dynunet.checkpoint.ChecksumMismatchError: .../model.weights.h5 is truncated or corrupt...
    """
    directory = Path(directory)
    config = read_config(directory)
    weights = _safe_member(directory, config["weights_file"], "weights_file")
    if not weights.is_file():
        raise CheckpointError(
            f"{directory} has no {config['weights_file']} (config.json names it); the "
            "checkpoint is incomplete: download it again or re-save it with save_pretrained."
        )
    actual = file_sha256(weights)
    if actual != config["weights_sha256"]:
        raise ChecksumMismatchError(
            f"{weights} is truncated or corrupt: sha256 expected {config['weights_sha256']}, "
            f"got {actual} ({weights.stat().st_size} bytes). Delete the checkpoint and "
            "download or copy it again."
        )
    return config


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _safe_mode() -> contextlib.AbstractContextManager[Any]:
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # pragma: no cover - private Keras API moved
        return contextlib.nullcontext()
    return SafeModeScope(True)


def load_pretrained(directory: str | os.PathLike[str]) -> keras.Model:
    """Rebuild a model from a checkpoint directory and load its verified weights.

    The class comes from the allow-list :func:`model_classes` (never imported by
    name), is rebuilt with its ``from_config`` in Keras safe mode, and the
    weights' SHA-256 is checked before loading. The returned model carries the
    checkpoint's config as ``model.checkpoint_config`` (``preprocessing``,
    ``class_names``, ``input_size``...).

    Args:
        directory: Checkpoint directory.

    Returns:
        The model, weights loaded.

    Raises:
        FileNotFoundError: No such directory.
        CheckpointError: Malformed checkpoint (see :func:`verify_checkpoint`).

    Examples:
        >>> import numpy as np, tempfile, keras_dynunet as kd
        >>> model = kd.VanillaUNet(input_shape=(None, None, 1), padding="same", base_filters=2,
        ...                        depth=2)
        >>> path = save_pretrained(model, tempfile.mkdtemp() + "/v", class_names=["bg", "cell"])
        >>> loaded = load_pretrained(path)
        >>> x = np.random.rand(1, 16, 16, 1).astype("float32")
        >>> bool(np.allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0)))
        True
        >>> loaded.checkpoint_config["class_names"]
        ['bg', 'cell']
    """
    directory = Path(directory)
    config = verify_checkpoint(directory)
    cls = model_classes()[config["model_class"]]
    try:
        with _safe_mode():
            model = cls.from_config(dict(config["model_config"]))
    except Exception as error:
        raise CheckpointError(
            f"config.json in {directory}: {config['model_class']} could not be rebuilt from "
            f"model_config ({type(error).__name__}: {_first_line(error)}). The config was "
            f"written by keras-dynunet {config['library_version']}; try that version."
        ) from error
    try:
        model.load_weights(str(directory / config["weights_file"]))
    except Exception as error:
        raise CheckpointError(
            f"{directory / config['weights_file']} does not fit the model described by "
            f"config.json ({type(error).__name__}: {_first_line(error)})."
        ) from error
    object.__setattr__(model, "checkpoint_config", config)
    return model


__all__ = [
    "CARD_FILE",
    "CHECKPOINT_FILES",
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "CheckpointError",
    "ChecksumMismatchError",
    "checkpoint_config",
    "default_preprocessing",
    "file_sha256",
    "load_pretrained",
    "model_classes",
    "read_config",
    "save_pretrained",
    "verify_checkpoint",
]
