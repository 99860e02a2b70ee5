"""Data-parallel training agrees with single-device training, on every engine we use.

Each run trains the tiny U-Net of ``tests/distributed_worker.py`` (a three-stage
Conv-BN-ReLU encoder, decoder widths 8, 32x32 crops of synthetic nuclei, global batch 4,
3 steps, BCE + Dice) with ``keras-dynunet train --distribution KIND`` in a subprocess, so
the devices can be configured before the backend starts. The runs use SGD (lr 0.05), not
Adam: Adam's update barely changes when all gradients are scaled, so it would hide
gradients summed instead of averaged over the replicas.

Agreement is measured as ``max |w_parallel - w_single| / max(1, |w_single|)`` over all
weights (an absolute difference for weights of size <= 1; relative for the moving
variances of the first BatchNorm, 10 to 90, whose float32 spacing is up to 7.6e-6).
Tolerance 1e-4. Measured on 2 CPU cores (deterministic on CPU, the same in every run):

- JAX DataParallel, 2 devices: 3.8e-6 abs (1.3e-7 scaled); trainable weights 3.0e-8.
- TF MirroredStrategy, 2 logical CPUs: 1.5e-5 abs (3.6e-7 scaled); trainable 6.0e-8.
- Two-process MultiWorkerMirroredStrategy: identical to MirroredStrategy.

Known bugs are far outside the tolerance (measured with the mirrored run): without
synchronized BatchNorm 14.6 abs (0.16 scaled; trainable 7.9e-3), every replica fed the
same half batch 14.4 (0.16), gradients summed instead of averaged 1.1 (trainable 3.1e-2).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from keras_dynunet.distributed import DistributionError, data_parallel, replica_slices
from keras_dynunet.training import TrainConfig, TrainingStateError, load_config, read_state, train

sys.path.insert(0, str(Path(__file__).parent))
from distributed_worker import CONFIG, register_tiny

WORKER = str(Path(__file__).parent / "distributed_worker.py")
TOLERANCE = 1e-4
TIMEOUT = 180  # seconds per subprocess; a run takes 5-20 s here
STEPS, GLOBAL_BATCH = CONFIG["steps_per_epoch"], CONFIG["batch_size"]
# Tests that build distributions in this process need TensorFlow (the suite's default).
in_process_tf = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="runs tf.distribute in the test process"
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "XLA_FLAGS")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **extra}


def _tail(text: str | bytes | None, lines: int = 40) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


def _run_worker(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            [sys.executable, WORKER, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(
            f"worker {args} timed out after {TIMEOUT} s\n--- stdout\n{_tail(error.stdout)}"
            f"\n--- stderr\n{_tail(error.stderr)}"
        )
    assert proc.returncode == 0, (
        f"worker {args} exited with {proc.returncode}\n--- stdout\n{_tail(proc.stdout)}"
        f"\n--- stderr\n{_tail(proc.stderr)}"
    )
    return proc


def _load(out: Path, kind: str) -> tuple[list[np.ndarray], dict[str, Any]]:
    meta = json.loads((out / f"{kind}.json").read_text())
    with np.load(out / f"{kind}.npz") as data:
        weights = [data[f"arr_{i}"] for i in range(len(meta["names"]))]
    return weights, meta


def _agreement(a: list[np.ndarray], b: list[np.ndarray], names: list[str]) -> dict[str, Any]:
    """Max abs difference, max scaled difference |a-b| / max(1, |b|), and where."""
    assert len(a) == len(b) == len(names)
    worst_abs, worst_scaled = (0.0, ""), (0.0, "")
    for x, y, name in zip(a, b, names, strict=True):
        assert x.shape == y.shape, name
        diff = np.abs(x.astype(np.float64) - y)
        scaled = diff / np.maximum(1.0, np.abs(y))
        worst_abs = max(worst_abs, (float(diff.max()), name))
        worst_scaled = max(worst_scaled, (float(scaled.max()), name))
    return {"abs": worst_abs, "scaled": worst_scaled}


def _assert_agree(parallel: list[np.ndarray], single: list[np.ndarray], meta: dict) -> None:
    result = _agreement(parallel, single, meta["names"])
    print(f"{meta['kind']} vs single device: {result}")  # the measured figures (pytest -s)
    assert result["scaled"][0] <= TOLERANCE, result


def _assert_trained_and_checkpointed(workdir: Path) -> None:
    assert read_state(workdir)["epoch"] == 1
    names = sorted(p.name for p in workdir.iterdir())
    assert names == ["ckpt-e0001-s000000.weights.h5", "config.json", "final", "state.json"], names
    assert sorted(p.name for p in (workdir / "final").iterdir()) == [
        "README.md",
        "config.json",
        "model.weights.h5",
    ]


# === JAX: keras.distribution.DataParallel on 2 virtual CPU devices ===


def test_jax_data_parallel_matches_single_device(tmp_path: Path) -> None:
    env = _env(KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    _run_worker([str(tmp_path), "none", "jax-data-parallel", "--sgd"], env)
    single, single_meta = _load(tmp_path, "none")
    parallel, meta = _load(tmp_path, "jax-data-parallel")

    # The distribution was really active: variables replicated on both devices, and the
    # batch as fit shards it split 2 + 2 over them; the single run used one device.
    assert (meta["kind"], meta["num_replicas"], meta["is_chief"]) == ("jax-data-parallel", 2, True)
    assert meta["evidence"] == {"variable_devices": 2, "batch_devices": 2, "batch_shard_rows": [2]}
    assert single_meta["evidence"]["variable_devices"] == 1
    assert single_meta["evidence"]["batch_devices"] == 1
    _assert_agree(parallel, single, meta)
    _assert_trained_and_checkpointed(tmp_path / "jax-data-parallel")


# === TensorFlow: MirroredStrategy on 2 logical CPU devices ===


@pytest.fixture(scope="module")
def tf_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Single-device and mirrored runs in one process with 2 logical CPUs."""
    out = tmp_path_factory.mktemp("tf_runs")
    proc = _run_worker(
        [str(out), "none", "mirrored", "--sgd", "--logical-cpus", "2"],
        _env(KERAS_BACKEND="tensorflow"),
    )
    (out / "stdout.txt").write_text(proc.stdout)
    return out


