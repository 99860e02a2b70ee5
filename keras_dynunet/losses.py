"""Segmentation losses that run on every Keras backend (only ``keras.ops`` is used).

**The weight-channel convention.** A per-pixel weight map ``w(x)`` (for example the U-Net
map of :func:`keras_dynunet.instances.unet_weight_map`) does not fit ``model.fit``'s
``sample_weight``, which scales whatever each loss returns (per-pixel values for the
crossentropies but per-image values for Dice or Lovasz, so a combined loss cannot take a
pixel map that way) and the metrics too. Here the map travels *inside the target*,
through ``fit`` and ``tf.data`` alike, as one extra, last channel of ``y_true``::

    y_true[..., :C]  # the C target channels, exactly as without a weight map
    y_true[..., C]   # the weight map w(x)

:func:`stack_weight_map` builds such a target. Every loss here recognises it from the
static shapes: a dense ``y_true`` with one channel more than ``y_pred`` carries a weight
map; one with as many channels as ``y_pred`` (or no channel axis) does not, and then every
pixel weighs 1. Sparse targets are ``(..., 2) = (class id, weight)``. The pixel-wise losses
(:class:`WeightedBinaryCrossentropy`, :class:`WeightedCategoricalCrossentropy`,
:class:`WeightedBinaryFocalCrossentropy`) multiply each pixel's loss by ``w``; the
region losses (:class:`DiceLoss`, :class:`JaccardLoss`, :class:`LovaszHingeLoss`) drop
the weight channel, so any mix of them in a :class:`CombinedLoss` sees the same target.
Keras' own losses and metrics do not know the convention: with a weight channel, compile
with the losses here and the metrics of :mod:`keras_dynunet.metrics` (not ``"accuracy"``).

**What comes from Keras.** The pixel-wise losses subclass or call Keras' own
(``BinaryCrossentropy``, ``BinaryFocalCrossentropy``, ``categorical_crossentropy``,
``sparse_categorical_crossentropy``), adding only the weight channel; there is no
separate focal loss here, :class:`WeightedBinaryFocalCrossentropy` *is*
``keras.losses.BinaryFocalCrossentropy`` plus the weight channel (use Keras' class
directly when there is no weight map). ``keras.losses.Dice`` and ``keras.losses.Tversky``
are not reused for the region losses because they have no smoothing term (an empty mask
predicted empty costs the maximal loss 1, not 0), no ``from_logits`` and no weight
channel; with ``smooth=0`` :class:`DiceLoss` and :class:`JaccardLoss` equal
``keras.losses.Dice(axis=spatial)`` and ``keras.losses.Tversky(alpha=1, beta=1,
axis=spatial)`` on non-empty masks (checked in the tests). Keras has no Lovasz loss.

Examples:
    >>> import numpy as np
    >>> y = np.array([[[[1.0], [0.0]]]])              # one 1x2 image, one channel
    >>> w = np.array([[[3.0, 1.0]]])                  # its weight map
    >>> p = np.array([[[[0.5], [0.5]]]])
    >>> loss = CombinedLoss([WeightedBinaryCrossentropy(), DiceLoss()], weights=[1.0, 0.5])
    >>> round(float(loss(stack_weight_map(y, w), p)), 4)  # 2 ln 2 + 0.5 * (1 - 2/3)
    1.553
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = [
    "CombinedLoss",
    "DiceLoss",
    "JaccardLoss",
    "LovaszHingeLoss",
    "WeightedBinaryCrossentropy",
    "WeightedBinaryFocalCrossentropy",
    "WeightedCategoricalCrossentropy",
    "split_weight_channel",
    "stack_weight_map",
]

_PACKAGE = "keras_dynunet"


def stack_weight_map(y_true: Any, weight_map: Any) -> np.ndarray:
    """Append a per-pixel weight map to a target as its last channel (NumPy, for data prep).

    Args:
        y_true: Targets ``(N, *spatial, C)``, or ``(N, *spatial)`` for one channel or
            sparse class ids.
        weight_map: Weights ``(N, *spatial)`` or ``(N, *spatial, 1)``.

    Returns:
        A float32 array ``(N, *spatial, C + 1)`` whose last channel is the weight map.

    Examples:
        >>> stack_weight_map(np.zeros((1, 2, 2, 1)), np.full((1, 2, 2), 5.0)).shape
        (1, 2, 2, 2)
        >>> stack_weight_map(np.array([[1, 2]]), np.array([[0.5, 4.0]])).tolist()
        [[[1.0, 0.5], [2.0, 4.0]]]
    """
    y = np.asarray(y_true, dtype=np.float32)
    w = np.asarray(weight_map, dtype=np.float32)
    if w.ndim and w.shape[-1] == 1 and w.shape[:-1] in (y.shape, y.shape[:-1]):
        w = w[..., 0]  # (N, *spatial, 1) weight map
    if w.shape == y.shape:  # (N, *spatial) target without a channel axis
        y = y[..., None]
    if w.shape != y.shape[:-1]:
        raise ValueError(
            f"weight_map shape {w.shape} does not match the pixels of y_true {y.shape}."
        )
    return np.concatenate([y, w[..., None]], axis=-1)


def split_weight_channel(y_true: Any, y_pred: Any, sparse: bool = False) -> tuple[Any, Any]:
    """Split the weight map off ``y_true`` if it carries one (see the module docstring).

    Decided from static shapes: a dense ``y_true`` of the same rank as ``y_pred`` with one
    more channel, or a sparse ``y_true`` of the same rank with exactly two channels
    ``(class id, weight)``, carries a weight map.

    Args:
        y_true: Target tensor.
        y_pred: Prediction tensor ``(batch, *spatial, C)``.
        sparse: Whether ``y_true`` holds class ids rather than one channel per class.

    Returns:
        ``(y_true without the weight channel, weight map (batch, *spatial) or None)``.

    Examples:
        >>> y, w = split_weight_channel(np.ones((1, 2, 2, 3)), np.ones((1, 2, 2, 2)))
        >>> tuple(y.shape), tuple(w.shape)
        ((1, 2, 2, 2), (1, 2, 2))
        >>> split_weight_channel(np.ones((1, 2, 2, 2)), np.ones((1, 2, 2, 2)))[1] is None
        True
    """
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    if len(true_shape) != len(pred_shape) or true_shape[-1] is None:
        return y_true, None
    if sparse:
        if true_shape[-1] == 2:
            return y_true[..., 0], y_true[..., 1]
        return y_true, None
    if pred_shape[-1] is not None and true_shape[-1] == pred_shape[-1] + 1:
        return y_true[..., :-1], y_true[..., -1]
    return y_true, None


def _dense_target(y_true: Any, y_pred: Any) -> Any:
    """``y_true`` without weight channel, with ``y_pred``'s rank and dtype."""
    y_true, _ = split_weight_channel(y_true, y_pred)
    if len(y_true.shape) == len(y_pred.shape) - 1:
        y_true = ops.expand_dims(y_true, -1)
    if len(y_pred.shape) < 3:
        raise ValueError(
            f"Expected y_pred of shape (batch, *spatial, channels), got {tuple(y_pred.shape)}."
        )
    return ops.cast(y_true, y_pred.dtype)


