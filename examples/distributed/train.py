"""Data-parallel training of a U-Net on synthetic nuclei, on any number of devices or hosts.

Runs ``keras_dynunet.training.train`` (the engine of ``keras-dynunet train``) with a
``distribution``: ``tf.distribute.MirroredStrategy`` / ``MultiWorkerMirroredStrategy`` on
TensorFlow, ``keras.distribution.DataParallel`` on JAX. The defaults (resnet18 encoder,
narrow decoder, 64x64 crops, global batch 4, 4 steps) finish in well under a minute on a
CPU. See docs/distributed.md.

One machine, two simulated CPU devices (drop --cpu-devices on a multi-GPU machine)::

    KERAS_BACKEND=tensorflow python examples/distributed/train.py --distribution mirrored \\
        --cpu-devices 2 --workdir /tmp/dp-tf
    KERAS_BACKEND=jax python examples/distributed/train.py --distribution jax-data-parallel \\
        --cpu-devices 2 --workdir /tmp/dp-jax

Several hosts, TensorFlow: the same command on every host, each with its TF_CONFIG (the
same cluster, its own index; index 0 is the chief and writes the work directory, which
must be on storage every host sees)::

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    KERAS_BACKEND=tensorflow python examples/distributed/train.py \\
        --distribution multi-worker --workdir /shared/run

Several hosts, JAX: the same command on every host with the coordinator address (host 0),
the number of processes and this host's id (or the KERAS_DISTRIBUTION_JOB_ADDRESSES,
KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID variables)::

    KERAS_BACKEND=jax python examples/distributed/train.py --distribution jax-data-parallel \\
        --jax-coordinator host0:1234 --num-processes 2 --process-id 0 --workdir /shared/run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Data-parallel U-Net training on synthetic nuclei (offline, small "
        "defaults). The Keras backend comes from KERAS_BACKEND (tensorflow or jax).",
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", required=True, help="work directory (created; resumed)")
    parser.add_argument(
        "--distribution",
        default="auto",
        choices=("auto", "none", "mirrored", "multi-worker", "jax-data-parallel"),
        help="mirrored: TF MirroredStrategy over this machine's GPUs (or --cpu-devices); "
        "multi-worker: TF MultiWorkerMirroredStrategy over the hosts in TF_CONFIG; "
        "jax-data-parallel: keras.distribution.DataParallel (JAX); auto (default): "
        "multi-worker if TF_CONFIG names several tasks, else the backend's kind if it sees "
        "two or more devices, else none (one device)",
    )
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=0,
        help="split the CPU into N devices to try data parallelism without GPUs (TensorFlow: "
        "logical devices; JAX: XLA_FLAGS=--xla_force_host_platform_device_count=N)",
    )
    parser.add_argument("--jax-coordinator", help="JAX multi-host: address host:port of process 0")
    parser.add_argument("--num-processes", type=int, help="JAX multi-host: number of processes")
    parser.add_argument("--process-id", type=int, help="JAX multi-host: this process, 0..N-1")
    parser.add_argument("--encoder", default="resnet18", help="registry encoder (default resnet18)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4, help="batches per epoch")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=4,
        help="GLOBAL batch size, split over all replicas (a multiple of their number)",
    )
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--images", type=int, default=8, help="synthetic images")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _configure_devices(args: argparse.Namespace) -> None:
    """Device setup that must happen before the backend starts."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if args.cpu_devices and backend == "jax":
        flag = f"--xla_force_host_platform_device_count={args.cpu_devices}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    elif args.cpu_devices and backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_devices
        )
    jax_multi_host = args.jax_coordinator or os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES")
    if jax_multi_host:
        import keras

        # Connects this process to the others; jax.devices() then lists every host's devices.
        keras.distribution.initialize(args.jax_coordinator, args.num_processes, args.process_id)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    _configure_devices(args)
    import keras

    from keras_dynunet.training import TrainConfig, train

    config = TrainConfig(
        encoder=args.encoder,
        decoder_channels=(16, 16, 16, 16, 16),
        data={"n_images": args.images, "image_size": (2 * args.crop, 2 * args.crop)},
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        seed=args.seed,
        distribution=args.distribution,
    )
    start = time.perf_counter()
    model = train(config, args.workdir, verbose=2)
    summary = {
        "backend": keras.backend.backend(),
        "distribution": args.distribution,
        "seconds": round(time.perf_counter() - start, 1),
        "parameters": model.count_params(),
        "epochs": args.epochs,
        "final": str(Path(args.workdir) / "final"),  # written by the chief
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main()