def test_mirrored_strategy_matches_single_device(tf_runs: Path) -> None:
    single, single_meta = _load(tf_runs, "none")
    parallel, meta = _load(tf_runs, "mirrored")
    assert (meta["kind"], meta["num_replicas"], meta["is_chief"]) == ("mirrored", 2, True)
    assert meta["evidence"] == {"variable_type": "MirroredVariable", "variable_devices": 2}
    assert single_meta["evidence"] == {"variable_type": "ResourceVariable", "variable_devices": 1}
    _assert_agree(parallel, single, meta)

    # One process feeds both replicas: the training pass fed every example of every
    # global batch once, in order (slice 0 to replica 0, slice 1 to replica 1).
    assert meta["fed"][-1] == single_meta["fed"][-1]
    assert len(meta["fed"][-1]) == STEPS * GLOBAL_BATCH
    # BatchNorm was synchronized for training and switched back before saving.
    assert meta["synchronized_after_training"] == []
    workdir = tf_runs / "mirrored"
    _assert_trained_and_checkpointed(workdir)
    assert meta["checkpoint_dirs"] == [str(workdir.resolve())]
    stdout = (tf_runs / "stdout.txt").read_text()
    assert f"trained to epoch 1; final checkpoint {workdir}/final" in stdout


# === TensorFlow: MultiWorkerMirroredStrategy, two processes on 127.0.0.1 ===


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_cluster(
    out: Path, workdirs: list[Path], tmp: Path, fail_fast: bool = True
) -> list[tuple[int, str]]:
    """Start two workers (TF_CONFIG on free ports) and wait for both: ``[(status, log)]``.

    With ``fail_fast``, if one worker fails the other (which would wait for its peer) is
    killed at once; at the timeout both are killed.
    """
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs, logs = [], []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = _env(KERAS_BACKEND="tensorflow", TF_CONFIG=json.dumps(tf_config), TMPDIR=str(tmp))
        args = [str(out / f"w{index}"), "multi-worker", "--sgd", "--workdir", str(workdirs[index])]
        log = out / f"worker{index}.log"
        logs.append(log)
        with open(log, "w") as handle:  # a file, not a pipe: a chatty worker never blocks
            procs.append(
                subprocess.Popen(
                    [sys.executable, WORKER, *args], env=env, stdout=handle, stderr=handle
                )
            )
    deadline = time.monotonic() + TIMEOUT
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if fail_fast and any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.2)
    timed_out = any(p.poll() is None for p in procs) and time.monotonic() >= deadline
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    results = [
        (p.returncode, log.read_text(errors="replace")) for p, log in zip(procs, logs, strict=True)
    ]
    if timed_out:
        report = "\n".join(
            f"--- worker {i} log\n{_tail(text)}" for i, (_, text) in enumerate(results)
        )
        pytest.fail(f"multi-worker run timed out after {TIMEOUT} s (ports {ports})\n{report}")
    return results


