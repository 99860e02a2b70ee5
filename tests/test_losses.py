"""Segmentation losses against hand-computed values and NumPy references, on every backend."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_dynunet.losses import (
    CombinedLoss,
    DiceLoss,
    JaccardLoss,
    LovaszHingeLoss,
    WeightedBinaryCrossentropy,
    WeightedBinaryFocalCrossentropy,
    WeightedCategoricalCrossentropy,
    split_weight_channel,
    stack_weight_map,
)

pytestmark = pytest.mark.backends


def _f(x):
    return float(ops.convert_to_numpy(x))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _rand(seed, shape=(2, 3, 4, 2)):
    rng = np.random.default_rng(seed)
    y = (rng.random(shape) > 0.5).astype("float32")
    p = rng.uniform(0.05, 0.95, shape).astype("float32")
    w = rng.uniform(0.5, 5.0, shape[:-1]).astype("float32")
    return y, p, w


# --- the weight-channel convention ---------------------------------------------------------


def test_stack_weight_map_appends_the_last_channel():
    y = np.arange(8, dtype="float32").reshape(1, 2, 2, 2)
    w = np.full((1, 2, 2), 7.0)
    out = stack_weight_map(y, w)
    assert out.shape == (1, 2, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., :2], y)
    np.testing.assert_array_equal(out[..., 2], w)
    # (N, H, W) targets get a channel axis; (N, H, W, 1) weight maps are accepted too.
    assert stack_weight_map(np.zeros((1, 2, 2)), np.ones((1, 2, 2, 1))).shape == (1, 2, 2, 2)
    with pytest.raises(ValueError, match="weight_map shape"):
        stack_weight_map(np.zeros((1, 2, 2, 1)), np.ones((1, 3, 2)))


def test_split_weight_channel_rules():
    pred = np.zeros((1, 2, 2, 3))
    y, w = split_weight_channel(np.ones((1, 2, 2, 4)), pred)
    assert tuple(y.shape) == (1, 2, 2, 3) and tuple(w.shape) == (1, 2, 2)
    assert split_weight_channel(np.ones((1, 2, 2, 3)), pred)[1] is None
    assert split_weight_channel(np.ones((1, 2, 2)), pred)[1] is None
    ids, w = split_weight_channel(np.ones((1, 2, 2, 2)), pred, sparse=True)
    assert tuple(ids.shape) == (1, 2, 2) and tuple(w.shape) == (1, 2, 2)
    assert split_weight_channel(np.ones((1, 2, 2, 1)), pred, sparse=True)[1] is None


# --- pixel-wise losses ---------------------------------------------------------------------


def test_weighted_bce_hand_computed_2x2():
    t = np.array([[1.0, 0.0], [1.0, 0.0]])
    p = np.array([[0.9, 0.2], [0.6, 0.5]])
    w = np.array([[1.0, 2.0], [3.0, 0.5]])
    expected = (
        1.0 * -math.log(0.9) + 2.0 * -math.log(0.8) + 3.0 * -math.log(0.6) + 0.5 * -math.log(0.5)
    ) / 4
    y_true = stack_weight_map(t[None, ..., None], w[None])
    got = _f(WeightedBinaryCrossentropy()(y_true, p[None, ..., None]))
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("from_logits", [False, True])
def test_weighted_bce_matches_numpy(from_logits):
    y, p, w = _rand(1)
    out = np.log(p / (1 - p)) if from_logits else p
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))  # (N, H, W, C)
    expected = np.mean(w * bce.mean(-1))
    loss = WeightedBinaryCrossentropy(from_logits=from_logits)
    assert _f(loss(stack_weight_map(y, w), out)) == pytest.approx(expected, rel=1e-5)
    # Without the weight channel it is Keras' BinaryCrossentropy.
    plain = keras.losses.BinaryCrossentropy(from_logits=from_logits)(y, out)
    assert _f(loss(y, out)) == pytest.approx(_f(plain), rel=1e-6)
    assert _f(loss(y, out)) == pytest.approx(np.mean(bce), rel=1e-5)


def test_weighted_focal_matches_numpy_and_reduces_to_bce():
    y, p, w = _rand(2)
    gamma = 2.0
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    p_t = y * p + (1 - y) * (1 - p)
    expected = np.mean(w * ((1 - p_t) ** gamma * bce).mean(-1))
    y_true = stack_weight_map(y, w)
    got = WeightedBinaryFocalCrossentropy(gamma=gamma)(y_true, p)
    assert _f(got) == pytest.approx(expected, rel=1e-5)
    zero_gamma = WeightedBinaryFocalCrossentropy(gamma=0.0)(y_true, p)
    assert _f(zero_gamma) == pytest.approx(_f(WeightedBinaryCrossentropy()(y_true, p)), rel=1e-6)
    plain = keras.losses.BinaryFocalCrossentropy(gamma=gamma)(y, p)
    assert _f(WeightedBinaryFocalCrossentropy(gamma=gamma)(y, p)) == pytest.approx(_f(plain))


def test_weighted_categorical_hand_computed_sparse_and_dense():
    # Two pixels, three classes: ids (2, 0), weights (3, 1).
    probs = np.array([[[[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]]]])
    expected = (3 * -math.log(0.5) + 1 * -math.log(0.5)) / 2
    sparse = np.array([[[[2.0, 3.0], [0.0, 1.0]]]])
    assert _f(WeightedCategoricalCrossentropy(sparse=True)(sparse, probs)) == pytest.approx(
        expected, rel=1e-5
    )
    dense = np.array([[[[0.0, 0.0, 1.0, 3.0], [1.0, 0.0, 0.0, 1.0]]]])
    assert _f(WeightedCategoricalCrossentropy()(dense, probs)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("from_logits", [False, True])
def test_weighted_categorical_matches_numpy(from_logits):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ids = rng.integers(0, 4, size=(2, 3, 3))
    w = rng.uniform(0.5, 3.0, size=(2, 3, 3)).astype("float32")
    ce = -np.log(np.take_along_axis(probs, ids[..., None], -1)[..., 0])
    expected = np.mean(w * ce)
    out = logits if from_logits else probs
    sparse = WeightedCategoricalCrossentropy(from_logits=from_logits, sparse=True)
    dense = WeightedCategoricalCrossentropy(from_logits=from_logits)
    one_hot = np.eye(4, dtype="float32")[ids]
    assert _f(sparse(stack_weight_map(ids, w), out)) == pytest.approx(expected, rel=1e-4)
    assert _f(dense(stack_weight_map(one_hot, w), out)) == pytest.approx(expected, rel=1e-4)
    # No weight map: Keras' own losses.
    assert _f(sparse(ids[..., None].astype("float32"), out)) == pytest.approx(np.mean(ce), 1e-4)
    assert _f(dense(one_hot, out)) == pytest.approx(np.mean(ce), rel=1e-4)


# --- Dice / Jaccard ------------------------------------------------------------------------

# Two 2x2 images, one channel. Image 0: sum(t) = 2, sum(p) = 1.6, sum(t p) = 0.9 + 0.5 = 1.4.
# Image 1: empty target, sum(p) = 0.4, sum(t p) = 0.
T = np.array([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])[..., None]
P = np.array([[[0.9, 0.5], [0.2, 0.0]], [[0.1, 0.0], [0.0, 0.3]]])[..., None]


def test_dice_hand_computed():
    per_image = ((1 - (2 * 1.4 + 1) / (2 + 1.6 + 1)) + (1 - 1 / (0.4 + 1))) / 2
    assert _f(DiceLoss()(T, P)) == pytest.approx(per_image, rel=1e-5)
    batch = 1 - (2 * 1.4 + 1) / (2 + 2.0 + 1)  # sums over both images
    assert _f(DiceLoss(per_image=False)(T, P)) == pytest.approx(batch, rel=1e-5)
    no_smooth = ((1 - 2 * 1.4 / 3.6) + 1.0) / 2  # empty target -> Dice 0 -> loss 1
    assert _f(DiceLoss(smooth=0.0)(T, P)) == pytest.approx(no_smooth, rel=1e-5)
    # Empty target predicted empty: perfect with smoothing.
    assert _f(DiceLoss()(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 1)))) == pytest.approx(
        0.0, abs=1e-6
    )


def test_jaccard_hand_computed():
    per_image = ((1 - (1.4 + 1) / (2 + 1.6 - 1.4 + 1)) + (1 - 1 / (0.4 + 1))) / 2
    assert _f(JaccardLoss()(T, P)) == pytest.approx(per_image, rel=1e-5)
    batch = 1 - (1.4 + 1) / (2 + 2.0 - 1.4 + 1)
    assert _f(JaccardLoss(per_image=False)(T, P)) == pytest.approx(batch, rel=1e-5)


def test_dice_and_jaccard_multichannel_match_numpy_and_keras():
    y, p, w = _rand(4)
    inter = (y * p).sum((1, 2))
    st, sp = y.sum((1, 2)), p.sum((1, 2))
    dice = 1 - ((2 * inter + 1) / (st + sp + 1)).mean(-1)  # (N,)
    iou = 1 - ((inter + 1) / (st + sp - inter + 1)).mean(-1)
    assert _f(DiceLoss()(y, p)) == pytest.approx(dice.mean(), rel=1e-5)
    assert _f(JaccardLoss()(y, p)) == pytest.approx(iou.mean(), rel=1e-5)
    per_sample = DiceLoss(reduction=None)(y, p)
    np.testing.assert_allclose(ops.convert_to_numpy(per_sample), dice, rtol=1e-5)
    # smooth=0 is Keras' Dice / Tversky(1, 1) over the spatial axes (masks are non-empty).
    assert y.sum((1, 2)).min() > 0
    keras_dice = keras.losses.Dice(axis=(1, 2))(y, p)
    keras_iou = keras.losses.Tversky(alpha=1.0, beta=1.0, axis=(1, 2))(y, p)
    assert _f(DiceLoss(smooth=0.0)(y, p)) == pytest.approx(_f(keras_dice), rel=1e-5)
    assert _f(JaccardLoss(smooth=0.0)(y, p)) == pytest.approx(_f(keras_iou), rel=1e-5)
    # Logits, a weight channel, and sample weights.
    logits = np.log(p / (1 - p))
    assert _f(DiceLoss(from_logits=True)(y, logits)) == pytest.approx(dice.mean(), rel=1e-4)
    assert _f(DiceLoss()(stack_weight_map(y, w), p)) == pytest.approx(dice.mean(), rel=1e-5)
    sw = np.array([0.0, 2.0])
    assert _f(DiceLoss()(y, p, sample_weight=sw)) == pytest.approx(np.mean(dice * sw), rel=1e-5)


# --- Lovasz hinge --------------------------------------------------------------------------


def _np_lovasz_grad(gt_sorted):
    """Berman et al.'s ``lovasz_grad``, transliterated to NumPy."""
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum()
    union = gts + (1 - gt_sorted).cumsum()
    jaccard = 1.0 - intersection / union
    if p > 1:
        jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
    return jaccard


