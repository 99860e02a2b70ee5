"""The original U-Net (Ronneberger, Fischer & Brox, 2015) and its padded variant.

``padding="valid"``: unpadded 3x3 convolutions, so a 572x572 input gives a
388x388 output and skips are centre-cropped before concatenation, exactly
as in the paper. ``padding="same"``: the common padded variant whose output
has the input's size (inputs padded to a multiple of 16 and cropped back).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_dynunet.hub_mixin import HubMixin
from keras_dynunet.layers import MatchSpatial, pad_to_stride
from keras_dynunet.layers.no_copy import NoCopyConv2D, NoCopyConv2DTranspose, NoCopyMaxPooling2D
from keras_dynunet.stall_free_inputs import StallFreeFitMixin
from keras_dynunet.xla_compiled import XLACompiledLayersMixin


def valid_output_size(size: int, depth: int = 4) -> int | None:
    """Output size of the unpadded U-Net for an input ``size``; ``None`` if invalid.

    An input is valid when every max-pooling sees an even size.

    >>> valid_output_size(572), valid_output_size(570)
    (388, None)
    """
    for _ in range(depth):
        size -= 4
        if size <= 0 or size % 2:
            return None
        size //= 2
    size -= 4
    for _ in range(depth):
        size = size * 2 - 4
    return size if size > 0 else None


def _nearest_valid(size: int, depth: int) -> list[int]:
    return [s for s in range(max(1, size - 16), size + 17) if valid_output_size(s, depth)][:3]


@keras.saving.register_keras_serializable(package="keras_dynunet")
class VanillaUNet(XLACompiledLayersMixin, StallFreeFitMixin, HubMixin, keras.Model):
    """The 2015 U-Net: 64-128-256-512-1024 filters, 2x2 up-convolutions.

    Args:
        classes: Output channels (the paper: 2, softmax).
        input_shape: Default ``(572, 572, 1)`` as in the paper.
        padding: ``"valid"`` (the paper) or ``"same"`` (output size = input size).
        base_filters: Filters of the first level (doubled per level).
        depth: Number of poolings.
        activation: Head activation, ``None`` for logits.
        name: Model name.

    >>> m = VanillaUNet()
    >>> m.output_shape
    (None, 388, 388, 2)
    """

    def __init__(
        self,
        classes: int = 2,
        *,
        input_shape: Sequence[int | None] = (572, 572, 1),
        padding: str = "valid",
        base_filters: int = 64,
        depth: int = 4,
        activation: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        input_shape = tuple(input_shape)
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
        if padding == "valid":
            for dim in input_shape[:2]:
                if dim is not None and valid_output_size(dim, depth) is None:
                    raise ValueError(
                        f"The unpadded U-Net cannot take size {dim}: every pooling needs an "
                        f"even size. Nearby valid sizes: {_nearest_valid(dim, depth)} (572 in "
                        "the paper), or use padding='same'."
                    )

        def double_conv(x, filters, prefix):
            for index in (1, 2):
                x = NoCopyConv2D(
                    filters, 3, padding=padding, activation="relu",
                    kernel_initializer="he_normal", name=f"{prefix}_conv{index}",
                )(x)  # fmt: skip
            return x

        inputs = keras.Input(input_shape, name="image")
        x, padded = pad_to_stride(inputs, 2**depth) if padding == "same" else (inputs, False)
        skips = []
        for level in range(depth):
            x = double_conv(x, base_filters * 2**level, f"down{level}")
            skips.append(x)
            x = NoCopyMaxPooling2D(2, name=f"pool{level}")(x)
        x = double_conv(x, base_filters * 2**depth, "bottom")
        for level in reversed(range(depth)):
            filters = base_filters * 2**level
            x = NoCopyConv2DTranspose(filters, 2, strides=2, name=f"up{level}_upconv")(x)
            skip = skips[level]
            if padding == "valid":
                skip = MatchSpatial("center", name=f"up{level}_crop")([skip, x])
            x = keras.layers.Concatenate(name=f"up{level}_concat")([skip, x])
            x = double_conv(x, filters, f"up{level}")
        x = NoCopyConv2D(classes, 1, name="head")(x)
        if padded:
            x = MatchSpatial(name="crop_to_input")([x, inputs])
        outputs = keras.layers.Activation(activation or "linear", dtype="float32", name="output")(x)
        super().__init__(
            inputs=inputs, outputs=outputs, name=name or f"unet_vanilla_{padding}", **kwargs
        )
        self._config = {
            "classes": classes,
            "input_shape": list(input_shape),
            "padding": padding,
            "base_filters": base_filters,
            "depth": depth,
            "activation": activation,
        }

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"name": self.name, "trainable": self.trainable, **self._config}
