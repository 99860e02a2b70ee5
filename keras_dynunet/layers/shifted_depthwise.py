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
from typing import Any, NamedTuple

from keras import ops

from keras_dynunet.layers.phase_transpose import interleave_phases


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
    geometry = _Geometry((height, width), (out_h, out_w), (sh, sw), (dh, dw), (kh, kw))
    return _depthwise_with_gradients(geometry)(inputs, kernel)


class _Geometry(NamedTuple):
    padded: tuple[int, int]
    out: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    kernel: tuple[int, int]

    def taps(self) -> list[tuple[int, int, int, int]]:
        """``(i, j, top, left)``: kernel row/column and the window's corner in the input."""
        (kh, kw), (dh, dw) = self.kernel, self.dilation
        return [(i, j, i * dh, j * dw) for i in range(kh) for j in range(kw)]

    def phase_grid(self) -> tuple[int, int]:
        """Rows and columns of one stride phase (the padded input split ``s x s`` ways)."""
        (height, width), (sh, sw) = self.padded, self.strides
        return -(-height // sh), -(-width // sw)


def _phases(x: Any, geometry: _Geometry) -> Any:
    """``(n, H, W, c)`` -> ``(n, H/sh, sh, W/sw, sw, c)`` (zero rows/columns added at the end),
    so a strided window is a plain slice at one phase."""
    (sh, sw), (hc, wc) = geometry.strides, geometry.phase_grid()
    height, width = geometry.padded
    if hc * sh != height or wc * sw != width:
        x = ops.pad(x, ((0, 0), (0, hc * sh - height), (0, wc * sw - width), (0, 0)))
    return ops.reshape(x, (-1, hc, sh, wc, sw, x.shape[-1]))


def _window(phased: Any, top: int, left: int, geometry: _Geometry) -> Any:
    """Input rows ``top + sh*u`` and columns ``left + sw*v`` for every output ``(u, v)``."""
    (sh, sw), (out_h, out_w) = geometry.strides, geometry.out
    return phased[
        :, top // sh : top // sh + out_h, top % sh, left // sw : left // sw + out_w, left % sw, :
    ]


def _window_sum(phased: Any, kernel: Any, geometry: _Geometry) -> Any:
    """The depthwise convolution of the :func:`_phases` view of the padded input."""
    outputs = None
    for i, j, top, left in geometry.taps():
        term = ops.multiply(_window(phased, top, left, geometry), kernel[i, j])
        outputs = term if outputs is None else ops.add(outputs, term)
    return outputs


def _window_sum_transposed(upstream: Any, kernel: Any, geometry: _Geometry) -> Any:
    """The input gradient of :func:`_window_sum`: each output's upstream value, scaled by
    the kernel, added back at every input position its windows read.

    Computed per stride phase as a sum of shifted slices of the zero-padded upstream
    (elementwise work XLA fuses), then the phases are interleaved.
    """
    (sh, sw), (out_h, out_w) = geometry.strides, geometry.out
    (hc, wc), (height, width) = geometry.phase_grid(), geometry.padded
    (kh, kw), (dh, dw) = geometry.kernel, geometry.dilation
    top_pad, left_pad = (kh - 1) * dh // sh, (kw - 1) * dw // sw
    upstream = ops.pad(
        upstream,
        ((0, 0), (top_pad, max(hc - out_h, 0)), (left_pad, max(wc - out_w, 0)), (0, 0)),
    )
    sums: dict[tuple[int, int], Any] = {}
    for i, j, top, left in geometry.taps():
        row, col = top_pad - top // sh, left_pad - left // sw
        term = ops.multiply(upstream[:, row : row + hc, col : col + wc, :], kernel[i, j])
        key = (top % sh, left % sw)
        sums[key] = term if key not in sums else ops.add(sums[key], term)
    some = next(iter(sums.values()))  # a phase no tap lands on (kernel < stride) is zero
    phases = [
        [sums[(a, b)] if (a, b) in sums else ops.zeros_like(some) for b in range(sw)]
        for a in range(sh)
    ]
    return interleave_phases(phases, height, width)


def _depthwise_with_gradients(geometry: _Geometry) -> Any:
    """:func:`_window_sum` with hand-written gradients.

    Autodiff turns the input gradient into a chain of full-size pads, one per tap; here
    it is a window sum of the zero-padded upstream gradient, per stride phase, which XLA
    fuses into one loop. The kernel gradient is one multiply-reduce per tap. (XLA still
    materialises each window once, as the forward sum and the kernel gradient share it.)
    ``benchmarks/bench_hand_gradients.py``: efficientnet-b0 U-Net on JAX, 512x512 batch 2,
    0.665 -> 0.790 training images/s against autodiff of the same forward.
    """

    @ops.custom_gradient
    def conv(inputs: Any, kernel: Any) -> Any:
        def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any]:
            upstream = args[0] if upstream is None else upstream
            kernel_grad = ops.stack(
                [
                    ops.sum(ops.multiply(_window(phased, top, left, geometry), upstream), (0, 1, 2))
                    for _, _, top, left in geometry.taps()
                ]
            )
            return (
                _window_sum_transposed(upstream, kernel, geometry),
                ops.reshape(kernel_grad, kernel.shape),
            )

        phased = _phases(inputs, geometry)  # read by the forward and the kernel gradient
        return _window_sum(phased, kernel, geometry), grad

    return conv
