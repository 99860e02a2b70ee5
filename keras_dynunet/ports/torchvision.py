"""torchvision VGG and ResNet checkpoints -> registry encoders, without torch.

Conversions (classifier keys ``fc.*`` / ``classifier.*`` are skipped):

- ``vgg11`` ``features.{0,3,6,8,11,13,16,18}`` -> ``vgg11-ternaus`` layers
  ``conv1, conv2, conv3s, conv3, conv4s, conv4, conv5s, conv5``;
- ``vgg16`` / ``vgg19`` ``features.N`` -> keras.applications names
  ``block{b}_conv{i}`` (the registry's ``vgg16`` / ``vgg19``; these weights
  expect ``"imagenet"`` preprocessing, not keras.applications' ``"caffe"``);
- ``resnet18`` .. ``resnet152``: key ``layer1.0.conv1`` -> layer
  ``layer1_0_conv1`` (the registry ResNets mirror torchvision).

A state dict is a mapping of arrays (numpy or torch tensors) or a file:
``.pth``/``.pt``/``.bin`` (zip or legacy ``torch.save``, read by
:func:`~keras_dynunet.ports.torch_checkpoint.read_torch_checkpoint`, no
torch needed) or ``.safetensors`` (needs the ``safetensors`` package).

``weights="imagenet"`` for a torchvision-sourced encoder downloads the
torchvision file into ``<cache>/torchvision/`` (see
:func:`~keras_dynunet.ports.efficientnet_lite.cache_dir`), checks the SHA-256
prefix in its name (``resnet18-f37072fd.pth``), converts it once and caches
``<cache>/<encoder>-imagenet-<hash>.weights.h5``. Offline, copy the file to
the path the error message names.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Union

import keras
import numpy as np

from keras_dynunet.checkpoint import file_sha256
from keras_dynunet.ports.assign import assign_state_dict, leaf_layers
from keras_dynunet.ports.efficientnet_lite import cache_dir
from keras_dynunet.ports.torch_checkpoint import read_torch_checkpoint
from keras_dynunet.weights import WeightsUnavailableError

StateDictSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
CLASSIFIER_PREFIXES = ("fc.", "classifier.")
# torchvision arch -> registry encoder that takes its weights
REGISTRY_NAMES = {
    "vgg11": "vgg11-ternaus",
    "vgg16": "vgg16",
    "vgg19": "vgg19",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnet152": "resnet152",
}
# convolutions per stage (between max-poolings) of torchvision's VGG configurations
VGG_STAGES = {
    (1, 1, 2, 2, 2): "vgg11",
    (2, 2, 2, 2, 2): "vgg13",
    (2, 2, 3, 3, 3): "vgg16",
    (2, 2, 4, 4, 4): "vgg19",
}
TERNAUS_VGG11_NAMES = ("conv1", "conv2", "conv3s", "conv3", "conv4s", "conv4", "conv5s", "conv5")
_HASH = re.compile(r"-([0-9a-f]{6,64})\.[A-Za-z0-9]+$")


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def load_state_dict(source: StateDictSource) -> dict[str, np.ndarray]:
    """A state dict as ``{key: numpy array}`` from a mapping or a checkpoint file.

    Files: ``.safetensors`` (read with ``safetensors.numpy``, imported lazily)
    or anything else as a ``torch.save`` file (zip or legacy, read safely
    without torch). A ``module.`` prefix on every key (``DataParallel``) is
    removed.

    Args:
        source: Mapping of arrays or tensors, or a file path.

    Returns:
        A new dict of numpy arrays.

    Raises:
        FileNotFoundError: No such file.
        ImportError: A ``.safetensors`` file without the ``safetensors`` package.
        ValueError: The file is not a readable state dict.

    >>> load_state_dict({"module.fc.bias": [1.0, 2.0]})
    {'fc.bias': array([1., 2.])}
    """
    if isinstance(source, Mapping):
        state = {str(key): _to_numpy(value) for key, value in source.items()}
    else:
        path = os.fspath(source)
        if path.endswith(".safetensors"):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Checkpoint {path!r} does not exist.")
            try:
                from safetensors.numpy import load_file
            except ImportError:
                raise ImportError(
                    f"Reading {path!r} needs the 'safetensors' package: pip install safetensors."
                ) from None
            state = dict(load_file(path))
        else:
            state = dict(read_torch_checkpoint(path))
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def _sample(state: Mapping[str, Any]) -> list[str]:
    return list(state)[:4]


def detect_torchvision_arch(state_dict: Mapping[str, Any]) -> str:
    """Which torchvision VGG/ResNet a state dict is (``"vgg11"``, ``"resnet34"``...).

    Args:
        state_dict: ``{key: array}`` (see :func:`load_state_dict`).

    Returns:
        The torchvision constructor name.

    Raises:
        ValueError: Not a torchvision VGG/ResNet, or a variant without a
            registry encoder (``vgg16_bn``); the message says what was found.

    >>> w = np.zeros((64, 3, 3, 3), "float32")
    >>> convs = [0, 3, 6, 8, 11, 13, 16, 18]
    >>> detect_torchvision_arch({f"features.{i}.weight": w for i in convs})
    'vgg11'
    """
    keys = list(state_dict)
    if any(key.startswith("layer1.") for key in keys):
        blocks = []
        for stage in range(1, 5):
            indices = [
                int(m.group(1))
                for key in keys
                if (m := re.match(rf"layer{stage}\.(\d+)\.", key)) is not None
            ]
            blocks.append(max(indices) + 1 if indices else 0)
        bottleneck = any(key.startswith("layer1.0.conv3.") for key in keys)
        from keras_dynunet.encoders.resnet import RESNET_CONFIGS

        for name, (kind, counts, _) in RESNET_CONFIGS.items():
            if tuple(blocks) == counts and (kind == "bottleneck") == bottleneck:
                return name
        raise ValueError(
            f"The state dict looks like a torchvision ResNet with {tuple(blocks)} blocks per "
            f"stage ({'bottleneck' if bottleneck else 'basic'} blocks), which is none of "
            f"{sorted(RESNET_CONFIGS)}: it is truncated or another network."
        )
    features = sorted(
        int(m.group(1))
        for key, value in state_dict.items()
        if (m := re.match(r"features\.(\d+)\.weight$", key)) and np.ndim(value) == 4
    )
    if features:
        if any(re.match(r"features\.\d+\.running_mean$", key) for key in keys):
            raise ValueError(
                "The state dict is a torchvision VGG with BatchNorm (vgg*_bn); the registry "
                "VGG encoders have no BatchNorm. Use a plain vgg11/vgg16/vgg19 checkpoint."
            )
        stages = [1]
        for previous, index in itertools.pairwise(features):
            if index - previous == 2:
                stages[-1] += 1
            else:
                stages.append(1)
        name = VGG_STAGES.get(tuple(stages))
        if name is None:
            raise ValueError(
                f"The state dict looks like a torchvision VGG with {tuple(stages)} convolutions "
                f"per stage (features {features}), which is none of vgg11/13/16/19."
            )
        return name
    raise ValueError(
        f"Not a torchvision VGG or ResNet state dict (keys start {_sample(state_dict)}); "
        "expected 'features.N.weight' (VGG) or 'layer1.0.conv1.weight' (ResNet) keys."
    )


def keras_arch(model: keras.Model) -> str | None:
    """The registry encoder a Keras model's layer names describe, or ``None``.

    Args:
        model: A backbone, encoder tap model or U-Net (nested models are searched).

    Returns:
        ``"vgg11-ternaus"``, ``"vgg16"``, ``"vgg19"``, ``"resnet18"`` .. ``"resnet152"``
        or ``None`` for another layout.

    >>> from keras_dynunet.encoders.resnet import build_resnet
    >>> keras_arch(build_resnet("resnet34", (None, None, 3)))
    'resnet34'
    """
    names = set(leaf_layers(model))
    if {"conv1", "conv3s", "conv5"} <= names:
        return "vgg11-ternaus"
    blocks = [sum(1 for i in range(1, 9) if f"block{b}_conv{i}" in names) for b in range(1, 6)]
    if blocks[0]:
        return {(2, 2, 3, 3, 3): "vgg16", (2, 2, 4, 4, 4): "vgg19"}.get(tuple(blocks))
    from keras_dynunet.encoders.resnet import RESNET_CONFIGS

    counts = tuple(sum(1 for i in range(64) if f"layer{s}_{i}_conv1" in names) for s in range(1, 5))
    bottleneck = "layer1_0_conv3" in names
    for name, (kind, config, _) in RESNET_CONFIGS.items():
        if counts == config and (kind == "bottleneck") == bottleneck:
            return name
    return None


def _vgg_rename(arch: str) -> dict[str, str]:
    stages = next(stages for stages, name in VGG_STAGES.items() if name == arch)
    mapping, index, names = {}, 0, iter(TERNAUS_VGG11_NAMES)
    for block, count in enumerate(stages, start=1):
        for conv in range(1, count + 1):
            mapping[f"features.{index}"] = (
                next(names) if arch == "vgg11" else f"block{block}_conv{conv}"
            )
            index += 2
        index += 1
    return mapping


def torchvision_rename(arch: str) -> Callable[[str], str]:
    """State-dict prefix -> layer name for a registry encoder (``"vgg11-ternaus"``...).

    Args:
        arch: Registry encoder (or torchvision constructor) name.

    Returns:
        A function mapping ``"features.6"`` / ``"layer1.0.conv1"`` to a layer name.

    >>> vgg16, vgg11 = torchvision_rename("vgg16"), torchvision_rename("vgg11-ternaus")
    >>> vgg16("features.28"), vgg11("features.6")
    ('block5_conv3', 'conv3s')
    >>> torchvision_rename("resnet50")("layer1.0.downsample.0")
    'layer1_0_downsample_0'
    """
    source = {registry: tv for tv, registry in REGISTRY_NAMES.items()}.get(arch, arch)
    if source.startswith("vgg"):
        mapping = _vgg_rename(source)
        return lambda prefix: mapping.get(prefix, prefix.replace(".", "_"))
    return lambda prefix: prefix.replace(".", "_")


def load_torchvision_weights(
    model: keras.Model, state_dict: StateDictSource, arch: str | None = None
) -> keras.Model:
    """Load a torchvision VGG/ResNet state dict into a registry-layout Keras model.

    ``model`` is a backbone, an encoder tap model or a U-Net containing one
    (layers are found by name, nested models included). A model built for
    ``C != 3`` input channels gets the first convolution adapted
    (:func:`~keras_dynunet.ports.channels.adapt_input_kernel`).

    Args:
        model: The Keras model to fill.
        state_dict: Mapping of arrays/tensors, or a ``.pth``/``.safetensors`` path.
        arch: Registry encoder name the model is (``"resnet34"``); default:
            inferred from the model's layer names.

    Returns:
        ``model``, weights loaded.

    Raises:
        ValueError: The checkpoint is another architecture than the model, or
            a key is missing or a shape differs (the message names it).

    >>> from keras_dynunet.encoders.vgg import build_vgg11_ternaus
    >>> m = build_vgg11_ternaus((None, None, 3))
    >>> sd = {f"features.{i}.{p}": np.zeros(w.shape[::-1] if p == "weight" else w.shape[-1:])
    ...       for i, w in zip([0, 3, 6, 8, 11, 13, 16, 18],
    ...                       [layer.kernel for layer in m.layers if layer.weights])
    ...       for p in ("weight", "bias")}
    >>> load_torchvision_weights(m, sd).name
    'vgg11_ternaus'
    """
    state = load_state_dict(state_dict)
    source = detect_torchvision_arch(state)
    detected = keras_arch(model)
    if arch is not None and detected is not None and arch != detected:
        raise ValueError(
            f"arch={arch!r} but model {model.name!r} has the layers of a {detected}; pass "
            f"arch={detected!r} or build a {arch}."
        )
    target = arch or detected or REGISTRY_NAMES.get(source)
    if REGISTRY_NAMES.get(source) != target:
        hint = REGISTRY_NAMES.get(source)
        raise ValueError(
            f"The state dict is a torchvision {source} checkpoint but the model is a {target} "
            f"({model.name!r}): pass a {target} checkpoint"
            + (f", or build the {hint!r} encoder." if hint else ".")
        )
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    assign_state_dict(model, state, torchvision_rename(target), adapt_input_channels=True)
    return model


def torchvision_encoder(
    arch: str,
    state_dict: StateDictSource,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
) -> keras.Model:
    """Build registry encoder ``arch``'s backbone and load a torchvision state dict.

    Args:
        arch: ``"vgg11-ternaus"``, ``"vgg16"``, ``"vgg19"`` or ``"resnet18"`` .. ``"resnet152"``.
        state_dict: Mapping of arrays/tensors, or a ``.pth``/``.safetensors`` path.
        input_shape: Backbone input shape (channels may differ from 3).

    Returns:
        The backbone (not the tap model; see :func:`keras_dynunet.get_encoder`).

    >>> torchvision_encoder("resnet18", {"fc.bias": np.zeros(1000)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Not a torchvision VGG or ResNet state dict (keys start ['fc.bias']); ...
    """
    from keras_dynunet.registry import get_encoder_spec

    state = load_state_dict(state_dict)
    detect_torchvision_arch(state)
    spec = get_encoder_spec(arch)
    return load_torchvision_weights(spec.builder(tuple(input_shape)), state, spec.name)


def sha256_prefix(url: str) -> str | None:
    """The SHA-256 prefix embedded in a torchvision file name, if any.

    Args:
        url: URL or file name ending in ``-<hex>.pth``.

    Returns:
        The hex prefix, or ``None``.

    >>> sha256_prefix("https://download.pytorch.org/models/resnet18-f37072fd.pth")
    'f37072fd'
    """
    match = _HASH.search(url.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def checkpoint_path(url: str) -> Path:
    """Where the downloaded (or hand-copied) checkpoint for ``url`` lives.

    Args:
        url: The checkpoint URL.

    Returns:
        ``<cache>/torchvision/<file name>``.

    >>> checkpoint_path("https://x/models/resnet18-f37072fd.pth").parts[-2:]
    ('torchvision', 'resnet18-f37072fd.pth')
    """
    return cache_dir() / "torchvision" / url.rsplit("/", 1)[-1]


def fetch_checkpoint(url: str, timeout: float = 60.0) -> Path:
    """Download ``url`` into the cache (once) and check its SHA-256 prefix.

    A file already at :func:`checkpoint_path` is used without network (after
    the same hash check), so offline machines work with a hand-copied file.

    Args:
        url: A torchvision checkpoint URL (``.../resnet18-f37072fd.pth``).
        timeout: Seconds before a stalled connection is abandoned.

    Returns:
        The local path.

    Raises:
        WeightsUnavailableError: The download failed (the message names the
            URL and the path to copy the file to) or the hash does not match.

    >>> fetch_checkpoint("http://127.0.0.1:9/doctest-0badc0de.pth")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_dynunet.weights.WeightsUnavailableError: Could not download the PyTorch checkpoint ...
    """
    path = checkpoint_path(url)
    expected = sha256_prefix(url)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
        except (OSError, ValueError) as error:
            tmp.unlink(missing_ok=True)
            raise WeightsUnavailableError(
                f"Could not download the PyTorch checkpoint {url} ({error}). Offline: download "
                f"that URL on a connected machine and copy the file to {path} ; it is then "
                "used without network (its SHA-256 is checked). Or pass weights=None."
            ) from None
        if expected and not digest.hexdigest().startswith(expected):
            tmp.unlink(missing_ok=True)
            raise WeightsUnavailableError(
                f"The file downloaded from {url} has SHA-256 {digest.hexdigest()}, which does "
                f"not start with {expected}: the download is corrupt or was tampered with. "
                "Try again."
            )
        os.replace(tmp, path)
        return path
    actual = file_sha256(path)
    if expected and not actual.startswith(expected):
        raise WeightsUnavailableError(
            f"{path} has SHA-256 {actual}, which does not start with {expected} (from its "
            f"name): the file is truncated or is not {url}. Delete it and download it again."
        )
    return path


def imagenet_weights_file(arch: str, url: str, timeout: float = 60.0) -> Path:
    """Convert (once) and return the cached ``.weights.h5`` of ``arch``'s backbone.

    Args:
        arch: Registry encoder name whose backbone takes the checkpoint.
        url: The torchvision checkpoint URL (see :func:`fetch_checkpoint`).
        timeout: Download timeout in seconds.

    Returns:
        ``<cache>/<arch>-imagenet-<hash>.weights.h5`` (3 input channels).

    >>> url = "http://127.0.0.1:9/doctest-0badc0de.pth"
    >>> imagenet_weights_file("resnet18", url)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_dynunet.weights.WeightsUnavailableError: ... copy the file to .../doctest-0badc0de.pth ...
    """
    from keras_dynunet.registry import get_encoder_spec

    tag = sha256_prefix(url) or hashlib.sha256(url.encode()).hexdigest()[:8]
    target = cache_dir() / f"{arch}-imagenet-{tag}.weights.h5"
    if target.is_file():
        return target
    checkpoint = fetch_checkpoint(url, timeout)
    backbone = get_encoder_spec(arch).builder((None, None, 3))
    load_torchvision_weights(backbone, checkpoint)  # layout from the layer names
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.weights.h5")
    backbone.save_weights(tmp)
    os.replace(tmp, target)
    return target


def load_torchvision_imagenet(backbone: keras.Model, arch: str, url: str) -> keras.Model:
    """Load torchvision ImageNet weights (downloaded, verified, converted, cached).

    A backbone built for ``C != 3`` channels gets the first convolution adapted.

    Args:
        backbone: The registry backbone (``spec.builder(input_shape)``).
        arch: Its registry name.
        url: The torchvision checkpoint URL (``spec.weight_sources["imagenet"]``).

    Returns:
        ``backbone``.

    Raises:
        WeightsUnavailableError: Offline and no local copy (see :func:`fetch_checkpoint`).

    >>> from keras_dynunet.encoders.resnet import build_resnet
    >>> load_torchvision_imagenet(build_resnet("resnet18", (None, None, 1)), "resnet18",
    ...                           "http://127.0.0.1:9/doctest-0badc0de.pth")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    keras_dynunet.weights.WeightsUnavailableError: Could not download the PyTorch checkpoint ...
    """
    from keras_dynunet.ports.channels import transfer_weights
    from keras_dynunet.registry import get_encoder_spec

    weights = imagenet_weights_file(arch, url)
    if backbone.inputs[0].shape[-1] == 3:
        backbone.load_weights(weights)
        return backbone
    reference = get_encoder_spec(arch).builder((None, None, 3))
    reference.load_weights(weights)
    transfer_weights(reference, backbone)
    return backbone
