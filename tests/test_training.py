"""Resumable training: a run killed with SIGKILL mid-epoch and resumed ends bit-identical.

Measured on CPU TensorFlow: the resumed run's final weights equal the uninterrupted
run's exactly (max abs difference 0.0); the assertion allows 1e-6.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_dynunet.checkpoint import load_pretrained
from keras_dynunet.registry import list_encoders, register_encoder
from keras_dynunet.taps import EncoderSpec, Tap
from keras_dynunet.training import TrainConfig, TrainingStateError, load_config, read_state, train

HERE = str(Path(__file__).parent)
TOLERANCE = 1e-6
TINY = "tiny-dropout-test"


def _tiny_encoder(input_shape: tuple[int | None, ...]) -> keras.Model:
    """Two stride-2 stages with BatchNorm and Dropout (random layers must resume exactly)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="r1")(x)
    x = keras.layers.Dropout(0.3, name="drop")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c2")(x)
    x = keras.layers.Activation("relu", name="r2")(x)
    return keras.Model(inputs, x, name="tiny")


def register_tiny() -> None:
    """Register the tiny test encoder (also called by the killed child process)."""
    if TINY not in list_encoders():
        taps = (Tap("P1", "r1", 2, 8), Tap("P2", "r2", 4, 16))
        register_encoder(EncoderSpec(TINY, _tiny_encoder, taps, family="test"))


register_tiny()

CONFIG = {
    "encoder": TINY,
    "decoder_channels": [8, 8],
    "crop": 32,
    "epochs": 3,
    "steps_per_epoch": 3,
    "batch_size": 2,
    "checkpoint_every": 2,
    "data": {"n_images": 4, "image_size": [48, 48], "n_nuclei": [3, 6], "radius": [4, 8]},
}

# Child process: train, and SIGKILL itself right after optimizer step ``KILL_AT``
# (epoch 1, batch 2: after the step checkpoint of epoch 1 step 2 was committed).
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    sys.path.insert(0, sys.argv[4])
    from test_training import register_tiny
    from keras_dynunet.training import train
    register_tiny()

    class Kill(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)

    train(sys.argv[1], sys.argv[2], verbose=0, callbacks=[Kill()])
    """
)


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("kill_at", [5])
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path, kill_at: int) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(CONFIG))
    reference = train(CONFIG, tmp_path / "reference", verbose=0)

    work = tmp_path / "work"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(config_file), str(work), str(kill_at), HERE],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = read_state(work)
    assert (state["epoch"], state["step"]) == (1, 2)  # the step checkpoint, mid-epoch
    names = sorted(p.name for p in work.iterdir())
    assert names == ["ckpt-e0001-s000002.weights.h5", "config.json", "state.json"], names

    resumed = train(config_file, work, verbose=0)
    diff = _max_diff(reference.get_weights(), resumed.get_weights())
    assert diff <= TOLERANCE, diff
    assert int(resumed.optimizer.iterations.numpy()) == 9
    assert not [p for p in work.iterdir() if ".tmp" in p.name]
    final = load_pretrained(work / "final")
    assert final.checkpoint_config["class_names"] == ["interior", "border"]
    assert _max_diff(final.get_weights(), reference.get_weights()) <= TOLERANCE


def test_mismatched_config_is_refused(tmp_path: Path) -> None:
    small = {**CONFIG, "epochs": 1, "steps_per_epoch": 1, "checkpoint_every": 0}
    train(small, tmp_path, verbose=0)
    before = (tmp_path / "state.json").read_bytes()
    with pytest.raises(TrainingStateError, match=r"different config \(lr: 0\.001 -> 0\.01\)"):
        train({**small, "lr": 0.01}, tmp_path, verbose=0)
    assert (tmp_path / "state.json").read_bytes() == before


def test_leftover_temporaries_are_ignored_and_cleaned(tmp_path: Path) -> None:
    small = {**CONFIG, "epochs": 1, "steps_per_epoch": 1, "checkpoint_every": 0}
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / ".ckpt-e0009-s000000.weights.h5.tmp-1.weights.h5").write_bytes(b"half")
    (tmp_path / ".state.json.tmpabc").write_text("{")
    train(small, tmp_path, verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt-e0001-s000000.weights.h5",
        "config.json",
        "final",
        "state.json",
    ]


def test_corrupt_checkpoint_is_reported(tmp_path: Path) -> None:
    small = {**CONFIG, "epochs": 1, "steps_per_epoch": 1, "checkpoint_every": 0}
    train(small, tmp_path, verbose=0)
    with (tmp_path / "ckpt-e0001-s000000.weights.h5").open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(TrainingStateError, match="SHA-256"):
        train(small, tmp_path, verbose=0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"epochs": "ten"}', "epochs must be an integer"),
        ('{"target": "boxes"}', "target must be one of"),
        ('{"optimiser": "sgd"}', "unknown key"),
        ('{"encoder": "resnet7"}', "encoder 'resnet7'"),
        ('{"crop": 512, "data": {"image_size": 64}}', "larger than data.image_size"),
    ],
)
def test_bad_config_files(tmp_path: Path, data: str, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(data)
    with pytest.raises(ValueError, match=message):
        load_config(path)
    assert path.read_text() == data


def test_yaml_config_and_cli_help(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("encoder: resnet18\nepochs: 2\ncrop: [32, 32]\n")
    assert load_config(path) == TrainConfig(encoder="resnet18", epochs=2, crop=(32, 32))
    from keras_dynunet.cli import build_parser

    args = build_parser().parse_args(["train", str(path), "--workdir", str(tmp_path / "w")])
    assert args.config == str(path)
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--workdir" in help_text