def _np_lovasz_hinge_flat(logits, labels):
    """Berman et al.'s ``lovasz_hinge_flat`` in NumPy."""
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    perm = np.argsort(-errors, kind="stable")
    return float(np.dot(np.maximum(errors[perm], 0.0), _np_lovasz_grad(labels[perm])))


def _np_lovasz_hinge(logits, labels, per_image=True):
    """Berman's ``lovasz_hinge`` per channel of (N, H, W, C) arrays, averaged over channels."""
    values = []
    for c in range(logits.shape[-1]):
        lg, lb = logits[..., c].astype("float64"), labels[..., c].astype("float64")
        if per_image:
            values.append(
                np.mean(
                    [
                        _np_lovasz_hinge_flat(a.ravel(), b.ravel())
                        for a, b in zip(lg, lb, strict=True)
                    ]
                )
            )
        else:
            values.append(_np_lovasz_hinge_flat(lg.ravel(), lb.ravel()))
    return float(np.mean(values))


def test_lovasz_hinge_hand_computed():
    # labels (1, 1, 0), logits (2, 0, 0.5): hinge errors (-1, 1, 1.5). Sorted descending:
    # (1.5, 1, -1) with labels (0, 1, 1); gts = 2, intersection = (2, 1, 0), union = (3, 3, 3),
    # 1 - I/U = (1/3, 2/3, 1), gradient (1/3, 1/3, 1/3): loss = 1.5/3 + 1/3 + 0.
    y = np.array([1.0, 1.0, 0.0]).reshape(1, 1, 3, 1)
    logits = np.array([2.0, 0.0, 0.5]).reshape(1, 1, 3, 1)
    expected = 1.5 / 3 + 1 / 3
    assert _f(LovaszHingeLoss()(y, logits)) == pytest.approx(expected, rel=1e-6)
    assert _np_lovasz_hinge(logits, y) == pytest.approx(expected)
    # All correct with margin: zero loss.
    assert _f(LovaszHingeLoss()(y, np.array([3.0, 2.0, -4.0]).reshape(1, 1, 3, 1))) == 0.0


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_lovasz_hinge_matches_berman_reference(per_image, seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random((2, 3, 4, 2)) > 0.6).astype("float32")
    labels[1, ..., 0] = 0.0  # one image-channel with no foreground at all
    logits = rng.normal(0.0, 2.0, labels.shape).astype("float32")
    expected = _np_lovasz_hinge(logits, labels, per_image=per_image)
    got = _f(LovaszHingeLoss(per_image=per_image)(labels, logits))
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_lovasz_hinge_ties_probabilities_and_weight_channel():
    rng = np.random.default_rng(5)
    labels = (rng.random((2, 3, 4, 2)) > 0.5).astype("float32")
    tied = rng.integers(-1, 2, labels.shape).astype("float32")  # many equal errors
    assert _f(LovaszHingeLoss()(labels, tied)) == pytest.approx(
        _np_lovasz_hinge(tied, labels), rel=1e-5
    )
    logits = rng.normal(size=labels.shape).astype("float32")
    expected = _np_lovasz_hinge(logits, labels)
    probs = _sigmoid(logits.astype("float64")).astype("float32")
    assert _f(LovaszHingeLoss(from_logits=False)(labels, probs)) == pytest.approx(expected, 1e-4)
    w = rng.uniform(1, 3, labels.shape[:-1])
    assert _f(LovaszHingeLoss()(stack_weight_map(labels, w), logits)) == pytest.approx(
        expected, rel=1e-5
    )


