"""Benchmark the memory and time of ``predict_tiled`` on large images.

A resnet18 U-Net (1 class, sigmoid, random weights) predicts a random uint8 RGB
image with tile 256 / overlap 32 (Gaussian blend, batch 4). Each image size runs in
a fresh subprocess, which builds the model, warms up the compiled predict
function, creates the image and then measures one ``predict_tiled`` call:

* ``numpy peak``: ``tracemalloc`` peak during the call (numpy reports its buffers
  to tracemalloc; backend tensors allocated in C++ are not seen). The expected
  part is the float32 output plus weight maps, ``H * W * (classes + 1) * 4``
  bytes; the rest (``tile overhead``) should not grow with the image.
* ``maxrss delta``: growth of the process's peak resident set
  (``resource.getrusage``) during the call: everything, backend included.
* ``seconds``: wall time of the call (tracemalloc is on).

With ``--whole``, a reference row runs the same model on the whole smallest image
in one ``predict_on_batch`` call (what tiling avoids); its time includes tracing
the model for the new input shape, which cannot be warmed up without also
raising the peak resident set before the measurement.

Prints a table and writes ``benchmarks/results/tiled_memory.json`` (atomically).

Run from the repository root: ``python benchmarks/bench_tiled_memory.py [--quick]``
(``KERAS_BACKEND`` picks the backend, TensorFlow by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench_common import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "tiled_memory.json"
FULL_SIZES = (1024, 4096)
QUICK_SIZES = (512, 1024)
MODES = ("tiled", "whole")
MiB = 2**20


def maxrss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (Linux: KiB units)."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def worker(size: int, tile: int, overlap: int, batch_size: int, mode: str) -> dict:
    """Measure one case in this (fresh) process; returns the row as a dict."""
    import gc
    import time
    import tracemalloc

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))  # run from a source checkout
    import keras
    import numpy as np

    import keras_dynunet as kd
    from keras_dynunet.inference import predict_tiled, tile_starts

    keras.utils.set_random_seed(0)
    classes = 1
    model = kd.build_unet("resnet18", classes=classes, activation="sigmoid")
    n_side = len(tile_starts(size, tile, overlap))
    if mode == "tiled":
        warm = np.zeros((min(batch_size, n_side**2), tile, tile, 3), "float32")
    else:
        warm = np.zeros((1, 64, 64, 3), "float32")
    model.predict_on_batch(warm)  # compile outside the measurement
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    del warm
    gc.collect()

    rss_before = maxrss_bytes()
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    if mode == "tiled":
        pred = predict_tiled(model, image, tile=tile, overlap=overlap, batch_size=batch_size)
    else:
        pred = model.predict_on_batch(image[None].astype("float32"))[0]
    seconds = time.perf_counter() - start
    _, numpy_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = maxrss_bytes()
    assert pred.shape == (size, size, classes) and np.isfinite(pred).all()

    accumulators = size * size * (classes + 1) * 4 if mode == "tiled" else 0
    return {
        "mode": mode,
        "size": size,
        "tiles": n_side**2 if mode == "tiled" else 1,
        "seconds": seconds,
        "numpy_peak_mib": numpy_peak / MiB,
        "accumulators_mib": accumulators / MiB,
        "tile_overhead_mib": (numpy_peak - accumulators) / MiB,
        "maxrss_before_mib": rss_before / MiB,
        "maxrss_delta_mib": (rss_after - rss_before) / MiB,
    }


def run_case(size: int, args: argparse.Namespace, mode: str) -> dict:
    """Run :func:`worker` in a fresh interpreter and parse its JSON line."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(size),
        "--mode",
        mode,
        "--tile",
        str(args.tile),
        "--overlap",
        str(args.overlap),
        "--batch-size",
        str(args.batch_size),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"worker for size {size} ({mode}) failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}")
    parser.add_argument("--sizes", type=int, nargs="+", help="override the image sizes")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--whole", action="store_true", help="add a whole-image reference row")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--mode", default="tiled", choices=("tiled", "whole"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.worker is not None:
        row = worker(args.worker, args.tile, args.overlap, args.batch_size, args.mode)
        print(json.dumps(row))
        return

    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    cases = [(size, "tiled") for size in sizes]
    if args.whole:
        cases.append((min(sizes), "whole"))
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    header = (
        f"{'mode':<6} {'image':>11} {'tiles':>6} {'seconds':>8} {'tiles/s':>8} "
        f"{'numpy peak':>11} {'accum.':>8} {'tile ovh.':>10} {'maxrss delta':>13}"
    )
    print(f"backend {backend}, resnet18 U-Net, tile {args.tile}, overlap {args.overlap}")
    print(header)
    rows = []
    for size, mode in cases:
        row = run_case(size, args, mode)
        rows.append(row)
        print(
            f"{mode:<6} {f'{size}x{size}':>11} {row['tiles']:>6} {row['seconds']:>8.2f} "
            f"{row['tiles'] / row['seconds']:>8.2f} {row['numpy_peak_mib']:>8.1f} MiB "
            f"{row['accumulators_mib']:>4.0f} MiB {row['tile_overhead_mib']:>6.1f} MiB "
            f"{row['maxrss_delta_mib']:>9.1f} MiB",
            flush=True,
        )

    write_json_atomic(
        RESULTS,
        {
            "backend": backend,
            "keras": metadata.version("keras"),
            "python": platform.python_version(),
            "numpy": metadata.version("numpy"),
            "cpu_count": os.cpu_count(),
            "model": "resnet18 U-Net, classes=1, sigmoid, random weights",
            "tile": args.tile,
            "overlap": args.overlap,
            "blend": "gaussian",
            "batch_size": args.batch_size,
            "quick": bool(args.quick),
            "results": rows,
        },
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
