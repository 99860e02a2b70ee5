"""Registering ``keras.applications`` backbones as encoders.

Every such family declares its taps by layer name; the builder calls the
application constructor without its classification head. On the torch backend
its 2D convolutions and max-pools are swapped for the no-copy layers of
:mod:`keras_dynunet.layers.no_copy` (same weights, same function). Weights named
``"imagenet"`` are downloaded by keras itself (which checks the file hash).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from keras_dynunet.layers.no_copy import use_no_copy_layers
from keras_dynunet.registry import register_encoder
from keras_dynunet.taps import EncoderSpec, Tap
from keras_dynunet.weights import KERAS_APPLICATIONS


def application_builder(constructor_name: str, **kwargs: Any):
    """A spec builder calling ``keras.applications.<constructor_name>`` headless.

    >>> build = application_builder("VGG16")
    >>> build((32, 32, 3)).output_shape
    (None, 1, 1, 512)
    """

    def builder(input_shape: Sequence[int | None], weights: str | None = None) -> keras.Model:
        constructor = getattr(keras.applications, constructor_name)
        model = constructor(
            include_top=False, weights=weights, input_shape=tuple(input_shape), **kwargs
        )
        return use_no_copy_layers(model)

    builder.__name__ = f"build_{constructor_name.lower()}"
    return builder


def register_application(
    name: str,
    constructor_name: str,
    taps: Sequence[Tap],
    family: str,
    preprocessing: str = "none",
    constructor_kwargs: Mapping[str, Any] | None = None,
) -> EncoderSpec:
    """Register ``keras.applications.<constructor_name>`` under ``name``.

    >>> register_application("doc-vgg16", "VGG16", [Tap("P1", "block2_conv2", 2, 128)], "vgg").name
    'doc-vgg16'
    >>> from keras_dynunet.registry import unregister_encoder
    >>> unregister_encoder("doc-vgg16")
    """
    return register_encoder(
        EncoderSpec(
            name=name,
            builder=application_builder(constructor_name, **dict(constructor_kwargs or {})),
            taps=tuple(taps),
            family=family,
            preprocessing=preprocessing,
            weight_sources={"imagenet": KERAS_APPLICATIONS},
            reference=f"keras.applications.{constructor_name}",
        )
    )
