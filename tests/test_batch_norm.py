"""The fused batch norm equals ``keras.layers.BatchNormalization``. Every backend.

Its training step is hand-differentiated on every backend; here it is checked against the
Keras layer: outputs, input / scale / offset gradients, moving statistics, and a compiled
training step (XLA on TensorFlow and JAX).
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


def test_training_takes_the_hand_gradient(monkeypatch):
    """The hand-written path runs in training on this backend, and not in inference."""
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
    assert keras.backend.backend() in batch_norm.HAND_GRADIENT_BACKENDS
    assert calls


def _small_models_and_data(samples, seed):
    """The same small conv + batch-norm model with the Keras layer and with ours (same
    weights, XLA where the backend compiles: tf.custom_gradient inside an XLA cluster on
    TensorFlow), and regression data."""
    models = []
    for norm_class in (keras.layers.BatchNormalization, FastBatchNormalization):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6, 7, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
        x = keras.layers.Activation("relu")(norm_class(momentum=0.5)(x))
        model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(x))
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse",
                      jit_compile=keras.backend.backend() != "torch")
        models.append(model)
    models[1].set_weights(models[0].get_weights())
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 2.0, (samples, 6, 7, 3)).astype("float32")
    return models, x, rng.normal(size=(samples, 6, 7, 1)).astype("float32")


def _assert_same_weights(ours, reference):
    for got, want in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_compiled_training_steps_equal_keras():
    (reference, ours), x, y = _small_models_and_data(4, seed=2)
    start = reference.get_weights()
    for _ in range(3):
        want_loss = float(reference.train_on_batch(x, y))
        got_loss = float(ours.train_on_batch(x, y))
        np.testing.assert_allclose(got_loss, want_loss, rtol=1e-4)
    for want, before in zip(reference.get_weights(), start, strict=True):
        assert np.abs(want - before).max() > 1e-3  # every weight moved, moving statistics too
    _assert_same_weights(ours, reference)


def test_fit_with_a_partial_last_batch_equals_keras():
    """A partial last batch makes TensorFlow retrace the step with an unknown batch size."""
    (reference, ours), x, y = _small_models_and_data(5, seed=3)
    want = reference.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0).history["loss"]
    got = ours.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-4)
    _assert_same_weights(ours, reference)
