"""TernausNet ``UNet11`` state dicts -> :class:`~keras_dynunet.models.TernausUNet11`.

TernausNet registers each VGG11 convolution twice (``encoder.0`` and
``conv1`` are the same module), so its state dict holds both keys; they are
checked to be equal and mapped to one layer. Encoder keys
``encoder.{0,3,6,8,11,13,16,18}`` / ``conv1`` .. ``conv5`` -> layers
``conv1, conv2, conv3s, conv3, conv4s, conv4, conv5s, conv5``; decoder keys
keep their path with ``.`` -> ``_`` (``dec5.block.0.conv`` ->
``dec5_block_0_conv``, ``dec5.block.1`` (``ConvTranspose2d``) ->
``dec5_block_1``, ``final`` -> ``final``). The number of classes and
``num_filters`` are read from the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_dynunet.ports.assign import assign_state_dict
from keras_dynunet.ports.torchvision import (
    TERNAUS_VGG11_NAMES,
    StateDictSource,
    load_state_dict,
)

_ENCODER_INDICES = (0, 3, 6, 8, 11, 13, 16, 18)
ENCODER_ALIASES = {
    f"encoder.{index}": name
    for index, name in zip(_ENCODER_INDICES, TERNAUS_VGG11_NAMES, strict=True)
}


def ternausnet_rename(prefix: str) -> str:
    """TernausNet prefix -> ``TernausUNet11`` layer name.

    Args:
        prefix: State-dict prefix (``"encoder.6"``, ``"dec5.block.0.conv"``).

    Returns:
        The layer name.

    >>> ternausnet_rename("encoder.6"), ternausnet_rename("dec5.block.1")
    ('conv3s', 'dec5_block_1')
    """
    return ENCODER_ALIASES.get(prefix, prefix.replace(".", "_"))


def canonical_state_dict(state_dict: StateDictSource) -> dict[str, np.ndarray]:
    """Merge TernausNet's duplicate encoder keys into ``{layer.param: array}``.

    Args:
        state_dict: Mapping of arrays/tensors, or a ``.pth``/``.safetensors`` path.

    Returns:
        ``{"<layer name>.<param>": array}``, one entry per weight.

    Raises:
        ValueError: Not a UNet11 state dict, or two copies of one weight differ.

    >>> w = np.ones((64, 3, 3, 3), "float32")
    >>> canonical_state_dict({"encoder.0.weight": w, "conv1.weight": w,
    ...                       "final.weight": np.ones((1, 32, 1, 1)),
    ...                       "dec1.conv.weight": np.ones((32, 96, 3, 3))}).keys()
    dict_keys(['conv1.weight', 'final.weight', 'dec1_conv.weight'])
    """
    state = load_state_dict(state_dict)
    if "encoder.28.weight" in state or "conv1.0.weight" in state:
        raise ValueError(
            "This is a TernausNet UNet16 (VGG16) state dict; only UNet11 is supported "
            "(keras_dynunet.TernausUNet11)."
        )
    for key in ("final.weight", "dec1.conv.weight"):
        if key not in state:
            raise ValueError(
                f"Not a TernausNet UNet11 state dict: key {key!r} is missing (keys start "
                f"{list(state)[:4]})."
            )
    merged: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        prefix, _, param = key.rpartition(".")
        name = f"{ternausnet_rename(prefix)}.{param}"
        if name in merged:
            if merged[name].shape != value.shape or not np.array_equal(merged[name], value):
                raise ValueError(
                    f"Checkpoint keys {origin[name]!r} and {key!r} are the same TernausNet "
                    "module but hold different values: the state dict was edited."
                )
            continue
        merged[name], origin[name] = value, key
    return merged


def load_ternausnet_weights(model: Any, state_dict: StateDictSource) -> Any:
    """Load a TernausNet ``UNet11`` state dict into a ``TernausUNet11``.

    Args:
        model: A :class:`~keras_dynunet.models.TernausUNet11` (same classes and
            ``num_filters``; other input channels get the first kernel adapted).
        state_dict: Mapping of arrays/tensors, or a ``.pth``/``.safetensors`` path.

    Returns:
        ``model``.

    Raises:
        ValueError: A key is missing, a shape differs (the message names the
            key and layer), or the checkpoint is not a UNet11.

    >>> from keras_dynunet.models import TernausUNet11
    >>> load_ternausnet_weights(TernausUNet11(), {"fc.weight": np.ones(1)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Not a TernausNet UNet11 state dict: key 'final.weight' is missing ...
    """
    state = canonical_state_dict(state_dict)
    assign_state_dict(model, state, rename=lambda prefix: prefix, adapt_input_channels=True)
    return model


def ternausnet_unet11(
    state_dict: StateDictSource,
    input_shape: Sequence[int | None] | None = None,
    activation: str | None = None,
) -> Any:
    """Build a ``TernausUNet11`` matching a TernausNet ``UNet11`` checkpoint and load it.

    Args:
        state_dict: Mapping of arrays/tensors, or a ``.pth``/``.safetensors`` path.
        input_shape: ``(height, width, channels)``; default ``(None, None, C)``
            with ``C`` from the checkpoint's first convolution.
        activation: Head activation (TernausNet outputs logits: ``None``).

    Returns:
        The Keras model, outputs equal to TernausNet's (channels last).

    >>> ternausnet_unet11({"final.weight": np.ones((1, 32, 1, 1))})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Not a TernausNet UNet11 state dict: key 'dec1.conv.weight' is missing ...
    """
    from keras_dynunet.models import TernausUNet11

    state = canonical_state_dict(state_dict)
    classes = int(state["final.weight"].shape[0])
    num_filters = int(state["dec1_conv.weight"].shape[0])
    if input_shape is None:
        channels = int(state["conv1.weight"].shape[1]) if "conv1.weight" in state else 3
        input_shape = (None, None, channels)
    model = TernausUNet11(
        classes, num_filters, input_shape=tuple(input_shape), activation=activation
    )
    assign_state_dict(model, state, rename=lambda prefix: prefix, adapt_input_channels=True)
    return model
