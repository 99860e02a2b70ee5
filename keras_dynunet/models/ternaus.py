"""TernausNet UNet11 (Iglovikov & Shvets, 2018), layer for layer.

VGG11 encoder (``vgg11-ternaus``); every decoder block is ``ConvRelu(in,
mid)`` then ``ConvTranspose2d(mid, out, kernel 3, stride 2, padding 1,
output_padding 1)`` + ReLU. With ``num_filters=32``: center 512->512->256,
dec5 768->512->256, dec4 768->512->128, dec3 384->256->64, dec2
192->128->32, dec1 ConvRelu 96->32, final 1x1 to ``classes``.

PyTorch's transposed convolution with ``padding=1, output_padding=1`` is the
'valid' transposed convolution (size ``2H + 1``) with its first row and
column dropped; Keras' ``padding="same"`` would drop the last ones instead
and shift the output by a pixel. Layer names mirror TernausNet's state-dict
keys (``dec5.block.0.conv`` -> ``dec5_block_0_conv``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_dynunet.encoders.vgg import build_vgg11_ternaus
from keras_dynunet.hub_mixin import HubMixin
from keras_dynunet.layers import MatchSpatial, pad_to_stride
from keras_dynunet.layers.no_copy import NoCopyConv2D, NoCopyConv2DTranspose
from keras_dynunet.stall_free_inputs import StallFreeFitMixin
from keras_dynunet.xla_compiled import XLACompiledLayersMixin

TERNAUS_PARAMS_CLASSES_1 = 22_927_393  # sum over the PyTorch UNet11 layers, see tests


def conv_relu(x: Any, filters: int, name: str) -> Any:
    """TernausNet's ``ConvRelu``: 3x3 'same' convolution with bias, then ReLU.

    >>> conv_relu(keras.Input((8, 8, 3)), 4, "demo").shape
    (None, 8, 8, 4)
    """
    x = NoCopyConv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def torch_conv_transpose(x: Any, filters: int, name: str) -> Any:
    """``ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`` exactly: size ``2H``.

    >>> torch_conv_transpose(keras.Input((4, 5, 8)), 2, "demo").shape
    (None, 8, 10, 2)
    """
    x = NoCopyConv2DTranspose(filters, 3, strides=2, padding="valid", name=name)(x)
    return keras.layers.Cropping2D(((1, 0), (1, 0)), name=f"{name}_crop")(x)


def ternaus_block(x: Any, middle: int, out: int, name: str) -> Any:
    """TernausNet's ``DecoderBlock``: ConvRelu(middle), ConvTranspose(out), ReLU.

    >>> ternaus_block(keras.Input((4, 4, 8)), 6, 3, "demo").shape
    (None, 8, 8, 3)
    """
    x = conv_relu(x, middle, f"{name}_block_0")
    x = torch_conv_transpose(x, out, f"{name}_block_1")
    return keras.layers.ReLU(name=f"{name}_block_2")(x)


@keras.saving.register_keras_serializable(package="keras_dynunet")
class TernausUNet11(XLACompiledLayersMixin, StallFreeFitMixin, HubMixin, keras.Model):
    """TernausNet UNet11: VGG11 encoder and TernausNet's decoder.

    Args:
        classes: Output channels (TernausNet: 1 logit for binary masks).
        num_filters: Decoder base width (TernausNet: 32).
        input_shape: ``(height, width, channels)``; any size (padded to a
            multiple of 32 and cropped back when needed).
        activation: Head activation (``None`` = logits, like TernausNet).
        name: Model name.

    >>> m = TernausUNet11()
    >>> m.count_params()
    22927393
    """

    def __init__(
        self,
        classes: int = 1,
        num_filters: int = 32,
        *,
        input_shape: Sequence[int | None] = (None, None, 3),
        activation: str | None = None,
        name: str = "ternaus_vgg11",
        **kwargs: Any,
    ) -> None:
        input_shape = tuple(input_shape)
        nf = int(num_filters)
        # === Layers / Functional Model ===
        inputs = keras.Input(input_shape, name="image")
        x, padded = pad_to_stride(inputs, 32)
        vgg = build_vgg11_ternaus(x.shape[1:])
        encoder = keras.Model(
            vgg.inputs[0],
            {
                f"P{i}": vgg.get_layer(layer).output
                for i, layer in enumerate(
                    ["conv1_relu", "conv2_relu", "conv3_relu", "conv4_relu", "conv5_relu", "pool5"]
                )
            },
            name="encoder",
        )
        f = encoder(x)
        x = ternaus_block(f["P5"], nf * 16, nf * 8, "center")
        for skip, (name_, middle, out) in zip(
            ("P4", "P3", "P2", "P1"),
            (("dec5", nf * 16, nf * 8), ("dec4", nf * 16, nf * 4),
             ("dec3", nf * 8, nf * 2), ("dec2", nf * 4, nf)),
            strict=True,
        ):  # fmt: skip
            x = keras.layers.Concatenate(name=f"{name_}_concat")([x, f[skip]])
            x = ternaus_block(x, middle, out, name_)
        x = keras.layers.Concatenate(name="dec1_concat")([x, f["P0"]])
        x = conv_relu(x, nf, "dec1")
        x = NoCopyConv2D(classes, 1, name="final")(x)
        if padded:
            x = MatchSpatial(name="crop_to_input")([x, inputs])
        outputs = keras.layers.Activation(activation or "linear", dtype="float32", name="output")(x)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        # === Config ===
        self.encoder = encoder
        self._config = {
            "classes": classes,
            "num_filters": nf,
            "input_shape": list(input_shape),
            "activation": activation,
        }

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"name": self.name, "trainable": self.trainable, **self._config}
