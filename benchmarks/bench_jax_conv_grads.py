"""Where JAX loses on CPU: XLA:CPU convolution gradients, layer by layer.

The JAX backend trains the resnet34 U-Net at 0.80x segmentation_models_pytorch
(``benchmarks/README.md``); ``profile_backends.py jax`` puts a quarter of the step in
filter-gradient convolutions. This script times, for the 3x3 convolution shapes of a
resnet34 U-Net at 256x256 batch 8 (plus the 7x7 stem), with ``jax.jit``:

* ``fwd``: the convolution, ``dx``: its input gradient, ``dw``: its filter gradient
  (XLA's own transpose rules), each with GFLOP/s and cores busy (process CPU / wall);
* ``dw/2``, ``dw/4``: the filter gradient computed as the sum over 2 or 4 batch slices
  (the same maths: dw is a sum over examples), a formulation XLA schedules differently.

Run from the repository root: ``python benchmarks/bench_jax_conv_grads.py [--repeat N]``.
Prints a table, writes ``benchmarks/results/jax_conv_grads.json`` atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench_common import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "jax_conv_grads.json"
# (batch, size, in channels, out channels, kernel, stride): resnet34 U-Net at 256x256x8
SHAPES = (
    (8, 256, 3, 64, 7, 2),
    (8, 64, 64, 64, 3, 1),
    (8, 32, 128, 128, 3, 1),
    (8, 16, 256, 256, 3, 1),
    (8, 8, 512, 512, 3, 1),
    (8, 128, 64, 128, 3, 2),
    (8, 128, 96, 32, 3, 1),
    (8, 256, 32, 16, 3, 1),
)


def _timed(fn, args: tuple, repeat: int) -> tuple[float, float, object]:
    import jax

    out = jax.block_until_ready(fn(*args))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        jax.block_until_ready(fn(*args))
    wall = (time.perf_counter() - wall0) / repeat
    return wall, (time.process_time() - cpu0) / (wall * repeat), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per cell")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    def conv(x, w, stride):
        return lax.conv_general_dilated(
            x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def dx(x, w, dy, stride):
        return jax.vjp(lambda x: conv(x, w, stride), x)[1](dy)[0]

    def dw(x, w, dy, stride):
        return jax.vjp(lambda w: conv(x, w, stride), w)[1](dy)[0]

    def dw_sliced(parts):
        def run(x, w, dy, stride):
            n = x.shape[0] // parts
            return sum(
                dw(x[i * n : (i + 1) * n], w, dy[i * n : (i + 1) * n], stride)
                for i in range(parts)
            )

        return run

    rng = np.random.default_rng(0)
    rows = []
    header = (
        f"{'N,H,Cin,Cout,k,s':<22}{'GFLOP':>6}"
        + "".join(f"{name:>15}" for name in ("fwd", "dx", "dw", "dw/2", "dw/4"))
        + "   (ms, cores busy)"
    )
    print(header)
    for batch, size, cin, cout, kernel, stride in SHAPES:
        x = jnp.asarray(rng.random((batch, size, size, cin), dtype="float32"))
        w = jnp.asarray(rng.random((kernel, kernel, cin, cout), dtype="float32"))
        dy = jnp.asarray(rng.random((batch, size // stride, size // stride, cout), "float32"))
        flop = 2 * batch * (size // stride) ** 2 * cout * cin * kernel**2
        cells = {}
        fns = {
            "fwd": (lambda x, w, dy, s: conv(x, w, s)),
            "dx": dx,
            "dw": dw,
            "dw/2": dw_sliced(2),
            "dw/4": dw_sliced(4),
        }
        reference = None
        for name, fn in fns.items():
            jitted = jax.jit(fn, static_argnums=3)
            wall, cores, out = _timed(jitted, (x, w, dy, stride), args.repeat)
            cell = {"ms": wall * 1e3, "cores": cores, "gflop_s": flop / wall / 1e9}
            if name == "dw":
                reference = np.asarray(out)
            elif name.startswith("dw/"):
                got = np.asarray(out)
                cell["rel_err"] = float(np.abs(got - reference).max() / np.abs(reference).max())
            cells[name] = cell
        rows.append(
            {
                "shape": [batch, size, cin, cout, kernel, stride],
                "gflop": flop / 1e9,
                **cells,
            }
        )
        label = f"{batch},{size},{cin},{cout},{kernel},{stride}"
        print(
            f"{label:<22}{flop / 1e9:>6.2f}"
            + "".join(f"{c['ms']:>9.1f} {c['cores']:>4.2f}" for c in cells.values()),
            flush=True,
        )
    payload = {"jax": jax.__version__, "repeat": args.repeat, "rows": rows}
    write_json_atomic(args.json, payload)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
