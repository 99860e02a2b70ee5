"""Input preprocessing per encoder, with ``keras.ops`` (any backend).

Each registry encoder declares how raw RGB pixels in ``[0, 255]`` must be
transformed (``EncoderSpec.preprocessing``); checkpoints store the mode so
predictions use the training-time transform.
"""

from __future__ import annotations

from typing import Any

from keras import ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def preprocess_input(images: Any, mode: str) -> Any:
    """Transform ``[0, 255]`` RGB images (channels last) for an encoder.

    Args:
        images: Array or tensor ``(..., H, W, 3)`` (other channel counts only
            for ``"none"``, ``"unit"``, ``"tf"`` and ``"lite"``).
        mode: ``"none"`` (unchanged: the model normalises itself), ``"unit"``
            (``x / 255``), ``"tf"`` (``x / 127.5 - 1``), ``"lite"``
            (``(x - 127) / 128``), ``"imagenet"`` (``(x / 255 - mean) / std``)
            or ``"caffe"`` (RGB -> BGR, minus the ImageNet BGR mean). A
            registry encoder name is accepted too.

    Returns:
        A float32 tensor.

    >>> import numpy as np
    >>> x = np.full((1, 1, 1, 3), 255.0)
    >>> [round(float(v), 3) for v in ops.convert_to_numpy(preprocess_input(x, "imagenet"))[0, 0, 0]]
    [2.249, 2.429, 2.64]
    >>> float(ops.convert_to_numpy(preprocess_input(x, "lite"))[0, 0, 0, 0])
    1.0
    """
    from keras_dynunet.taps import PREPROCESSING_MODES

    if mode not in PREPROCESSING_MODES:
        from keras_dynunet.registry import get_encoder_spec

        mode = get_encoder_spec(mode).preprocessing
    x = ops.cast(images, "float32")
    if mode == "none":
        return x
    if mode == "unit":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "lite":
        return (x - 127.0) / 128.0
    if x.shape[-1] != 3:
        raise ValueError(
            f"Preprocessing {mode!r} needs 3 RGB channels, got {x.shape[-1]}; "
            "normalise multi-channel inputs yourself and use mode 'none'."
        )
    if mode == "imagenet":
        return (x / 255.0 - ops.array(IMAGENET_MEAN)) / ops.array(IMAGENET_STD)
    return ops.flip(x, axis=-1) - ops.array(CAFFE_MEAN_BGR)
