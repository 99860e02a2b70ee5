"""Where JAX loses on CPU: XLA:CPU convolution gradients, layer by layer, and keras-dynunet's forms.

With ``jax.jit`` and the XLA:CPU flags ``import keras_dynunet`` sets (recorded), for

* the stride-1 3x3 convolutions of a resnet34 U-Net (encoder stages and decoder blocks,
  each with its count in the network) at 512x512 batch 2 and 256x256 batch 8: ``fwd``
  the convolution, ``dx`` its input gradient, ``dw`` its filter gradient by XLA's own
  transpose rule, ``ours`` keras-dynunet's ``upstream_filter_gradient`` (and whether
  ``prefers_upstream_filter_gradient`` picks it; both in
  :mod:`keras_dynunet.layers.upstream_filter_gradient`), in ms with cores busy (process
  CPU / wall), and the totals weighted by count;
* the depthwise convolutions of EfficientNet-B0 at 512x512 batch 2: the kernel gradient of
  the shifted-window depthwise form as one reduction per tap of the *sliced* window times
  the upstream gradient (``sliced``, the form keras-dynunet used before
  :func:`~keras_dynunet.layers.strided_windows.window_dot`) against ``window_dot``;
* TernausNet at 512x512 batch 2: XLA's filter gradient against ``upstream_filter_gradient``
  for its stride-1 3x3 convolutions (including the channel-widening encoder ones, where
  XLA's wins), and its 3x3 stride-2 transposed convolutions (forward + gradients) with
  the per-phase convolutions' filter gradients by XLA or by the upstream-image form
  (at 512x2 and 256x8).

Each ``ours`` result is checked against XLA's (largest difference relative to the largest
value). Run from the repository root: ``python benchmarks/bench_jax_conv_grads.py
[--repeat N]``. Prints tables, writes ``benchmarks/results/jax_conv_grads.json`` atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench_common import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "jax_conv_grads.json"


def _unet_shapes(size: int) -> list[tuple[int, int, int, int]]:
    """(map size, in channels, out channels, count): a resnet34 U-Net's stride-1 3x3 convs
    (decoder widths 256, 128, 64, 32, 16) at input ``size``."""
    return [
        (size // 4, 64, 64, 6),
        (size // 8, 128, 128, 7),
        (size // 16, 256, 256, 11),
        (size // 32, 512, 512, 5),
        (size // 16, 768, 256, 1),
        (size // 16, 256, 256, 1),
        (size // 8, 384, 128, 1),
        (size // 8, 128, 128, 1),
        (size // 4, 192, 64, 1),
        (size // 4, 64, 64, 1),
        (size // 2, 128, 32, 1),
        (size // 2, 32, 32, 1),
        (size, 32, 16, 1),
        (size, 16, 16, 1),
    ]


#: (batch, input size): the two benchmark settings of ``bench_throughput.py``
SETTINGS = ((2, 512), (8, 256))
# (batch, map size, channels, kernel, stride): EfficientNet-B0 depthwise layers at 512x512x2
DEPTHWISE = (
    (2, 256, 32, 3, 1),
    (2, 256, 96, 3, 2),
    (2, 128, 144, 3, 1),
    (2, 128, 144, 5, 2),
    (2, 64, 240, 5, 1),
    (2, 64, 240, 3, 2),
    (2, 32, 480, 3, 1),
    (2, 32, 672, 5, 1),
    (2, 32, 672, 5, 2),
    (2, 16, 1152, 5, 1),
    (2, 16, 1152, 3, 1),
)


def _timed(fn, args: tuple, repeat: int) -> tuple[float, float, object]:
    import jax

    out = jax.block_until_ready(fn(*args))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        jax.block_until_ready(fn(*args))
    wall = (time.perf_counter() - wall0) / repeat
    return wall, (time.process_time() - cpu0) / (wall * repeat), out


def _rel_err(got, want) -> float:
    import numpy as np

    got, want = np.asarray(got), np.asarray(want)
    return float(np.abs(got - want).max() / np.abs(want).max())


def conv_rows(repeat: int) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from keras_dynunet.layers.upstream_filter_gradient import (
        prefers_upstream_filter_gradient,
        upstream_filter_gradient,
    )

    def conv(x, w):
        return lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    fns = {
        "fwd": lambda x, w, dy: conv(x, w),
        "dx": lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0],
        "dw": lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0],
        "ours": lambda x, w, dy: upstream_filter_gradient(x, dy, (3, 3)),
    }
    rng = np.random.default_rng(0)
    rows = []
    for batch, size in SETTINGS:
        print(f"\nresnet34 U-Net stride-1 3x3 convolutions at {size}x{size}, batch {batch}")
        print(
            f"{'H,Cin,Cout x count':<22}"
            + "".join(f"{n:>14}" for n in fns)
            + "  picked  (ms, cores)"
        )
        totals = dict.fromkeys(fns, 0.0)
        for height, cin, cout, count in _unet_shapes(size):
            x = jnp.asarray(rng.random((batch, height, height, cin), dtype="float32"))
            w = jnp.asarray(rng.random((3, 3, cin, cout), dtype="float32"))
            dy = jnp.asarray(rng.random((batch, height, height, cout), dtype="float32"))
            cells, outs = {}, {}
            for name, fn in fns.items():
                wall, cores, outs[name] = _timed(jax.jit(fn), (x, w, dy), repeat)
                cells[name] = {"ms": wall * 1e3, "cores": cores}
                totals[name] += wall * 1e3 * count
            picked = prefers_upstream_filter_gradient(batch, cin, cout)
            rows.append(
                {
                    "batch": batch,
                    "input_size": size,
                    "shape": [batch, height, cin, cout],
                    "count": count,
                    "picked": picked,
                    "ours_rel_err": _rel_err(outs["ours"], outs["dw"]),
                    **cells,
                }
            )
            label = f"{height},{cin},{cout} x{count}"
            print(
                f"{label:<22}"
                + "".join(f"{c['ms']:>9.1f} {c['cores']:>4.2f}" for c in cells.values())
                + f"  {'yes' if picked else 'no'}",
                flush=True,
            )
        picked_total = sum(
            r["ours" if r["picked"] else "dw"]["ms"] * r["count"]
            for r in rows
            if (r["batch"], r["input_size"]) == (batch, size)
        )
        print(
            f"weighted totals, ms: dw (XLA) {totals['dw']:.0f}, ours {totals['ours']:.0f}, "
            f"as picked {picked_total:.0f}; fwd {totals['fwd']:.0f}, dx {totals['dx']:.0f}"
        )
        rows.append(
            {
                "batch": batch,
                "input_size": size,
                "totals_ms": {**totals, "as_picked": picked_total},
            }
        )
    return rows


def depthwise_rows(repeat: int) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from keras import ops

    from keras_dynunet.layers.strided_windows import WindowGeometry, phased, window, window_dot

    rng = np.random.default_rng(1)
    rows = []
    print(
        "\nEfficientNet-B0 depthwise kernel gradients at 512x512, batch 2 (one reduction per tap)"
    )
    print(f"{'N,H,C,k,s':<22}{'sliced':>14}{'window_dot':>14}  (ms, cores)")
    total = {"sliced": 0.0, "window_dot": 0.0}
    for batch, size, channels, kernel, stride in DEPTHWISE:
        padded_size = size + kernel - 1
        geometry = WindowGeometry.of((padded_size, padded_size), (kernel, kernel), (stride, stride))
        x = jnp.asarray(rng.random((batch, padded_size, padded_size, channels), "float32"))
        dy = jnp.asarray(rng.random((batch, *geometry.out, channels), "float32"))

        def sliced(x, dy, geometry=geometry):
            view = phased(x, geometry)
            return ops.stack(
                [
                    ops.sum(window(view, t, lf, geometry) * dy, (0, 1, 2))
                    for *_, t, lf in geometry.taps()
                ]
            )

        def dotted(x, dy, geometry=geometry):
            view = phased(x, geometry)
            return ops.stack(
                [window_dot(view, dy, t, lf, geometry) for *_, t, lf in geometry.taps()]
            )

        cells, outs = {}, {}
        for name, fn in (("sliced", sliced), ("window_dot", dotted)):
            wall, cores, outs[name] = _timed(jax.jit(fn), (x, dy), repeat)
            cells[name] = {"ms": wall * 1e3, "cores": cores}
            total[name] += wall * 1e3
        rows.append(
            {
                "depthwise": [batch, size, channels, kernel, stride],
                "rel_err": _rel_err(outs["window_dot"], outs["sliced"]),
                **cells,
            }
        )
        label = f"{batch},{size},{channels},{kernel},{stride}"
        print(
            f"{label:<22}" + "".join(f"{c['ms']:>9.1f} {c['cores']:>4.2f}" for c in cells.values()),
            flush=True,
        )
    print(f"total, ms: sliced {total['sliced']:.0f}, window_dot {total['window_dot']:.0f}")
    rows.append({"depthwise_totals_ms": total})
    return rows


#: TernausNet (VGG11) at 512x512, batch 2: stride-1 3x3 convolutions (map size, in, out)
#: and 3x3 stride-2 transposed convolutions (input map size, in, out).
TERNAUS_CONVS = (
    (512, 3, 64),
    (256, 64, 128),
    (128, 128, 256),
    (128, 256, 256),
    (64, 256, 512),
    (64, 512, 512),
    (32, 512, 512),
    (16, 512, 512),
    (32, 768, 512),
    (64, 768, 512),
    (128, 384, 256),
    (256, 192, 128),
    (512, 96, 32),
)
TERNAUS_TRANSPOSED = (  # input map size at 512x512, in, out
    (16, 512, 256),
    (32, 512, 256),
    (64, 512, 128),
    (128, 256, 64),
    (256, 128, 32),
)


def ternaus_rows(repeat: int) -> list[dict]:
    """TernausNet's filter gradients at 512x2: XLA's against the upstream-image form for its
    stride-1 convolutions (the upstream gradient behind a ReLU mask, as in training, so the
    layout transpose fuses that work too), and its transposed convolutions (forward and
    both gradients) with per-phase XLA filter gradients against the upstream-image form."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from keras_dynunet.layers.phase_transpose import conv_transpose_by_phases
    from keras_dynunet.layers.upstream_filter_gradient import (
        prefers_upstream_filter_gradient,
        upstream_filter_gradient,
    )

    def conv(x, w):
        return lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def xla_dw(x, w, dy, mask):
        return jax.vjp(lambda w: conv(x, w), w)[1](jnp.where(mask > 0, dy, 0.0))[0]

    def ours_dw(x, w, dy, mask):
        return upstream_filter_gradient(x, jnp.where(mask > 0, dy, 0.0), (3, 3))

    rng = np.random.default_rng(2)
    rows, totals = [], {"xla": 0.0, "ours": 0.0, "as_picked": 0.0}
    print("\nTernausNet stride-1 3x3 filter gradients at 512x512, batch 2 (dy behind a ReLU mask)")
    print(f"{'H,Cin,Cout':<22}{'xla':>14}{'ours':>14}  picked  (ms, cores)")
    for height, cin, cout in TERNAUS_CONVS:
        x = jnp.asarray(rng.random((2, height, height, cin), dtype="float32"))
        w = jnp.asarray(rng.random((3, 3, cin, cout), dtype="float32"))
        dy, mask = (
            jnp.asarray(rng.normal(size=(2, height, height, cout)).astype("float32"))
            for _ in range(2)
        )
        cells, outs = {}, {}
        for name, fn in (("xla", xla_dw), ("ours", ours_dw)):
            wall, cores, outs[name] = _timed(jax.jit(fn), (x, w, dy, mask), repeat)
            cells[name] = {"ms": wall * 1e3, "cores": cores}
            totals[name] += wall * 1e3
        picked = prefers_upstream_filter_gradient(2, cin, cout)
        totals["as_picked"] += cells["ours" if picked else "xla"]["ms"]
        rows.append(
            {
                "ternaus_conv": [2, height, cin, cout],
                "picked": picked,
                "rel_err": _rel_err(outs["ours"], outs["xla"]),
                **cells,
            }
        )
        print(
            f"{f'{height},{cin},{cout}':<22}"
            + "".join(f"{c['ms']:>9.1f} {c['cores']:>4.2f}" for c in cells.values())
            + f"  {'yes' if picked else 'no'}",
            flush=True,
        )
    print(
        f"total, ms: xla {totals['xla']:.0f}, ours {totals['ours']:.0f}, "
        f"as picked {totals['as_picked']:.0f}"
    )
    rows.append({"ternaus_conv_totals_ms": totals})

    for batch, size in SETTINGS:
        print(
            "\nTernausNet 3x3 stride-2 transposed convolutions, forward + both gradients, "
            f"{size}x{size}, batch {batch}"
        )
        print(f"{'H,Cin,Cout':<22}{'xla':>14}{'ours':>14}  (ms, cores)")
        transposed_totals = {"xla": 0.0, "ours": 0.0}
        for height_at_512, cin, cout in TERNAUS_TRANSPOSED:
            height = height_at_512 * size // 512
            x = jnp.asarray(rng.random((batch, height, height, cin), dtype="float32"))
            k = jnp.asarray(rng.random((3, 3, cout, cin), dtype="float32"))
            out_size = 2 * height + 1
            dy = jnp.asarray(rng.random((batch, out_size, out_size, cout), dtype="float32"))
            cells, outs = {}, {}
            for name, swap in (("xla", False), ("ours", True)):

                def step(x, k, dy, swap=swap):
                    def forward(x, k):
                        return conv_transpose_by_phases(
                            x, k, (2, 2), "valid", upstream_filter_gradient=swap
                        )

                    return jax.vjp(forward, x, k)[1](dy)

                wall, cores, outs[name] = _timed(jax.jit(step), (x, k, dy), repeat)
                cells[name] = {"ms": wall * 1e3, "cores": cores}
                transposed_totals[name] += wall * 1e3
            rows.append(
                {
                    "ternaus_transposed": [batch, height, cin, cout],
                    "rel_err": _rel_err(outs["ours"][1], outs["xla"][1]),
                    **cells,
                }
            )
            print(
                f"{f'{height},{cin},{cout}':<22}"
                + "".join(f"{c['ms']:>9.1f} {c['cores']:>4.2f}" for c in cells.values()),
                flush=True,
            )
        print(
            f"total, ms: xla {transposed_totals['xla']:.0f}, ours {transposed_totals['ours']:.0f}"
        )
        rows.append(
            {"batch": batch, "input_size": size, "ternaus_transposed_totals_ms": transposed_totals}
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per cell")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["KERAS_BACKEND"] = "jax"
    sys.path.insert(0, str(ROOT))
    import jax

    import keras_dynunet  # noqa: F401  (sets the XLA:CPU flags before JAX starts)

    rows = conv_rows(args.repeat) + depthwise_rows(args.repeat) + ternaus_rows(args.repeat)
    payload = {
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "repeat": args.repeat,
        "rows": rows,
    }
    write_json_atomic(args.json, payload)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
