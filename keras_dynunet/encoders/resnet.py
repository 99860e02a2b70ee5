"""ResNet encoders in torchvision's layout (ResNet v1.5: stride on the 3x3 conv).

Explicit ``ZeroPadding2D`` + ``'valid'`` convolutions reproduce PyTorch's
symmetric padding, and layer names mirror torchvision's state-dict keys with
``.`` replaced by ``_`` (``layer1.0.conv1`` -> ``layer1_0_conv1``), so
torchvision checkpoints port key for key. BatchNorm uses PyTorch's
``eps=1e-5`` and ``momentum=0.1`` (Keras ``momentum=0.9``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_dynunet.layers.batch_norm import FastBatchNormalization
from keras_dynunet.layers.no_copy import NoCopyConv2D, NoCopyMaxPooling2D
from keras_dynunet.registry import register_encoder
from keras_dynunet.taps import EncoderSpec, Tap

_TORCHVISION = "https://download.pytorch.org/models/"
# name: (block kind, blocks per stage, torchvision checkpoint)
RESNET_CONFIGS: dict[str, tuple[str, tuple[int, ...], str]] = {
    "resnet18": ("basic", (2, 2, 2, 2), "resnet18-f37072fd.pth"),
    "resnet34": ("basic", (3, 4, 6, 3), "resnet34-b627a593.pth"),
    "resnet50": ("bottleneck", (3, 4, 6, 3), "resnet50-0676ba61.pth"),
    "resnet101": ("bottleneck", (3, 4, 23, 3), "resnet101-63fe2227.pth"),
    "resnet152": ("bottleneck", (3, 8, 36, 3), "resnet152-394f9c45.pth"),
}
_WIDTHS = (64, 128, 256, 512)


def _bn(name: str) -> keras.layers.BatchNormalization:
    return FastBatchNormalization(epsilon=1e-5, momentum=0.9, name=name)


def _conv(x, filters: int, kernel: int, stride: int, name: str):
    pad = kernel // 2
    if stride > 1 and pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    return NoCopyConv2D(
        filters, kernel, strides=stride, padding=padding, use_bias=False, name=name
    )(x)


def _block(x, kind: str, planes: int, stride: int, name: str):
    expansion = 4 if kind == "bottleneck" else 1
    shortcut = x
    if stride != 1 or x.shape[-1] != planes * expansion:
        shortcut = _conv(x, planes * expansion, 1, stride, f"{name}_downsample_0")
        shortcut = _bn(f"{name}_downsample_1")(shortcut)
    if kind == "basic":
        convs = ((planes, 3, stride), (planes, 3, 1))
    else:
        convs = ((planes, 1, 1), (planes, 3, stride), (planes * expansion, 1, 1))
    for index, (filters, kernel, conv_stride) in enumerate(convs, start=1):
        x = _conv(x, filters, kernel, conv_stride, f"{name}_conv{index}")
        x = _bn(f"{name}_bn{index}")(x)
        if index < len(convs):
            x = keras.layers.ReLU(name=f"{name}_relu{index}")(x)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def build_resnet(name: str, input_shape: Sequence[int | None]) -> keras.Model:
    """Build a torchvision-layout ResNet backbone (no pooling head).

    Args:
        name: One of :data:`RESNET_CONFIGS` (``"resnet18"`` .. ``"resnet152"``).
        input_shape: ``(height, width, channels)``; spatial sizes may be ``None``.

    >>> m = build_resnet("resnet18", (64, 64, 3))
    >>> m.get_layer("layer4").output.shape, sum(w.numpy().size for w in m.trainable_weights)
    ((None, 2, 2, 512), 11176512)
    """
    kind, blocks, _ = RESNET_CONFIGS[name]
    x = inputs = keras.Input(tuple(input_shape), name="image")
    x = _conv(x, 64, 7, 2, "conv1")
    x = _bn("bn1")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = NoCopyMaxPooling2D(3, strides=2, name="maxpool")(x)
    for stage, (planes, count) in enumerate(zip(_WIDTHS, blocks, strict=True), start=1):
        for index in range(count):
            stride = 2 if stage > 1 and index == 0 else 1
            x = _block(x, kind, planes, stride, f"layer{stage}_{index}")
        x = keras.layers.Identity(name=f"layer{stage}")(x)
    return keras.Model(inputs, x, name=name)


def _register(name: str) -> None:
    kind, _, checkpoint = RESNET_CONFIGS[name]
    expansion = 4 if kind == "bottleneck" else 1
    taps = (
        Tap("P1", "relu", 2, 64),
        *tuple(
            Tap(f"P{stage + 1}", f"layer{stage}", 2 ** (stage + 1), width * expansion)
            for stage, width in enumerate(_WIDTHS, start=1)
        ),
    )
    register_encoder(
        EncoderSpec(
            name=name,
            builder=lambda input_shape: build_resnet(name, input_shape),
            taps=taps,
            family="resnet",
            preprocessing="imagenet",
            weight_sources={"imagenet": _TORCHVISION + checkpoint},
            reference=f"torchvision.models.{name} (He et al. 2016, v1.5 strides)",
        )
    )


for _name in RESNET_CONFIGS:
    _register(_name)
