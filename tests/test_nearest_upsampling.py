"""Nearest upsampling with a slice-sum gradient equals Keras' ``UpSampling2D``, and the
no-copy layer takes it exactly where XLA compiles. Every backend."""

import keras
import numpy as np
import pytest
from autodiff import value_and_grads

from keras_dynunet.layers.nearest_upsampling import upsample_nearest
from keras_dynunet.layers.no_copy import NO_COPY_LAYERS, NoCopyUpSampling2D

pytestmark = pytest.mark.backends


@pytest.mark.parametrize(
    ("size", "factors"), [((4, 5), (2, 2)), ((3, 3), (3, 2)), ((2, 6), (1, 4))]
)
def test_values_and_gradients_equal_keras_upsampling(size, factors):
    x = np.random.default_rng(sum(size)).normal(size=(2, *size, 3)).astype("float32")
    keras_layer = keras.layers.UpSampling2D(factors)
    want, (want_dx,) = value_and_grads(keras_layer, x)
    got, (got_dx,) = value_and_grads(lambda t: upsample_nearest(t, factors), x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_dx, want_dx, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_layer_takes_the_xla_form_only_for_nearest_where_xla_compiles(monkeypatch, interpolation):
    from keras_dynunet.layers import no_copy

    calls = []
    monkeypatch.setattr(
        no_copy, "upsample_nearest", lambda *a: calls.append(1) or upsample_nearest(*a)
    )
    layer = NoCopyUpSampling2D(2, interpolation=interpolation)
    x = np.random.default_rng(0).normal(size=(1, 3, 4, 2)).astype("float32")
    want = keras.layers.UpSampling2D(2, interpolation=interpolation)(x)
    layer.xla_compiled = True  # TensorFlow: as if compiled with jit_compile=True
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)), keras.ops.convert_to_numpy(want), atol=1e-6
    )
    xla = keras.backend.backend() in ("jax", "tensorflow")
    assert calls == ([1] if xla and interpolation == "nearest" else [])
    assert NO_COPY_LAYERS[keras.layers.UpSampling2D] is NoCopyUpSampling2D