# --- CombinedLoss, serialization, a compiled model ----------------------------------------


def test_combined_loss_is_the_weighted_sum():
    y, p, w = _rand(6)
    y_true = stack_weight_map(y, w)
    parts = [WeightedBinaryCrossentropy(), DiceLoss(), JaccardLoss(smooth=0.5)]
    weights = [1.0, 0.5, 2.0]
    expected = sum(k * _f(loss(y_true, p)) for k, loss in zip(weights, parts, strict=True))
    assert _f(CombinedLoss(parts, weights)(y_true, p)) == pytest.approx(expected, rel=1e-5)
    # Default weights are 1; sample_weight is forwarded to every term.
    sw = np.array([0.25, 2.0])
    both = CombinedLoss([DiceLoss(), JaccardLoss()])
    expected = _f(DiceLoss()(y, p, sample_weight=sw)) + _f(JaccardLoss()(y, p, sample_weight=sw))
    assert _f(both(y, p, sample_weight=sw)) == pytest.approx(expected, rel=1e-5)
    # Keras loss names resolve to Loss instances.
    named = CombinedLoss(["BinaryCrossentropy", DiceLoss()])
    expected = _f(keras.losses.BinaryCrossentropy()(y, p)) + _f(DiceLoss()(y, p))
    assert _f(named(y, p)) == pytest.approx(expected, rel=1e-5)


