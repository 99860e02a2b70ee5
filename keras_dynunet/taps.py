"""Tagged taps: the skip connections an encoder offers to a decoder.

A :class:`Tap` names one feature map of an encoder by its layer, its stride
(input size / feature size, a power of two) and its channel count. The key
``"Pn"`` encodes the stride as ``2**n`` (the keras-hub ``pyramid_outputs``
convention), so ``"P0"`` is full resolution and ``"P5"`` is stride 32.

An :class:`EncoderSpec` is everything the registry knows about one encoder:
how to build it, which taps it offers, how inputs are preprocessed and where
pretrained weights come from. Both are frozen dataclasses that validate
themselves on construction, so a wrong declaration fails where it is written.

Strides are isotropic integers, which is what a volumetric (Conv3D) encoder
needs as well: nothing here assumes two spatial dimensions.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

_KEY_PATTERN = re.compile(r"^P(\d)$")
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def tap_key(stride: int) -> str:
    """Return the tap key for a power-of-two stride.

    Args:
        stride: Input size divided by feature size; a power of two.

    Returns:
        ``"P{log2(stride)}"``.

    Raises:
        ValueError: If ``stride`` is not a positive power of two.

    >>> tap_key(1), tap_key(32)
    ('P0', 'P5')
    """
    if not isinstance(stride, int) or stride < 1 or stride & (stride - 1):
        raise ValueError(
            f"Tap stride must be a positive power of two (1, 2, 4, ...), got {stride!r}."
        )
    return f"P{int(math.log2(stride))}"


@dataclasses.dataclass(frozen=True)
class Tap:
    """One skip connection of an encoder.

    Attributes:
        key: ``"P0"`` .. ``"P9"``; ``"Pn"`` means stride ``2**n``.
        layer: Name of the encoder layer whose output is the feature map.
        stride: Input size divided by the feature map's size.
        channels: Number of channels of the feature map.

    >>> Tap("P2", "layer1", 4, 64)
    Tap(key='P2', layer='layer1', stride=4, channels=64)
    >>> Tap("P3", "layer1", 4, 64)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Tap 'P3' (layer 'layer1'): key P3 means stride 8, but stride is 4. Use key 'P2'...
    """

    key: str
    layer: str
    stride: int
    channels: int

    def __post_init__(self) -> None:
        match = _KEY_PATTERN.match(str(self.key))
        if not match:
            raise ValueError(
                f"Tap key must look like 'P0'..'P9' (P<n> = stride 2**n), got {self.key!r}."
            )
        if not isinstance(self.layer, str) or not self.layer:
            raise ValueError(f"Tap {self.key!r}: layer must be a non-empty layer name.")
        expected = tap_key(self.stride)
        if expected != self.key:
            raise ValueError(
                f"Tap {self.key!r} (layer {self.layer!r}): key {self.key} means stride "
                f"{2 ** int(match.group(1))}, but stride is {self.stride}. "
                f"Use key {expected!r} or stride {2 ** int(match.group(1))}."
            )
        if not isinstance(self.channels, int) or self.channels < 1:
            raise ValueError(
                f"Tap {self.key!r} (layer {self.layer!r}): channels must be a positive "
                f"integer, got {self.channels!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the tap as a JSON-serialisable dict.

        >>> Tap("P1", "conv1", 2, 64).to_dict()
        {'key': 'P1', 'layer': 'conv1', 'stride': 2, 'channels': 64}
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tap:
        """Build a tap from :meth:`to_dict` output.

        >>> Tap.from_dict({"key": "P1", "layer": "conv1", "stride": 2, "channels": 64}).layer
        'conv1'
        """
        return cls(**dict(data))


def validate_taps(taps: tuple[Tap, ...], owner: str) -> tuple[Tap, ...]:
    """Check that taps are non-empty, sorted by stride and unique.

    Args:
        taps: The taps to check.
        owner: Name used in error messages (an encoder name).

    Returns:
        The taps, as a tuple.

    Raises:
        ValueError: If the taps are empty, unsorted or repeat a key or layer.

    >>> len(validate_taps((Tap("P1", "a", 2, 8), Tap("P2", "b", 4, 16)), "demo"))
    2
    """
    taps = tuple(taps)
    if not taps:
        raise ValueError(f"Encoder {owner!r} declares no taps; a U-Net needs at least one.")
    for tap in taps:
        if not isinstance(tap, Tap):
            raise TypeError(f"Encoder {owner!r}: taps must be Tap objects, got {tap!r}.")
    strides = [tap.stride for tap in taps]
    if strides != sorted(set(strides)):
        raise ValueError(
            f"Encoder {owner!r}: taps must have distinct strides in increasing order, "
            f"got strides {strides}."
        )
    layers = [tap.layer for tap in taps]
    if len(set(layers)) != len(layers):
        raise ValueError(f"Encoder {owner!r}: two taps name the same layer: {layers}.")
    return taps


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """Everything the registry knows about one encoder.

    Attributes:
        name: Registry name, lowercase (``"resnet34"``).
        builder: ``builder(input_shape) -> keras.Model``; the backbone whose
            layers the taps name. Must accept ``input_shape`` with ``None``
            spatial dimensions.
        taps: The skip connections, increasing stride.
        family: Family name, for listings (``"resnet"``).
        preprocessing: How raw ``[0, 255]`` RGB pixels must be transformed
            before the encoder: ``"none"`` (the model normalises itself),
            ``"imagenet"`` (RGB mean/std), ``"caffe"`` (BGR mean) or
            ``"lite"`` (``(x - 127) / 128``).
        weight_sources: Named pretrained weight sources, e.g.
            ``{"imagenet": "https://..."}``.
        reference: Where the layer layout comes from (paper or code).

    >>> spec = EncoderSpec("toy", lambda shape: None, (Tap("P1", "c", 2, 8),), family="toy")
    >>> spec.max_stride
    2
    """

    name: str
    builder: Callable[..., Any]
    taps: tuple[Tap, ...]
    family: str = "custom"
    preprocessing: str = "none"
    weight_sources: Mapping[str, str] = dataclasses.field(default_factory=dict)
    reference: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_PATTERN.match(self.name):
            raise ValueError(
                f"Encoder name must be lowercase letters, digits, '.', '_' or '-', "
                f"got {self.name!r}."
            )
        if not callable(self.builder):
            raise TypeError(f"Encoder {self.name!r}: builder must be callable.")
        object.__setattr__(self, "taps", validate_taps(self.taps, self.name))
        if self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(
                f"Encoder {self.name!r}: preprocessing must be one of "
                f"{sorted(PREPROCESSING_MODES)}, got {self.preprocessing!r}."
            )
        object.__setattr__(self, "weight_sources", MappingProxyType(dict(self.weight_sources)))

    @property
    def max_stride(self) -> int:
        """The stride of the deepest tap (the input must be a multiple of it)."""
        return self.taps[-1].stride

    def tap(self, key: str) -> Tap:
        """Return the tap with ``key``.

        Raises:
            KeyError: If there is no such tap; the message lists the keys.
        """
        for tap in self.taps:
            if tap.key == key:
                return tap
        raise KeyError(
            f"Encoder {self.name!r} has no tap {key!r}; it has {[t.key for t in self.taps]}."
        )


PREPROCESSING_MODES = frozenset({"none", "imagenet", "caffe", "lite", "tf", "unit"})
