"""Symbolic measurements on functional Keras graphs.

Strides and channels of intermediate feature maps are measured without
running the model on data: a probe model from the encoder's input to the
tensors of interest is evaluated with :meth:`keras.Model.compute_output_spec`
on a static input shape. This works whatever the encoder's declared input
shape (``None`` spatial dimensions included) and costs milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import keras

DEFAULT_PROBE_SIZE = 512


@dataclass(frozen=True)
class FeatureShape:
    """Stride and channels of one feature map, as measured on probe inputs.

    Attributes:
        stride: Probe size / feature size as a power of two, or ``None`` when
            the ratio is not close to a power of two or does not hold at two
            probe sizes (global pooling, fixed-size outputs).
        channels: Size of the last axis.
        spatial: Spatial size on the (first) probe input.
        exact: Whether the size is exactly probe size / stride ('same'
            padding); 'valid'-padded encoders give off-by-a-few sizes.
    """

    stride: int | None
    channels: int | None
    spatial: tuple[int, ...]
    exact: bool = False


def spatial_rank(model: keras.Model) -> int:
    """Number of spatial axes of a channels-last model input (2 for images).

    >>> m = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3)])
    >>> spatial_rank(m)
    2
    """
    shape = model.inputs[0].shape
    if len(shape) < 3:
        raise ValueError(
            f"Model {model.name!r} has input shape {shape}; an encoder needs "
            "(batch, *spatial, channels) with at least one spatial axis."
        )
    return len(shape) - 2


def probe_shape(model: keras.Model, probe_size: int = DEFAULT_PROBE_SIZE) -> tuple[int, ...]:
    """The static input shape (batch 1) used to measure ``model``'s strides.

    Static spatial dimensions of the model's input are kept; ``None`` ones
    become ``probe_size``.

    >>> m = keras.Sequential([keras.Input((None, 64, 3)), keras.layers.Conv2D(4, 3)])
    >>> probe_shape(m, 128)
    (1, 128, 64, 3)
    """
    shape = tuple(model.inputs[0].shape)
    channels = shape[-1]
    if channels is None:
        raise ValueError(
            f"Model {model.name!r} has an unknown channel count; declare it in keras.Input."
        )
    spatial = tuple(probe_size if dim is None else int(dim) for dim in shape[1:-1])
    return (1, *spatial, int(channels))


def stride_from_sizes(input_size: int, feature_size: int) -> int | None:
    """Power-of-two stride from an input and a feature size, tolerant to 'valid' padding.

    Returns ``None`` when the ratio is not within 20% of a power of two.

    >>> stride_from_sizes(256, 64), stride_from_sizes(299, 149), stride_from_sizes(90, 30)
    (4, 2, None)
    """
    if not feature_size or not input_size:
        return None
    ratio = input_size / feature_size
    if ratio < 0.75:
        return None
    exponent = max(0, round(math.log2(ratio)))
    if abs(ratio / 2**exponent - 1.0) > 0.2:
        return None
    return 2**exponent


def _probe(model: keras.Model, tensors: Sequence[keras.KerasTensor], shape: tuple[int, ...]):
    probe = keras.Model(model.inputs[0], list(tensors))
    specs = probe.compute_output_spec(keras.KerasTensor(shape))
    return specs if isinstance(specs, (list, tuple)) else [specs]


def _feature(in_shape: tuple[int, ...], out_shape: tuple[int | None, ...]) -> FeatureShape:
    if len(out_shape) != len(in_shape):
        return FeatureShape(None, None, tuple(out_shape[1:-1]))
    strides = {
        stride_from_sizes(size_in, size_out)
        for size_in, size_out in zip(in_shape[1:-1], out_shape[1:-1], strict=True)
    }
    stride = strides.pop() if len(strides) == 1 else None
    exact = stride is not None and all(
        size_in == size_out * stride
        for size_in, size_out in zip(in_shape[1:-1], out_shape[1:-1], strict=True)
    )
    return FeatureShape(stride, out_shape[-1], tuple(out_shape[1:-1]), exact)


def measure_features(
    model: keras.Model,
    tensors: Sequence[keras.KerasTensor],
    probe_size: int = DEFAULT_PROBE_SIZE,
) -> list[FeatureShape]:
    """Measure stride and channels of symbolic tensors of ``model``'s graph.

    When the input's spatial size is ``None`` the graph is probed at two
    sizes, and a stride counts only if both agree, so globally pooled or
    fixed-size outputs are not mistaken for deep features.

    Args:
        model: A functional model; the tensors must depend on its input only.
        tensors: Symbolic outputs of layers inside ``model``.
        probe_size: Spatial size used for dimensions the input leaves ``None``.

    Returns:
        One :class:`FeatureShape` per tensor, in order.

    >>> inp = keras.Input((None, None, 3))
    >>> mid = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inp)
    >>> out = keras.layers.Conv2D(16, 3, strides=2, padding="same")(mid)
    >>> pooled = keras.layers.GlobalAveragePooling2D(keepdims=True)(out)
    >>> m = keras.Model(inp, pooled)
    >>> [(f.stride, f.channels) for f in measure_features(m, [mid, out, pooled])]
    [(2, 8), (4, 16), (None, 16)]
    """
    shape = probe_shape(model, probe_size)
    features = [_feature(shape, tuple(spec.shape)) for spec in _probe(model, tensors, shape)]
    if None not in tuple(model.inputs[0].shape)[1:-1]:
        return features
    double = probe_shape(model, 2 * probe_size)
    checks = [_feature(double, tuple(spec.shape)) for spec in _probe(model, tensors, double)]
    return [
        feature
        if feature.stride == check.stride
        else FeatureShape(None, feature.channels, feature.spatial)
        for feature, check in zip(features, checks, strict=True)
    ]


def layer_output(model: keras.Model, layer_name: str) -> keras.KerasTensor:
    """The symbolic output of the layer named ``layer_name``.

    Raises:
        ValueError: If there is no such layer (the message suggests close
            names), or the layer is shared and has no single output.

    >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c")])
    >>> layer_output(m, "c").shape
    (None, 6, 6, 4)
    """
    import difflib

    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        names = [layer.name for layer in model.layers]
        close = difflib.get_close_matches(layer_name, names, n=5, cutoff=0.5)
        hint = f" Closest names: {close}." if close else ""
        raise ValueError(
            f"Model {model.name!r} has no layer named {layer_name!r}.{hint} "
            "List them with [l.name for l in model.layers]."
        ) from None
    try:
        return layer.output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"Layer {layer_name!r} of model {model.name!r} is used more than once "
            f"or has several outputs, so it cannot be a tap ({error})."
        ) from None
