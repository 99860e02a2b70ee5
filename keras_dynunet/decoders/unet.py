"""The U-Net decoder, generated from an encoder's taps alone.

One stage per power-of-two level from the deepest tap down to stride 1:
upsample by 2, concatenate the encoder's tap at that stride (if it has one),
then ``blocks_per_stage`` conv blocks. Levels without a tap (a stem that
jumps to stride 4, or the last stride-2 -> 1 step) get no skip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from keras_dynunet.decoders.blocks import UPSAMPLING_MODES, conv_block, upsample
from keras_dynunet.layers import MatchSpatial
from keras_dynunet.taps import Tap


def default_decoder_channels(max_stride: int) -> tuple[int, ...]:
    """Default widths, deep to shallow: 16 x the stage's output stride, in [16, 256].

    This reproduces segmentation_models_pytorch's ``(256, 128, 64, 32, 16)``
    for a stride-32 encoder.

    >>> default_decoder_channels(32)
    (256, 128, 64, 32, 16)
    >>> default_decoder_channels(16)
    (128, 64, 32, 16)
    """
    strides = []
    stride = max_stride // 2
    while stride >= 1:
        strides.append(stride)
        stride //= 2
    return tuple(min(256, max(16, 16 * s)) for s in strides)


def unet_decoder(
    features: Mapping[str, Any],
    taps: Sequence[Tap],
    *,
    decoder_channels: Sequence[int] | None = None,
    upsampling: str = "nearest",
    center: bool = False,
    norm: str = "batch",
    activation: str = "relu",
    blocks_per_stage: int = 2,
    align_skips: bool = False,
    spatial_dims: int = 2,
    norm_epsilon: float = 1e-3,
) -> Any:
    """Build the decoder on symbolic encoder features; returns the stride-1 tensor.

    Args:
        features: ``{tap key: tensor}`` as returned by the encoder model.
        taps: The encoder's taps (strides and channels).
        decoder_channels: One width per stage, deep to shallow; its length must
            be ``log2(deepest stride)``. Default: :func:`default_decoder_channels`.
        upsampling: One of ``"nearest"``, ``"bilinear"``, ``"transpose"``,
            ``"pixelshuffle"``.
        center: Add two conv blocks on the deepest feature (width of that tap).
        norm: ``"batch"``, ``"group"``, ``"layer"`` or ``"none"``.
        activation: Activation of the conv blocks.
        blocks_per_stage: Conv blocks after each concatenation.
        align_skips: Crop/pad the upsampled tensor to each skip's size (for
            'valid'-padded encoders whose sizes are not exact multiples).
        spatial_dims: 2 for images, 3 for volumes.
        norm_epsilon: Normalisation epsilon (``1e-5`` matches PyTorch).

    >>> enc_in = keras.Input((None, None, 3))
    >>> f1 = keras.layers.Conv2D(8, 3, strides=2, padding="same")(enc_in)
    >>> f2 = keras.layers.Conv2D(16, 3, strides=2, padding="same")(f1)
    >>> taps = [Tap("P1", "a", 2, 8), Tap("P2", "b", 4, 16)]
    >>> unet_decoder({"P1": f1, "P2": f2}, taps).shape
    (None, None, None, 16)
    """
    if upsampling not in UPSAMPLING_MODES:
        raise ValueError(
            f"Unknown upsampling mode {upsampling!r}; choose one of {UPSAMPLING_MODES}."
        )
    by_stride = {tap.stride: tap for tap in taps}
    deepest = max(by_stride)
    widths = tuple(decoder_channels or default_decoder_channels(deepest))
    stages = deepest.bit_length() - 1
    if len(widths) != stages or any(int(w) < 1 for w in widths):
        raise ValueError(
            f"decoder_channels needs {stages} positive widths (one per stage from stride "
            f"{deepest // 2} down to 1, deep to shallow), got {list(widths)}. "
            f"Default: {list(default_decoder_channels(deepest))}."
        )
    block = {
        "norm": norm,
        "activation": activation,
        "spatial_dims": spatial_dims,
        "norm_epsilon": norm_epsilon,
    }
    x = features[by_stride[deepest].key]
    if center:
        for index in range(2):
            x = conv_block(x, by_stride[deepest].channels, f"center_{index}", **block)
    stride = deepest
    for width in widths:
        stride //= 2
        name = f"decoder_s{stride}"
        x = upsample(
            x, 2, upsampling, int(width), name, activation=activation, spatial_dims=spatial_dims
        )
        if stride in by_stride:
            skip = features[by_stride[stride].key]
            if align_skips:
                x = MatchSpatial(name=f"{name}_align")([x, skip])
            x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
        for index in range(blocks_per_stage):
            x = conv_block(x, int(width), f"{name}_block{index}", **block)
    return x
