"""ICNR initialisation for sub-pixel (pixel shuffle) convolutions.

Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution": the
convolution feeding a pixel shuffle of factor ``r`` is initialised so that
the ``r * r`` sub-pixels of every output channel start with identical
kernels, which makes the initial upsampling a nearest-neighbour one and
removes checkerboard artefacts. The channel order matches
``keras.ops.depth_to_space`` (channels_last): output channel
``(i * r + j) * C + c`` lands at sub-pixel ``(i, j)`` of channel ``c``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_dynunet")
class ICNR(keras.initializers.Initializer):
    """Initialise a ``(..., C_in, C * r**2)`` kernel with ``r**2`` copies of one kernel.

    Args:
        scale: Upsampling factor ``r`` of the pixel shuffle that follows.
        initializer: Initialiser of the base ``(..., C_in, C)`` kernel.

    >>> kernel = ICNR(scale=2)((1, 1, 4, 12))
    >>> bool(ops.all(kernel[..., :3] == kernel[..., 9:]))
    True
    """

    def __init__(self, scale: int = 2, initializer: Any = "he_normal") -> None:
        if int(scale) < 1:
            raise ValueError(f"ICNR scale must be a positive integer, got {scale!r}.")
        self.scale = int(scale)
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        blocks = self.scale**2
        if shape[-1] % blocks:
            raise ValueError(
                f"ICNR: the kernel's output channels ({shape[-1]}) must be a multiple of "
                f"scale**2 = {blocks}."
            )
        base = self.initializer((*shape[:-1], shape[-1] // blocks), dtype=dtype)
        return ops.tile(base, [1] * (len(shape) - 1) + [blocks])

    def get_config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "initializer": keras.initializers.serialize(self.initializer),
        }
