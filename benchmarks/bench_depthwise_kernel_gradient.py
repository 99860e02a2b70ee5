"""Depthwise kernel gradients as reductions or as dots, on TensorFlow-XLA and JAX.

:func:`keras_dynunet.layers.shifted_depthwise.depthwise_conv_by_shifts` computes each kernel
tap's gradient with :func:`keras_dynunet.layers.strided_windows.window_dot`, either
``method="reduce"`` (multiply, sum over batch and positions) or ``method="einsum"`` (one dot
per tap, channels as the batch dimension). ``kernel_gradient_method`` picks ``"einsum"`` on
TensorFlow for stride-phase grids up to 32 x 32 and ``"reduce"`` everywhere else. This
script measures both methods, forcing one or the other:

* ``layers``: forward + input and kernel gradients of each depthwise shape of the
  efficientnet-b0 U-Net's encoder at 256x256 batch 8 and 512x512 batch 2, with the upstream
  gradient made by a short elementwise chain (as a batch norm / activation backward makes it
  in a network), ms per call (median of 7 after a warm-up), XLA-compiled;
* ``model``: the efficientnet-b0 U-Net's training step, three models in one process (traced
  with ``reduce`` everywhere, ``einsum`` everywhere, and the library's per-layer choice)
  timed in alternation (this machine drifts by ~10% over minutes), median of ``--reps``
  calls each.

Every backend runs in its own process (``tensorflow-xla``: TensorFlow with
``jit_compile=True``; ``jax``). Run from the repository root:
``python benchmarks/bench_depthwise_kernel_gradient.py [--backends tensorflow-xla,jax]
[--parts layers,model] [--reps 8]``. Prints a table, writes
``benchmarks/results/depthwise_kernel_gradient.json`` atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "depthwise_kernel_gradient.json"
BACKENDS = {"tensorflow-xla": "tensorflow", "jax": "jax"}
METHODS = ("reduce", "einsum")
MODEL_VARIANTS = (*METHODS, "library")
# efficientnet-b0 encoder depthwise layers at 256x256: (input side, channels, kernel, stride)
SHAPES_256 = [
    (128, 32, 3, 1), (128, 96, 3, 2), (64, 144, 3, 1), (64, 144, 5, 2), (32, 240, 5, 1),
    (32, 240, 3, 2), (16, 480, 3, 1), (16, 480, 5, 1), (16, 672, 5, 1), (16, 672, 5, 2),
    (8, 1152, 5, 1), (8, 1152, 3, 1),
]
SIZES = ((256, 8), (512, 2))


def _force(method: str) -> None:
    """Make the depthwise layers trace ``method`` ("library": the library's own rule)."""
    from keras_dynunet.layers import shifted_depthwise

    library = _LIBRARY_RULE.setdefault("rule", shifted_depthwise.kernel_gradient_method)
    shifted_depthwise.kernel_gradient_method = (
        library if method == "library" else lambda geometry, backend=None: method
    )


_LIBRARY_RULE: dict = {}


def _layer_ms(backend: str, batch: int, side: int, channels: int, kernel: int, stride: int,
              method: str) -> float:
    import numpy as np
    from keras import ops

    from keras_dynunet.layers import shifted_depthwise

    _force(method)
    rng = np.random.default_rng(0)
    out = -(-side // stride)
    x = rng.random((batch, side, side, channels), "float32")
    k = rng.random((kernel, kernel, channels, 1), "float32")
    a, b, c = (rng.random((batch, out, out, channels), "float32") for _ in range(3))
    scale = rng.random((channels,), "float32")

    args = (x, k, a, b, c, scale)  # arguments, not constants XLA could fold

    def loss(x, k, a, b, c, scale):
        y = shifted_depthwise.depthwise_conv_by_shifts(x, k, (stride, stride), "same")
        upstream = (a * scale + b) * (1 - c) * c  # an elementwise chain XLA may fuse
        return ops.sum(y * upstream)

    if backend == "jax":
        import jax

        step = jax.jit(jax.grad(loss, argnums=(0, 1)))

        def call():
            jax.block_until_ready(step(*args))
    else:
        import tensorflow as tf

        tensors = [tf.constant(v) for v in args]

        @tf.function(jit_compile=True)
        def step(x, k, *rest):
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                value = loss(x, k, *rest)
            return tape.gradient(value, [x, k])

        def call():
            [g.numpy() for g in step(*tensors)]

    call()
    times = []
    for _ in range(7):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _model_ab(backend: str, size: int, batch: int, reps: int) -> dict:
    import keras
    import numpy as np

    import keras_dynunet as kd

    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype="float32")
    y = (x[..., :1] > 0.5).astype("float32")
    models = {}
    for method in MODEL_VARIANTS:
        _force(method)
        keras.utils.set_random_seed(0)
        model = kd.build_unet("efficientnet-b0", classes=1, input_shape=(None, None, 3))
        model.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            jit_compile=True,
        )
        for _ in range(2):  # traces with this method, then a warm call
            model.train_on_batch(x, y)
        models[method] = model
    times: dict[str, list[float]] = {method: [] for method in MODEL_VARIANTS}
    for rep in range(reps):
        for method in MODEL_VARIANTS if rep % 2 == 0 else MODEL_VARIANTS[::-1]:
            start = time.perf_counter()
            models[method].train_on_batch(x, y)
            times[method].append(time.perf_counter() - start)
    return {method: statistics.median(values) for method, values in times.items()} | {
        "all_s": times
    }


