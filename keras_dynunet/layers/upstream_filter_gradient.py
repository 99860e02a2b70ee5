"""A 2D convolution whose filter gradient slides the input over the padded upstream gradient.

The filter gradient of a stride-1 convolution is itself a convolution of two large
tensors: ``dW[i, j] = sum_p x_padded[p + (i, j)] * dy[p]``, summed over the batch and
every position ``p``. XLA's autodiff (the JAX backend; TensorFlow with
``jit_compile=True``) makes the *input* the image of that convolution: each input
channel an image with the batch entries as its features, zero-padded inside the
convolution, and the upstream gradient ``dy`` the (huge) kernel. On XLA:CPU (jaxlib
0.10.2, 2 cores) that form is slow at small batches and whenever the input has more
channels than the output: for the resnet34 U-Net at 512x512, batch 2 the filter
gradients of its stride-1 3x3 convolutions took 1.59 s per step.

Here the roles are swapped: the upstream gradient, explicitly zero-padded, is the image
(one per output channel, batch entries as features) and the input is the kernel; the
``kh x kw`` valid output, flipped, is ``dW``. The same sum, 1.01 s for those shapes
(``benchmarks/bench_jax_conv_grads.py``). Forward pass and input gradient are the
ordinary convolutions (the input gradient, as in XLA's own, is the convolution of the
padded ``dy`` with the flipped, in/out-swapped kernel). Values equal autodiff's to
float32 rounding (tested).

Either form moves one operand into a batch-minor layout first (XLA inserts that
transpose, a slow one on XLA:CPU): XLA's moves the input, this one the upstream
gradient. So the swap loses where the convolution widens the channels: TernausNet's
first convolution (3 -> 64 channels at 512x512, batch 2) took 382 ms against XLA's 88 ms.
:func:`prefers_upstream_filter_gradient` encodes where each form won.

:class:`keras_dynunet.layers.no_copy.Conv2D` uses this where XLA compiles the model, for
stride-1, undilated, ungrouped convolutions ("same" or "valid"), and
:func:`~keras_dynunet.layers.phase_transpose.conv_transpose_by_phases` for the per-phase
convolutions of a transposed convolution.
"""

from __future__ import annotations

from typing import Any

from keras import ops

#: At this batch size and above, with as many input as output channels, XLA's own
#: filter gradient was as fast (``benchmarks/bench_jax_conv_grads.py``).
LARGE_BATCH = 8


def prefers_upstream_filter_gradient(
    batch: int | None, in_channels: int, out_channels: int
) -> bool:
    """Whether :func:`upstream_filter_gradient` is used: more input than output channels,
    or as many and a batch below :data:`LARGE_BATCH` (an unknown batch, or fewer input
    than output channels: no).

    >>> prefers_upstream_filter_gradient(2, 64, 64), prefers_upstream_filter_gradient(8, 64, 64)
    (True, False)
    >>> prefers_upstream_filter_gradient(8, 192, 64), prefers_upstream_filter_gradient(2, 3, 64)
    (True, False)
    >>> prefers_upstream_filter_gradient(None, 64, 8)
    False
    """
    if batch is None:
        return False
    return in_channels > out_channels or (in_channels == out_channels and batch < LARGE_BATCH)


def forward_padding(kernel: int, padding: str) -> tuple[int, int]:
    """Zeros added before and after one spatial axis by a stride-1, undilated
    ``keras.ops.conv`` with this ``padding`` ("same": ``(kernel - 1) // 2`` before, the
    rest after, as TensorFlow and Keras pad).

    >>> forward_padding(3, "same"), forward_padding(4, "same"), forward_padding(3, "valid")
    ((1, 1), (1, 2), (0, 0))
    """
    padding = padding.lower()
    if padding == "valid":
        return 0, 0
    if padding != "same":
        raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}.")
    return (kernel - 1) // 2, kernel // 2


