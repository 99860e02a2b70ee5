"""Inference with batch norms folded into convolutions computes what the layers compute,
folds only the pairs it may, and leaves training alone. Every backend."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_dynunet as kd
from keras_dynunet import folded_batch_norm
from keras_dynunet.folded_batch_norm import call_folded, foldable_pairs, worth_folding
from keras_dynunet.layers.no_copy import use_no_copy_layers

pytestmark = pytest.mark.backends

L = keras.layers


def _randomise_norms(model, seed=0):
    """Moving statistics, scale, offset and convolution biases far from their initial
    values (else the fold would be close to the identity and hide mistakes)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D)) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.5, layer.bias.shape).astype("float32"))
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, n).astype("float32"))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.3, 2.0, n).astype("float32"))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.5, n).astype("float32"))


@pytest.fixture
def folded_calls(monkeypatch):
    """The names of the convolutions that ``call_folded`` folds, in call order."""
    calls = []
    original = folded_batch_norm.folded_convolution

    def spy(convolution, norm, inputs):
        calls.append(convolution.name)
        return original(convolution, norm, inputs)

    monkeypatch.setattr(folded_batch_norm, "folded_convolution", spy)
    return calls


def _zoo_of_pairs():
    """A model with one of each case; names say which pairs may fold."""
    inputs = keras.Input((12, 12, 4))
    fold_bias = L.BatchNormalization(name="n_fold_bias")(
        L.Conv2D(6, 3, padding="same", name="c_fold_bias")(inputs)
    )
    fold_plain = L.BatchNormalization(scale=False, center=False, name="n_fold_plain")(
        L.Conv2D(6, 1, use_bias=False, name="c_fold_plain")(fold_bias)
    )
    depthwise = L.BatchNormalization(name="n_fold_depthwise")(
        L.DepthwiseConv2D(
            3, depth_multiplier=2, strides=2, padding="same", name="c_fold_depthwise"
        )(fold_plain)
    )
    grouped = L.BatchNormalization(name="n_fold_grouped")(
        L.Conv2D(12, 3, groups=3, padding="same", name="c_fold_grouped")(depthwise)
    )
    activated = L.BatchNormalization(name="n_activation")(
        L.Conv2D(6, 3, activation="relu", padding="same", name="c_activation")(grouped)
    )
    branch = L.Conv2D(6, 1, name="c_two_uses")(activated)
    two_uses = L.Add()([L.BatchNormalization(name="n_two_uses")(branch), branch])
    shared = L.Conv2D(6, 1, name="c_shared")
    shared_out = L.BatchNormalization(name="n_shared")(shared(two_uses))
    shared_again = shared(shared_out)
    dense = L.BatchNormalization(name="n_dense")(L.Dense(6, name="c_dense")(shared_again))
    transpose = L.BatchNormalization(name="n_transpose")(
        L.Conv2DTranspose(6, 2, strides=2, name="c_transpose")(dense)
    )
    exposed = L.Conv2D(6, 1, name="c_model_output")(transpose)
    last = L.BatchNormalization(name="n_after_model_output")(exposed)
    return keras.Model(inputs, [last, exposed])


def test_pairs_fold_only_where_the_function_is_unchanged():
    pairs = foldable_pairs(_zoo_of_pairs())
    assert sorted((c.name, n.name) for c, n in pairs.items()) == [
        ("c_fold_bias", "n_fold_bias"),
        ("c_fold_depthwise", "n_fold_depthwise"),
        ("c_fold_grouped", "n_fold_grouped"),
        ("c_fold_plain", "n_fold_plain"),
    ]


@pytest.mark.parametrize("no_copy", [False, True])
def test_folded_call_equals_the_layers(no_copy, folded_calls):
    model = _zoo_of_pairs()
    if no_copy:
        model = use_no_copy_layers(model, force=True)
    _randomise_norms(model)
    x = np.random.default_rng(1).normal(size=(3, 12, 12, 4)).astype("float32")
    reference = [ops.convert_to_numpy(t) for t in model(x, training=False)]
    folded = [ops.convert_to_numpy(t) for t in call_folded(model, x)]
    assert sorted(folded_calls) == [
        "c_fold_bias",
        "c_fold_depthwise",
        "c_fold_grouped",
        "c_fold_plain",
    ]
    for got, want in zip(folded, reference, strict=True):
        _assert_close(got, want)


