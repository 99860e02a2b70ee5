"""segmentation_models_pytorch ``Unet`` (ResNet encoders) -> :class:`~keras_dynunet.DynUNet`.

segmentation_models_pytorch 0.6.0's ``Unet`` decoder is, per stage:
``F.interpolate(size=skip size, mode="nearest")`` (an exact x2 for inputs
divisible by 32, which SMP requires), concatenation with the encoder
feature (ResNet ``layer3``, ``layer2``, ``layer1``, ``relu``; none for the
last stage), then two ``Conv2d(3x3, bias=False)`` -> ``BatchNorm2d(eps=1e-5)``
-> ReLU, with widths ``(256, 128, 64, 32, 16)``; the center is an identity
for ResNets and the head a ``Conv2d(3x3, padding=1)`` with bias. That is
``DynUNet(encoder, upsampling="nearest", head_kernel_size=3,
norm_epsilon=1e-5)`` with default ``decoder_channels``.

Key mapping: ``encoder.layer1.0.conv1`` -> ``layer1_0_conv1``;
``decoder.blocks.{i}.conv{j}.{0|1}`` -> ``decoder_s{16 >> i}_block{j-1}_{conv|norm}``;
``decoder.center.{j}.{0|1}`` -> ``center_{j}_{conv|norm}``;
``segmentation_head.0`` -> ``head``. ``decoder_use_norm=False`` checkpoints
(convolutions with bias, no BatchNorm) map to ``norm="none"``. The
auxiliary ``classification_head`` is not part of the segmentation output and
is skipped; decoder attention (``scse``) is not supported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np  # noqa: F401  (the doctests use it)

from keras_dynunet.ports.assign import assign_state_dict
from keras_dynunet.ports.torchvision import (
    REGISTRY_NAMES,
    StateDictSource,
    detect_torchvision_arch,
    load_state_dict,
)

_BLOCK = re.compile(r"^decoder\.blocks\.(\d+)\.conv([12])\.([01])$")
_CENTER = re.compile(r"^decoder\.center\.([01])\.([01])$")


def smp_rename(prefix: str) -> str:
    """SMP ``Unet`` prefix -> ``DynUNet`` layer name.

    Args:
        prefix: State-dict prefix (``"decoder.blocks.0.conv1.0"``).

    Returns:
        The layer name (unknown prefixes unchanged, so they fail by name).

    >>> smp_rename("encoder.layer2.0.downsample.1"), smp_rename("decoder.blocks.4.conv2.1")
    ('layer2_0_downsample_1', 'decoder_s1_block1_norm')
    >>> smp_rename("segmentation_head.0")
    'head'
    """
    if prefix.startswith("encoder."):
        return prefix[len("encoder.") :].replace(".", "_")
    if match := _BLOCK.match(prefix):
        stride = 16 >> int(match.group(1))
        kind = "conv" if match.group(3) == "0" else "norm"
        return f"decoder_s{stride}_block{int(match.group(2)) - 1}_{kind}"
    if match := _CENTER.match(prefix):
        kind = "conv" if match.group(2) == "0" else "norm"
        return f"center_{match.group(1)}_{kind}"
    if prefix == "segmentation_head.0":
        return "head"
    return prefix


def smp_unet_config(state_dict: StateDictSource) -> dict[str, Any]:
    """The :class:`~keras_dynunet.DynUNet` arguments an SMP ``Unet`` checkpoint needs.

    Args:
        state_dict: Mapping of arrays/tensors, or a ``.pth``/``.safetensors`` path.

    Returns:
        ``encoder``, ``classes``, ``in_channels``, ``decoder_channels``,
        ``center``, ``norm`` and ``head_kernel_size``.

    Raises:
        ValueError: Not an SMP ``Unet`` with a ResNet encoder and depth 5, or
            it uses decoder attention; the message says what was found.

    >>> smp_unet_config({"segmentation_head.0.weight": np.zeros(1)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Not a segmentation_models_pytorch Unet state dict: no 'encoder.*' keys ...
    """
    state = load_state_dict(state_dict)
    encoder = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder or "segmentation_head.0.weight" not in state:
        raise ValueError(
            "Not a segmentation_models_pytorch Unet state dict: no 'encoder.*' keys or no "
            f"'segmentation_head.0.weight' (keys start {list(state)[:4]})."
        )
    if any(".attention" in key for key in state):
        raise ValueError(
            "The SMP Unet uses decoder attention (decoder_attention_type='scse'), which "
            "DynUNet does not implement."
        )
    try:
        arch = detect_torchvision_arch(encoder)
    except ValueError as error:
        raise ValueError(
            f"The SMP Unet's encoder is not a ResNet this port supports ({error})."
        ) from None
    if not arch.startswith("resnet"):
        raise ValueError(f"SMP Unet encoders other than ResNets are not supported (got {arch}).")
    widths = []
    while f"decoder.blocks.{len(widths)}.conv1.0.weight" in state:
        widths.append(int(state[f"decoder.blocks.{len(widths)}.conv1.0.weight"].shape[0]))
    if len(widths) != 5:
        raise ValueError(
            f"The SMP Unet has {len(widths)} decoder blocks; only encoder_depth=5 (5 blocks) "
            "is supported."
        )
    head = state["segmentation_head.0.weight"]
    return {
        "encoder": REGISTRY_NAMES[arch],
        "classes": int(head.shape[0]),
        "in_channels": int(encoder["conv1.weight"].shape[1]),
        "decoder_channels": tuple(widths),
        "center": any(key.startswith("decoder.center.") for key in state),
        "norm": "batch" if "decoder.blocks.0.conv1.1.running_mean" in state else "none",
        "head_kernel_size": int(head.shape[-1]),
    }


def load_smp_weights(model: Any, state_dict: StateDictSource) -> Any:
    """Load an SMP ``Unet`` state dict into a matching :class:`~keras_dynunet.DynUNet`.

    Args:
        model: The DynUNet (same encoder, classes, decoder widths).
        state_dict: Mapping of arrays/tensors, or a ``.pth``/``.safetensors`` path.

    Returns:
        ``model``.

    Raises:
        ValueError: A key is missing or a shape differs (named in the message).

    >>> import keras_dynunet as kd
    >>> load_smp_weights(kd.build_unet("resnet18"), {"x.weight": np.ones(1)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Not a segmentation_models_pytorch Unet state dict: ...
    """
    state = load_state_dict(state_dict)
    smp_unet_config(state)
    state = {k: v for k, v in state.items() if not k.startswith("classification_head.")}
    assign_state_dict(model, state, smp_rename, adapt_input_channels=True)
    return model


def smp_unet(
    state_dict: StateDictSource,
    input_shape: Sequence[int | None] | None = None,
    encoder_name: str | None = None,
    activation: str | None = None,
    upsampling: str = "nearest",
) -> Any:
    """Build the :class:`~keras_dynunet.DynUNet` equal to an SMP ``Unet`` and load its weights.

    Args:
        state_dict: ``smp.Unet(...).state_dict()`` as a mapping or a file path.
        input_shape: ``(height, width, channels)``; default ``(None, None, C)``
            with ``C`` from the checkpoint (SMP's ``in_channels``).
        encoder_name: Expected encoder (``"resnet34"``); checked against the
            checkpoint. Default: detected.
        activation: Head activation (SMP's default ``None``: logits).
        upsampling: ``"nearest"`` (SMP's default ``decoder_interpolation``);
            not recorded in the state dict.

    Returns:
        The DynUNet (channels-last outputs equal to SMP's).

    Raises:
        ValueError: Unsupported checkpoint, or ``encoder_name`` differs from it.

    >>> smp_unet({"encoder.fc.weight": np.ones((2, 2))})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Not a segmentation_models_pytorch Unet state dict: ...
    """
    from keras_dynunet.model import build_unet

    state = load_state_dict(state_dict)
    config = smp_unet_config(state)
    if encoder_name is not None and encoder_name != config["encoder"]:
        raise ValueError(
            f"encoder_name={encoder_name!r}, but the checkpoint's encoder is a {config['encoder']}."
        )
    if input_shape is None:
        input_shape = (None, None, config["in_channels"])
    model = build_unet(
        config["encoder"],
        classes=config["classes"],
        input_shape=tuple(input_shape),
        decoder_channels=config["decoder_channels"],
        upsampling=upsampling,
        center=config["center"],
        norm=config["norm"],
        activation=activation,
        head_kernel_size=config["head_kernel_size"],
        norm_epsilon=1e-5,
    )
    return load_smp_weights(model, state)
