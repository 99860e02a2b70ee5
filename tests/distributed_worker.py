"""Subprocess helper of tests/test_distributed.py: trains a tiny U-Net with ``keras-dynunet train``.

Usage::

    python tests/distributed_worker.py OUT_DIR KIND [KIND ...] [--logical-cpus N] [--sgd]
                                       [--workdir DIR]

Writes the training config to ``OUT_DIR/config.json``, then for each KIND runs the command
line ``keras-dynunet train OUT_DIR/config.json --workdir OUT_DIR/KIND --distribution KIND``
(in this process, through ``keras_dynunet.cli.main``) and writes ``OUT_DIR/KIND.npz`` (the
trained model's weights, in ``model.weights`` order) and ``OUT_DIR/KIND.json``: what the
distribution scope reported, where the variables (and on JAX a batch) live, the folders
checkpoints were written to, and a fingerprint of every example this process fed to
``tf.data``. The Keras backend comes from ``KERAS_BACKEND``; ``--logical-cpus`` splits the
CPU into TensorFlow logical devices before TensorFlow starts (for JAX set
``XLA_FLAGS=--xla_force_host_platform_device_count=N``); ``multi-worker`` reads
``TF_CONFIG``. ``--workdir`` replaces ``OUT_DIR/KIND``. Exit status: the CLI's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TINY = "tiny-bn-distributed-test"
# Global batch 4 (2 per replica on 2 replicas), 3 steps, BCE + Dice, augmentation on.
CONFIG: dict[str, Any] = {
    "encoder": TINY,
    "decoder_channels": [8, 8, 8],
    "crop": 32,
    "epochs": 1,
    "steps_per_epoch": 3,
    "batch_size": 4,
    "lr": 1e-3,
    "seed": 3,
    "data": {"n_images": 4, "image_size": [48, 48], "n_nuclei": [3, 6], "radius": [4, 8]},
}
SGD_LR = 0.05


def register_tiny() -> None:
    """Register a three-stage Conv-BN-ReLU encoder (BatchNorm everywhere, no dropout)."""
    import keras

    from keras_dynunet.registry import list_encoders, register_encoder
    from keras_dynunet.taps import EncoderSpec, Tap

    def build(input_shape: tuple[int | None, ...]) -> keras.Model:
        inputs = keras.Input(input_shape)
        x = inputs
        for i, width in enumerate((8, 16, 16), start=1):
            conv = keras.layers.Conv2D(
                width, 3, strides=2, padding="same", use_bias=False, name=f"c{i}"
            )
            x = keras.layers.BatchNormalization(name=f"bn{i}")(conv(x))
            x = keras.layers.Activation("relu", name=f"r{i}")(x)
        return keras.Model(inputs, x, name="tiny_bn")

    if TINY not in list_encoders():
        taps = (Tap("P1", "r1", 2, 8), Tap("P2", "r2", 4, 16), Tap("P3", "r3", 8, 16))
        register_encoder(EncoderSpec(TINY, build, taps, family="test"))


def example_fingerprints(x: Any) -> list[str]:
    """One short hash per example of a batch (which worker fed which example)."""
    import numpy as np

    return [hashlib.sha256(np.ascontiguousarray(row).tobytes()).hexdigest()[:16] for row in x]


def _evidence(model: Any, scope: Any) -> dict[str, Any]:
    """Where the variables (and, on JAX, a batch as ``fit`` shards it) actually live."""
    import keras

    variable = model.trainable_weights[0].value
    if keras.backend.backend() == "jax":
        import numpy as np
        from keras.src.backend.jax.trainer import _distribute_data

        with scope:  # the call the JAX trainer makes on every batch
            batch = _distribute_data((np.zeros((4, 32, 32, 3), "float32"),))[0]
        return {
            "variable_devices": len(variable.sharding.device_set),
            "batch_devices": len(batch.sharding.device_set),
            "batch_shard_rows": sorted({s.data.shape[0] for s in batch.addressable_shards}),
        }
    values = getattr(variable, "values", (variable,))
    return {
        "variable_type": type(variable).__name__,
        "variable_devices": len({v.device for v in values}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("kinds", nargs="+", help="TrainConfig.distribution values to run")
    parser.add_argument("--logical-cpus", type=int, default=0, help="TensorFlow CPU devices")
    parser.add_argument("--workdir", type=Path, default=None, help="work directory to use")
    parser.add_argument(
        "--sgd",
        action="store_true",
        help=f"train with SGD (lr {SGD_LR}) instead of Adam: Adam's step barely changes when "
        "the gradient is scaled, so it would hide gradients summed instead of averaged",
    )
    args = parser.parse_args(argv)

    if args.logical_cpus:  # before TensorFlow starts
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus
        )
    import keras
    import numpy as np

    import keras_dynunet.distributed as distributed
    import keras_dynunet.training as training
    from keras_dynunet.cli import main as cli

    register_tiny()
    if args.sgd:
        keras.optimizers.Adam = keras.optimizers.SGD  # build_model calls Adam(config.lr)

    # Spies: the scope, the model it prepared, checkpoint folders, examples fed to tf.data.
    seen: dict[str, Any] = {"fed": [], "written": []}
    prepare = distributed.DataParallelScope.prepare

    def spy_prepare(self: Any, model: Any) -> Any:
        seen["scope"], seen["model"] = self, model
        return prepare(self, model)

    distributed.DataParallelScope.prepare = spy_prepare
    save_checkpoint = training.save_checkpoint

    def spy_save(model: Any, workdir: Any, *a: Any, **k: Any) -> Any:
        seen["written"].append(str(Path(workdir).resolve()))
        return save_checkpoint(model, workdir, *a, **k)

    training.save_checkpoint = spy_save
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        from_generator = tf.data.Dataset.from_generator

        def spy_from_generator(generator: Any, *a: Any, **k: Any) -> Any:
            def recorded() -> Any:
                run: list[str] = []
                seen["fed"].append(run)
                for x, y in generator():
                    run.extend(example_fingerprints(x))
                    yield x, y

            return from_generator(recorded, *a, **k)

        tf.data.Dataset.from_generator = spy_from_generator

    args.out.mkdir(parents=True, exist_ok=True)
    config_file = args.out / "config.json"
    config_file.write_text(json.dumps({**CONFIG, **({"lr": SGD_LR} if args.sgd else {})}))
    for kind in args.kinds:
        seen["fed"].clear()
        seen["written"].clear()
        workdir = args.workdir or args.out / kind
        command = ["train", str(config_file), "--workdir", str(workdir)]
        status = cli([*command, "--distribution", kind, "--no-progress-bar"])
        if status:
            return status
        model, scope = seen["model"], seen["scope"]
        np.savez(args.out / f"{kind}.npz", *[np.asarray(w) for w in model.get_weights()])
        meta = {
            "kind": scope.kind,
            "num_replicas": scope.num_replicas,
            "num_workers": scope.num_workers,
            "worker_index": scope.worker_index,
            "is_chief": scope.is_chief,
            "names": [w.path for w in model.weights],
            "synchronized_after_training": sorted(
                layer.name
                for layer in model._flatten_layers()
                if getattr(layer, "synchronized", False)
            ),
            "evidence": _evidence(model, scope),
            "checkpoint_dirs": sorted(set(seen["written"])),
            "fed": [run for run in seen["fed"] if run],
        }
        (args.out / f"{kind}.json").write_text(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
