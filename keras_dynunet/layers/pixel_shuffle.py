"""Pixel shuffle (depth to space) as a serialisable layer."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_dynunet")
class PixelShuffle(keras.layers.Layer):
    """Rearrange ``(N, H, W, C * r**2)`` into ``(N, H * r, W * r, C)``.

    Uses ``keras.ops.depth_to_space`` (TensorFlow's channel order; see
    :class:`~keras_dynunet.layers.ICNR`).

    Args:
        factor: Upsampling factor ``r``.

    >>> tuple(PixelShuffle(2)(ops.ones((1, 3, 5, 8))).shape)
    (1, 6, 10, 2)
    """

    def __init__(self, factor: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(factor) < 1:
            raise ValueError(f"PixelShuffle factor must be a positive integer, got {factor!r}.")
        self.factor = int(factor)

    def call(self, inputs):
        return ops.depth_to_space(inputs, self.factor, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        r = self.factor

        def scaled(dim):
            return None if dim is None else dim * r

        return (batch, scaled(height), scaled(width), channels // (r * r))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}