def test_two_process_multi_worker_matches_single_process(tmp_path: Path, tf_runs: Path) -> None:
    workdir, tmp = tmp_path / "work", tmp_path / "tmp"
    tmp.mkdir()
    results = _run_cluster(tmp_path, [workdir, workdir], tmp)
    if any(status for status, _ in results) and any(
        "address already in use" in text.lower() for _, text in results
    ):  # a free port was taken between choosing and binding it: choose again, once
        results = _run_cluster(tmp_path, [workdir, workdir], tmp)
    report = "\n".join(
        f"--- worker {i} (exit {status}) log\n{_tail(text)}"
        for i, (status, text) in enumerate(results)
    )
    assert [status for status, _ in results] == [0, 0], report

    chief, chief_meta = _load(tmp_path / "w0", "multi-worker")
    other, other_meta = _load(tmp_path / "w1", "multi-worker")
    single, single_meta = _load(tf_runs, "none")
    for i, meta in enumerate((chief_meta, other_meta)):
        assert (meta["num_replicas"], meta["num_workers"], meta["worker_index"]) == (2, 2, i)
        assert meta["evidence"] == {"variable_type": "MirroredVariable", "variable_devices": 1}
    assert (chief_meta["is_chief"], other_meta["is_chief"]) == (True, False)

    # Both replicas hold the same weights, and they agree with single-process training.
    assert _agreement(chief, other, chief_meta["names"])["abs"][0] == 0.0
    _assert_agree(chief, single, chief_meta)

    # Sharding: in the training pass each worker fed its own half of every global batch
    # (worker 0 examples 0-1, worker 1 examples 2-3), so together they fed each example once.
    reference = single_meta["fed"][-1]
    fed0, fed1 = chief_meta["fed"][-1], other_meta["fed"][-1]
    half = GLOBAL_BATCH // 2
    assert len(fed0) == len(fed1) == STEPS * half
    for step in range(STEPS):
        batch = reference[step * GLOBAL_BATCH : (step + 1) * GLOBAL_BATCH]
        assert fed0[step * half : (step + 1) * half] == batch[:half]
        assert fed1[step * half : (step + 1) * half] == batch[half:]

    # Only the chief wrote to the work directory; the other worker wrote to a private
    # temporary folder that is gone.
    _assert_trained_and_checkpointed(workdir)
    assert chief_meta["checkpoint_dirs"] == [str(workdir.resolve())]
    (private,) = other_meta["checkpoint_dirs"]
    assert Path(private).parent == tmp.resolve() and Path(private).name.startswith(
        "keras-dynunet-worker1-"
    )
    assert list(tmp.iterdir()) == []


def test_multi_worker_resume_needs_the_same_checkpoint_on_every_worker(
    tmp_path: Path, tf_runs: Path
) -> None:
    """Both workers resume a finished run; a worker that cannot see it makes both refuse."""
    finished = tf_runs / "mirrored"  # a finished run of the same config
    chief_dir, copy_dir = tmp_path / "chief-work", tmp_path / "same-checkpoint"
    shutil.copytree(finished, chief_dir)
    shutil.copytree(finished, copy_dir)  # shared storage, mounted elsewhere on worker 1
    (tmp_path / "tmp").mkdir()
    results = _run_cluster(tmp_path, [chief_dir, copy_dir], tmp_path / "tmp")
    assert [status for status, _ in results] == [0, 0], _tail(results[0][1] + results[1][1])
    resumed, meta = _load(tmp_path / "w0", "multi-worker")
    expected, _ = _load(tf_runs, "mirrored")  # nothing left to train: the checkpoint itself
    assert _agreement(resumed, expected, meta["names"])["abs"][0] == 0.0
    assert (
        _agreement(_load(tmp_path / "w1", "multi-worker")[0], expected, meta["names"])["abs"][0]
        == 0.0
    )

    before = {p.name: p.stat().st_mtime_ns for p in chief_dir.iterdir()}
    results = _run_cluster(
        tmp_path, [chief_dir, tmp_path / "not-shared"], tmp_path / "tmp", fail_fast=False
    )
    for status, log in results:
        assert status == 1, _tail(log)
        assert "error: the workers start from different checkpoints" in log, _tail(log)
        assert "storage shared by all workers" in log
    assert {p.name: p.stat().st_mtime_ns for p in chief_dir.iterdir()} == before
    assert not (tmp_path / "not-shared").exists()


