"""The XLA:CPU tuning added at ``import keras_dynunet`` on the JAX backend."""

import importlib.metadata
import os
import subprocess
import sys

import pytest

from keras_dynunet.xla_cpu_flags import OPT_OUT_VARIABLE, apply_xla_cpu_flags, tuned_flags

FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def test_added_on_jax_for_a_known_jaxlib_only():
    env = {}
    assert apply_xla_cpu_flags("jax", env, jaxlib_version="0.10.2") == list(tuned_flags("0.10.2"))
    assert env["XLA_FLAGS"].startswith(FLAG + "=")
    for backend, version in [("tensorflow", "0.10.2"), ("torch", "0.10.2"), ("jax", "0.4.30")]:
        env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
        assert apply_xla_cpu_flags(backend, env, jaxlib_version=version) == []
        assert env == {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def test_opt_out_and_user_flags_win():
    env = {OPT_OUT_VARIABLE: "0"}
    assert apply_xla_cpu_flags("jax", env, jaxlib_version="0.10.2") == []
    assert "XLA_FLAGS" not in env
    env = {"XLA_FLAGS": f"{FLAG}=-LIBRARY_FUSION_TYPE_REDUCE"}
    assert apply_xla_cpu_flags("jax", env, jaxlib_version="0.10.2") == []
    assert env["XLA_FLAGS"] == f"{FLAG}=-LIBRARY_FUSION_TYPE_REDUCE"


def test_no_jaxlib_installed(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    env = {}
    assert apply_xla_cpu_flags("jax", env) == [] and env == {}


_PROBE = """
import os, keras_dynunet, jax, jax.numpy as jnp
from jax import lax
x, w = jnp.ones((8, 64, 64, 64)), jnp.ones((3, 3, 64, 64))
conv = jax.jit(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME",
               dimension_numbers=("NHWC", "HWIO", "NHWC")))
print(repr(os.environ.get("XLA_FLAGS", "")))
print("ynn_fusion" in conv.lower(x, w).compile().as_text())
"""


# XLA stops reading flags at a token without "--"; the tuning must still take effect.
_USER_FLAGS = "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2"


@pytest.mark.parametrize("opt_out", [False, True])
@pytest.mark.parametrize("user_flags", ["", _USER_FLAGS])
def test_import_takes_convolutions_out_of_ynnpack(opt_out, user_flags):
    """In a fresh JAX process the flag is set before XLA starts, and XLA obeys it."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", OPT_OUT_VARIABLE)}
    env["KERAS_BACKEND"] = "jax"
    if user_flags:
        env["XLA_FLAGS"] = user_flags
    if opt_out:
        env[OPT_OUT_VARIABLE] = "0"
    run = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    flags, in_ynnpack = run.stdout.strip().splitlines()[-2:]
    flags = flags.strip("'")
    tuned = tuned_flags(importlib.metadata.version("jaxlib"))
    if opt_out or not tuned:
        assert flags == user_flags
    else:
        assert flags == " ".join([*tuned, user_flags]).strip()
        assert in_ynnpack == "False"
    if opt_out and tuned:
        assert in_ynnpack == "True"  # the flag, not something else, moved the convolution
