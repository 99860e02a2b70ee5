"""Benchmark the U-Net weight map and the DSB 2018 score.

* ``unet_weight_map`` on the real 512x512 DSB example (125 nuclei), with the default
  cutoff (``tol=1e-6``) and exact full-image distance transforms (``tol=None``);
* ``dsb_score`` on a 2048x2048 synthetic label image with >1000 nuclei against a copy
  shifted by 2 pixels.

Prints a table and writes ``benchmarks/results/weight_map.json`` (atomically).

Run from the repository root: ``python benchmarks/bench_weight_map.py [--repeat N]``
(needs ``pip install --no-deps stardist tifffile`` for the DSB example).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bench_common import write_json_atomic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from keras_dynunet.instances import (
    dsb_score,
    load_dsb_example,
    synthetic_labels,
    unet_weight_map,
)

RESULTS = Path(__file__).resolve().parent / "results" / "weight_map.json"


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Return (best, median) wall time in seconds over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (best is kept)")
    args = parser.parse_args()

    _, dsb_labels = load_dsb_example()
    n_dsb = len(np.unique(dsb_labels)) - 1
    fast = unet_weight_map(dsb_labels)
    exact = unet_weight_map(dsb_labels, tol=None)
    max_err = float(np.abs(fast.astype(np.float64) - exact).max())

    big = synthetic_labels((2048, 2048), n_nuclei=1500, radius=(6, 12), seed=0)
    n_big = len(np.unique(big)) - 1
    shifted = np.zeros_like(big)
    shifted[:, 2:] = big[:, :-2]
    score = dsb_score(big, shifted).score

    cases = [
        ("unet_weight_map tol=1e-6", "512x512 DSB", n_dsb, lambda: unet_weight_map(dsb_labels)),
        (
            "unet_weight_map tol=None",
            "512x512 DSB",
            n_dsb,
            lambda: unet_weight_map(dsb_labels, tol=None),
        ),
        ("dsb_score (2 px shift)", "2048x2048 synth", n_big, lambda: dsb_score(big, shifted)),
    ]
    rows = []
    print(f"{'case':<26} {'image':<16} {'instances':>9} {'best s':>9} {'median s':>9}")
    for name, image, n, fn in cases:
        best, median = best_of(fn, args.repeat)
        rows.append(
            {"case": name, "image": image, "instances": n, "best_s": best, "median_s": median}
        )
        print(f"{name:<26} {image:<16} {n:>9} {best:>9.4f} {median:>9.4f}")
    print(f"max |tol=1e-6 - exact| on DSB: {max_err:.2e}; shifted-copy DSB score: {score:.4f}")

    write_json_atomic(
        RESULTS,
        {
            "repeat": args.repeat,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "weight_map_max_abs_error_tol_1e-6": max_err,
            "shifted_copy_dsb_score": score,
            "results": rows,
        },
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