def test_combined_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match="weights"):
        CombinedLoss([DiceLoss(), JaccardLoss()], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        CombinedLoss([])
    with pytest.raises(TypeError, match="Loss instances"):
        CombinedLoss([keras.losses.binary_crossentropy])


ALL_LOSSES = [
    WeightedBinaryCrossentropy(from_logits=True, label_smoothing=0.1),
    WeightedBinaryFocalCrossentropy(
        gamma=1.5, alpha=0.3, apply_class_balancing=True, from_logits=True
    ),
    DiceLoss(from_logits=True, smooth=0.5, per_image=False),
    JaccardLoss(from_logits=True, smooth=2.0),
    LovaszHingeLoss(per_image=False),
    CombinedLoss([WeightedBinaryCrossentropy(from_logits=True), LovaszHingeLoss()], [1.0, 0.3]),
]


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda loss: type(loss).__name__)
def test_losses_round_trip_through_config_and_serialization(loss):
    y, _, w = _rand(7)
    logits = np.random.default_rng(8).normal(size=y.shape).astype("float32")
    y_true = stack_weight_map(y, w)
    value = _f(loss(y_true, logits))
    clone = type(loss).from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    assert _f(clone(y_true, logits)) == pytest.approx(value, rel=1e-6)
    config = keras.saving.serialize_keras_object(loss)
    assert config["registered_name"] == f"keras_dynunet>{type(loss).__name__}"
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(loss)
    assert _f(restored(y_true, logits)) == pytest.approx(value, rel=1e-6)


