"""JAX on CPU: Keras' depthwise / transposed convolution / max-pool ops against keras-dynunet's.

Times, with ``jax.jit`` on the JAX backend, for EfficientNet-B0's depthwise shapes and
TernausNet-decoder-like transposed-convolution shapes at 256x256, batch 8, and the max
pools of the resnet34 U-Net (3x3 stride 2 on the zero-padded stem output) and of
TernausNet (2x2 stride 2) at 256x256 batch 8 and 512x512 batch 2:

* ``keras``: ``keras.ops.depthwise_conv`` / ``keras.ops.conv_transpose`` /
  ``keras.ops.max_pool`` (what the plain Keras layers run);
* ``ours``: :func:`keras_dynunet.layers.shifted_depthwise.depthwise_conv_by_shifts` /
  :func:`keras_dynunet.layers.phase_transpose.conv_transpose_by_phases` /
  :func:`keras_dynunet.layers.shifted_max_pool.max_pool_by_shifts` (what the no-copy
  layers run on JAX);

each forward only (``fwd``) and forward plus both gradients (``grad``), in ms, with the
largest difference between the two outputs relative to the output's largest value.
``import keras_dynunet`` applies its XLA:CPU tuning (``KERAS_DYNUNET_XLA_CPU_TUNING=0``
to compare without it); the flags used are recorded.

Run from the repository root: ``python benchmarks/bench_jax_layers.py [--repeat N]``.
Prints a table, writes ``benchmarks/results/jax_layers.json`` atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench_common import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results" / "jax_layers.json"
# (batch, size, channels, kernel, stride): EfficientNet-B0 depthwise layers at 256x256x8
DEPTHWISE = (
    (8, 128, 96, 3, 2),
    (8, 64, 144, 5, 1),
    (8, 64, 144, 5, 2),
    (8, 32, 240, 3, 2),
    (8, 16, 480, 3, 1),
    (8, 16, 672, 5, 2),
    (8, 8, 1152, 3, 1),
)
# (batch, size, in channels, out channels): 3x3 stride-2 "valid" transposed convolutions
TRANSPOSE = (
    (8, 8, 512, 256),
    (8, 32, 512, 128),
    (8, 64, 256, 64),
    (8, 128, 128, 32),
)

# (batch, size, channels, pool, stride): "valid" max pools
MAX_POOL = (
    (8, 130, 64, 3, 2),
    (2, 258, 64, 3, 2),
    (8, 256, 64, 2, 2),
    (2, 512, 64, 2, 2),
    (8, 64, 256, 2, 2),
)


def _best_ms(fn, args: tuple, repeat: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _compare(keras_op, our_op, x, k, repeat: int) -> dict:
    """fwd / fwd+grad ms of both ops and their largest relative output difference."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    cells = {}
    outputs = {}
    for name, op in (("keras", keras_op), ("ours", our_op)):
        fwd = jax.jit(op)
        grad = jax.jit(jax.grad(lambda x, k, op=op: jnp.sum(op(x, k) ** 2), argnums=(0, 1)))
        cells[f"{name}_fwd_ms"] = _best_ms(fwd, (x, k), repeat)
        cells[f"{name}_grad_ms"] = _best_ms(grad, (x, k), repeat)
        outputs[name] = np.asarray(fwd(x, k))
    scale = np.abs(outputs["keras"]).max()
    cells["rel_diff"] = float(np.abs(outputs["keras"] - outputs["ours"]).max() / scale)
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per cell (best)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if os.environ.get("KERAS_BACKEND") != "jax":  # re-run with the JAX backend
        env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
        return os.spawnve(os.P_WAIT, sys.executable, [sys.executable, *sys.argv], env)
    import jax
    import numpy as np
    from keras import ops

    from keras_dynunet.layers.phase_transpose import conv_transpose_by_phases
    from keras_dynunet.layers.shifted_depthwise import depthwise_conv_by_shifts
    from keras_dynunet.layers.shifted_max_pool import max_pool_by_shifts

    rng = np.random.default_rng(0)
    rows = []
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(
        f"{'op':<10}{'N,H,C(in,out),k,s':<22}"
        + "".join(
            f"{c:>12}" for c in ("keras fwd", "ours fwd", "keras grad", "ours grad", "rel diff")
        )
    )
    for batch, size, channels, kernel, stride in DEPTHWISE:
        x = rng.random((batch, size, size, channels), dtype="float32")
        k = rng.random((kernel, kernel, channels, 1), dtype="float32")
        cells = _compare(
            lambda x, k, s=stride: ops.depthwise_conv(x, k, strides=s, padding="same"),
            lambda x, k, s=stride: depthwise_conv_by_shifts(x, k, (s, s), "same"),
            x,
            k,
            args.repeat,
        )
        rows.append({"op": "depthwise", "shape": [batch, size, channels, kernel, stride], **cells})
    for batch, size, cin, cout in TRANSPOSE:
        x = rng.random((batch, size, size, cin), dtype="float32")
        k = rng.random((3, 3, cout, cin), dtype="float32") / (3 * cin**0.5)
        cells = _compare(
            lambda x, k: ops.conv_transpose(x, k, strides=2, padding="valid"),
            lambda x, k: conv_transpose_by_phases(x, k, (2, 2), "valid"),
            x,
            k,
            args.repeat,
        )
        rows.append({"op": "transpose", "shape": [batch, size, cin, cout, 3, 2], **cells})
    for batch, size, channels, pool, stride in MAX_POOL:
        x = rng.random((batch, size, size, channels), dtype="float32")
        scale = np.float32(1.5)  # a second argument to differentiate, like the kernels above
        cells = _compare(
            lambda x, k, p=pool, s=stride: ops.max_pool(x, p, s, "valid") * k,
            lambda x, k, p=pool, s=stride: max_pool_by_shifts(x, (p, p), (s, s), "valid") * k,
            x,
            scale,
            args.repeat,
        )
        rows.append({"op": "max_pool", "shape": [batch, size, channels, pool, stride], **cells})
    for row in rows:
        label = ",".join(str(v) for v in row["shape"])
        print(
            f"{row['op']:<10}{label:<22}"
            + "".join(
                f"{row[c]:>12.1f}"
                for c in ("keras_fwd_ms", "ours_fwd_ms", "keras_grad_ms", "ours_grad_ms")
            )
            + f"{row['rel_diff']:>12.1e}"
        )
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