def test_worth_folding_skips_small_outputs_of_large_kernels():
    conv = L.Conv2D(8, 3, padding="same")
    assert worth_folding(conv, (2, 32, 32, 16))  # 2048 pixels > 144 taps
    assert not worth_folding(conv, (1, 4, 4, 512))  # 16 pixels < 4608 taps
    assert not worth_folding(L.Conv2D(8, 3, strides=2, padding="same"), (1, 8, 8, 64))  # 16 < 576
    # depthwise: taps per output channel are kh * kw only
    assert worth_folding(L.DepthwiseConv2D(3, padding="same"), (1, 4, 4, 512))  # 16 > 9
    assert not worth_folding(L.DepthwiseConv2D(3), (1, 4, 4, 512))  # valid: 4 < 9
    assert worth_folding(conv, (None, None, None, 64))


def _assert_close(got, want):
    """Equal up to float32 rounding, which deep nets with random statistics amplify."""
    got, want = ops.convert_to_numpy(got), ops.convert_to_numpy(want)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 2e-4 * max(1.0, np.abs(want).max())


def _unet(name, **kwargs):
    model = kd.build_unet(name, classes=2, input_shape=(None, None, 3), **kwargs)
    _randomise_norms(model)
    return model


def _twin(model, name, **kwargs):
    twin = kd.build_unet(name, classes=2, input_shape=(None, None, 3), **kwargs)
    twin.set_weights(model.get_weights())
    twin.fold_batch_norm = False
    return twin


def test_unet_inference_is_folded_and_unchanged(folded_calls):
    model = _unet("resnet18")
    twin = _twin(model, "resnet18")
    x = np.random.default_rng(2).random((2, 64, 96, 3)).astype("float32")
    got = model.predict_on_batch(x)
    # every conv of resnet18 and the decoder is followed by a batch norm; at 64x96 the
    # deepest 3x3 convs (2x3 pixels x batch 2 = 12 < 4608 taps) keep theirs
    pairs = len(foldable_pairs(model)) + len(foldable_pairs(model.encoder))
    assert 0 < len(folded_calls) < pairs
    _assert_close(got, twin.predict_on_batch(x))
    _assert_close(ops.convert_to_numpy(model(x)), ops.convert_to_numpy(twin(x)))


def test_folding_reads_the_current_weights():
    """The folded kernel is computed per call: no stale copy after the weights change."""
    model = _unet("resnet18")
    twin = _twin(model, "resnet18")
    x = np.random.default_rng(3).random((1, 64, 64, 3)).astype("float32")
    model.predict_on_batch(x)
    _randomise_norms(model, seed=7)
    twin.set_weights(model.get_weights())
    _assert_close(model.predict_on_batch(x), twin.predict_on_batch(x))


def test_training_does_not_fold():
    model = _unet("resnet18")
    twin = _twin(model, "resnet18")
    x = np.random.default_rng(4).random((2, 64, 64, 3)).astype("float32")
    got = ops.convert_to_numpy(model(x, training=True))
    want = ops.convert_to_numpy(twin(x, training=True))
    _assert_close(got, want)
    # batch statistics, not the (randomised) moving ones: folding would differ a lot
    assert np.abs(got - ops.convert_to_numpy(model(x, training=False))).max() > 1e-2


def test_nested_unet_folds_and_matches():
    model = _unet("resnet18")
    twin = _twin(model, "resnet18")
    inputs = keras.Input((64, 64, 3))
    outer = keras.Model(inputs, model(inputs))
    x = np.random.default_rng(5).random((2, 64, 64, 3)).astype("float32")
    _assert_close(outer.predict_on_batch(x), twin.predict_on_batch(x))


def test_mixed_precision_folds_close_to_the_layers():
    model = _unet("resnet18", precision="mixed_bfloat16")
    twin = _twin(model, "resnet18", precision="mixed_bfloat16")
    x = np.random.default_rng(6).random((2, 64, 64, 3)).astype("float32")
    got, want = model.predict_on_batch(x), twin.predict_on_batch(x)
    assert got.dtype == want.dtype == np.float32
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
