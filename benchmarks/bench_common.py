"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

#: Keras runners of the benchmarks: runner -> (``KERAS_BACKEND``, ``compile(jit_compile=...)``).
#: ``tensorflow`` pins XLA off (what ``"auto"`` picks on a CPU-only machine), JAX always jits.
KERAS_RUNNER_SETTINGS: dict[str, tuple[str, bool | str]] = {
    "tensorflow-xla": ("tensorflow", True),
    "tensorflow": ("tensorflow", False),
    "jax": ("jax", "auto"),
    "torch": ("torch", False),
}


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write ``payload`` as JSON to ``path`` via a temp file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
