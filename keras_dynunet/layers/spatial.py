"""Padding inputs to a multiple of the encoder stride, and aligning spatial sizes.

Both layers work with static and ``None`` spatial shapes on every backend:
sizes are read with ``keras.ops.shape`` at call time.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _max0(value):
    """max(value, 0): Python ints stay Python ints (static shapes under JAX tracing)."""
    return max(value, 0) if isinstance(value, int) else ops.maximum(value, 0)


def _round_up(dim: int | None, multiple: int) -> int | None:
    return None if dim is None else -(-dim // multiple) * multiple


@keras.saving.register_keras_serializable(package="keras_dynunet")
class PadToMultiple(keras.layers.Layer):
    """Zero-pad the spatial axes at the end (bottom/right) up to a multiple.

    Args:
        multiple: The size each spatial axis is padded up to a multiple of.

    >>> tuple(PadToMultiple(32)(ops.ones((1, 50, 64, 3))).shape)
    (1, 64, 64, 3)
    """

    def __init__(self, multiple: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(multiple) < 1:
            raise ValueError(f"PadToMultiple needs a positive multiple, got {multiple!r}.")
        self.multiple = int(multiple)

    def call(self, inputs):
        shape = ops.shape(inputs)
        pads = [[0, 0]]
        for axis in range(1, len(inputs.shape) - 1):
            pads.append([0, (-shape[axis]) % self.multiple])
        pads.append([0, 0])
        return ops.pad(inputs, pads)

    def compute_output_shape(self, input_shape):
        return (
            input_shape[0],
            *(_round_up(dim, self.multiple) for dim in input_shape[1:-1]),
            input_shape[-1],
        )

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="keras_dynunet")
class MatchSpatial(keras.layers.Layer):
    """Crop (and zero-pad if smaller) ``x`` to the spatial size of ``reference``.

    Called as ``MatchSpatial()([x, reference])``; channels come from ``x``.

    Args:
        anchor: ``"topleft"`` keeps the top-left corner (undoes
            :class:`PadToMultiple`); ``"center"`` crops equally on both sides
            (the 2015 U-Net's skip crop).

    >>> tuple(MatchSpatial()([ops.ones((1, 64, 64, 2)), ops.ones((1, 50, 60, 3))]).shape)
    (1, 50, 60, 2)
    """

    def __init__(self, anchor: str = "topleft", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if anchor not in ("topleft", "center"):
            raise ValueError(f"MatchSpatial anchor must be 'topleft' or 'center', got {anchor!r}.")
        self.anchor = anchor

    def call(self, inputs):
        x, reference = inputs
        rank = len(x.shape)
        target = ops.shape(reference)
        for axis in range(1, rank - 1):
            size = ops.shape(x)[axis]
            want = target[axis]
            start = _max0((size - want) // 2) if self.anchor == "center" else 0
            index = [slice(None)] * rank
            index[axis] = slice(start, start + want)
            x = x[tuple(index)]
            missing = _max0(want - ops.shape(x)[axis])
            if not isinstance(missing, int) or missing:
                pads = [[0, 0]] * rank
                pads[axis] = [0, missing]
                x = ops.pad(x, pads)
        return x

    def compute_output_shape(self, input_shapes):
        x_shape, reference_shape = input_shapes
        return (x_shape[0], *reference_shape[1:-1], x_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "anchor": self.anchor}


def pad_to_stride(inputs: Any, stride: int, name: str = "pad_to_stride") -> tuple[Any, bool]:
    """Pad a symbolic input so its spatial size is a multiple of ``stride``.

    Returns ``(tensor, padded)``; no layer is added when static sizes already
    divide (so there is no redundant copy), and a :class:`PadToMultiple` when a
    size is ``None`` or not a multiple. Crop back with :class:`MatchSpatial`.

    >>> x, padded = pad_to_stride(keras.Input((64, 64, 3)), 32)
    >>> padded
    False
    >>> x, padded = pad_to_stride(keras.Input((None, 64, 3)), 32)
    >>> padded
    True
    """
    spatial = tuple(inputs.shape)[1:-1]
    if all(dim is not None and dim % stride == 0 for dim in spatial):
        return inputs, False
    return PadToMultiple(stride, name=name)(inputs), True
