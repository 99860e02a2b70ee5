"""Nearest-neighbour 2D upsampling whose gradient is a sum of strided slices.

Keras' ``UpSampling2D`` repeats rows and columns; autodiff turns that into a
``reduce_sum`` over each ``fh x fw`` block of the upstream gradient. Under XLA:CPU
(jaxlib 0.10.2) YNNPACK fuses that reduction with the input-gradient convolution of the
layer that reads the upsampled map, and the fused kernel was slow: 117-125 ms for the
last decoder block of a resnet34 U-Net at 512x512, batch 2 (``jax.profiler`` trace),
where the convolution alone runs on XLA's own path. Here the forward pass is a
broadcast and the gradient adds the ``fh * fw`` phase slices of the upstream gradient,
elementwise work XLA fuses into one loop and YNNPACK leaves alone.

:class:`keras_dynunet.layers.no_copy.UpSampling2D` uses this where XLA compiles the model.
Values and gradients equal ``keras.layers.UpSampling2D``'s (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras import ops


def upsample_nearest(inputs: Any, size: Sequence[int]) -> Any:
    """``inputs`` (channels last) with each row repeated ``size[0]`` and each column
    ``size[1]`` times; the gradient sums the upstream gradient's phase slices.

    Args:
        inputs: ``(batch, height, width, channels)`` with known height and width.
        size: ``(row factor, column factor)``.

    Returns:
        ``(batch, height * size[0], width * size[1], channels)``.

    >>> import numpy as np
    >>> x = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
    >>> tuple(map(tuple, ops.convert_to_numpy(upsample_nearest(x, (2, 2)))[0, :2, :, 0].tolist()))
    ((0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0))
    """
    _, height, width, channels = inputs.shape
    rows, cols = size
    blocks = (-1, height, rows, width, cols, channels)

    @ops.custom_gradient
    def upsample(inputs: Any) -> Any:
        def grad(*args: Any, upstream: Any = None) -> Any:
            upstream = args[0] if upstream is None else upstream
            phases = ops.reshape(upstream, blocks)
            total = phases[:, :, 0, :, 0, :]
            for i in range(rows):
                for j in range(cols):
                    if i or j:
                        total = ops.add(total, phases[:, :, i, :, j, :])
            return total

        expanded = ops.broadcast_to(
            ops.reshape(inputs, (-1, height, 1, width, 1, channels)),
            (ops.shape(inputs)[0], height, rows, width, cols, channels),
        )
        return ops.reshape(expanded, (-1, height * rows, width * cols, channels)), grad

    return upsample(inputs)
