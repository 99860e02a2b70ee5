"""Depthwise 2D convolution as a sum of shifted, per-channel scaled windows.

XLA:CPU (the JAX backend on CPU) lowers a depthwise convolution, and above all its
gradients, to a slow generic convolution loop: for EfficientNet-B0's depthwise shapes
at 256x256, batch 8, the forward pass took 14-259 ms and forward + gradients 93-906 ms
per layer (jaxlib 0.10.2, 2 cores). Written as ``kh * kw`` strided windows of the
padded input, each multiplied by one row of the kernel and summed, the same function
is elementwise work that XLA fuses: 5.6-64x faster forward and 3.5-46x faster with
gradients on the same shapes (``benchmarks/bench_jax_layers.py``).

:class:`keras_dynunet.layers.no_copy.DepthwiseConv2D` uses this on the JAX backend and
on TensorFlow when XLA-compiled (:mod:`keras_dynunet.xla_compiled`); the result equals
``keras.ops.depthwise_conv`` to float32 rounding (tested on every padding, stride,
dilation and depth multiplier, with both kernel-gradient methods).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_dynunet.layers.strided_windows import (
    WindowGeometry,
    checked_padding_and_size,
    phased,
    same_padding,
    scatter_windows,
    window,
    window_dot,
)


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
    padding, height, width = checked_padding_and_size(
        inputs, padding, "depthwise_conv_by_shifts", "keras.ops.depthwise_conv"
    )
    inputs, kernel = ops.convert_to_tensor(inputs), ops.convert_to_tensor(kernel)
    kh, kw, channels, multiplier = kernel.shape
    (sh, sw), (dh, dw) = tuple(strides), tuple(dilation_rate)
    if multiplier != 1:
        inputs = ops.repeat(inputs, multiplier, axis=-1)
    kernel = ops.reshape(kernel, (kh, kw, channels * multiplier))
    if padding == "same":
        top, bottom = same_padding(height, kh, sh, dh)
        left, right = same_padding(width, kw, sw, dw)
        if top or bottom or left or right:
            inputs = ops.pad(inputs, ((0, 0), (top, bottom), (left, right), (0, 0)))
        height, width = height + top + bottom, width + left + right
    geometry = WindowGeometry.of((height, width), (kh, kw), (sh, sw), (dh, dw))
    return _depthwise_with_gradients(geometry)(inputs, kernel)


#: Largest stride-phase grid side (padded rows or columns / stride) for which the kernel
#: gradient is computed as dots on TensorFlow (:func:`kernel_gradient_method`).
EINSUM_MAX_PHASE_GRID = 32


def kernel_gradient_method(geometry: WindowGeometry, backend: str | None = None) -> str:
    """How :func:`depthwise_conv_by_shifts` computes each kernel tap's gradient, the
    ``method`` of :func:`~keras_dynunet.layers.strided_windows.window_dot`.

    ``"einsum"`` on TensorFlow (which runs these forms only XLA-compiled) when the stride-phase
    grid is at most :data:`EINSUM_MAX_PHASE_GRID` on both sides, else ``"reduce"``.
    TensorFlow 2.21's XLA:CPU fuses the upstream gradient's whole elementwise backward chain
    (batch norm, activation, squeeze-excite) into every tap's reduction, 25 times for a 5x5
    kernel, and runs these reductions as slow loops unless a reduced side is longer than 32
    (then it splits them into parallel partial sums). A dot reads the upstream once. jaxlib
    0.10's XLA runs the reductions in YNNPACK from a materialised upstream, so JAX keeps
    ``"reduce"``. Measured (``benchmarks/bench_depthwise_kernel_gradient.py``, 2 cores):
    efficientnet-b0's 16x16x672 5x5 layer at batch 8 with gradients 219 -> 61 ms on
    TensorFlow-XLA (JAX: 15 ms with reductions, 58 ms as dots); the U-Net's training step on
    TensorFlow-XLA 1.21x faster at 256x256 batch 8 and 1.00x at 512x512 batch 2 (where most
    grids are larger than 32); dots everywhere were 0.89x / 0.88x on JAX.

    Args:
        geometry: The convolution's window geometry.
        backend: Keras backend name (default: the current one).

    Returns:
        ``"einsum"`` or ``"reduce"``.

    >>> small = WindowGeometry.of((20, 20), (5, 5), (1, 1))
    >>> large = WindowGeometry.of((68, 68), (5, 5), (1, 1))
    >>> tuple(kernel_gradient_method(g, "tensorflow") for g in (small, large))
    ('einsum', 'reduce')
    >>> kernel_gradient_method(small, "jax")
    'reduce'
    """
    backend = backend or keras.backend.backend()
    if backend == "tensorflow" and max(geometry.phase_grid()) <= EINSUM_MAX_PHASE_GRID:
        return "einsum"
    return "reduce"


def _window_sum(phased_input: Any, kernel: Any, geometry: WindowGeometry) -> Any:
    """The depthwise convolution of the :func:`phased` view of the padded input."""
    outputs = None
    for i, j, top, left in geometry.taps():
        term = ops.multiply(window(phased_input, top, left, geometry), kernel[i, j])
        outputs = term if outputs is None else ops.add(outputs, term)
    return outputs


def _depthwise_with_gradients(geometry: WindowGeometry) -> Any:
    """:func:`_window_sum` with hand-written gradients.

    Autodiff turns the input gradient into a chain of full-size pads, one per tap; here
    it is a window sum of the zero-padded upstream gradient, per stride phase, which XLA
    fuses into one loop. The kernel gradient is one multiply-reduce per tap. (XLA still
    materialises each window once, as the forward sum and the kernel gradient share it.)
    ``benchmarks/bench_hand_gradients.py``: efficientnet-b0 U-Net on JAX, 512x512 batch 2,
    0.665 -> 0.790 and (rerun) 0.731 -> 0.769 training images/s against autodiff of the
    same forward.
    """

    @ops.custom_gradient
    def conv(inputs: Any, kernel: Any) -> Any:
        def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any]:
            upstream = args[0] if upstream is None else upstream
            method = kernel_gradient_method(geometry)
            kernel_grad = ops.stack(
                [
                    window_dot(phased_input, upstream, top, left, geometry, method)
                    for _, _, top, left in geometry.taps()
                ]
            )
            taps = geometry.taps()

            def term(tap: int, take: Any) -> Any:
                return ops.multiply(take(0), kernel[taps[tap][0], taps[tap][1]])

            input_grad = scatter_windows([upstream], term, geometry)
            return input_grad, ops.reshape(kernel_grad, kernel.shape)

        phased_input = phased(inputs, geometry)  # read by the forward and the kernel gradient
        return _window_sum(phased_input, kernel, geometry), grad

    return conv
