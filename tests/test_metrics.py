"""Dice and IoU metrics for semantic masks, hand-computed and against Keras, on every backend."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_dynunet.losses import WeightedBinaryCrossentropy, stack_weight_map
from keras_dynunet.metrics import DiceCoefficient, IoUScore

pytestmark = pytest.mark.backends


def _f(x):
    return float(ops.convert_to_numpy(x))


# Batch 1 (one 2x2 image): target [[1, 1], [0, 0]], prediction >= 0.5 at [[1, 0], [1, 0]]
#   -> TP 1, FN 1, FP 1, TN 1.
# Batch 2: target [[1, 0], [0, 0]], prediction [[1, 0], [0, 0]] -> TP 1, TN 3.
Y1 = np.array([[[[1.0], [1.0]], [[0.0], [0.0]]]])
P1 = np.array([[[[0.9], [0.2]], [[0.5], [0.1]]]])  # 0.5 counts as foreground (>=)
Y2 = np.array([[[[1.0], [0.0]], [[0.0], [0.0]]]])
P2 = np.array([[[[0.6], [0.4]], [[0.0], [0.3]]]])


def test_dice_and_iou_accumulate_counts_over_batches():
    dice, iou = DiceCoefficient(), IoUScore()
    for m in (dice, iou):
        m.update_state(Y1, P1)
    assert _f(dice.result()) == pytest.approx(2 * 1 / (2 * 1 + 1 + 1), rel=1e-5)
    assert _f(iou.result()) == pytest.approx(1 / (1 + 1 + 1), rel=1e-5)
    for m in (dice, iou):
        m.update_state(Y2, P2)
    # Totals TP 2, FN 1, FP 1: not the mean of the per-batch values (0.5 and 1.0).
    assert _f(dice.result()) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1), rel=1e-5)
    assert _f(iou.result()) == pytest.approx(2 / (2 + 1 + 1), rel=1e-5)
    for m in (dice, iou):
        m.reset_state()
        assert _f(m.result()) == 0.0


def test_background_and_mean_over_both_classes():
    # Batch 1 background: TP_0 = TN = 1, FP_0 = FN = 1, FN_0 = FP = 1.
    dice = DiceCoefficient(target_class_ids=(0, 1))
    iou = IoUScore(target_class_ids=(0,))
    dice.update_state(Y1, P1)
    iou.update_state(Y1, P1)
    assert _f(dice.result()) == pytest.approx((2 / 4 + 2 / 4) / 2, rel=1e-5)
    assert _f(iou.result()) == pytest.approx(1 / 3, rel=1e-5)


def test_iou_is_keras_binary_iou_and_dice_is_2j_over_1_plus_j():
    rng = np.random.default_rng(0)
    y = (rng.random((2, 6, 5, 2)) > 0.6).astype("float32")
    p = rng.random((2, 6, 5, 2)).astype("float32")
    ours, theirs, dice = (
        IoUScore(threshold=0.4),
        keras.metrics.BinaryIoU([1], 0.4),
        DiceCoefficient(0.4),
    )
    for m in (ours, theirs, dice):
        m.update_state(y[:1], p[:1])
        m.update_state(y[1:], p[1:])
    j = _f(theirs.result())
    assert _f(ours.result()) == pytest.approx(j, rel=1e-6)
    assert _f(dice.result()) == pytest.approx(2 * j / (1 + j), rel=1e-5)
    # NumPy: pixels of every channel pooled.
    t, q = y.astype(bool), p >= 0.4
    tp, fp, fn = (t & q).sum(), (~t & q).sum(), (t & ~q).sum()
    assert _f(dice.result()) == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-5)
    assert j == pytest.approx(tp / (tp + fp + fn), rel=1e-5)


def test_weight_channel_is_ignored_and_logits_are_accepted():
    w = np.full((1, 2, 2), 9.0)
    logits = np.log(P1 / (1 - P1))
    for cls in (DiceCoefficient, IoUScore):
        plain, weighted, from_logits = cls(), cls(), cls(from_logits=True)
        plain.update_state(Y1, P1)
        weighted.update_state(stack_weight_map(Y1, w), P1)
        from_logits.update_state(Y1, logits)
        assert _f(weighted.result()) == pytest.approx(_f(plain.result()))
        assert _f(from_logits.result()) == pytest.approx(_f(plain.result()))


def test_empty_masks_follow_keras_semantics():
    # No foreground in targets nor predictions: the class is absent, result 0 as in Keras.
    dice, iou = DiceCoefficient(), IoUScore()
    empty = np.zeros((1, 2, 2, 1))
    dice.update_state(empty, empty)
    iou.update_state(empty, empty)
    reference = keras.metrics.BinaryIoU([1])
    reference.update_state(empty, empty)
    assert _f(dice.result()) == _f(iou.result()) == _f(reference.result()) == 0.0


@pytest.mark.parametrize("cls", [DiceCoefficient, IoUScore])
def test_metrics_round_trip_config(cls):
    metric = cls(threshold=0.3, from_logits=True, target_class_ids=(0, 1), name="m")
    config = metric.get_config()
    assert config["from_logits"] is True and config["threshold"] == 0.3
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(clone) is cls and clone.get_config() == config


def test_metrics_in_fit_evaluate_and_saved_model(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 8, 8, 1)).astype("float32")
    y = (x > 0.0).astype("float32")
    y_true = stack_weight_map(y, rng.uniform(1, 2, size=(6, 8, 8)))
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs))
    model.compile(
        optimizer="sgd",
        loss=WeightedBinaryCrossentropy(from_logits=True),
        metrics=[DiceCoefficient(from_logits=True), IoUScore(threshold=0.6, from_logits=True)],
    )
    model.fit(x, y_true, batch_size=3, epochs=1, verbose=0)
    scores = model.evaluate(x, y_true, batch_size=2, verbose=0, return_dict=True)

    logits = model.predict(x, verbose=0)
    t = y.astype(bool)
    for name, threshold in (("dice_coefficient", 0.5), ("iou_score", 0.6)):
        q = 1 / (1 + np.exp(-logits)) >= threshold
        tp, fp, fn = (t & q).sum(), (~t & q).sum(), (t & ~q).sum()
        expected = (
            2 * tp / (2 * tp + fp + fn) if name == "dice_coefficient" else tp / (tp + fp + fn)
        )
        assert scores[name] == pytest.approx(expected, rel=1e-5)

    path = tmp_path / "metrics.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    again = loaded.evaluate(x, y_true, batch_size=2, verbose=0, return_dict=True)
    for name in ("dice_coefficient", "iou_score"):
        assert again[name] == pytest.approx(scores[name], rel=1e-5)
