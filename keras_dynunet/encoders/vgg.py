"""VGG encoders: TernausNet's VGG11 (torchvision layout) and keras.applications VGG16/19.

``vgg11-ternaus`` follows torchvision's ``vgg11().features`` layer for layer
(3x3 'same' convolutions with bias, ReLU, 2x2 max pooling), so its weights
port one to one. Layer names follow TernausNet's ``UNet11``: ``conv1``,
``conv2``, ``conv3s``, ``conv3``, ..., ``conv5``; pooling layers ``pool1`` ..
``pool5``. It offers a stride-1 tap (``conv1_relu``), which TernausNet's
decoder concatenates last.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_dynunet.encoders.applications import register_application
from keras_dynunet.layers.no_copy import NoCopyConv2D, NoCopyMaxPooling2D
from keras_dynunet.registry import register_encoder
from keras_dynunet.taps import EncoderSpec, Tap

TORCHVISION_VGG11 = "https://download.pytorch.org/models/vgg11-8a719046.pth"

# (layer name, filters) per stage; a stage ends with 2x2 max pooling.
_VGG11_STAGES: tuple[tuple[tuple[str, int], ...], ...] = (
    (("conv1", 64),),
    (("conv2", 128),),
    (("conv3s", 256), ("conv3", 256)),
    (("conv4s", 512), ("conv4", 512)),
    (("conv5s", 512), ("conv5", 512)),
)
_WIDTHS = (64, 128, 256, 512, 512)


def build_vgg11_ternaus(input_shape: Sequence[int | None]) -> keras.Model:
    """VGG11 features in torchvision's layout, named as in TernausNet.

    >>> build_vgg11_ternaus((64, 64, 3)).get_layer("pool5").output.shape
    (None, 2, 2, 512)
    """
    x = inputs = keras.Input(tuple(input_shape), name="image")
    for index, stage in enumerate(_VGG11_STAGES, start=1):
        for name, filters in stage:
            x = NoCopyConv2D(filters, 3, padding="same", name=name)(x)
            x = keras.layers.ReLU(name=f"{name}_relu")(x)
        x = NoCopyMaxPooling2D(2, name=f"pool{index}")(x)
    return keras.Model(inputs, x, name="vgg11_ternaus")


register_encoder(
    EncoderSpec(
        name="vgg11-ternaus",
        builder=build_vgg11_ternaus,
        taps=(
            *tuple(
                Tap(f"P{i}", f"{stage[-1][0]}_relu", 2**i, width)
                for i, (stage, width) in enumerate(zip(_VGG11_STAGES, _WIDTHS, strict=True))
            ),
            Tap("P5", "pool5", 32, 512),
        ),
        family="vgg",
        preprocessing="imagenet",
        weight_sources={"imagenet": TORCHVISION_VGG11},
        reference="torchvision vgg11().features; TernausNet UNet11 (Iglovikov & Shvets, 2018)",
    )
)

for _name, _constructor, _convs in (
    ("vgg16", "VGG16", (2, 2, 3, 3, 3)),
    ("vgg19", "VGG19", (2, 2, 4, 4, 4)),
):
    register_application(
        _name,
        _constructor,
        taps=(
            *tuple(
                Tap(f"P{i}", f"block{i + 1}_conv{convs}", 2**i, width)
                for i, (convs, width) in enumerate(zip(_convs, _WIDTHS, strict=True))
            ),
            Tap("P5", "block5_pool", 32, 512),
        ),
        family="vgg",
        preprocessing="caffe",
    )