# === Configuration and errors (in this process: TensorFlow, one CPU device) ===


def test_distribution_field_and_cli_flag(tmp_path: Path) -> None:
    assert TrainConfig().distribution == "none"
    assert TrainConfig(distribution="mirrored").to_dict()["distribution"] == "mirrored"
    path = tmp_path / "c.yaml"
    path.write_text("encoder: resnet18\ndistribution: auto\n")
    assert load_config(path).distribution == "auto"
    from keras_dynunet.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["train", str(path), "--workdir", "w", "--distribution", "mirrored"])
    assert args.distribution == "mirrored"
    assert parser.parse_args(["train", str(path), "--workdir", "w"]).distribution is None
    help_text = parser._subparsers._group_actions[0].choices["train"].format_help()
    assert "--distribution" in help_text and "multi-worker" in help_text


@pytest.mark.parametrize("value", ["ddp", "Mirrored", 2, None, ""])
def test_bad_distribution_values(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ValueError, match=r"distribution must be one of 'auto', 'none'"):
        TrainConfig(distribution=value)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"distribution": value}))
    with pytest.raises(ValueError, match="Invalid training config: distribution must be"):
        load_config(path)


def test_cli_rejects_unknown_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    from keras_dynunet.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "c.yaml", "--workdir", "w", "--distribution", "horovod"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'horovod'" in capsys.readouterr().err


@in_process_tf
def test_wrong_kind_for_backend_and_bad_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DistributionError, match=r"needs the JAX backend.*KERAS_BACKEND=jax"):
        data_parallel("jax-data-parallel")
    with pytest.raises(DistributionError, match="device 'gpu:7' does not exist"):
        data_parallel("mirrored", devices=["gpu:7"])
    with pytest.raises(DistributionError, match="needs a distribution kind other than 'none'"):
        data_parallel("none", devices=["cpu:0"])
    with pytest.raises(DistributionError, match="restrict them with CUDA_VISIBLE_DEVICES"):
        data_parallel("multi-worker", devices=["cpu:0"])
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(DistributionError, match="needs the TF_CONFIG environment variable"):
        data_parallel("multi-worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": ')
    with pytest.raises(DistributionError, match="TF_CONFIG is not a valid cluster description"):
        data_parallel("multi-worker")
    monkeypatch.delenv("TF_CONFIG")
    assert data_parallel("auto").kind == "none"  # one CPU device, no TF_CONFIG


def test_global_batch_must_divide_over_replicas() -> None:
    assert replica_slices(6, 3) == [slice(0, 2), slice(2, 4), slice(4, 6)]
    with pytest.raises(DistributionError, match="global batch size 5 is not divisible by the 2"):
        replica_slices(5, 2)


class _StopError(Exception):
    pass


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        raise _StopError  # after the checkpointer has committed the epoch


@in_process_tf
def test_distribution_may_change_on_resume(tmp_path: Path) -> None:
    register_tiny()
    config = {**CONFIG, "steps_per_epoch": 2, "epochs": 2}
    reference = train(config, tmp_path / "reference", verbose=0)
    with pytest.raises(_StopError):
        train(config, tmp_path / "work", verbose=0, callbacks=[_StopAfterFirstEpoch()])
    assert read_state(tmp_path / "work")["epoch"] == 1
    # Resume the second epoch on a (one-device, in this process) mirrored strategy.
    resumed = train({**config, "distribution": "mirrored"}, tmp_path / "work", verbose=0)
    assert type(resumed.trainable_weights[0].value).__name__ == "MirroredVariable"
    assert read_state(tmp_path / "work")["epoch"] == 2
    names = [w.path for w in reference.weights]
    result = _agreement(resumed.get_weights(), reference.get_weights(), names)
    assert result["scaled"][0] <= TOLERANCE, result
    # Any other change is still refused.
    with pytest.raises(TrainingStateError, match=r"different config \(seed: 3 -> 4\)"):
        train({**config, "distribution": "mirrored", "seed": 4}, tmp_path / "work", verbose=0)


def test_torch_backend_names_the_alternatives() -> None:
    code = (
        "from keras_dynunet.distributed import data_parallel\n"
        "assert data_parallel('auto').kind == 'none'\n"
        "data_parallel('mirrored')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(KERAS_BACKEND="torch"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 1, _tail(proc.stderr)
    assert "DistributionError: distribution='mirrored' is not available on the torch" in proc.stderr
    assert "KERAS_BACKEND=tensorflow" in proc.stderr and "KERAS_BACKEND=jax" in proc.stderr