def _worker(runner: str, parts: list[str], reps: int) -> None:
    backend = BACKENDS[runner]
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(2)
    result: dict = {"layers": [], "model": []}
    if "layers" in parts:
        for size, batch in SIZES:
            for side, channels, kernel, stride in SHAPES_256:
                side = side * size // 256
                row = {"size": size, "batch": batch, "side": side, "channels": channels,
                       "kernel": kernel, "stride": stride}
                for method in METHODS:
                    row[f"{method}_ms"] = _layer_ms(
                        backend, batch, side, channels, kernel, stride, method
                    )
                result["layers"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    if "model" in parts:
        for size, batch in SIZES:
            row = {"size": size, "batch": batch} | _model_ab(backend, size, batch, reps)
            result["model"].append(row)
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Forces each method in turn; the library's own choice is "
        "keras_dynunet.layers.shifted_depthwise.kernel_gradient_method.",
    )
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma list of {', '.join(BACKENDS)}")
    parser.add_argument("--parts", default="layers,model", help="comma list of layers, model")
    parser.add_argument("--reps", type=int, default=8, help="timed training steps per model")
    parser.add_argument("--json", type=Path, default=RESULTS, help="output JSON path")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        runner, parts, reps = args.worker
        _worker(runner, parts.split(","), int(reps))
        return 0
    runners, parts = args.backends.split(","), args.parts.split(",")
    if set(runners) - set(BACKENDS):
        parser.error(f"unknown backend(s) {sorted(set(runners) - set(BACKENDS))}; "
                     f"choose from {', '.join(BACKENDS)}")
    if set(parts) - {"layers", "model"} or args.reps < 1:
        parser.error("--parts takes layers and/or model; --reps must be >= 1")
    results = {}
    for runner in runners:
        print(f"running {runner} ({', '.join(parts)}) ...", flush=True)
        env = dict(os.environ, KERAS_BACKEND=BACKENDS[runner], JAX_PLATFORMS="cpu")
        out = subprocess.run(
            [sys.executable, __file__, "--worker", runner, ",".join(parts), str(args.reps)],
            env=env, capture_output=True, text=True,
        )
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            return out.returncode
        results[runner] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n{'backend':<15}{'size':>5}{'bs':>4}{'layer (side,ch,k,s)':>22}"
          f"{'reduce ms':>11}{'einsum ms':>11}{'einsum speedup':>16}")
    for runner, result in results.items():
        for row in result["layers"]:
            shape = f"{row['side']},{row['channels']},{row['kernel']},{row['stride']}"
            print(f"{runner:<15}{row['size']:>5}{row['batch']:>4}{shape:>22}"
                  f"{row['reduce_ms']:>11.1f}{row['einsum_ms']:>11.1f}"
                  f"{row['reduce_ms'] / row['einsum_ms']:>15.2f}x")
    print(f"\n{'backend':<15}{'size':>5}{'bs':>4}{'reduce s':>10}{'einsum s':>10}"
          f"{'library s':>11}{'library speedup':>17}   (efficientnet-b0 U-Net training step, "
          "median; library = kernel_gradient_method's choice per layer)")
    for runner, result in results.items():
        for row in result["model"]:
            print(f"{runner:<15}{row['size']:>5}{row['batch']:>4}{row['reduce']:>10.3f}"
                  f"{row['einsum']:>10.3f}{row['library']:>11.3f}"
                  f"{row['reduce'] / row['library']:>16.2f}x")
    write_json_atomic(args.json, {"parts": parts, "reps": args.reps, "results": results})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
