"""Pretrained RGB weights for inputs with another channel count.

The first convolution of an ImageNet encoder expects 3 channels. For ``C``
input channels its kernel is adapted as segmentation_models_pytorch does
(``patch_first_conv``): ``C == 1`` sums the RGB filters (a grey image ``x``
then gives the same response as the RGB model on ``[x, x, x]``); any other
``C`` copies the RGB filters cyclically (channel ``i`` gets filter
``i % 3``) and scales them by ``3 / C`` so the response to a constant image
keeps its magnitude. Every other layer is copied unchanged.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def adapt_input_kernel(kernel: Any, channels: int, axis: int = -2) -> np.ndarray:
    """Adapt a first-convolution kernel to ``channels`` input channels.

    Args:
        kernel: The pretrained kernel; Keras layout ``(kh, kw, in, out)`` by
            default (``axis=-2``), PyTorch ``(out, in, kh, kw)`` with ``axis=1``.
        channels: The new number of input channels (``>= 1``).
        axis: The input-channel axis of ``kernel``.

    Returns:
        The adapted kernel (a new array; unchanged copy when the count matches).

    Raises:
        ValueError: ``channels`` is not a positive integer.

    >>> k = np.arange(6, dtype="float32").reshape(1, 1, 3, 2)
    >>> adapt_input_kernel(k, 1)[0, 0].tolist()
    [[6.0, 9.0]]
    >>> adapt_input_kernel(k, 4)[0, 0, :, 0].tolist()
    [0.0, 1.5, 3.0, 0.0]
    """
    if not isinstance(channels, (int, np.integer)) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}.")
    kernel = np.asarray(kernel)
    axis = axis % kernel.ndim
    source = kernel.shape[axis]
    if channels == source:
        return kernel.copy()
    if channels == 1:
        return kernel.sum(axis=axis, keepdims=True)
    index = np.arange(channels) % source
    return np.take(kernel, index, axis=axis) * (source / channels)


_PASS_THROUGH = (keras.layers.ZeroPadding2D, keras.layers.Rescaling, keras.layers.Normalization)


def _input_layers(model: keras.Model) -> set[int]:
    """ids of the layers that read the model input directly (through padding only)."""
    from keras_dynunet.ports.assign import leaf_layers

    found = set()
    for layer in leaf_layers(model).values():
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        try:
            tensor = layer.input
        except (AttributeError, ValueError):
            continue
        while True:
            history = getattr(tensor, "_keras_history", None)
            operation = history.operation if history is not None else None
            if isinstance(operation, keras.layers.InputLayer):
                found.add(id(layer))
                break
            if isinstance(operation, _PASS_THROUGH):
                tensor = operation.input
                continue
            break
    return found


def is_input_conv(model: keras.Model, layer: keras.layers.Layer) -> bool:
    """True when ``layer`` is a convolution applied to the model input (maybe padded).

    Args:
        model: The model (nested models are searched).
        layer: One of its layers.

    Returns:
        Whether ``layer`` reads the input directly or through padding/rescaling.

    >>> inp = keras.Input((8, 8, 1))
    >>> x = keras.layers.Conv2D(4, 3, name="stem")(keras.layers.ZeroPadding2D(1)(inp))
    >>> m = keras.Model(inp, keras.layers.Conv2D(2, 1, name="next")(x))
    >>> is_input_conv(m, m.get_layer("stem")), is_input_conv(m, m.get_layer("next"))
    (True, False)
    """
    return id(layer) in _input_layers(model)


def transfer_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy weights layer by layer (by name), adapting input convolutions' channels.

    ``source`` and ``target`` are the same architecture built for different
    input channel counts (e.g. a pretrained 3-channel backbone and a
    1-channel one); a convolution reading the input gets
    :func:`adapt_input_kernel`, every other layer must match exactly.

    Args:
        source: The model holding the weights.
        target: The model to fill.

    Returns:
        Names of the layers whose kernel was adapted.

    Raises:
        ValueError: A weighted layer of ``target`` is missing in ``source`` or
            its shapes differ (other than an input convolution's channels).

    >>> def net(c):
    ...     inp = keras.Input((8, 8, c))
    ...     return keras.Model(inp, keras.layers.Conv2D(2, 3, name="stem")(inp))
    >>> rgb, grey = net(3), net(1)
    >>> transfer_weights(rgb, grey)
    ['stem']
    >>> bool(np.allclose(grey.get_layer("stem").kernel.numpy()[..., 0, :],
    ...                  rgb.get_layer("stem").kernel.numpy().sum(axis=2)))
    True
    """
    from keras_dynunet.ports.assign import leaf_layers

    sources = leaf_layers(source)
    inputs = _input_layers(target)
    channels = target.inputs[0].shape[-1]
    adapted = []
    for name, layer in leaf_layers(target).items():
        if not layer.weights:
            continue
        if name not in sources:
            raise ValueError(
                f"Layer {name!r} of {target.name!r} has no counterpart in {source.name!r}: "
                "the two models are not the same architecture."
            )
        arrays = sources[name].get_weights()
        current = layer.get_weights()
        if id(layer) in inputs and arrays and arrays[0].shape != current[0].shape:
            arrays = [adapt_input_kernel(arrays[0], channels), *arrays[1:]]
            adapted.append(name)
        if len(arrays) != len(current) or any(
            a.shape != c.shape for a, c in zip(arrays, current, strict=False)
        ):
            raise ValueError(
                f"Shape mismatch for layer {name!r}: {source.name!r} has "
                f"{[a.shape for a in arrays]}, {target.name!r} has {[c.shape for c in current]}."
            )
        layer.set_weights(arrays)
    return adapted
