"""2D transposed convolution as ``stride**2`` ordinary convolutions, one per output phase.

On the JAX backend Keras runs ``Conv2DTranspose`` as ``jax.lax.conv_transpose``, an
input-dilated ("base-dilated") convolution. XLA:CPU has no fast kernel for the
gradient of such a convolution with respect to its filter and falls back to a naive
loop: in a TernausNet (VGG11) U-Net training step at 256x256, batch 8, the four
decoder transposed convolutions' filter gradients took about 36 s of a 52 s step
(``jax.profiler`` trace, jaxlib 0.10.2, 2 cores).

A transposed convolution with stride ``s`` is ``s * s`` interleaved ordinary
convolutions: output pixel ``(s*q + rh, s*w + rw)`` only sees the kernel taps
``t = t0 (mod s)`` for its phase ``(rh, rw)``, so each phase is a stride-1 convolution
of the (padded) input with a sub-kernel ``flipped_kernel[t0h::s, t0w::s]``. The phases
are stacked and reshaped into the output. Same multiply-adds as the transposed
convolution, ordinary convolutions only (forward and both gradients): 7-16x faster
forward + gradients than ``keras.ops.conv_transpose`` on JAX for 3x3 stride-2 decoder
shapes (``benchmarks/bench_jax_layers.py``).
:class:`keras_dynunet.layers.no_copy.Conv2DTranspose` uses it on JAX.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras import ops

from keras_dynunet.layers.upstream_filter_gradient import (
    conv_with_upstream_filter_gradient,
    prefers_upstream_filter_gradient,
)


def transpose_padding(
    kernel: int, stride: int, padding: str, output_padding: int | None
) -> tuple[int, int]:
    """Left/right padding of the zero-inserted input in Keras' ``conv_transpose``
    (dilation rate 1).

    ``conv_transpose`` equals: insert ``stride - 1`` zeros between input pixels, pad by
    these amounts, convolve (stride 1) with the spatially flipped kernel.

    >>> transpose_padding(3, 2, "valid", None), transpose_padding(3, 2, "same", None)
    ((2, 2), (2, 1))
    """
    if padding == "valid":
        extra = max(kernel, stride) - kernel if output_padding is None else output_padding
        return kernel - 1, kernel - 1 + extra
    if output_padding is None:
        total = stride + kernel - 2
    else:
        total = kernel + kernel % 2 - 2 + output_padding
    left = min(total // 2 + total % 2, kernel - 1)
    return left, total - left


def _phase_plan(kernel: int, stride: int, left: int) -> list[tuple[int, int, int]]:
    """Per output phase ``r``: (first tap ``t0``, number of taps, input offset ``c``).
    Output ``s*q + r`` sums ``x[q + c + u] * flipped[t0 + s*u]`` over the taps ``u``."""
    plan = []
    for r in range(stride):
        t0 = (left - r) % stride
        taps = len(range(t0, kernel, stride))
        plan.append((t0, taps, (r + t0 - left) // stride))
    return plan


def interleave_phases(phases: Sequence[Sequence[Any]], height: int, width: int) -> Any:
    """Per-phase results ``phases[a][b]``, each ``(batch, qh, qw, c)`` and holding output
    pixels ``(sh*i + a, sw*j + b)``, interleaved into ``(batch, height, width, c)`` (cropped).

    >>> import numpy as np
    >>> grid = np.arange(6, dtype="float32").reshape(1, 2, 3, 1)
    >>> out = interleave_phases([[grid, grid + 10]], 2, 5)
    >>> ops.convert_to_numpy(out)[0, :, :, 0].tolist()
    [[0.0, 10.0, 1.0, 11.0, 2.0], [3.0, 13.0, 4.0, 14.0, 5.0]]
    """
    first = phases[0][0]
    if len(phases) == 1 and len(phases[0]) == 1:
        full = first
    else:
        _, qh, qw, channels = first.shape
        rows = [ops.stack(row, axis=3) for row in phases]  # (batch, qh, qw, sw, c)
        stacked = ops.stack(rows, axis=2)  # (batch, qh, sh, qw, sw, c)
        full = ops.reshape(stacked, (-1, qh * len(phases), qw * len(phases[0]), channels))
    return full[:, :height, :width, :]


def _window(x: Any, axis: int, start: int, length: int) -> Any:
    """``x[start : start + length]`` along ``axis``, zeros where that leaves ``x``."""
    size = x.shape[axis]
    before, after = max(-start, 0), max(start + length - size, 0)
    if before or after:
        pads = [(0, 0)] * 4
        pads[axis] = (before, after)
        x = ops.pad(x, pads)
        start += before
    index = [slice(None)] * 4
    index[axis] = slice(start, start + length)
    return x[tuple(index)]


def conv_transpose_by_phases(
    inputs: Any,
    kernel: Any,
    strides: Sequence[int] = (1, 1),
    padding: str = "valid",
    output_padding: Sequence[int] | None = None,
    *,
    upstream_filter_gradient: bool = False,
) -> Any:
    """``keras.ops.conv_transpose`` on channels-last 2D inputs, with ordinary convolutions.

    Args:
        inputs: ``(batch, height, width, in_channels)``, static height and width.
        kernel: ``(kh, kw, out_channels, in_channels)`` (``Conv2DTranspose``'s layout).
        strides: ``(sh, sw)``.
        padding: ``"valid"`` or ``"same"``.
        output_padding: ``(ph, pw)`` or ``None``, as in ``keras.ops.conv_transpose``.
        upstream_filter_gradient: Give the per-phase convolutions
            :func:`~keras_dynunet.layers.upstream_filter_gradient.upstream_filter_gradient`'s
            kernel gradient where
            :func:`~keras_dynunet.layers.upstream_filter_gradient.prefers_upstream_filter_gradient`
            says so (faster on XLA:CPU, where the phases have fewer output than input channels).

    Returns:
        ``(batch, out_h, out_w, out_channels)``, the same as ``keras.ops.conv_transpose``
        (dilation rate 1).

    Raises:
        ValueError: unknown padding, or height/width not known when called.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 6, 4)).astype("float32")
    >>> k = np.random.default_rng(1).normal(size=(3, 3, 2, 4)).astype("float32")
    >>> a = conv_transpose_by_phases(x, k, strides=(2, 2))
    >>> b = ops.conv_transpose(x, k, strides=2)
    >>> tuple(a.shape), bool(np.allclose(a, b, atol=1e-4))
    ((2, 11, 13, 2), True)
    """
    padding = padding.lower()
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
    if inputs.shape[1] is None or inputs.shape[2] is None:
        raise ValueError(
            "conv_transpose_by_phases needs a static height and width; "
            f"got input shape {tuple(inputs.shape)}. Use keras.ops.conv_transpose instead."
        )
    inputs, kernel = ops.convert_to_tensor(inputs), ops.convert_to_tensor(kernel)
    kh, kw, out_channels, in_channels = kernel.shape
    swap_filter_gradient = upstream_filter_gradient and prefers_upstream_filter_gradient(
        inputs.shape[0], in_channels, out_channels
    )
    sizes, kernels, steps = inputs.shape[1:3], (kh, kw), tuple(strides)
    paddings = (None, None) if output_padding is None else tuple(output_padding)
    plans, outs, counts = [], [], []
    for size, k, s, p in zip(sizes, kernels, steps, paddings, strict=True):
        left, right = transpose_padding(k, s, padding, p)
        out = (size - 1) * s + 1 + left + right - k + 1
        plans.append(_phase_plan(k, s, left))
        outs.append(out)
        counts.append(-(-out // s))
    # Flipped kernel in conv layout (kh, kw, in, out).
    flipped = ops.transpose(ops.flip(ops.flip(kernel, 0), 1), (0, 1, 3, 2))
    batch = ops.shape(inputs)[0]
    rows = []
    for t0h, taps_h, ch in plans[0]:
        row = []
        for t0w, taps_w, cw in plans[1]:
            if taps_h == 0 or taps_w == 0:  # kernel smaller than the stride: no taps
                phase = ops.zeros((batch, counts[0], counts[1], out_channels), inputs.dtype)
            else:
                x = _window(inputs, 1, ch, counts[0] + taps_h - 1)
                x = _window(x, 2, cw, counts[1] + taps_w - 1)
                sub = flipped[t0h :: steps[0], t0w :: steps[1]]
                if swap_filter_gradient:
                    phase = conv_with_upstream_filter_gradient(x, sub, padding="valid")
                else:
                    phase = ops.conv(x, sub, strides=1, padding="valid")
            row.append(phase)
        rows.append(row)
    return interleave_phases(rows, outs[0], outs[1])
