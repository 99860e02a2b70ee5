"""TensorFlow with XLA runs the no-copy layers' XLA forms (as JAX always does): the models
mark their layers from ``jit_compile``, results are unchanged. Every backend for the
marking; the XLA runs are TensorFlow's."""

import keras
import numpy as np
import pytest

import keras_dynunet as kd
from keras_dynunet.layers import no_copy
from keras_dynunet.xla_compiled import XLACompiledLayersMixin, mark_xla_compiled

pytestmark = pytest.mark.backends

on_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="XLA marking is TensorFlow's"
)


def _marked(model):
    return [
        layer.name for layer in model._flatten_layers() if getattr(layer, "xla_compiled", False)
    ]


def _small_net():
    """A 3x3 conv, depthwise conv, max pool and transposed conv: the four layers with XLA
    forms (the closing 1x1 conv has none, but is marked all the same)."""

    class Net(XLACompiledLayersMixin, keras.Model):
        pass

    inputs = keras.Input((16, 16, 3))
    x = no_copy.NoCopyConv2D(3, 3, padding="same", name="conv")(inputs)  # keeps 3 channels
    x = no_copy.NoCopyDepthwiseConv2D(3, strides=2, padding="same", name="depthwise")(x)
    x = no_copy.NoCopyMaxPooling2D(3, strides=2, padding="same", name="pool")(x)
    x = no_copy.NoCopyConv2DTranspose(4, 3, strides=2, padding="same", name="transpose")(x)
    return Net(inputs, no_copy.NoCopyConv2D(1, 1, name="head")(x))


def test_compile_marks_exactly_on_tensorflow_cpu():
    model = _small_net()
    assert _marked(model) == []
    model.compile(loss="mse", jit_compile=True)
    marked = ["conv", "depthwise", "pool", "transpose", "head"]
    expected = marked if keras.backend.backend() == "tensorflow" else []
    assert _marked(model) == expected
    model.compile(loss="mse", jit_compile=False)
    assert _marked(model) == []
    model.jit_compile = True  # Keras' setter, without compile
    assert _marked(model) == expected


def test_mark_reaches_nested_encoders():
    model = kd.build_unet("mobilenetv2", classes=1, input_shape=(64, 64, 3))
    depthwise = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, no_copy.NoCopyDepthwiseConv2D)
    ]
    assert depthwise and mark_xla_compiled(model, True) >= len(depthwise)
    assert all(layer.xla_compiled for layer in depthwise)


@pytest.fixture
def forms(monkeypatch):
    """Names of the XLA forms the no-copy layers call (at trace time)."""
    calls = []
    for name in (
        "conv_with_upstream_filter_gradient",
        "depthwise_conv_by_shifts",
        "max_pool_by_shifts",
        "conv_transpose_by_phases",
    ):
        original = getattr(no_copy, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(no_copy, name, spy)
    return calls


@on_tensorflow
def test_xla_compiled_model_takes_the_xla_forms_and_computes_the_same(forms):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    y = rng.normal(size=(4, 8, 8, 1)).astype("float32")
    results = {}
    for jit in (False, True):
        keras.utils.set_random_seed(1)
        model = _small_net()
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=jit)
        forms.clear()
        before = model.predict_on_batch(x)
        model.train_on_batch(x, y)
        results[jit] = (before, model.predict_on_batch(x), sorted(set(forms)))
    assert results[False][2] == []
    assert results[True][2] == [
        "conv_transpose_by_phases",
        "conv_with_upstream_filter_gradient",
        "depthwise_conv_by_shifts",
        "max_pool_by_shifts",
    ]
    for plain, xla in zip(results[False][:2], results[True][:2], strict=True):
        np.testing.assert_allclose(xla, plain, rtol=1e-4, atol=1e-5)


@on_tensorflow
def test_every_input_size_gets_the_xla_forms(forms):
    """Keras traces a second input size with unknown height and width
    (``reduce_retracing``); with XLA on, the models trace each shape on its own."""
    model = kd.build_unet("mobilenetv2", classes=1, input_shape=(None, None, 3))
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    rng = np.random.default_rng(0)
    for size in (64, 96):
        forms.clear()
        x = rng.random((2, size, size, 3)).astype("float32")
        assert model.predict_on_batch(x).shape == (2, size, size, 1)
        model.train_on_batch(x, np.zeros((2, size, size, 1), "float32"))
        assert "depthwise_conv_by_shifts" in forms, size
