"""No-copy conv/pool layers equal the Keras layers; mixed-precision models. Every backend.

On the torch backend the no-copy layers take a different code path (channels-first
views); these tests are where that path is checked against Keras' own layers, values
and gradients.
"""

import keras
import numpy as np
import pytest
from autodiff import value_and_grads
from keras import ops

import keras_dynunet as kd
from keras_dynunet.layers.no_copy import (
    NO_COPY_LAYERS,
    NoCopyConv2D,
    NoCopyConv2DTranspose,
    NoCopyDepthwiseConv2D,
    NoCopyMaxPooling2D,
    use_no_copy_layers,
)

pytestmark = pytest.mark.backends

CASES = [
    (keras.layers.Conv2D, NoCopyConv2D, {"filters": 5, "kernel_size": 3, "padding": "same"}),
    (
        keras.layers.Conv2D,
        NoCopyConv2D,
        {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"},
    ),
    (keras.layers.Conv2D, NoCopyConv2D, {"filters": 6, "kernel_size": 3, "groups": 3}),
    (keras.layers.Conv2D, NoCopyConv2D, {"filters": 4, "kernel_size": 3, "dilation_rate": 2}),
    (
        keras.layers.DepthwiseConv2D,
        NoCopyDepthwiseConv2D,
        {"kernel_size": 3, "strides": 2, "padding": "same", "depth_multiplier": 2},
    ),
    (
        keras.layers.DepthwiseConv2D,
        NoCopyDepthwiseConv2D,
        {"kernel_size": 5, "strides": 2, "padding": "valid", "use_bias": False},
    ),
    (
        keras.layers.DepthwiseConv2D,
        NoCopyDepthwiseConv2D,
        {"kernel_size": 3, "dilation_rate": 2, "padding": "same", "activation": "relu"},
    ),
    (
        keras.layers.Conv2DTranspose,
        NoCopyConv2DTranspose,
        {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
    ),
    (
        keras.layers.Conv2DTranspose,
        NoCopyConv2DTranspose,
        {"filters": 4, "kernel_size": 2, "strides": 2, "use_bias": False},
    ),
    (keras.layers.MaxPooling2D, NoCopyMaxPooling2D, {"pool_size": 3, "strides": 2}),
    (keras.layers.MaxPooling2D, NoCopyMaxPooling2D, {"pool_size": 2, "padding": "same"}),
]


@pytest.mark.parametrize(("keras_cls", "no_copy_cls", "kwargs"), CASES)
def test_no_copy_layer_equals_the_keras_layer(keras_cls, no_copy_cls, kwargs):
    x = np.random.default_rng(0).normal(size=(2, 11, 13, 6)).astype("float32")
    reference = keras_cls(**kwargs)
    reference.build(x.shape)
    if reference.weights:
        rng = np.random.default_rng(2)
        reference.set_weights(
            [rng.normal(size=w.shape).astype("float32") for w in reference.weights]
        )
    layer = no_copy_cls.from_config(reference.get_config())
    layer.build(x.shape)
    layer.set_weights(reference.get_weights())
    want, (want_grad,) = value_and_grads(reference, x)
    got, (got_grad,) = value_and_grads(layer, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-5)


def test_use_no_copy_layers_keeps_names_weights_and_function():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2DTranspose(4, 2, strides=2)(x)
    x = keras.layers.UpSampling2D(2)(x)
    model = keras.Model(inputs, keras.layers.ReLU()(x))
    converted = use_no_copy_layers(model, force=True)
    assert converted is not model
    kinds = {type(layer) for layer in converted.layers}
    assert set(NO_COPY_LAYERS.values()) <= kinds and not set(NO_COPY_LAYERS) & kinds
    assert [w.path for w in converted.weights] == [w.path for w in model.weights]
    x = np.random.default_rng(0).random((2, 16, 16, 3), "float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(converted(x)), ops.convert_to_numpy(model(x)), atol=1e-5
    )


def test_registry_application_encoders_use_no_copy_layers():
    """On every backend here: torch and JAX always run them differently, TensorFlow when
    XLA-compiled (tests/test_xla_compiled.py)."""
    encoder = kd.get_encoder("mobilenetv2", input_shape=(64, 64, 3))
    kinds = {type(layer) for layer in encoder.layers}
    assert NoCopyDepthwiseConv2D in kinds and keras.layers.DepthwiseConv2D not in kinds


def test_weight_files_are_interchangeable_with_keras_layers(tmp_path):
    """Keras keys weight files by class name; the no-copy classes keep the Keras names."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    x = keras.layers.MaxPooling2D(2)(keras.layers.DepthwiseConv2D(3, padding="same")(x))
    model = keras.Model(inputs, keras.layers.Conv2DTranspose(4, 2, strides=2)(x))
    model.save_weights(tmp_path / "keras.weights.h5")
    converted = use_no_copy_layers(model, force=True)
    for layer in converted.layers:
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    converted.load_weights(tmp_path / "keras.weights.h5")
    for old, new in zip(model.weights, converted.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(old), ops.convert_to_numpy(new))


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_model(precision, tmp_path):
    x = np.random.default_rng(0).random((2, 64, 64, 3), "float32")
    y = (x[..., :1] > 0.5).astype("float32")
    keras.utils.set_random_seed(0)
    full = kd.build_unet("resnet18", classes=1, decoder_channels=(16, 16, 8, 8, 8))
    keras.utils.set_random_seed(0)
    mixed = kd.build_unet(
        "resnet18", classes=1, decoder_channels=(16, 16, 8, 8, 8), precision=precision
    )
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    half = precision.removeprefix("mixed_")
    convs = [layer for layer in mixed._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == half for layer in convs)
    assert all(w.dtype == "float32" for w in mixed.weights)
    assert mixed.output.dtype == "float32"
    mixed.set_weights(full.get_weights())
    want = ops.convert_to_numpy(full(x, training=False))
    got = ops.convert_to_numpy(mixed(x, training=False))
    assert got.dtype == np.float32
    # 16-bit rounding through ~20 layers: close in scale, not equal
    scale = np.abs(want).max()
    assert np.abs(got - want).max() < 0.1 * scale
    assert np.abs(got - want).max() > 0  # really computed in 16 bits
    mixed.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
    loss = mixed.train_on_batch(x, y)
    assert np.isfinite(loss)
    mixed.save(tmp_path / "mixed.keras")
    loaded = keras.saving.load_model(tmp_path / "mixed.keras")
    assert loaded.get_config()["precision"] == precision
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x, training=False)),
        ops.convert_to_numpy(mixed(x, training=False)),
        atol=1e-6,
    )


def test_the_global_dtype_policy_is_the_default():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = kd.build_unet("resnet18", decoder_channels=(8, 8, 8, 8, 8))
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.get_config()["precision"] == "mixed_bfloat16"
    assert model.get_layer("head").compute_dtype == "bfloat16"
    assert kd.build_unet("resnet18").get_config()["precision"] == "float32"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        kd.build_unet("resnet18", precision="float16")
