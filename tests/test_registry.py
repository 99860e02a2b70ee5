"""Every registered encoder builds and its declared taps are what the graph computes."""

import keras
import numpy as np
import pytest

import keras_dynunet as kd
from keras_dynunet.registry import check_taps
from keras_dynunet.taps import EncoderSpec, Tap

REQUIRED = [
    "vgg11-ternaus", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101",
    "resnet152", *[f"efficientnet-b{i}" for i in range(8)], "efficientnetv2-b0",
    "efficientnetv2-s", "efficientnet-lite0", "mobilenetv2", "mobilenetv3-large",
    "densenet121", "convnext-tiny",
]  # fmt: skip


def test_registry_has_the_required_families():
    names = kd.list_encoders()
    assert len(names) >= 25
    assert set(REQUIRED) <= set(names)


@pytest.mark.parametrize("name", kd.list_encoders())
def test_every_encoder_builds_with_its_declared_taps(name):
    spec = kd.get_encoder_spec(name)
    encoder = kd.get_encoder(name)
    assert encoder.name == f"{name}_encoder"
    assert list(encoder.output) == [tap.key for tap in spec.taps]
    # Evaluate the tap model on a static non-square shape: each output must be
    # exactly input/stride with the declared channels.
    h, w = 2 * spec.max_stride, 3 * spec.max_stride
    out = encoder.compute_output_spec(keras.KerasTensor((1, h, w, 3)))
    for tap in spec.taps:
        assert tuple(out[tap.key].shape) == (1, h // tap.stride, w // tap.stride, tap.channels)


def test_list_encoders_wildcards():
    assert kd.list_encoders("resnet*") == [
        "resnet101",
        "resnet152",
        "resnet18",
        "resnet34",
        "resnet50",
    ]
    assert kd.list_encoders("efficientnet-b?") == [f"efficientnet-b{i}" for i in range(8)]
    assert kd.list_encoders("RESNET18") == ["resnet18"]
    assert kd.list_encoders("nothing*") == []


def test_unknown_encoder_lists_closest_names():
    with pytest.raises(KeyError, match="Did you mean 'resnet34'"):
        kd.get_encoder("resnet43")
    with pytest.raises(KeyError, match="efficientnet-b0"):
        kd.build_unet("efficientnet_b0")


def _tiny(input_shape):
    x = inp = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="c2")(x)
    return keras.Model(inp, x)


def test_register_custom_encoder_and_overwrite_rules():
    spec = EncoderSpec("test-tiny", _tiny, (Tap("P1", "c1", 2, 8), Tap("P2", "c2", 4, 16)))
    kd.register_encoder(spec)
    try:
        assert "test-tiny" in kd.list_encoders("test-*")
        with pytest.raises(ValueError, match="already registered"):
            kd.register_encoder(spec)
        kd.register_encoder(spec, overwrite=True)
        model = kd.build_unet("test-tiny", classes=2)
        assert model.predict(np.zeros((1, 20, 12, 3)), verbose=0).shape == (1, 20, 12, 2)
    finally:
        kd.unregister_encoder("test-tiny")
    assert "test-tiny" not in kd.list_encoders()


@pytest.mark.parametrize(
    ("tap", "message"),
    [
        (Tap("P1", "c9", 2, 8), "tap P1: Model .* has no layer named 'c9'. Closest names: .*'c1'"),
        (Tap("P2", "c1", 4, 8), "tap P2 \\(layer 'c1'\\): declared stride 4 .* measured stride 2"),
        (Tap("P1", "c1", 2, 32), "declared stride 2 and 32 channels, measured stride 2 and 8"),
    ],
)
def test_wrong_taps_are_named(tap, message):
    with pytest.raises(ValueError, match=message):
        check_taps(_tiny((None, None, 3)), [tap], "tiny")
    spec = EncoderSpec("test-wrong", _tiny, (tap,))
    kd.register_encoder(spec)
    try:
        with pytest.raises(ValueError, match="Encoder 'test-wrong'"):
            kd.get_encoder("test-wrong")
    finally:
        kd.unregister_encoder("test-wrong")


def test_get_encoder_input_checks():
    with pytest.raises(ValueError, match="too small"):
        kd.get_encoder("resnet18", input_shape=(16, 64, 3))
    with pytest.raises(ValueError, match="known channel count"):
        kd.get_encoder("resnet18", input_shape=(64, 64, None))
    enc = kd.get_encoder("resnet18", input_shape=(64, 64, 1))
    assert enc.output["P1"].shape == (None, 32, 32, 64)


def test_weights_file_and_unavailable_sources(tmp_path):
    enc = kd.get_encoder("resnet18")
    path = tmp_path / "enc.weights.h5"
    enc.save_weights(path)
    loaded = kd.get_encoder("resnet18", weights=str(path))
    for a, b in zip(enc.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(kd.WeightsUnavailableError, match="PyTorch checkpoint"):
        kd.get_encoder("resnet18", weights="imagenet")
    with pytest.raises(kd.WeightsUnavailableError, match="no weight source 'coco'"):
        kd.get_encoder("resnet18", weights="coco")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        kd.get_encoder("resnet18", weights=str(tmp_path / "missing.weights.h5"))
    truncated = tmp_path / "bad.weights.h5"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated, corrupt"):
        kd.get_encoder("resnet18", weights=str(truncated))
    with pytest.raises(ValueError, match="truncated, corrupt, or was saved from another"):
        kd.get_encoder("resnet34", weights=str(path))
