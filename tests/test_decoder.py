"""Decoder generation: upsampling modes, widths, sizes, errors."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_dynunet as kd
from keras_dynunet.decoders import default_decoder_channels, upsample
from keras_dynunet.layers import ICNR, PixelShuffle


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "transpose", "pixelshuffle"])
def test_every_upsampling_mode_gives_input_resolution(mode):
    model = kd.build_unet("resnet18", classes=4, upsampling=mode, center=True)
    assert model.predict(np.zeros((1, 96, 64, 3)), verbose=0).shape == (1, 96, 64, 4)
    assert any(layer.name.endswith("_up") for layer in model.layers)


def test_pixelshuffle_with_icnr_starts_as_nearest_upsampling():
    x = keras.Input((6, 5, 4))
    up = upsample(x, 2, "pixelshuffle", 3, "ps", activation=None)
    model = keras.Model(x, up)
    conv = model.get_layer("ps_up_conv")
    kernel, bias = (w.numpy() for w in conv.weights)
    data = np.random.default_rng(0).normal(size=(2, 6, 5, 4)).astype("float32")
    base = np.einsum("bhwc,cd->bhwd", data, kernel[0, 0, :, :3]) + bias[:3]
    expected = base.repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_allclose(model.predict(data, verbose=0), expected, rtol=1e-5, atol=1e-5)


def test_icnr_rejects_incompatible_shapes():
    with pytest.raises(ValueError, match="multiple of scale"):
        ICNR(2)((1, 1, 4, 6))
    assert PixelShuffle(3)(ops.ones((1, 2, 2, 18))).shape == (1, 6, 6, 2)


def test_decoder_widths_are_configurable_and_checked():
    model = kd.build_unet("resnet18", decoder_channels=(64, 32, 16, 8, 8))
    assert model.get_layer("decoder_s1_block1_conv").filters == 8
    assert model.get_layer("decoder_s16_block0_conv").filters == 64
    with pytest.raises(ValueError, match="needs 5 positive widths"):
        kd.build_unet("resnet18", decoder_channels=(64, 32))
    assert default_decoder_channels(4) == (32, 16)


def test_shallowest_tap_at_stride_4_still_reaches_full_resolution():
    model = kd.build_unet("convnext-tiny", classes=2)
    # Two skip-less stages (4 -> 2 -> 1) follow the last skip.
    assert "decoder_s2_concat" not in [layer.name for layer in model.layers]
    assert "decoder_s4_concat" in [layer.name for layer in model.layers]
    assert model.predict(np.zeros((1, 64, 96, 3)), verbose=0).shape == (1, 64, 96, 2)


@pytest.mark.parametrize("size", [(65, 97), (32, 32), (33, 150)])
def test_static_sizes_not_divisible_by_the_stride(size):
    model = kd.build_unet("resnet18", classes=1, input_shape=(*size, 3))
    padded = any(layer.name == "pad_to_stride" for layer in model.layers)
    assert padded == (size[0] % 32 != 0 or size[1] % 32 != 0)
    assert model.output_shape == (None, *size, 1)
    assert model.predict(np.zeros((2, *size, 3)), verbose=0).shape == (2, *size, 1)


def test_padding_does_not_change_the_aligned_region():
    """Zero padding at the bottom/right: the crop keeps the top-left image."""
    dynamic = kd.build_unet("resnet18", classes=1, norm="none")
    static = kd.build_unet("resnet18", classes=1, norm="none", input_shape=(64, 64, 3))
    static.set_weights(dynamic.get_weights())
    x = np.random.default_rng(1).uniform(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        dynamic.predict(x, verbose=0), static.predict(x, verbose=0), atol=1e-5
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"upsampling": "cubic"}, "Unknown upsampling mode 'cubic'"),
        ({"norm": "instance"}, "Unknown normalization 'instance'"),
        ({"activation": "relu"}, "activation must be one of"),
        ({"classes": 0}, "classes must be a positive integer"),
        ({"input_shape": (16, 64, 3)}, "too small|smaller than"),
        ({"input_shape": (64, 64)}, "input_shape must be"),
    ],
)
def test_bad_arguments_have_clear_errors(kwargs, message):
    with pytest.raises((ValueError, KeyError), match=message):
        kd.build_unet("resnet18", **kwargs)


def test_wrong_channel_count_at_call_time_is_named():
    model = kd.build_unet("resnet18", classes=1, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match=r"(?i)shape|channel|incompatible"):
        model.predict(np.zeros((1, 64, 64, 1)), verbose=0)
    own = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(None, None, 3)
    )
    with pytest.raises(ValueError, match="takes 3 input channels but input_shape has 1"):
        kd.build_unet(own, input_shape=(None, None, 1))
