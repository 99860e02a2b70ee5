"""glibc malloc settings that make the PyTorch backend faster, applied at ``import keras_dynunet``.

Keras on PyTorch runs eagerly: every convolution, bias add, activation, concatenation and
upsampling allocates a new output tensor, and a U-Net's large feature maps (a 8x256x256x16
float32 map is 33.5 MB) are above glibc's mmap threshold (at most 32 MB, usually much less).
glibc serves each such block with a fresh ``mmap`` and hands it back with ``munmap`` when the
tensor dies, so the next step touches brand-new pages again: the kernel faults in and zeroes
every 4 kB page. Under ``torch.profiler`` (resnet34 U-Net, 256x256, batch 8, inference), one
bias add on the last decoder map took 50 ms for 33 MB, and the adds and ReLUs together 170 ms
of a 950 ms forward; with the settings below they took 66 ms.

The settings (:data:`SETTINGS`, through ``mallopt``): no block is served by ``mmap``
(``M_MMAP_MAX=0``), free memory at the top of the heap is kept up to 2 GiB
(``M_TRIM_THRESHOLD``) and the heap grows 256 MB at a time (``M_TOP_PAD``), so freed
tensors' pages are reused, already mapped, by the next step. The cost: the process keeps its
peak heap instead of returning memory to the system between steps (peak RSS is unchanged).
glibc still falls back to ``mmap`` when the heap cannot grow.

Applied on the PyTorch backend only: TensorFlow and XLA (JAX) manage their own buffers, and
measured no faster with these settings (``benchmarks/README.md``). On other C libraries than
glibc nothing is changed. Set ``KERAS_DYNUNET_MALLOC_TUNING=0`` before the import to leave
malloc alone, or call :func:`tune_cpu_allocator` yourself on any backend.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from typing import Any

#: (mallopt parameter number, name, value) in the order they are applied (glibc ``malloc.h``).
SETTINGS: tuple[tuple[int, str, int], ...] = (
    (-4, "M_MMAP_MAX", 0),
    (-1, "M_TRIM_THRESHOLD", 2**31 - 1),
    (-2, "M_TOP_PAD", 256 * 2**20),
)

#: Environment variable; "0" turns the tuning off.
OPT_OUT_VARIABLE = "KERAS_DYNUNET_MALLOC_TUNING"

_applied: list[str] = []


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (has ``mallopt``), else ``None``."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return libc


def tune_cpu_allocator(libc: Any = None) -> list[str]:
    """Apply :data:`SETTINGS` to glibc's malloc in this process.

    Args:
        libc: The C library to call ``mallopt`` on (default: this process's, when it is glibc).

    Returns:
        The settings applied, as ``"NAME=value"`` (empty when the C library is not glibc).

    Raises:
        RuntimeError: If glibc refuses a setting (``mallopt`` returned 0).

    >>> class RecordingLibc:  # stands in for glibc: records the calls, accepts them
    ...     calls = []
    ...     def mallopt(self, parameter, value):
    ...         self.calls.append((parameter, value))
    ...         return 1
    >>> tune_cpu_allocator(RecordingLibc())
    ['M_MMAP_MAX=0', 'M_TRIM_THRESHOLD=2147483647', 'M_TOP_PAD=268435456']
    >>> RecordingLibc.calls[0]
    (-4, 0)
    """
    libc = _glibc() if libc is None else libc
    if libc is None:
        return []
    applied = []
    for parameter, name, value in SETTINGS:
        if libc.mallopt(parameter, value) != 1:
            raise RuntimeError(f"glibc refused mallopt({name}, {value}); please report this.")
        applied.append(f"{name}={value}")
    return applied


def apply_cpu_allocator_tuning(backend: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """Tune malloc (:func:`tune_cpu_allocator`) when ``backend`` is ``"torch"``, once per process.

    Args:
        backend: The Keras backend name.
        environ: The environment to read the opt-out from (default ``os.environ``).

    Returns:
        The settings in effect from keras_dynunet (empty when not on PyTorch, opted out with
        ``KERAS_DYNUNET_MALLOC_TUNING=0``, or not on glibc).

    >>> apply_cpu_allocator_tuning("tensorflow")
    []
    >>> apply_cpu_allocator_tuning("torch", {"KERAS_DYNUNET_MALLOC_TUNING": "0"})
    []
    """
    environ = os.environ if environ is None else environ
    if backend != "torch" or environ.get(OPT_OUT_VARIABLE, "1").strip() == "0":
        return []
    if not _applied:
        _applied.extend(tune_cpu_allocator())
    return list(_applied)
