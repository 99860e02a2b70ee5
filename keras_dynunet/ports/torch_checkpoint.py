"""Read PyTorch ``state_dict`` files into numpy arrays, safely and without torch.

Both formats are supported: the zip archive of ``torch.save`` since 1.6
(``archive/data.pkl`` + ``archive/data/<key>``) and the legacy stream of
pickles (magic number, protocol, sys info, the object, storage keys, raw
storages). The pickles are read with a restricted unpickler that only
accepts the handful of globals a tensor dict needs (``OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the typed storages); anything else
raises :class:`UnsafeCheckpointError`, so a malicious file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint references code that a plain tensor dict never needs."""


@dataclass(frozen=True)
class _StorageType:
    dtype: Any


@dataclass
class _Storage:
    key: str
    dtype: Any
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_args):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise UnsafeCheckpointError(
            f"The checkpoint references {module}.{name}, which a tensor state dict never "
            "needs; refusing to load it (it could run code). Re-save it as a plain "
            "state_dict or a .safetensors file."
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise UnsafeCheckpointError(f"Unexpected persistent id {pid!r} in checkpoint.")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"Unknown storage type {storage_type!r}.")
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, int(numel))
        return self.storages[key]


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        data = obj.storage.data
        if data is None:
            raise ValueError(f"Storage {obj.storage.key!r} has no data: truncated checkpoint.")
        itemsize = data.dtype.itemsize
        needed = (
            obj.offset + sum((s - 1) * st for s, st in zip(obj.size, obj.stride, strict=True)) + 1
        )
        if obj.size and min(obj.size) == 0:
            return np.zeros(obj.size, data.dtype)
        if needed > data.size:
            raise ValueError(f"Tensor exceeds its storage {obj.storage.key!r}: corrupt checkpoint.")
        view = np.lib.stride_tricks.as_strided(
            data[obj.offset :], shape=obj.size, strides=[st * itemsize for st in obj.stride]
        )
        return np.array(view)
    if isinstance(obj, dict):
        return OrderedDict((k, _materialise(v)) for k, v in obj.items())
    return obj


def _read_exact(file: BinaryIO, count: int, what: str) -> bytes:
    data = file.read(count)
    if len(data) != count:
        raise ValueError(f"Checkpoint ends early while reading {what}: the file is truncated.")
    return data


def _read_legacy(file: BinaryIO) -> Any:
    magic = _RestrictedUnpickler(file, {}).load()
    if magic != _LEGACY_MAGIC:
        raise ValueError("Not a PyTorch checkpoint: wrong magic number.")
    _RestrictedUnpickler(file, {}).load()  # protocol version
    _RestrictedUnpickler(file, {}).load()  # sys info
    storages: dict[str, _Storage] = {}
    obj = _RestrictedUnpickler(file, storages).load()
    keys = _RestrictedUnpickler(file, {}).load()
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", _read_exact(file, 8, f"storage {key} size"))
        count = numel * np.dtype(storage.dtype).itemsize
        raw = _read_exact(file, count, f"storage {key}")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return obj, storages


def _read_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl")), None)
        if pkl is None:
            raise ValueError(f"{path!r} is a zip file but not a PyTorch checkpoint (no data.pkl).")
        prefix = pkl[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        obj = _RestrictedUnpickler(io.BytesIO(archive.read(pkl)), storages).load()
        for key, storage in storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return obj, storages


def read_torch_checkpoint(path: str | os.PathLike[str]) -> OrderedDict[str, np.ndarray]:
    """Read a PyTorch ``state_dict`` (``.pth``/``.pt``, zip or legacy format) as numpy arrays.

    A checkpoint that wraps the state dict (``{"state_dict": ...}`` or
    ``{"model": ...}``) is unwrapped.

    Raises:
        FileNotFoundError: No such file.
        UnsafeCheckpointError: The file references code beyond tensors.
        ValueError: Truncated or corrupt file (the message names it).

    >>> import tempfile, zipfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "bad.pth"
    >>> _ = bad.write_bytes(b"not a checkpoint")
    >>> read_torch_checkpoint(bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Could not read PyTorch checkpoint '...bad.pth': ...
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint {path!r} does not exist.")
    try:
        if zipfile.is_zipfile(path):
            obj, _ = _read_zip(path)
        else:
            with open(path, "rb") as file:
                obj, _ = _read_legacy(file)
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, struct.error) as error:
        raise ValueError(
            f"Could not read PyTorch checkpoint {path!r}: {error}. The file is truncated or "
            "not a torch.save() state dict."
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise ValueError(f"Checkpoint {path!r} holds a {type(obj).__name__}, not a state dict.")
    return _materialise(obj)
