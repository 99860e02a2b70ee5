"""Dice and IoU metrics for binary (sigmoid) semantic masks, accumulated over batches.

What Keras 3 already has, and is used here rather than rewritten:

* ``keras.metrics.BinaryIoU`` thresholds ``y_pred`` and accumulates a 2x2 confusion
  matrix over all pixels of all batches (int64 counts), then returns the mean IoU of
  ``target_class_ids``. :class:`IoUScore` and :class:`DiceCoefficient` subclass it.
* ``keras.metrics.IoU`` / ``MeanIoU`` (sparse class ids) and ``OneHotIoU`` /
  ``OneHotMeanIoU`` (one-hot targets, argmax of softmax outputs) cover multi-class
  masks; use them directly (a weight channel must not be in their ``y_true``).

Added here: the weight-channel convention of :mod:`keras_dynunet.losses` (a ``y_true``
with one more channel than ``y_pred`` carries a loss weight map as last channel; the
metrics drop it, so the same targets feed the loss and the metrics in ``model.fit``),
``from_logits``, the foreground class as default target, and Dice from the same
accumulated counts, ``Dice = 2 TP / (2 TP + FP + FN)`` (= ``2 IoU / (1 + IoU)``), which
Keras lacks for masks (``keras.metrics.F1Score`` takes ``(batch, classes)`` rows and
thresholds them itself, it does not pool the pixels of image batches).

Examples:
    >>> import numpy as np
    >>> y = np.array([[[[1.0], [1.0]], [[0.0], [0.0]]]])  # one 2x2 mask
    >>> p = np.array([[[[0.9], [0.2]], [[0.7], [0.1]]]])  # TP 1, FN 1, FP 1
    >>> dice, iou = DiceCoefficient(), IoUScore()
    >>> dice.update_state(y, p); iou.update_state(y, p)
    >>> round(float(dice.result()), 4), round(float(iou.result()), 4)  # 2/4, 1/3
    (0.5, 0.3333)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import backend, ops

from keras_dynunet.losses import split_weight_channel

__all__ = ["DiceCoefficient", "IoUScore"]


class _BinaryMaskConfusion(keras.metrics.BinaryIoU):
    """``keras.metrics.BinaryIoU`` + weight-channel stripping + ``from_logits``."""

    def __init__(
        self,
        threshold: float = 0.5,
        from_logits: bool = False,
        target_class_ids: Sequence[int] = (1,),
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            target_class_ids=target_class_ids, threshold=threshold, name=name, dtype=dtype
        )
        self.from_logits = bool(from_logits)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Threshold ``y_pred`` (after a sigmoid if ``from_logits``) and count pixels.

        Args:
            y_true: Binary masks ``(batch, *spatial, C)``, optionally with a weight
                channel ``(batch, *spatial, C + 1)`` that is ignored.
            y_pred: Probabilities (or logits) ``(batch, *spatial, C)``.
            sample_weight: Optional weights, as for ``keras.metrics.BinaryIoU``.
        """
        y_pred = ops.convert_to_tensor(y_pred, dtype="float32")
        y_true = ops.convert_to_tensor(y_true)
        y_true, _ = split_weight_channel(y_true, y_pred)
        if self.from_logits:
            y_pred = ops.sigmoid(y_pred)
        super().update_state(y_true, y_pred, sample_weight)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["from_logits"] = self.from_logits
        return config


@keras.saving.register_keras_serializable(package="keras_dynunet")
class IoUScore(_BinaryMaskConfusion):
    """Foreground IoU ``TP / (TP + FP + FN)`` of binary masks, over all pixels seen.

    This is ``keras.metrics.BinaryIoU(target_class_ids=[1])`` (the same code, a
    subclass) that also accepts a ``y_true`` with a weight channel and logits. All
    channels of multi-channel sigmoid outputs are pooled. As in Keras, a class absent
    from both targets and predictions is left out of the mean, and the result is 0 when
    no target class is left.

    Args:
        threshold: Pixels with probability ``>= threshold`` are foreground.
        from_logits: Whether ``y_pred`` holds logits (a sigmoid is applied first).
        target_class_ids: ``(1,)`` foreground IoU, ``(0,)`` background, ``(0, 1)`` mean.
        name: Metric name.
        dtype: Dtype of the accumulated counts, as in ``keras.metrics.BinaryIoU``.

    Examples:
        >>> m = IoUScore(from_logits=True)
        >>> m.update_state([[1.0, 1.0, 0.0]], [[2.0, -1.0, 3.0]])  # TP 1, FN 1, FP 1
        >>> m.update_state([[1.0, 0.0, 0.0]], [[1.0, -2.0, -3.0]])  # TP 1
        >>> round(float(m.result()), 4)  # 2 / (2 + 1 + 1)
        0.5
    """

    def __init__(
        self,
        threshold: float = 0.5,
        from_logits: bool = False,
        target_class_ids: Sequence[int] = (1,),
        name: str = "iou_score",
        dtype: Any = None,
    ) -> None:
        super().__init__(threshold, from_logits, target_class_ids, name, dtype)


@keras.saving.register_keras_serializable(package="keras_dynunet")
class DiceCoefficient(_BinaryMaskConfusion):
    """Dice (F1) ``2 TP / (2 TP + FP + FN)`` of binary masks, over all pixels seen.

    The counts are accumulated over batches exactly as by ``keras.metrics.BinaryIoU``
    (whose confusion matrix this subclass reuses), so the result is the Dice of the
    whole evaluation set, not a mean of per-batch values. Only :meth:`result` differs.

    Args:
        threshold: Pixels with probability ``>= threshold`` are foreground.
        from_logits: Whether ``y_pred`` holds logits (a sigmoid is applied first).
        target_class_ids: ``(1,)`` foreground Dice, ``(0,)`` background, ``(0, 1)`` mean.
        name: Metric name.
        dtype: Dtype of the accumulated counts, as in ``keras.metrics.BinaryIoU``.

    Examples:
        >>> m = DiceCoefficient()
        >>> m.update_state([[1.0, 1.0, 0.0, 0.0]], [[0.9, 0.2, 0.7, 0.1]])
        >>> round(float(m.result()), 4)  # TP 1, FN 1, FP 1: 2 / (2 + 1 + 1)
        0.5
    """

    def __init__(
        self,
        threshold: float = 0.5,
        from_logits: bool = False,
        target_class_ids: Sequence[int] = (1,),
        name: str = "dice_coefficient",
        dtype: Any = None,
    ) -> None:
        super().__init__(threshold, from_logits, target_class_ids, name, dtype)

    def result(self) -> Any:
        """Mean Dice of the target classes present in targets or predictions.

        Returns:
            A float32 scalar.
        """
        cm = ops.cast(self.total_cm, "float32")
        true_positives = ops.diag(cm)
        # sum over rows + sum over columns = 2 TP + FP + FN.
        denominator = ops.sum(cm, axis=0) + ops.sum(cm, axis=1)
        ids = ops.convert_to_tensor(self.target_class_ids, dtype="int32")
        true_positives = ops.take(true_positives, ids)
        denominator = ops.take(denominator, ids)
        valid = ops.greater(denominator, 0.0)
        dice = ops.where(valid, 2.0 * true_positives / (denominator + backend.epsilon()), 0.0)
        count = ops.sum(ops.cast(valid, "float32"))
        return ops.sum(dice) / (count + backend.epsilon())
