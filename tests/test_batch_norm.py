"""The fused batch norm equals ``keras.layers.BatchNormalization``. Every backend.

On the torch and JAX backends its training step is hand-differentiated; here it is checked
against the Keras layer: outputs, input / scale / offset gradients, moving statistics.
"""

import keras
import numpy as np
import pytest
from autodiff import value_and_grads

from keras_dynunet.layers import batch_norm
from keras_dynunet.layers.batch_norm import FastBatchNormalization

pytestmark = pytest.mark.backends


def _pair(**kwargs):
    x = np.random.default_rng(0).normal(1.5, 2.0, (3, 6, 7, 5)).astype("float32")
    reference = keras.layers.BatchNormalization(**kwargs)
    reference.build(x.shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=w.shape).astype("float32") for w in reference.weights]
    weights = [np.abs(w) + 0.5 if "variance" in v.path else w
               for w, v in zip(weights, reference.weights, strict=True)]
    reference.set_weights(weights)
    layer = FastBatchNormalization.from_config(reference.get_config())
    layer.build(x.shape)
    layer.set_weights(weights)
    return x, reference, layer


@pytest.mark.parametrize("kwargs", [{}, {"center": False}, {"scale": False, "epsilon": 1e-5},
                                    {"axis": 1, "momentum": 0.9}])
def test_training_step_equals_keras(kwargs):
    x, reference, layer = _pair(**kwargs)
    non_trainable = [keras.ops.convert_to_numpy(w) for w in reference.non_trainable_weights]

    def run(bn):
        def fn(x, *params):
            return bn.stateless_call(list(params), non_trainable, x, training=True)[0]

        params = [keras.ops.convert_to_numpy(w) for w in bn.trainable_weights]
        value, grads = value_and_grads(fn, x, *params)
        _, moving = bn.stateless_call(params, non_trainable, x, training=True)
        return value, grads, [keras.ops.convert_to_numpy(m) for m in moving]

    want, want_grads, want_moving = run(reference)
    got, got_grads, got_moving = run(layer)
    assert len(got_grads) == 1 + len(reference.trainable_weights)
    assert all(np.abs(g).max() > 1e-3 for g in want_grads)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    for g, w in zip(got_moving, want_moving, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_inference_and_frozen_layers_equal_keras():
    x, reference, layer = _pair()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x, training=False)),
        keras.ops.convert_to_numpy(reference(x, training=False)), rtol=1e-5, atol=1e-5)
    reference.trainable = layer.trainable = False
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x, training=True)),
        keras.ops.convert_to_numpy(reference(x, training=True)), rtol=1e-5, atol=1e-5)


def test_training_takes_the_hand_gradient_on_torch_and_jax_only(monkeypatch):
    """The hand-written path runs exactly where it is meant to (and not in inference)."""
    calls = []
    original = batch_norm._train_normalize

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(batch_norm, "_train_normalize", spy)
    x, _, layer = _pair()
    layer(x, training=False)
    assert calls == []
    layer(x, training=True)
    want = keras.backend.backend() in ("torch", "jax")
    assert bool(calls) is want
