"""A 2D convolution whose filter gradient slides the input over the padded upstream gradient.

The filter gradient of a stride-1 "same" convolution is itself a convolution of two
large tensors: ``dW[i, j] = sum_p x_padded[p + (i, j)] * dy[p]``, summed over the batch and
every position ``p``. XLA's autodiff (the JAX backend; TensorFlow with
``jit_compile=True``) makes the *input* the image of that convolution: each input
channel an image with the batch entries as its features, zero-padded inside the
convolution, and the upstream gradient ``dy`` the (huge) kernel. On XLA:CPU (jaxlib
0.10.2, 2 cores) that form is slow at small batches and whenever the input has more
channels than the output: for the resnet34 U-Net at 512x512, batch 2 the filter
gradients of its stride-1 3x3 convolutions took 1.59 s per step.

Here the roles are swapped: the upstream gradient, explicitly zero-padded by the
kernel's half size, is the image (one per output channel, batch entries as features) and
the input is the kernel; the ``kh x kw`` valid output, flipped, is ``dW``. The same sum,
1.01 s for those shapes (``benchmarks/bench_jax_conv_grads.py``). Forward pass and input
gradient are the ordinary convolutions (the input gradient, as in XLA's own, is the
convolution of ``dy`` with the flipped, in/out-swapped kernel). Values equal autodiff's to
float32 rounding (tested).

:class:`keras_dynunet.layers.no_copy.Conv2D` uses this where XLA compiles the model, for
stride-1, undilated, ungrouped "same" convolutions with odd kernels larger than 1x1, when
:func:`prefers_upstream_filter_gradient` says so.
"""

from __future__ import annotations

from typing import Any

from keras import ops

#: At this batch size and above, with no more input than output channels, XLA's own
#: filter gradient was as fast (``benchmarks/bench_jax_conv_grads.py``).
LARGE_BATCH = 8


def prefers_upstream_filter_gradient(
    batch: int | None, in_channels: int, out_channels: int
) -> bool:
    """Whether :func:`upstream_filter_gradient` is used: a batch below :data:`LARGE_BATCH`,
    or more input than output channels (an unknown batch: no).

    >>> prefers_upstream_filter_gradient(2, 64, 64), prefers_upstream_filter_gradient(8, 64, 64)
    (True, False)
    >>> prefers_upstream_filter_gradient(8, 192, 64), prefers_upstream_filter_gradient(None, 64, 8)
    (True, False)
    """
    return batch is not None and (batch < LARGE_BATCH or in_channels > out_channels)


def upstream_filter_gradient(inputs: Any, upstream: Any, kernel_size: tuple[int, int]) -> Any:
    """The filter gradient of a stride-1 "same" convolution with an odd kernel.

    Args:
        inputs: The convolution's input, ``(batch, height, width, in_channels)``.
        upstream: The gradient of its output, ``(batch, height, width, out_channels)``.
        kernel_size: ``(kernel_height, kernel_width)``, both odd.

    Returns:
        The gradient of the kernel, ``(kernel_height, kernel_width, in_channels,
        out_channels)``.

    >>> import numpy as np
    >>> x = np.ones((1, 4, 4, 1), "float32")
    >>> grad = upstream_filter_gradient(x, np.ones((1, 4, 4, 1), "float32"), (3, 3))
    >>> ops.convert_to_numpy(grad)[:, :, 0, 0].tolist()  # how many positions each tap sees
    [[9.0, 12.0, 9.0], [12.0, 16.0, 12.0], [9.0, 12.0, 9.0]]
    """
    half_height, half_width = kernel_size[0] // 2, kernel_size[1] // 2
    padded = ops.pad(
        upstream, ((0, 0), (half_height, half_height), (half_width, half_width), (0, 0))
    )
    # images: one per output channel, the batch as features; kernel: the input
    gradient = ops.conv(
        ops.transpose(padded, (3, 1, 2, 0)), ops.transpose(inputs, (1, 2, 0, 3)), padding="valid"
    )  # (out_channels, kernel_height, kernel_width, in_channels), taps reversed
    return ops.transpose(ops.flip(ops.flip(gradient, 1), 2), (1, 2, 3, 0))


def conv_with_upstream_filter_gradient(inputs: Any, kernel: Any) -> Any:
    """``keras.ops.conv(inputs, kernel, padding="same")`` (stride 1, odd kernel) whose kernel
    gradient is :func:`upstream_filter_gradient`.

    Args:
        inputs: ``(batch, height, width, in_channels)``.
        kernel: ``(kernel_height, kernel_width, in_channels, out_channels)``, odd sizes.

    Returns:
        The convolution, ``(batch, height, width, out_channels)``.

    >>> import numpy as np
    >>> x, k = np.ones((1, 8, 8, 2), "float32"), np.ones((3, 3, 2, 4), "float32")
    >>> y = conv_with_upstream_filter_gradient(x, k)
    >>> tuple(y.shape), float(ops.convert_to_numpy(y)[0, 4, 4, 0])
    ((1, 8, 8, 4), 18.0)
    """
    kernel_size = tuple(kernel.shape[:2])

    @ops.custom_gradient
    def conv(inputs: Any, kernel: Any) -> Any:
        def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any]:
            upstream = args[0] if upstream is None else upstream
            flipped = ops.flip(ops.flip(ops.transpose(kernel, (0, 1, 3, 2)), 0), 1)
            input_grad = ops.conv(upstream, flipped, padding="same")
            return input_grad, upstream_filter_gradient(inputs, upstream, kernel_size)

        return ops.conv(inputs, kernel, padding="same"), grad

    return conv(inputs, kernel)
