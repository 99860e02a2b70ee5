"""Hand-written gradients on or off: U-Net training images/s, A/B in alternating processes.

Two layers of keras-dynunet replace autodiff with a written-out gradient
(``keras.ops.custom_gradient``):

* ``batch-norm`` (PyTorch backend), ``batch-norm-jax``, ``batch-norm-jax-512`` (JAX),
  ``batch-norm-tf``, ``batch-norm-tf-512``, ``batch-norm-tf-effnet`` (TensorFlow, XLA off,
  the default on CPU), ``batch-norm-tf-xla`` (TensorFlow with ``jit_compile=True``):
  :class:`keras_dynunet.layers.batch_norm.FastBatchNormalization` against the plain Keras
  ``BatchNormalization.call`` (autograd through eager ops on PyTorch, XLA's autodiff of
  Keras' moments on JAX, the gradient tape through ``tf.nn.moments`` and
  ``tf.nn.batch_normalization`` on TensorFlow), on the resnet34 U-Net (efficientnet-b0
  where named);
* ``depthwise`` (JAX backend): the hand-written gradient of
  :func:`keras_dynunet.layers.shifted_depthwise.depthwise_conv_by_shifts` against autodiff
  of the same forward window sum, on the efficientnet-b0 U-Net;
* ``max-pool``, ``max-pool-256``, ``max-pool-vgg`` (JAX backend):
  :func:`keras_dynunet.layers.shifted_max_pool.max_pool_by_shifts` against
  ``keras.ops.max_pool`` (XLA's ``select_and_scatter`` gradient) on the resnet34 U-Net
  (one 3x3 stride-2 pool) and TernausNet (five 2x2 pools);
* ``filter-vgg``, ``filter-vgg-256`` (JAX backend): the upstream-image filter gradient
  (:mod:`keras_dynunet.layers.upstream_filter_gradient`, where the no-copy ``Conv2D`` and the
  per-phase convolutions of ``Conv2DTranspose`` take it) against XLA's own filter gradient
  everywhere, on TernausNet.

Each (case, variant) runs in a fresh process, the two variants alternating ``--rounds`` times
(this machine drifts by ~10% over minutes, so alternation matters more than repeats); each
process takes the median of 5 ``train_on_batch`` calls after 2 warm-ups. Reports the median
over rounds. Run from the repository root:
``python benchmarks/bench_hand_gradients.py [--rounds N] [--cases batch-norm,depthwise]``.
Prints a table, writes ``benchmarks/results/hand_gradients.json`` atomically.
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

from bench_common import KERAS_RUNNER_SETTINGS, write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "hand_gradients.json"
# case: (runner, model, size, batch); runner "tensorflow-xla" = TensorFlow, jit_compile=True
CASES = {
    "batch-norm": ("torch", "resnet34", 256, 8),
    "batch-norm-jax": ("jax", "resnet34", 256, 8),
    "batch-norm-jax-512": ("jax", "resnet34", 512, 2),
    "batch-norm-tf": ("tensorflow", "resnet34", 256, 8),
    "batch-norm-tf-512": ("tensorflow", "resnet34", 512, 2),
    "batch-norm-tf-effnet": ("tensorflow", "efficientnet-b0", 256, 8),
    "batch-norm-tf-xla": ("tensorflow-xla", "efficientnet-b0", 256, 8),
    "depthwise": ("jax", "efficientnet-b0", 512, 2),
    "max-pool": ("jax", "resnet34", 512, 2),
    "max-pool-256": ("jax", "resnet34", 256, 8),
    "max-pool-vgg": ("jax", "ternaus-vgg11", 256, 8),
    "filter-vgg": ("jax", "ternaus-vgg11", 512, 2),
    "filter-vgg-256": ("jax", "ternaus-vgg11", 256, 8),
}


def _worker(case: str, variant: str) -> None:
    import keras
    import numpy as np

    import keras_dynunet as kd

    backend, model_name, size, batch = CASES[case]
    if variant == "autodiff":
        if case.startswith("batch-norm"):
            from keras_dynunet.layers.batch_norm import FastBatchNormalization

            FastBatchNormalization.call = keras.layers.BatchNormalization.call
        elif case == "depthwise":
            from keras_dynunet.layers import shifted_depthwise as sd

            sd._depthwise_with_gradients = lambda geometry: lambda x, k: sd._window_sum(
                sd.phased(x, geometry), k, geometry
            )
        elif case.startswith("filter"):
            from keras_dynunet.layers import no_copy, phase_transpose

            never = lambda *args: False  # noqa: E731
            no_copy.prefers_upstream_filter_gradient = never
            phase_transpose.prefers_upstream_filter_gradient = never
        else:
            from keras_dynunet.layers import no_copy

            no_copy.max_pool_by_shifts = keras.ops.max_pool
    if backend == "torch":
        import torch

        torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype="float32")
    y = (x[..., :1] > 0.5).astype("float32")
    if model_name.startswith("ternaus"):
        model = kd.build_model(model_name, input_shape=(size, size, 3))
    else:
        model = kd.build_unet(model_name, classes=1, input_shape=(size, size, 3))
    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  jit_compile=KERAS_RUNNER_SETTINGS[backend][1])
    for _ in range(2):
        model.train_on_batch(x, y)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    print(json.dumps({"train_img_s": batch / statistics.median(times)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternations per case")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return 0
    cases = args.cases.split(",")
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; choose from {sorted(CASES)}")
    rows = []
    print(f"{'case':<22}{'backend':<16}{'model':<17}{'size':>5}{'bs':>4}"
          f"{'autodiff':>10}{'hand':>10}{'ratio':>8}   (train img/s, median of rounds)")
    for case in cases:
        backend, model_name, size, batch = CASES[case]
        runs: dict[str, list[float]] = {"autodiff": [], "hand": []}
        for _ in range(args.rounds):
            for variant in runs:
                env = dict(os.environ, KERAS_BACKEND=KERAS_RUNNER_SETTINGS[backend][0],
                           JAX_PLATFORMS="cpu")
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", case, variant],
                    env=env, capture_output=True, text=True, check=True,
                )
                runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1])["train_img_s"])
        a, h = statistics.median(runs["autodiff"]), statistics.median(runs["hand"])
        print(f"{case:<22}{backend:<16}{model_name:<17}{size:>5}{batch:>4}"
              f"{a:>10.3f}{h:>10.3f}{h / a:>7.2f}x")
        rows.append({"case": case, "backend": backend, "model": model_name, "size": size,
                     "batch": batch, "runs": runs, "autodiff_img_s": a, "hand_img_s": h})
    write_json_atomic(args.json, {"rounds": args.rounds, "rows": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
