"""XLA:CPU settings that make the JAX backend faster, applied when keras_dynunet is imported.

jaxlib 0.10 sends every convolution on CPU to its YNNPACK library path. For the U-Nets
here that path is slower than XLA's own (Eigen) convolutions, and it keeps one of two
cores idle part of the time. Taking individual convolutions out of YNNPACK with
``--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION``
was measured (``benchmarks/bench_throughput.py``, 2 cores, 256x256, batch 8, images/s
inference / training) to take the resnet34 U-Net from 8.53 / 2.37 to 10.51 / 2.69, the
efficientnet-b0 U-Net from 15.85 / 2.98 to 19.84 / 3.34 and TernausNet from 3.02 / 0.61
to 3.19 / 0.98 (``benchmarks/README.md``). Also taking reductions out
(``-LIBRARY_FUSION_TYPE_REDUCE``) made training slower, so only convolutions are moved.

XLA reads ``XLA_FLAGS`` once, when JAX first creates its CPU backend; ``import keras``
and ``import keras_dynunet`` do not, so adding the flag at import works as long as no
JAX computation ran before. XLA aborts the process on a flag it does not know, so the
flag is only added for jaxlib versions it was checked with (:data:`TUNED_FLAGS`).
Set ``KERAS_DYNUNET_XLA_CPU_TUNING=0`` to leave ``XLA_FLAGS`` alone; a flag already
present in ``XLA_FLAGS`` is never overridden. The flag goes first in ``XLA_FLAGS``: XLA
silently ignores everything after a token that does not start with ``--`` (seen with
``XLA_FLAGS="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2"``).
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import MutableMapping

#: jaxlib "major.minor" -> XLA flags added on the JAX backend.
TUNED_FLAGS: dict[str, tuple[str, ...]] = {
    "0.10": ("--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",),
}

#: Environment variable; "0" turns the tuning off.
OPT_OUT_VARIABLE = "KERAS_DYNUNET_XLA_CPU_TUNING"


def tuned_flags(jaxlib_version: str) -> tuple[str, ...]:
    """The flags :data:`TUNED_FLAGS` lists for a jaxlib version (none if unknown).

    >>> tuned_flags("0.10.2")[0].split("=")[0]
    '--xla_cpu_experimental_ynn_fusion_type'
    >>> tuned_flags("0.4.30")
    ()
    """
    return TUNED_FLAGS.get(".".join(jaxlib_version.split(".")[:2]), ())


def apply_xla_cpu_flags(
    backend: str,
    environ: MutableMapping[str, str] | None = None,
    jaxlib_version: str | None = None,
) -> list[str]:
    """Add the tuned XLA:CPU flags to ``XLA_FLAGS`` when ``backend`` is ``"jax"``.

    Args:
        backend: The Keras backend name.
        environ: The environment to change (default ``os.environ``).
        jaxlib_version: The installed jaxlib version (default: read from package metadata).

    Returns:
        The flags added (empty when not on JAX, opted out, the jaxlib version is not in
        :data:`TUNED_FLAGS`, or ``XLA_FLAGS`` already sets them).

    >>> env = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"}
    >>> added = apply_xla_cpu_flags("jax", env, jaxlib_version="0.10.2")
    >>> env["XLA_FLAGS"] == added[0] + " --xla_cpu_multi_thread_eigen=true"
    True
    >>> apply_xla_cpu_flags("tensorflow", {}, jaxlib_version="0.10.2")
    []
    """
    environ = os.environ if environ is None else environ
    if backend != "jax" or environ.get(OPT_OUT_VARIABLE, "1").strip() == "0":
        return []
    if jaxlib_version is None:
        try:
            jaxlib_version = importlib.metadata.version("jaxlib")
        except importlib.metadata.PackageNotFoundError:
            return []
    existing = environ.get("XLA_FLAGS", "")
    added = [flag for flag in tuned_flags(jaxlib_version) if flag.split("=")[0] not in existing]
    if added:  # first: XLA ignores every flag after a malformed token (one without "--")
        environ["XLA_FLAGS"] = " ".join([*added, existing]).strip()
    return added
