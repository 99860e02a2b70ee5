"""The glibc malloc tuning applied at ``import keras_dynunet`` on the PyTorch backend."""

import json
import os
import subprocess
import sys

import pytest

from keras_dynunet import cpu_allocator
from keras_dynunet.cpu_allocator import (
    OPT_OUT_VARIABLE,
    SETTINGS,
    apply_cpu_allocator_tuning,
    tune_cpu_allocator,
)


class RecordingLibc:
    """Stands in for glibc: records ``mallopt`` calls and returns ``result``."""

    def __init__(self, result: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self.result


def test_tune_calls_mallopt_with_every_setting_in_order():
    libc = RecordingLibc()
    applied = tune_cpu_allocator(libc)
    assert libc.calls == [(number, value) for number, _, value in SETTINGS]
    assert applied == [f"{name}={value}" for _, name, value in SETTINGS]


def test_a_refused_setting_is_an_error_naming_it():
    with pytest.raises(RuntimeError, match="M_MMAP_MAX"):
        tune_cpu_allocator(RecordingLibc(result=0))


@pytest.fixture
def recorded(monkeypatch):
    """apply_cpu_allocator_tuning with a recording libc (this process's malloc is untouched)."""
    libc = RecordingLibc()
    monkeypatch.setattr(cpu_allocator, "_glibc", lambda: libc)
    monkeypatch.setattr(cpu_allocator, "_applied", [])
    return libc


def test_applied_on_torch_only_and_once(recorded):
    for backend in ("tensorflow", "jax"):
        assert apply_cpu_allocator_tuning(backend, {}) == []
    assert recorded.calls == []
    first = apply_cpu_allocator_tuning("torch", {})
    assert first == [f"{name}={value}" for _, name, value in SETTINGS]
    assert apply_cpu_allocator_tuning("torch", {}) == first
    assert len(recorded.calls) == len(SETTINGS)  # not applied a second time


def test_opt_out(recorded):
    assert apply_cpu_allocator_tuning("torch", {OPT_OUT_VARIABLE: "0"}) == []
    assert recorded.calls == []


def test_not_glibc_changes_nothing(monkeypatch):
    monkeypatch.setattr(cpu_allocator, "_glibc", lambda: None)
    monkeypatch.setattr(cpu_allocator, "_applied", [])
    assert apply_cpu_allocator_tuning("torch", {}) == []


# Allocate and touch a 64 MB tensor, free it, ten times; count the page faults of the last nine.
_PROBE = """
import json, resource, keras_dynunet, torch
from keras_dynunet import cpu_allocator
def touch():
    torch.empty(16 * 2**20).fill_(1.0)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(9):
    touch()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": cpu_allocator.apply_cpu_allocator_tuning("torch"), "faults": faults}))
"""


@pytest.mark.skipif(cpu_allocator._glibc() is None, reason="the malloc settings are glibc's")
@pytest.mark.parametrize("opt_out", [False, True])
def test_import_on_torch_keeps_freed_tensor_pages_mapped(opt_out):
    """Without the tuning each 64 MB tensor is a fresh mmap: 16384 page faults to touch it;
    with it the freed heap block is reused, already mapped."""
    pytest.importorskip("torch")
    env = dict(os.environ, KERAS_BACKEND="torch", CUDA_VISIBLE_DEVICES="")
    env.pop(OPT_OUT_VARIABLE, None)
    if opt_out:
        env[OPT_OUT_VARIABLE] = "0"
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    pages = 9 * 64 * 2**20 // 4096
    if opt_out:
        assert probe["applied"] == []
        assert probe["faults"] > pages // 2  # a fresh mapping every time
    else:
        assert probe["applied"] == [f"{name}={value}" for _, name, value in SETTINGS]
        assert probe["faults"] < pages // 4  # measured: one 64 MB tensor's worth in nine
