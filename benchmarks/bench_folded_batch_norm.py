"""Batch norm folded into the convolutions at inference, or not: U-Net inference images/s.

:class:`keras_dynunet.DynUNet` folds each convolution's batch norm into the convolution
when it predicts (``keras_dynunet/folded_batch_norm.py``). This A/B builds one U-Net per
(backend, model, size) in a fresh process, copies its weights (with random batch-norm
statistics) into a twin with ``fold_batch_norm = False``, checks both give the same
output, then times ``predict_on_batch`` of the two models alternately (``--rounds``
pairs after 2 warm-ups each; alternation inside one process cancels most of this
machine's drift). Reports the median per variant and the ratio.

Run from the repository root:
``python benchmarks/bench_folded_batch_norm.py [--rounds 7] [--backends tensorflow,jax,torch]
[--cases resnet34:256:8,efficientnet-b0:512:2] [--threads 2]``.
Prints a table, writes ``benchmarks/results/folded_batch_norm.json`` atomically.
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

RESULTS = Path(__file__).resolve().parent / "results" / "folded_batch_norm.json"
CASES = "resnet34:256:8,resnet34:512:2,efficientnet-b0:256:8,efficientnet-b0:512:2"


def _worker(model_name: str, size: int, batch: int, rounds: int, threads: int) -> dict:
    import keras
    import numpy as np

    import keras_dynunet as kd

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
    rng = np.random.default_rng(0)
    folded = kd.build_unet(model_name, classes=1, input_shape=(size, size, 3))
    for layer in folded._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
    plain = kd.build_unet(model_name, classes=1, input_shape=(size, size, 3))
    plain.set_weights(folded.get_weights())
    plain.fold_batch_norm = False
    x = rng.random((batch, size, size, 3), dtype="float32")
    difference = float(np.abs(folded.predict_on_batch(x) - plain.predict_on_batch(x)).max())
    times: dict[str, list[float]] = {"layers": [], "folded": []}
    models = {"layers": plain, "folded": folded}
    for variant in times:
        models[variant].predict_on_batch(x)
    for _ in range(rounds):
        for variant, model in models.items():
            start = time.perf_counter()
            model.predict_on_batch(x)
            times[variant].append(time.perf_counter() - start)
    result = {v: batch / statistics.median(t) for v, t in times.items()}
    return {"img_s": result, "times_s": times, "max_abs_difference": difference}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed calls per variant")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--cases", default=CASES, help="model:size:batch, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        name, size, batch = args.worker
        result = _worker(name, int(size), int(batch), args.rounds, args.threads)
        print(json.dumps(result))
        return 0
    rows = []
    print(
        f"{'backend':<11}{'model':<17}{'size':>5}{'bs':>4}{'layers':>9}{'folded':>9}"
        f"{'ratio':>8}{'max diff':>10}   (inference img/s, median)"
    )
    for backend in args.backends.split(","):
        for case in args.cases.split(","):
            name, size, batch = case.split(":")
            env = dict(
                os.environ,
                KERAS_BACKEND=backend,
                JAX_PLATFORMS="cpu",
                OMP_NUM_THREADS=str(args.threads),
                TF_NUM_INTRAOP_THREADS=str(args.threads),
            )
            command = [
                sys.executable,
                __file__,
                "--worker",
                name,
                size,
                batch,
                "--rounds",
                str(args.rounds),
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(command, env=env, capture_output=True, text=True)
            if out.returncode:
                print(f"{backend:<11}{name:<17} failed:\n{out.stderr[-2000:]}")
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
            plain, folded = result["img_s"]["layers"], result["img_s"]["folded"]
            print(
                f"{backend:<11}{name:<17}{size:>5}{batch:>4}{plain:>9.2f}{folded:>9.2f}"
                f"{folded / plain:>7.2f}x{result['max_abs_difference']:>10.1e}"
            )
            rows.append(
                {
                    "backend": backend,
                    "model": name,
                    "size": int(size),
                    "batch": int(batch),
                    **result,
                }
            )
    write_json_atomic(args.json, {"rounds": args.rounds, "threads": args.threads, "rows": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
