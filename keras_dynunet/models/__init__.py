"""Whole-model architectures by name: ``ternaus-vgg11``, ``unet-vanilla``, ``dynunet``."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import keras

from keras_dynunet.models.ternaus import TernausUNet11
from keras_dynunet.models.vanilla import VanillaUNet

_MODELS: dict[str, Callable[..., keras.Model]] = {
    "ternaus-vgg11": TernausUNet11,
    "unet-vanilla": lambda **kw: VanillaUNet(padding="valid", **kw),
    "unet-vanilla-padded": lambda **kw: VanillaUNet(
        padding="same", **{"input_shape": (None, None, 1), **kw}
    ),
}


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`.

    >>> list_models()
    ['ternaus-vgg11', 'unet-vanilla', 'unet-vanilla-padded']
    """
    return sorted(_MODELS)


def build_model(name: str, **kwargs: Any) -> keras.Model:
    """Build a named whole-model architecture.

    Args:
        name: One of :func:`list_models`.
        **kwargs: The architecture's constructor arguments.

    Raises:
        KeyError: For an unknown name, with the closest names.

    >>> build_model("unet-vanilla-padded", classes=1).output_shape
    (None, None, None, 1)
    """
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.3)
        raise KeyError(
            f"Unknown model {name!r}. Known models: {list_models()}"
            + (f"; did you mean {close[0]!r}?" if close else ".")
            + " For a U-Net on any encoder use build_unet(encoder_name)."
        )
    return _MODELS[name](**kwargs)


__all__ = ["TernausUNet11", "VanillaUNet", "build_model", "list_models"]
