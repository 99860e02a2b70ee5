"""Depthwise 2D convolution as a sum of shifted, per-channel scaled windows.

XLA:CPU (the JAX backend on CPU) lowers a depthwise convolution, and above all its
gradients, to a slow generic convolution loop: for EfficientNet-B0's depthwise shapes
at 256x256, batch 8, the forward pass took 14-259 ms and forward + gradients 93-906 ms
per layer (jaxlib 0.10.2, 2 cores). Written as ``kh * kw`` strided windows of the
padded input, each multiplied by one row of the kernel and summed, the same function
is elementwise work that XLA fuses: 5.6-64x faster forward and 3.5-46x faster with
gradients on the same shapes (``benchmarks/bench_jax_layers.py``).

:class:`keras_dynunet.layers.no_copy.DepthwiseConv2D` uses this on the JAX backend;
the result equals ``keras.ops.depthwise_conv`` to float32 rounding (tested on every
padding, stride, dilation and depth multiplier).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras import ops


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's ``"same"`` padding (extra row or column at the end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def depthwise_conv_by_shifts(
    inputs: Any,
    kernel: Any,
    strides: Sequence[int] = (1, 1),
    padding: str = "valid",
    dilation_rate: Sequence[int] = (1, 1),
) -> Any:
    """``keras.ops.depthwise_conv`` on channels-last inputs, as a sum of shifted windows.

    Args:
        inputs: ``(batch, height, width, channels)`` tensor with static height and width.
        kernel: ``(kh, kw, channels, depth_multiplier)`` depthwise kernel.
        strides: ``(sh, sw)``.
        padding: ``"valid"`` or ``"same"`` (TensorFlow's convention).
        dilation_rate: ``(dh, dw)``.

    Returns:
        ``(batch, out_h, out_w, channels * depth_multiplier)``, output channel
        ``c * depth_multiplier + m`` as in ``keras.ops.depthwise_conv``.

    Raises:
        ValueError: unknown padding, or height/width not known when called.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(2, 9, 8, 3)).astype("float32")
    >>> k = np.random.default_rng(1).normal(size=(3, 3, 3, 2)).astype("float32")
    >>> a = depthwise_conv_by_shifts(x, k, strides=(2, 2), padding="same")
    >>> b = ops.depthwise_conv(x, k, strides=2, padding="same")
    >>> tuple(a.shape), bool(np.allclose(a, b, atol=1e-5))
    ((2, 5, 4, 6), True)
    """
    padding = padding.lower()
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
    height, width = inputs.shape[1], inputs.shape[2]
    if height is None or width is None:
        raise ValueError(
            "depthwise_conv_by_shifts needs a static height and width; "
            f"got input shape {tuple(inputs.shape)}. Use keras.ops.depthwise_conv instead."
        )
    inputs, kernel = ops.convert_to_tensor(inputs), ops.convert_to_tensor(kernel)
    kh, kw, channels, multiplier = kernel.shape
    (sh, sw), (dh, dw) = tuple(strides), tuple(dilation_rate)
    if multiplier != 1:
        inputs = ops.repeat(inputs, multiplier, axis=-1)
    kernel = ops.reshape(kernel, (kh, kw, channels * multiplier))
    if padding == "same":
        top, bottom = _same_padding(height, kh, sh, dh)
        left, right = _same_padding(width, kw, sw, dw)
        if top or bottom or left or right:
            inputs = ops.pad(inputs, ((0, 0), (top, bottom), (left, right), (0, 0)))
        height, width = height + top + bottom, width + left + right
    out_h = (height - (kh - 1) * dh - 1) // sh + 1
    out_w = (width - (kw - 1) * dw - 1) // sw + 1
    outputs = None
    for i in range(kh):
        for j in range(kw):
            window = inputs[
                :,
                i * dh : i * dh + (out_h - 1) * sh + 1 : sh,
                j * dw : j * dw + (out_w - 1) * sw + 1 : sw,
                :,
            ]
            term = ops.multiply(window, kernel[i, j])
            outputs = term if outputs is None else ops.add(outputs, term)
    return outputs