def test_sparse_categorical_round_trip():
    loss = WeightedCategoricalCrossentropy(from_logits=True, sparse=True)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert (clone.from_logits, clone.sparse) == (True, True)


def test_model_compiled_with_combined_loss_fits_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 8, 8, 1)).astype("float32")
    y = (x > 0.3).astype("float32")
    w = rng.uniform(0.5, 3.0, size=(8, 8, 8)).astype("float32")
    y_true = stack_weight_map(y, w)  # (8, 8, 8, 2): the weight map rides in the target

    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(1, 3, padding="same")(inputs)  # logits
    model = keras.Model(inputs, outputs)
    loss = CombinedLoss(
        [
            WeightedBinaryCrossentropy(from_logits=True),
            DiceLoss(from_logits=True),
            LovaszHingeLoss(),
        ],
        [1.0, 0.5, 0.25],
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    before = [np.array(v) for v in model.get_weights()]
    history = model.fit(x, y_true, batch_size=4, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))

    # The compiled loss equals the weighted sum computed by hand on the trained model.
    logits = model.predict(x, verbose=0)
    expected = (
        _f(WeightedBinaryCrossentropy(from_logits=True)(y_true, logits))
        + 0.5 * _f(DiceLoss(from_logits=True)(y, logits))
        + 0.25 * _np_lovasz_hinge(logits, y)
    )
    assert model.evaluate(x, y_true, batch_size=8, verbose=0) == pytest.approx(expected, rel=1e-4)

    path = tmp_path / "combined.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True by default
    assert isinstance(loaded.loss, CombinedLoss)
    assert [type(t) for t in loaded.loss.losses] == [type(t) for t in loss.losses]
    assert loaded.loss.weights == [1.0, 0.5, 0.25]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), logits, rtol=1e-5, atol=1e-6)
    assert loaded.evaluate(x, y_true, batch_size=8, verbose=0) == pytest.approx(expected, 1e-4)
