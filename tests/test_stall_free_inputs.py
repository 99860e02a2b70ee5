"""The stall-free fit/evaluate/predict inputs (keras_dynunet.stall_free_inputs).

Keras' own methods on an identical plain ``keras.Model`` are the reference: the mixin
may change how the tf.data pipeline is tuned, never what the model sees.
"""

import keras
import numpy as np
import pytest

import keras_dynunet as kd
from keras_dynunet.stall_free_inputs import StallFreeAdapter, StallFreeFitMixin

TF = keras.backend.backend() == "tensorflow"


def _pair(seed: int = 0, n: int = 10):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 1), dtype="float32")
    return x, (x > 0.5).astype("float32")


def _twins():
    """A VanillaUNet and a plain keras.Model with the same graph and weights."""
    ours = kd.VanillaUNet(input_shape=(8, 8, 1), classes=1, base_filters=2, depth=2, padding="same")
    plain = keras.Model(ours.inputs, ours.outputs)
    plain = keras.models.clone_model(plain)
    plain.set_weights(ours.get_weights())
    for m in (ours, plain):
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    return ours, plain


@pytest.mark.backends
def test_model_classes_use_the_mixin():
    for cls in (kd.DynUNet, kd.VanillaUNet, kd.TernausUNet11):
        assert issubclass(cls, StallFreeFitMixin), cls


@pytest.mark.backends
def test_fit_evaluate_predict_match_plain_keras():
    x, y = _pair()
    w = np.broadcast_to(np.linspace(0.5, 2.0, len(x))[:, None, None], (len(x), 8, 8)).astype(
        "float32"
    )
    vx, vy = _pair(1, 4)
    ours, plain = _twins()
    kwargs = dict(
        batch_size=4, epochs=2, shuffle=False, verbose=0, sample_weight=w, validation_data=(vx, vy)
    )
    h1, h2 = ours.fit(x, y, **kwargs), plain.fit(x, y, **kwargs)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(h1.history[key], h2.history[key], rtol=1e-5)
    for a, b in zip(ours.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        ours.evaluate(vx, vy, batch_size=3, verbose=0),
        plain.evaluate(vx, vy, batch_size=3, verbose=0),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        ours.predict(vx, batch_size=3, verbose=0),
        plain.predict(vx, batch_size=3, verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.backends
def test_validation_split_is_keras_split():
    x, y = _pair(n=10)
    ours, plain = _twins()
    kwargs = dict(batch_size=4, epochs=1, shuffle=False, verbose=0, validation_split=0.2)
    h1, h2 = ours.fit(x, y, **kwargs), plain.fit(x, y, **kwargs)
    np.testing.assert_allclose(h1.history["val_loss"], h2.history["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-5)


def test_pydataset_and_steps_per_epoch():
    images = [np.full((16, 16, 3), i * 20, "uint8") for i in range(4)]
    masks = [np.zeros((16, 16), "uint8") for _ in range(4)]
    ds = kd.SegmentationDataset(images, masks, batch_size=2, crop_size=(8, 8))
    model = kd.VanillaUNet(
        input_shape=(None, None, 3), classes=2, base_filters=2, depth=2, padding="same"
    )
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    history = model.fit(ds, epochs=2, steps_per_epoch=1, verbose=0)
    assert len(history.history["loss"]) == 2


@pytest.mark.skipif(not TF, reason="tf.data is the TensorFlow backend's input path")
def test_fit_feeds_keras_a_pipeline_without_autotuning(monkeypatch):
    """What Keras iterates in fit/evaluate/predict has tf.data autotuning off."""
    seen = []
    original = StallFreeAdapter.get_tf_dataset

    def spy(self):
        dataset = original(self)
        seen.append(dataset.options().autotune.enabled)
        return dataset

    monkeypatch.setattr(StallFreeAdapter, "get_tf_dataset", spy)
    x, y = _pair()
    ours, _ = _twins()
    ours.fit(x, y, batch_size=4, verbose=0, validation_split=0.2)
    ours.evaluate(x, y, verbose=0)
    ours.predict(x, verbose=0)
    assert seen == [False] * 4  # train, validation, evaluate, predict


@pytest.mark.skipif(not TF, reason="tf.data is the TensorFlow backend's input path")
def test_adapter_turns_autotuning_off_for_every_input_kind():
    import tensorflow as tf

    x, y = _pair()
    plain_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).prefetch(tf.data.AUTOTUNE)
    assert plain_ds.options().autotune.enabled is not False  # Keras' inputs tune by default
    inputs = {
        "arrays": StallFreeAdapter.for_input(x, y, batch_size=4),
        "tf.data": StallFreeAdapter.for_input(plain_ds),
        "pydataset": StallFreeAdapter.for_input(
            kd.SegmentationDataset(
                [np.zeros((8, 8, 3), "uint8")] * 2, [np.zeros((8, 8), "uint8")] * 2, batch_size=2
            )
        ),
    }
    for name, adapter in inputs.items():
        dataset = adapter.get_tf_dataset()
        assert dataset.options().autotune.enabled is False, name
        assert next(iter(dataset))[0].shape[0] in (2, 4), name
    assert inputs["arrays"].num_batches == 3 and inputs["arrays"].partial_batch_size == 2


def test_validation_split_needs_arrays():
    ours, _ = _twins()
    ds = kd.SegmentationDataset(
        [np.zeros((8, 8, 3), "uint8")] * 2, [np.zeros((8, 8), "uint8")] * 2, batch_size=2
    )
    with pytest.raises(ValueError, match="validation_split"):
        ours.fit(ds, validation_split=0.5, verbose=0)


@pytest.mark.backends
def test_plain_keras_model_takes_the_adapter_as_x():
    x, y = _pair()
    _, plain = _twins()
    reference = keras.models.clone_model(plain)
    reference.set_weights(plain.get_weights())
    reference.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    adapter = StallFreeAdapter.for_input(x, y, batch_size=4, shuffle=False)
    h1 = plain.fit(adapter, epochs=2, verbose=0)
    h2 = reference.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-5)
