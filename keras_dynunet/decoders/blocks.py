"""Decoder building blocks: conv-norm-activation and the upsampling modes.

Blocks take ``spatial_dims`` (2 for images, 3 for volumes) so a volumetric
decoder uses the same code with ``Conv3D`` / ``UpSampling3D``.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_dynunet.layers import ICNR, PixelShuffle
from keras_dynunet.layers.batch_norm import FastBatchNormalization
from keras_dynunet.layers.no_copy import NO_COPY_LAYERS, NoCopyConv2D

UPSAMPLING_MODES = ("nearest", "bilinear", "transpose", "pixelshuffle")
NORMALIZATIONS = ("batch", "group", "layer", "none")


def _layer(kind: str, spatial_dims: int, transpose: bool = False):
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}.")
    name = f"{kind}{spatial_dims}D{'Transpose' if transpose else ''}"
    layer = getattr(keras.layers, name)
    return NO_COPY_LAYERS.get(layer, layer)


def normalization(kind: str, name: str, epsilon: float = 1e-3) -> keras.layers.Layer | None:
    """The normalisation layer for ``kind`` (``None`` for ``"none"``).

    ``epsilon`` is the variance epsilon (Keras default ``1e-3``; PyTorch's
    BatchNorm uses ``1e-5``, which ported decoders need).

    >>> normalization("batch", "bn").__class__.__name__
    'BatchNormalization'
    """
    if kind == "batch":
        return FastBatchNormalization(epsilon=epsilon, name=name)
    if kind == "group":
        return keras.layers.GroupNormalization(groups=8, epsilon=epsilon, name=name)
    if kind == "layer":
        return keras.layers.LayerNormalization(epsilon=epsilon, name=name)
    if kind == "none":
        return None
    raise ValueError(f"Unknown normalization {kind!r}; choose one of {NORMALIZATIONS}.")


def conv_block(
    x: Any,
    filters: int,
    name: str,
    *,
    kernel_size: int = 3,
    norm: str = "batch",
    activation: str | None = "relu",
    spatial_dims: int = 2,
    norm_epsilon: float = 1e-3,
) -> Any:
    """Convolution ('same' padding) -> normalisation -> activation.

    The convolution has a bias only when there is no normalisation.

    >>> x = keras.Input((None, None, 8))
    >>> conv_block(x, 16, "demo").shape
    (None, None, None, 16)
    """
    conv = _layer("Conv", spatial_dims)
    layer_norm = normalization(norm, f"{name}_norm", norm_epsilon)
    x = conv(
        filters, kernel_size, padding="same", use_bias=layer_norm is None,
        kernel_initializer="he_uniform", name=f"{name}_conv",
    )(x)  # fmt: skip
    if layer_norm is not None:
        x = layer_norm(x)
    if activation:
        x = keras.layers.Activation(activation, name=f"{name}_act")(x)
    return x


def upsample(
    x: Any,
    factor: int,
    mode: str,
    filters: int,
    name: str,
    *,
    activation: str | None = "relu",
    spatial_dims: int = 2,
) -> Any:
    """Upsample ``x`` by an integer ``factor``.

    Modes:
        ``nearest`` / ``bilinear``: interpolation, channels unchanged.
        ``transpose``: ``ConvTranspose`` with kernel = stride = ``factor``
        (no overlap, hence no checkerboard), ``filters`` outputs, then
        ``activation``.
        ``pixelshuffle``: 1x1 convolution to ``filters * factor**2`` channels
        with ICNR initialisation, ``activation``, then pixel shuffle.

    >>> x = keras.Input((4, 4, 8))
    >>> [upsample(x, 2, m, 6, f"u{i}").shape for i, m in enumerate(UPSAMPLING_MODES)]
    [(None, 8, 8, 8), (None, 8, 8, 8), (None, 8, 8, 6), (None, 8, 8, 6)]
    """
    if mode not in UPSAMPLING_MODES:
        raise ValueError(f"Unknown upsampling mode {mode!r}; choose one of {UPSAMPLING_MODES}.")
    if mode in ("nearest", "bilinear"):
        if mode == "bilinear" and spatial_dims != 2:
            raise ValueError("bilinear upsampling is 2-D only; use 'nearest' or 'transpose'.")
        kwargs = {"interpolation": mode} if spatial_dims == 2 else {}
        return _layer("UpSampling", spatial_dims)(factor, name=f"{name}_up", **kwargs)(x)
    if mode == "transpose":
        x = _layer("Conv", spatial_dims, transpose=True)(
            filters, factor, strides=factor, padding="same",
            kernel_initializer="he_uniform", name=f"{name}_up",
        )(x)  # fmt: skip
    else:
        if spatial_dims != 2:
            raise ValueError("pixelshuffle upsampling is 2-D only; use 'nearest' or 'transpose'.")
        x = NoCopyConv2D(
            filters * factor**2, 1, kernel_initializer=ICNR(factor), name=f"{name}_up_conv"
        )(x)
    if activation:
        x = keras.layers.Activation(activation, name=f"{name}_up_act")(x)
    if mode == "pixelshuffle":
        x = PixelShuffle(factor, name=f"{name}_up")(x)
    return x
