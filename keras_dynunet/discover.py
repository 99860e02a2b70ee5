"""Tap discovery for any functional Keras model.

Given an encoder that is not in the registry (a ``keras.applications``
model, a keras-hub backbone, or a hand-written functional model), find the
skip connections a U-Net decoder needs: for every stride, the deepest layer
(last in topological order) whose output has that stride. The walk is
symbolic: one probe evaluation of every candidate tensor's shape, no data.

keras-hub ``FeaturePyramidBackbone`` models already declare their pyramid;
their ``pyramid_outputs`` are used as they are (keys recomputed from the
measured strides, since some backbones use other conventions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras

from keras_dynunet.graph import DEFAULT_PROBE_SIZE, layer_output, measure_features, spatial_rank
from keras_dynunet.taps import Tap, tap_key, validate_taps


def _candidate_layers(model: keras.Model) -> list[tuple[str, keras.KerasTensor]]:
    rank = spatial_rank(model) + 2
    candidates = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            output = layer.output
        except (AttributeError, ValueError):
            continue  # shared layer or several outputs: not a tap
        if not isinstance(output, keras.KerasTensor) or len(output.shape) != rank:
            continue
        candidates.append((layer.name, output))
    return candidates


def _pyramid_taps(model: keras.Model, probe_size: int) -> tuple[Tap, ...]:
    items = list(model.pyramid_outputs.items())
    features = measure_features(model, [tensor for _, tensor in items], probe_size)
    taps = []
    for (key, tensor), feature in zip(items, features, strict=True):
        if feature.stride is None:
            raise ValueError(
                f"pyramid output {key!r} of {model.name!r} has no power-of-two stride "
                f"(spatial size {feature.spatial} on a {probe_size}-pixel probe)."
            )
        layer = tensor._keras_history.operation.name
        taps.append(Tap(tap_key(feature.stride), layer, feature.stride, int(feature.channels)))
    return validate_taps(tuple(sorted(taps, key=lambda t: t.stride)), model.name)


def discover_taps(
    model: keras.Model, probe_size: int = DEFAULT_PROBE_SIZE, min_stride: int = 1
) -> tuple[Tap, ...]:
    """Find the deepest layer at each power-of-two stride of a functional model.

    Args:
        model: A functional (or Sequential) Keras model, channels-last.
        probe_size: Spatial size used to measure strides where the model's
            input leaves them ``None``.
        min_stride: Ignore feature maps finer than this stride.

    Returns:
        Taps in increasing stride. A stride-1 tap is only offered when a layer
        with trainable weights produces it (the raw or rescaled input is no
        skip). At each stride, layers whose output is exactly input/stride
        pixels are preferred over padded or 'valid'-cropped ones.

    Raises:
        ValueError: If no layer reduces the resolution.

    >>> inp = keras.Input((None, None, 3))
    >>> x = keras.layers.Conv2D(8, 3, strides=4, padding="same", name="stem")(inp)
    >>> a = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="a")(x)
    >>> b = keras.layers.MaxPooling2D(name="b")(x)
    >>> b = keras.layers.Conv2D(16, 1, name="b_proj")(b)
    >>> y = keras.layers.Add(name="merge")([a, b])
    >>> " ".join(f"{t.key}:{t.layer}:{t.channels}" for t in discover_taps(keras.Model(inp, y)))
    'P2:stem:8 P3:merge:16'
    """
    if hasattr(model, "pyramid_outputs") and getattr(model, "pyramid_outputs", None):
        return tuple(t for t in _pyramid_taps(model, probe_size) if t.stride >= min_stride)
    candidates = _candidate_layers(model)
    if not candidates:
        raise ValueError(f"Model {model.name!r} has no layer with a spatial output to tap.")
    features = measure_features(model, [tensor for _, tensor in candidates], probe_size)
    trainable = {layer.name for layer in model.layers if layer.trainable_weights}
    seen_weights = False
    deepest: dict[tuple[int, bool], Tap] = {}
    for (name, _), feature in zip(candidates, features, strict=True):
        seen_weights = seen_weights or name in trainable
        stride = feature.stride
        if stride is None or feature.channels is None or stride < min_stride:
            continue
        if stride == 1 and not seen_weights:
            continue
        tap = Tap(tap_key(stride), name, stride, int(feature.channels))
        deepest[stride, feature.exact] = tap
    # Prefer feature maps of exactly input/stride pixels (a padding layer in front of
    # a strided conv is one pixel larger); 'valid'-padded encoders have none.
    strides = sorted({stride for stride, _ in deepest})
    taps = tuple(deepest.get((s, True)) or deepest[s, False] for s in strides)
    if not taps or taps[-1].stride == 1:
        raise ValueError(
            f"Model {model.name!r} never reduces its input resolution, so it has no "
            "encoder pyramid to tap. Pass a downsampling encoder."
        )
    return validate_taps(taps, model.name)


def taps_from_layers(
    model: keras.Model,
    layers: Sequence[str] | Mapping[str, str],
    probe_size: int = DEFAULT_PROBE_SIZE,
) -> tuple[Tap, ...]:
    """Build taps for explicitly named layers, measuring stride and channels.

    Args:
        model: The encoder.
        layers: Layer names (any order), or a mapping ``{key: layer_name}``
            whose keys are checked against the measured strides.
        probe_size: See :func:`discover_taps`.

    Raises:
        ValueError: Unknown layer (closest names suggested), a stride that is
            not a power of two, two layers at one stride, or a key that does
            not match the measured stride.

    >>> vgg = keras.applications.VGG16(weights=None, include_top=False)
    >>> taps_from_layers(vgg, ["block3_conv3", "block2_conv2"])[0]
    Tap(key='P1', layer='block2_conv2', stride=2, channels=128)
    """
    if isinstance(layers, str):
        raise TypeError("taps must be a list of layer names or a {key: layer} mapping.")
    if isinstance(layers, Mapping):
        declared = dict(layers)
    else:  # no declared key: "#i" placeholders
        declared = {f"#{i}": name for i, name in enumerate(layers)}
    names = list(declared.values())
    tensors = [layer_output(model, name) for name in names]
    taps = []
    for (key, name), feature in zip(
        declared.items(), measure_features(model, tensors, probe_size), strict=True
    ):
        if feature.stride is None:
            raise ValueError(
                f"Layer {name!r} of {model.name!r} has spatial size {feature.spatial} on a "
                f"{probe_size}-pixel probe: its stride is not a power of two, so it cannot be "
                "a U-Net skip. Choose another layer."
            )
        tap = Tap(tap_key(feature.stride), name, feature.stride, int(feature.channels))
        if not key.startswith("#") and key != tap.key:
            raise ValueError(
                f"Tap {key!r} names layer {name!r}, whose measured stride is {feature.stride} "
                f"(key {tap.key!r}). Use key {tap.key!r} or another layer."
            )
        taps.append(tap)
    taps.sort(key=lambda t: t.stride)
    strides = [t.stride for t in taps]
    if len(set(strides)) != len(strides):
        raise ValueError(
            f"Two of the layers {names} have the same stride ({strides}); give one layer per "
            "stride."
        )
    return validate_taps(tuple(taps), model.name)
