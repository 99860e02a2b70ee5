"""TernausNet UNet11 and the 2015 U-Net reproduce their references' structure."""

import numpy as np
import pytest

import keras_dynunet as kd
from keras_dynunet.models.ternaus import torch_conv_transpose
from keras_dynunet.models.vanilla import valid_output_size


def _conv(cin, cout, k=3):
    return cin * cout * k * k + cout


def test_ternaus_parameter_count_equals_the_pytorch_reference():
    # TernausNet UNet11(num_classes=1, num_filters=32), layer by layer:
    encoder = sum(
        _conv(a, b)
        for a, b in [
            (3, 64),
            (64, 128),
            (128, 256),
            (256, 256),
            (256, 512),
            (512, 512),
            (512, 512),
            (512, 512),
        ]
    )
    blocks = [(512, 512, 256), (768, 512, 256), (768, 512, 128), (384, 256, 64), (192, 128, 32)]
    decoder = sum(_conv(i, m) + _conv(m, o) for i, m, o in blocks)  # ConvRelu + ConvTranspose
    total = encoder + decoder + _conv(96, 32) + _conv(32, 1, k=1)
    assert total == 22_927_393  # the count torch reports for ternausnet.models.UNet11()
    model = kd.build_model("ternaus-vgg11")
    assert model.count_params() == total


def test_ternaus_layer_widths_and_sizes():
    model = kd.TernausUNet11(input_shape=(64, 96, 3))
    expect = {"center_block_1": 256, "dec5_block_1": 256, "dec4_block_1": 128,
              "dec3_block_1": 64, "dec2_block_1": 32, "dec1_conv": 32, "final": 1}  # fmt: skip
    for name, filters in expect.items():
        assert model.get_layer(name).filters == filters
    assert model.get_layer("dec5_block_0_conv").input.shape[-1] == 768
    assert model.output_shape == (None, 64, 96, 1)
    assert model.predict(np.zeros((1, 64, 96, 3)), verbose=0).shape == (1, 64, 96, 1)


def test_transposed_convolution_matches_pytorch_output_padding():
    import keras
    import torch

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5, 7, 4)).astype("float32")
    layer_in = keras.Input((5, 7, 4))
    model = keras.Model(layer_in, torch_conv_transpose(layer_in, 3, "up"))
    weight = rng.normal(size=(4, 3, 3, 3)).astype("float32")  # torch (in, out, kh, kw)
    bias = rng.normal(size=(3,)).astype("float32")
    model.get_layer("up").set_weights([weight.transpose(2, 3, 1, 0), bias])
    ref = torch.nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(weight))
        ref.bias.copy_(torch.from_numpy(bias))
        expected = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    got = model.predict(x, verbose=0)
    assert got.shape == (1, 10, 14, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_vanilla_unet_matches_the_paper():
    model = kd.build_model("unet-vanilla")
    assert model.output_shape == (None, 388, 388, 2)
    assert model.count_params() == 31_030_658
    assert valid_output_size(572) == 388
    with pytest.raises(ValueError, match="Nearby valid sizes"):
        kd.build_model("unet-vanilla", input_shape=(570, 570, 1))
    padded = kd.build_model("unet-vanilla-padded", classes=3, base_filters=8)
    assert padded.predict(np.zeros((1, 50, 37, 1)), verbose=0).shape == (1, 50, 37, 3)
    with pytest.raises(KeyError, match="did you mean 'ternaus-vgg11'"):
        kd.build_model("ternaus-vgg12")
