"""From raw images to probabilities and instance labels with a trained model.

The steps are those used in training: :func:`~keras_dynunet.dataset.normalize_image`,
the encoder's preprocessing, whole-image prediction (tiled with Gaussian
blending when the image is larger than ``tile``), then the DSB-style
watershed on the (interior, border) channels.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_dynunet.dataset import normalize_image
from keras_dynunet.inference import predict_tiled
from keras_dynunet.instances import instances_from_predictions
from keras_dynunet.preprocessing import preprocess_input


def predict_probabilities(
    model: keras.Model,
    image: np.ndarray,
    preprocessing: str = "none",
    *,
    tile: int = 512,
    overlap: int = 64,
) -> np.ndarray:
    """Model output ``(H, W, classes)`` for one raw image of any size and dtype.

    Args:
        model: A segmentation model taking ``(None, None, 3)`` inputs.
        image: ``(H, W)`` or ``(H, W, C)`` image (uint8, uint16 or float in [0, 1]).
        preprocessing: Encoder preprocessing mode or encoder name.
        tile: Images with a side larger than this are predicted in tiles.
        overlap: Tile overlap in pixels.

    >>> import keras_dynunet as kd
    >>> m = kd.build_unet("resnet18", classes=2, activation="sigmoid")
    >>> predict_probabilities(m, np.zeros((40, 50), np.uint8), "imagenet").shape
    (40, 50, 2)
    """
    x = normalize_image(image) * 255.0
    x = keras.ops.convert_to_numpy(preprocess_input(x, preprocessing)).astype(np.float32)
    if max(x.shape[:2]) > tile:
        return predict_tiled(model, x, tile=tile, overlap=overlap, blend="gaussian")
    return np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(x[None])))[0]


def segment_instances(
    model: keras.Model,
    image: np.ndarray,
    preprocessing: str = "none",
    *,
    tile: int = 512,
    **watershed: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels and probabilities from a model with (interior, border) outputs.

    Args:
        model: Model whose first two output channels are interior and border
            probabilities (sigmoid), as trained by ``examples/dsb2018/train.py``.
        image: Raw image (see :func:`predict_probabilities`).
        preprocessing: Encoder preprocessing mode or encoder name.
        tile: Tile size for large images.
        **watershed: Thresholds and sizes for
            :func:`~keras_dynunet.instances.instances_from_predictions`.

    Returns:
        ``(labels int32 (H, W), probabilities (H, W, C))``.

    >>> import keras_dynunet as kd
    >>> m = kd.build_unet("resnet18", classes=2, activation="sigmoid")
    >>> labels, prob = segment_instances(m, np.zeros((32, 32), np.uint8), "imagenet")
    >>> labels.shape, labels.dtype
    ((32, 32), dtype('int32'))
    """
    prob = predict_probabilities(model, image, preprocessing, tile=tile)
    if prob.shape[-1] < 2:
        raise ValueError(
            f"The model predicts {prob.shape[-1]} channel(s); instance segmentation needs "
            "(interior, border) sigmoid channels."
        )
    return instances_from_predictions(prob[..., 0], prob[..., 1], **watershed), prob


def evaluate_instances(
    model: keras.Model,
    image: np.ndarray,
    labels: np.ndarray,
    preprocessing: str = "none",
    **watershed: Any,
) -> dict[str, Any]:
    """Segment ``image`` and score the instances against ``labels`` with the DSB metric.

    Returns:
        ``{"dsb_score", "f1_at_0.5", "true_instances", "predicted_instances"}``
        plus ``"labels"`` (the predicted label image).

    >>> import keras_dynunet as kd
    >>> m = kd.build_unet("resnet18", classes=2, activation="sigmoid")
    >>> r = evaluate_instances(m, np.zeros((32, 32), np.uint8), np.zeros((32, 32), int), "imagenet")
    >>> sorted(k for k in r if k != "labels")
    ['dsb_score', 'f1_at_0.5', 'predicted_instances', 'true_instances']
    """
    from keras_dynunet.instances import dsb_score

    predicted, _ = segment_instances(model, image, preprocessing, **watershed)
    score = dsb_score(labels, predicted)
    return {
        "dsb_score": round(float(score.score), 4),
        "f1_at_0.5": round(float(score.f1[0]), 4),
        "true_instances": int(len(np.unique(labels)) - (np.asarray(labels) == 0).any()),
        "predicted_instances": int(predicted.max()),
        "labels": predicted,
    }