def _apply_weight(loss: Any, weight: Any) -> Any:
    return loss if weight is None else loss * ops.cast(weight, loss.dtype)


class _PixelWeightedMixin:
    """Multiplies the per-pixel loss of a Keras loss class by the weight channel."""

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true, weight = split_weight_channel(y_true, y_pred)
        return _apply_weight(super().call(y_true, y_pred), weight)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("axis", None)  # always -1: the channel axis the weight map rides on
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedBinaryCrossentropy(_PixelWeightedMixin, keras.losses.BinaryCrossentropy):
    """``keras.losses.BinaryCrossentropy`` with an optional per-pixel weight map.

    ``loss = mean over pixels of w(x) * BCE(x)``, ``BCE(x)`` being Keras' binary
    crossentropy averaged over the ``C`` channels of pixel ``x``; ``w`` is the last
    channel of a ``(..., C + 1)`` ``y_true`` (see the module docstring), or 1 everywhere
    when ``y_true`` has ``C`` channels. The mean is over all pixels (not divided by
    ``sum(w)``), as in the U-Net energy, so a weight map of mean 1 keeps the scale of BCE.

    Args:
        from_logits: Whether ``y_pred`` holds logits rather than probabilities.
        label_smoothing: As in ``keras.losses.BinaryCrossentropy``.
        reduction: Keras loss reduction over the ``(batch, *spatial)`` pixel losses.
        name: Loss name.
        dtype: Computation dtype.

    Examples:
        >>> y = np.array([[[[1.0, 2.0], [0.0, 1.0]]]])  # 1x2 image: (target, weight)
        >>> p = np.array([[[[0.8], [0.4]]]])
        >>> round(float(WeightedBinaryCrossentropy()(y, p)), 4)  # (-2 ln .8 - ln .6) / 2
        0.4786
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "weighted_binary_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=-1,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedBinaryFocalCrossentropy(_PixelWeightedMixin, keras.losses.BinaryFocalCrossentropy):
    """``keras.losses.BinaryFocalCrossentropy`` (Lin et al. 2017) with a per-pixel weight map.

    The focal term is Keras' own; this class only adds the weight channel, exactly as
    :class:`WeightedBinaryCrossentropy` does (``gamma=0`` gives that loss). Without a
    weight map, ``keras.losses.BinaryFocalCrossentropy`` is the same thing.

    Args:
        apply_class_balancing: Weigh positives by ``alpha`` and negatives by ``1 - alpha``.
        alpha: Class-balancing factor.
        gamma: Focusing parameter; ``(1 - p_t) ** gamma`` scales the crossentropy.
        from_logits: Whether ``y_pred`` holds logits rather than probabilities.
        label_smoothing: As in ``keras.losses.BinaryFocalCrossentropy``.
        reduction: Keras loss reduction over the ``(batch, *spatial)`` pixel losses.
        name: Loss name.
        dtype: Computation dtype.

    Examples:
        >>> y = np.array([[[[1.0, 4.0]]]])  # one pixel, target 1, weight 4
        >>> p = np.array([[[[0.5]]]])
        >>> round(float(WeightedBinaryFocalCrossentropy(gamma=2.0)(y, p)), 4)  # 4 .25 ln 2
        0.6931
    """

    def __init__(
        self,
        apply_class_balancing: bool = False,
        alpha: float = 0.25,
        gamma: float = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "weighted_binary_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            apply_class_balancing=apply_class_balancing,
            alpha=alpha,
            gamma=gamma,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=-1,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WeightedCategoricalCrossentropy(keras.losses.Loss):
    """Keras' (sparse) categorical crossentropy with a per-pixel weight map.

    ``loss = mean over pixels of w(x) * CE(x)`` with ``CE`` from
    ``keras.losses.categorical_crossentropy`` (one-hot ``y_true (..., K)``, weight map as
    channel ``K``) or ``keras.losses.sparse_categorical_crossentropy`` (``sparse=True``:
    ``y_true (..., 2) = (class id, weight)``, or ``(..., 1)`` / ``(...)`` ids without
    weights).

    Args:
        from_logits: Whether ``y_pred`` holds logits rather than probabilities.
        sparse: Whether ``y_true`` holds class ids instead of one-hot channels.
        reduction: Keras loss reduction over the ``(batch, *spatial)`` pixel losses.
        name: Loss name.
        dtype: Computation dtype.

    Examples:
        >>> y = np.array([[[[2.0, 3.0], [0.0, 1.0]]]])  # 1x2 image: (class id, weight)
        >>> p = np.array([[[[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]]]])
        >>> loss = WeightedCategoricalCrossentropy(sparse=True)
        >>> round(float(loss(y, p)), 4)  # (-3 ln .5 - ln .5) / 2 = 2 ln 2
        1.3863
    """

    def __init__(
        self,
        from_logits: bool = False,
        sparse: bool = False,
        reduction: str | None = "sum_over_batch_size",
        name: str = "weighted_categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.sparse = bool(sparse)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true, weight = split_weight_channel(y_true, y_pred, sparse=self.sparse)
        if self.sparse:
            loss = keras.losses.sparse_categorical_crossentropy(
                y_true, y_pred, from_logits=self.from_logits
            )
        else:
            loss = keras.losses.categorical_crossentropy(
                y_true, y_pred, from_logits=self.from_logits
            )
        return _apply_weight(loss, weight)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(from_logits=self.from_logits, sparse=self.sparse)
        return config


class _SoftOverlapLoss(keras.losses.Loss):
    """``1 - mean over channels of a smoothed overlap score``, per image or per batch."""

    def __init__(
        self,
        from_logits: bool = False,
        smooth: float = 1.0,
        per_image: bool = True,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.smooth = float(smooth)
        self.per_image = bool(per_image)

    def _score(self, intersection: Any, total_true: Any, total_pred: Any) -> Any:
        raise NotImplementedError

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = _dense_target(y_true, y_pred)
        if self.from_logits:
            y_pred = ops.sigmoid(y_pred)
        rank = len(y_pred.shape)
        axes = tuple(range(1 if self.per_image else 0, rank - 1))
        intersection = ops.sum(y_true * y_pred, axis=axes)
        score = self._score(intersection, ops.sum(y_true, axis=axes), ops.sum(y_pred, axis=axes))
        return ops.mean(1.0 - score, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(from_logits=self.from_logits, smooth=self.smooth, per_image=self.per_image)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiceLoss(_SoftOverlapLoss):
    """Soft Dice loss for multi-channel sigmoid (or softmax) outputs.

    For each image ``b`` (``per_image=True``; else once over the whole batch) and channel
    ``c``, with sums over the spatial axes::

        dice[b, c] = (2 * sum(t * p) + smooth) / (sum(t) + sum(p) + smooth)

    and the loss of image ``b`` is ``1 - mean_c dice[b, c]``; the reduction (default:
    mean) then averages the images, so ``sample_weight`` of shape ``(batch,)`` works.
    With ``per_image=False`` the loss is one scalar for the batch. A weight channel in
    ``y_true`` is dropped.

    Why not ``keras.losses.Dice``: it computes the same ratio (``axis`` = the spatial
    axes gives per-image, per-channel values and its default reduction averages them),
    but with only ``epsilon`` instead of ``smooth``, so an empty mask predicted empty
    gets the maximal loss 1 (frequent with nuclei tiles), and it has no ``from_logits``
    and no weight channel. ``smooth=0`` reproduces it on non-empty masks.

    Args:
        from_logits: Apply a sigmoid to ``y_pred`` first.
        smooth: Added to numerator and denominator; empty-vs-empty then scores 1.
        per_image: Score each image separately (else pool the batch).
        reduction: Keras loss reduction over the per-image losses.
        name: Loss name.
        dtype: Computation dtype.

    Examples:
        >>> y = np.array([[[[1.0], [1.0]], [[0.0], [0.0]]]])  # one 2x2 image
        >>> p = np.array([[[[1.0], [0.0]], [[0.0], [1.0]]]])
        >>> round(float(DiceLoss(smooth=0.0)(y, p)), 4)  # 1 - 2 * 1 / (2 + 2)
        0.5
    """

    def __init__(
        self,
        from_logits: bool = False,
        smooth: float = 1.0,
        per_image: bool = True,
        reduction: str | None = "sum_over_batch_size",
        name: str = "dice_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(from_logits, smooth, per_image, reduction, name, dtype)

    def _score(self, intersection: Any, total_true: Any, total_pred: Any) -> Any:
        numerator = 2.0 * intersection + self.smooth
        return numerator / (total_true + total_pred + self.smooth + keras.backend.epsilon())


@keras.saving.register_keras_serializable(package=_PACKAGE)
class JaccardLoss(_SoftOverlapLoss):
    """Soft Jaccard (IoU) loss, the same as :class:`DiceLoss` with the soft IoU score::

        iou[b, c] = (sum(t * p) + smooth) / (sum(t) + sum(p) - sum(t * p) + smooth)

    ``keras.losses.Tversky(alpha=1, beta=1)`` is the same ratio without smoothing,
    ``from_logits`` or weight channel (see :class:`DiceLoss`).

    Args:
        from_logits: Apply a sigmoid to ``y_pred`` first.
        smooth: Added to numerator and denominator; empty-vs-empty then scores 1.
        per_image: Score each image separately (else pool the batch).
        reduction: Keras loss reduction over the per-image losses.
        name: Loss name.
        dtype: Computation dtype.

    Examples:
        >>> y = np.array([[[[1.0], [1.0]], [[0.0], [0.0]]]])  # one 2x2 image
        >>> p = np.array([[[[1.0], [0.0]], [[0.0], [1.0]]]])
        >>> round(float(JaccardLoss(smooth=0.0)(y, p)), 4)  # 1 - 1 / (2 + 2 - 1)
        0.6667
    """

    def __init__(
        self,
        from_logits: bool = False,
        smooth: float = 1.0,
        per_image: bool = True,
        reduction: str | None = "sum_over_batch_size",
        name: str = "jaccard_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(from_logits, smooth, per_image, reduction, name, dtype)

    def _score(self, intersection: Any, total_true: Any, total_pred: Any) -> Any:
        union = total_true + total_pred - intersection
        return (intersection + self.smooth) / (union + self.smooth + keras.backend.epsilon())


def _lovasz_grad(gt_sorted: Any) -> Any:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors (last axis)."""
    gts = ops.sum(gt_sorted, axis=-1, keepdims=True)
    intersection = gts - ops.cumsum(gt_sorted, axis=-1)
    union = gts + ops.cumsum(1.0 - gt_sorted, axis=-1)  # >= 1: never divides by zero
    jaccard = 1.0 - intersection / union
    return ops.concatenate([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1)


def _lovasz_hinge_rows(labels: Any, logits: Any) -> Any:
    """Berman's ``lovasz_hinge_flat`` on every row (last axis) of ``labels``/``logits``."""
    errors = 1.0 - logits * (2.0 * labels - 1.0)
    order = ops.argsort(-errors, axis=-1)  # descending errors
    errors_sorted = ops.take_along_axis(errors, order, axis=-1)
    grad = ops.stop_gradient(_lovasz_grad(ops.take_along_axis(labels, order, axis=-1)))
    return ops.sum(ops.relu(errors_sorted) * grad, axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LovaszHingeLoss(keras.losses.Loss):
    """Binary Lovasz hinge loss (Berman, Triki & Blaschko, CVPR 2018).

    A convex surrogate of ``1 - IoU`` of the foreground: hinge errors
    ``1 - logit * (2 t - 1)`` are sorted in decreasing order and dotted with the
    gradient of the Lovasz extension of the Jaccard loss (computed with cumulative
    sums, held constant as in the reference implementation). Each channel is its own
    binary problem: the loss of image ``b`` is the mean over channels of the hinge over
    the pixels of ``(b, c)`` (``per_image=True``, Berman's default), or the mean over
    channels of the hinge over the pixels of the whole batch (``per_image=False``).
    Targets must be binary; a weight channel in ``y_true`` is dropped.

    Args:
        per_image: One problem per image (else one per channel for the whole batch).
        from_logits: Whether ``y_pred`` holds logits (the paper's input). With ``False``,
            probabilities are turned back into logits ``log(p / (1 - p))`` (clipped).
        reduction: Keras loss reduction over the per-image losses.
        name: Loss name.
        dtype: Computation dtype.

    Examples:
        >>> y = np.array([[[[1.0], [0.0]]]])  # one 1x2 image
        >>> logits = np.array([[[[0.5], [0.5]]]])
        >>> # hinge errors (1 - .5, 1 + .5); sorted descending: (1.5, .5) with labels
        >>> # (0, 1), whose Lovasz gradient is (1 - 1/2, 1 - 1/2): .5 * 1.5 + .5 * .5 = 1
        >>> round(float(LovaszHingeLoss()(y, logits)), 4)
        1.0
    """

    def __init__(
        self,
        per_image: bool = True,
        from_logits: bool = True,
        reduction: str | None = "sum_over_batch_size",
        name: str = "lovasz_hinge",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.per_image = bool(per_image)
        self.from_logits = bool(from_logits)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        labels = _dense_target(y_true, y_pred)
        logits = y_pred
        if not self.from_logits:
            eps = keras.backend.epsilon()
            p = ops.clip(y_pred, eps, 1.0 - eps)
            logits = ops.log(p) - ops.log(1.0 - p)
        channels = y_pred.shape[-1]
        if channels is None:
            channels = ops.shape(y_pred)[-1]

        def rows(x: Any) -> Any:  # (B, *spatial, C) -> (B, C, P) or (C, B * P)
            x = ops.transpose(ops.reshape(x, (ops.shape(x)[0], -1, channels)), (0, 2, 1))
            if self.per_image:
                return x
            return ops.reshape(ops.transpose(x, (1, 0, 2)), (channels, -1))

        return ops.mean(_lovasz_hinge_rows(rows(labels), rows(logits)), axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(per_image=self.per_image, from_logits=self.from_logits)
        return config


def _resolve_loss(identifier: Any) -> keras.losses.Loss:
    loss = (
        keras.saving.deserialize_keras_object(identifier)
        if isinstance(identifier, dict)
        else identifier
    )
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if not isinstance(loss, keras.losses.Loss):
        raise TypeError(
            f"CombinedLoss needs keras.losses.Loss instances (e.g. "
            f"keras.losses.BinaryCrossentropy()), got {identifier!r}."
        )
    return loss


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CombinedLoss(keras.losses.Loss):
    """Weighted sum ``sum_i weights[i] * losses[i](y_true, y_pred, sample_weight)``.

    Each term is reduced by its own loss (its own ``reduction``, and ``sample_weight``
    is forwarded to it), so this class has no reduction of its own. Every loss gets the
    same ``y_true``: with a weight channel, use the losses of this module, which all
    understand it. Nested losses are saved with ``keras.saving.serialize_keras_object``,
    so a model compiled with a ``CombinedLoss`` saves to ``.keras`` and loads in safe mode.

    Args:
        losses: ``keras.losses.Loss`` instances (or their serialized dicts, or names
            that ``keras.losses.get`` turns into ``Loss`` instances).
        weights: One weight per loss; defaults to all 1.
        name: Loss name.
        dtype: Computation dtype.

    Examples:
        >>> y = np.array([[[[1.0], [0.0]]]])
        >>> p = np.array([[[[0.5], [0.5]]]])
        >>> loss = CombinedLoss([DiceLoss(smooth=0.0), JaccardLoss(smooth=0.0)], [2.0, 1.0])
        >>> round(float(loss(y, p)), 4)  # 2 * (1 - 1 / 2) + (1 - 0.5 / 1.5)
        1.6667
    """

    def __init__(
        self,
        losses: Sequence[Any],
        weights: Sequence[float] | None = None,
        name: str = "combined_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        self.losses = [_resolve_loss(loss) for loss in losses]
        if not self.losses:
            raise ValueError("CombinedLoss needs at least one loss.")
        weights = [1.0] * len(self.losses) if weights is None else [float(w) for w in weights]
        if len(weights) != len(self.losses):
            raise ValueError(f"Got {len(self.losses)} losses but {len(weights)} weights.")
        self.weights = weights

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        total = None
        with keras.name_scope(self.name):
            for weight, loss in zip(self.weights, self.losses, strict=True):
                term = ops.cast(loss(y_true, y_pred, sample_weight=sample_weight), self.dtype)
                term = term * weight
                total = term if total is None else total + term
        return total

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self(y_true, y_pred)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "losses": [keras.saving.serialize_keras_object(loss) for loss in self.losses],
            "weights": list(self.weights),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CombinedLoss:
        config = dict(config)
        config["losses"] = [_resolve_loss(loss) for loss in config["losses"]]
        return cls(**config)
