"""DynUNet as a plain Keras model: fit, save/load, config, freezing. Runs on every backend."""

import keras
import numpy as np
import pytest

import keras_dynunet as kd

pytestmark = pytest.mark.backends


def _blobs(n=16, size=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(4, 8)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype("float32")
        images.append(np.repeat(mask[..., None], 3, -1) + rng.normal(0, 0.2, (size, size, 3)))
        masks.append(mask[..., None])
    return np.asarray(images, "float32"), np.asarray(masks, "float32")


def test_fit_lowers_the_loss():
    x, y = _blobs()
    model = kd.build_unet(
        "resnet18", classes=1, activation="sigmoid", decoder_channels=(32, 16, 16, 8, 8)
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    history = model.fit(x, y, batch_size=8, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses


def test_sparse_categorical_fit_on_a_dataset():
    x, y = _blobs(8)
    model = kd.build_unet("efficientnet-lite0", classes=3)
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = model.fit(x, y.astype("int32"), batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("encoder", ["resnet18", "custom"])
def test_save_and_load_give_identical_predictions(tmp_path, encoder):
    if encoder == "custom":
        inp = keras.Input((None, None, 3))
        h = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="d1")(inp)
        h = keras.layers.BatchNormalization(name="d1_bn")(h)
        h = keras.layers.Conv2D(16, 3, strides=4, padding="same", name="d2")(h)
        encoder = keras.Model(inp, h, name="my_encoder")
    model = kd.build_unet(encoder, classes=2, upsampling="pixelshuffle")
    x = np.random.default_rng(0).uniform(size=(2, 40, 56, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, kd.DynUNet)
    assert [t.to_dict() for t in loaded.taps] == [t.to_dict() for t in model.taps]
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)


def test_config_round_trip():
    model = kd.build_unet("mobilenetv2", classes=5, upsampling="transpose", center=True)
    clone = kd.DynUNet.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.count_params() == model.count_params()


def test_freeze_encoder_keeps_batchnorm_statistics():
    x, y = _blobs(8)
    model = kd.build_unet("resnet18", classes=1, activation="sigmoid")
    model.freeze_encoder()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    bn = model.encoder.get_layer("bn1")
    before = [w.numpy().copy() for w in bn.weights]
    decoder_before = model.get_layer("head").kernel.numpy().copy()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    for a, b in zip(before, bn.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    assert not np.allclose(decoder_before, model.get_layer("head").kernel.numpy())
    model.unfreeze_encoder()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert not np.allclose(before[2], bn.weights[2].numpy())  # moving mean updates again
