"""MobileNetV2 and MobileNetV3-Large encoders from keras.applications.

MobileNetV2 taps are the expansion activations in front of each strided
block (the classic Keras segmentation taps). MobileNetV3 taps are the
residual sums at the end of each stage (its activation layers have
auto-generated names, which are not stable across builds).
"""

from __future__ import annotations

from keras_dynunet.encoders.applications import register_application
from keras_dynunet.taps import Tap

register_application(
    "mobilenetv2",
    "MobileNetV2",
    (
        Tap("P1", "block_1_expand_relu", 2, 96),
        Tap("P2", "block_3_expand_relu", 4, 144),
        Tap("P3", "block_6_expand_relu", 8, 192),
        Tap("P4", "block_13_expand_relu", 16, 576),
        Tap("P5", "out_relu", 32, 1280),
    ),
    family="mobilenet",
    preprocessing="tf",
)

register_application(
    "mobilenetv3-large",
    "MobileNetV3Large",
    (
        Tap("P1", "expanded_conv_add", 2, 16),
        Tap("P2", "expanded_conv_2_add", 4, 24),
        Tap("P3", "expanded_conv_5_add", 8, 40),
        Tap("P4", "expanded_conv_11_add", 16, 112),
        Tap("P5", "expanded_conv_14_add", 32, 160),
    ),
    family="mobilenet",
)