def upstream_filter_gradient(
    inputs: Any, upstream: Any, kernel_size: tuple[int, int], padding: str = "same"
) -> Any:
    """The filter gradient of a stride-1, undilated convolution.

    Args:
        inputs: The convolution's input, ``(batch, height, width, in_channels)``.
        upstream: The gradient of its output, ``(batch, out_height, out_width,
            out_channels)``.
        kernel_size: ``(kernel_height, kernel_width)``.
        padding: The convolution's padding, ``"same"`` or ``"valid"``.

    Returns:
        The gradient of the kernel, ``(kernel_height, kernel_width, in_channels,
        out_channels)``.

    >>> import numpy as np
    >>> x = np.ones((1, 4, 4, 1), "float32")
    >>> grad = upstream_filter_gradient(x, np.ones((1, 4, 4, 1), "float32"), (3, 3))
    >>> ops.convert_to_numpy(grad)[:, :, 0, 0].tolist()  # how many positions each tap sees
    [[9.0, 12.0, 9.0], [12.0, 16.0, 12.0], [9.0, 12.0, 9.0]]
    """
    # Tap i meets input row y + i - before; with the upstream gradient padded by
    # kernel - 1 - before on top, a valid convolution with the input as its kernel gives
    # the taps in reverse, and kernel - 1 - after at the bottom makes that output kernel-sized.
    pads = [(0, 0)]
    for kernel in kernel_size:
        before, after = forward_padding(kernel, padding)
        pads.append((kernel - 1 - before, kernel - 1 - after))
    padded = ops.pad(upstream, [*pads, (0, 0)])
    # images: one per output channel, the batch as features; kernel: the input
    gradient = ops.conv(
        ops.transpose(padded, (3, 1, 2, 0)), ops.transpose(inputs, (1, 2, 0, 3)), padding="valid"
    )  # (out_channels, kernel_height, kernel_width, in_channels), taps reversed
    return ops.transpose(ops.flip(ops.flip(gradient, 1), 2), (1, 2, 3, 0))


def _input_gradient(upstream: Any, kernel: Any, padding: str) -> Any:
    """The input gradient of a stride-1 ``ops.conv(inputs, kernel, padding=padding)``:
    the upstream gradient convolved with the flipped, in/out-swapped kernel."""
    flipped = ops.flip(ops.flip(ops.transpose(kernel, (0, 1, 3, 2)), 0), 1)
    pads = [forward_padding(size, padding) for size in kernel.shape[:2]]
    if padding == "same" and all(before == after for before, after in pads):
        return ops.conv(upstream, flipped, padding="same")
    full = [(size - 1 - before, size - 1 - after)
            for size, (before, after) in zip(kernel.shape[:2], pads, strict=True)]  # fmt: skip
    return ops.conv(ops.pad(upstream, [(0, 0), *full, (0, 0)]), flipped, padding="valid")


def conv_with_upstream_filter_gradient(inputs: Any, kernel: Any, padding: str = "same") -> Any:
    """``keras.ops.conv(inputs, kernel, padding=padding)`` (stride 1, undilated) whose
    kernel gradient is :func:`upstream_filter_gradient`.

    Args:
        inputs: ``(batch, height, width, in_channels)``.
        kernel: ``(kernel_height, kernel_width, in_channels, out_channels)``.
        padding: ``"same"`` or ``"valid"``.

    Returns:
        The convolution, ``(batch, out_height, out_width, out_channels)``.

    >>> import numpy as np
    >>> x, k = np.ones((1, 8, 8, 2), "float32"), np.ones((3, 3, 2, 4), "float32")
    >>> y = conv_with_upstream_filter_gradient(x, k)
    >>> tuple(y.shape), float(ops.convert_to_numpy(y)[0, 4, 4, 0])
    ((1, 8, 8, 4), 18.0)
    """
    kernel_size = tuple(kernel.shape[:2])
    padding = padding.lower()
    forward_padding(kernel_size[0], padding)  # raises on an unknown padding

    @ops.custom_gradient
    def conv(inputs: Any, kernel: Any) -> Any:
        def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any]:
            upstream = args[0] if upstream is None else upstream
            return (
                _input_gradient(upstream, kernel, padding),
                upstream_filter_gradient(inputs, upstream, kernel_size, padding),
            )

        return ops.conv(inputs, kernel, padding=padding), grad

    return conv(inputs, kernel)
