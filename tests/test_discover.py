"""Tap discovery on keras.applications, keras-hub and hand-written encoders."""

import keras
import numpy as np
import pytest

import keras_dynunet as kd

A = keras.applications
APPLICATIONS = {
    "ResNet50": (A.ResNet50, [2, 4, 8, 16, 32]),
    "MobileNetV2": (A.MobileNetV2, [2, 4, 8, 16, 32]),
    "EfficientNetB0": (A.EfficientNetB0, [2, 4, 8, 16, 32]),
    "DenseNet121": (A.DenseNet121, [2, 4, 8, 16, 32]),
    "VGG16": (A.VGG16, [1, 2, 4, 8, 16, 32]),
    "ConvNeXtTiny": (A.ConvNeXtTiny, [4, 8, 16, 32]),
    "Xception": (A.Xception, [2, 4, 8, 16, 32]),  # 'valid' padding: inexact sizes
}


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras_applications_encoders(name):
    constructor, strides = APPLICATIONS[name]
    backbone = constructor(weights=None, include_top=False, input_shape=(None, None, 3))
    taps = kd.discover_taps(backbone)
    assert [t.stride for t in taps] == strides
    for tap in taps:  # channels as the layer really has them
        assert backbone.get_layer(tap.layer).output.shape[-1] == tap.channels
    model = kd.build_unet(backbone, classes=2)
    assert model.predict(np.zeros((1, 70, 45, 3), "float32"), verbose=0).shape == (1, 70, 45, 2)


def test_discovery_ignores_global_pooling_and_padding_layers():
    backbone = A.EfficientNetB0(weights=None, include_top=False, input_shape=(None, None, 3))
    taps = kd.discover_taps(backbone)
    assert all("se_" not in t.layer and "pad" not in t.layer for t in taps)
    assert taps[-1].stride == 32


def test_keras_hub_feature_pyramid_backbone():
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 32, 32, 32],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(None, None, 3),
    )
    taps = kd.discover_taps(backbone)
    assert [t.key for t in taps] == sorted(backbone.pyramid_outputs)
    model = kd.build_unet(backbone, classes=1)
    assert model.predict(np.zeros((2, 48, 40, 3), "float32"), verbose=0).shape == (2, 48, 40, 1)


def _stem_to_stride4():
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 7, strides=4, padding="same", name="stem")(inp)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="down8")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="s8_conv")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", name="down16")(x)
    return keras.Model(inp, x, name="stem4")


def _branches_merge():
    inp = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="full")(inp)
    a = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="branch_conv")(x)
    b = keras.layers.AveragePooling2D(2, name="branch_pool")(x)
    b = keras.layers.Conv2D(16, 1, name="branch_proj")(b)
    x = keras.layers.Add(name="merge2")([a, b])
    x = keras.layers.Conv2D(24, 3, strides=2, padding="same", name="down4")(x)
    y = keras.layers.Conv2D(24, 3, strides=2, padding="same", name="side8")(x)
    y = keras.layers.UpSampling2D(name="side8_up")(y)
    x = keras.layers.Concatenate(name="merge4")([x, y])
    return keras.Model(inp, x, name="branches")


def test_hand_written_unusual_stride_patterns():
    taps = kd.discover_taps(_stem_to_stride4())
    assert [(t.key, t.layer) for t in taps] == [("P2", "stem"), ("P3", "s8_conv"), ("P4", "down16")]
    model = kd.build_unet(_stem_to_stride4(), classes=3)
    assert model.predict(np.zeros((1, 50, 33, 3)), verbose=0).shape == (1, 50, 33, 3)

    taps = kd.discover_taps(_branches_merge())
    assert [(t.key, t.layer, t.channels) for t in taps] == [
        ("P0", "full", 8), ("P1", "merge2", 16), ("P2", "merge4", 48), ("P3", "side8", 24),
    ]  # fmt: skip
    model = kd.build_unet(_branches_merge(), classes=1, input_shape=(None, None, 1))
    assert model.predict(np.zeros((1, 24, 17, 1)), verbose=0).shape == (1, 24, 17, 1)


def test_explicit_taps_by_layer_name():
    backbone = A.ResNet50(weights=None, include_top=False, input_shape=(None, None, 3))
    model = kd.build_unet(backbone, taps=["conv3_block4_out", "conv2_block3_out"], classes=1)
    assert [(t.key, t.layer) for t in model.taps] == [
        ("P2", "conv2_block3_out"), ("P3", "conv3_block4_out"),
    ]  # fmt: skip
    assert model.predict(np.zeros((1, 64, 64, 3)), verbose=0).shape == (1, 64, 64, 1)
    with pytest.raises(ValueError, match="no layer named 'conv3_block9_out'"):
        kd.build_unet(backbone, taps=["conv3_block9_out"])
    with pytest.raises(ValueError, match="Use key 'P3'"):
        kd.taps_from_layers(backbone, {"P4": "conv3_block4_out"})
    with pytest.raises(ValueError, match="same stride"):
        kd.taps_from_layers(backbone, ["conv3_block3_out", "conv3_block4_out"])
    with pytest.raises(ValueError, match="declares its taps already"):
        kd.build_unet("resnet18", taps=["relu"])


def test_model_without_downsampling_is_rejected():
    inp = keras.Input((None, None, 3))
    flat = keras.Model(inp, keras.layers.Conv2D(4, 3, padding="same")(inp))
    with pytest.raises(ValueError, match="never reduces its input resolution"):
        kd.discover_taps(flat)
