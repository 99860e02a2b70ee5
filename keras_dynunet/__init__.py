"""keras-dynunet: dynamic U-Nets for any Keras encoder.

>>> import keras_dynunet as kd
>>> kd.list_encoders("resnet*")
['resnet101', 'resnet152', 'resnet18', 'resnet34', 'resnet50']
"""

import keras as _keras

from keras_dynunet import instances, losses, metrics
from keras_dynunet.augment import Augmentation
from keras_dynunet.checkpoint import load_pretrained, save_pretrained
from keras_dynunet.cpu_allocator import apply_cpu_allocator_tuning as _apply_cpu_allocator_tuning
from keras_dynunet.dataset import SegmentationDataset
from keras_dynunet.discover import discover_taps, taps_from_layers
from keras_dynunet.hub import from_pretrained, push_to_hub
from keras_dynunet.inference import predict_tiled
from keras_dynunet.model import DynUNet, build_unet
from keras_dynunet.models import TernausUNet11, VanillaUNet, build_model, list_models
from keras_dynunet.preprocessing import preprocess_input
from keras_dynunet.registry import (
    get_encoder,
    get_encoder_spec,
    list_encoders,
    register_encoder,
    unregister_encoder,
)
from keras_dynunet.taps import EncoderSpec, Tap
from keras_dynunet.version import __version__
from keras_dynunet.weights import WeightsUnavailableError
from keras_dynunet.xla_cpu_flags import apply_xla_cpu_flags as _apply_xla_cpu_flags

# Importing the modules above runs no JAX computation, so XLA has not read XLA_FLAGS yet.
_apply_xla_cpu_flags(_keras.backend.backend())
# Eager PyTorch allocates every output: keep freed pages mapped (keras_dynunet.cpu_allocator).
_apply_cpu_allocator_tuning(_keras.backend.backend())

__all__ = [
    "Augmentation",
    "DynUNet",
    "EncoderSpec",
    "SegmentationDataset",
    "Tap",
    "TernausUNet11",
    "VanillaUNet",
    "WeightsUnavailableError",
    "__version__",
    "build_model",
    "build_unet",
    "discover_taps",
    "from_pretrained",
    "get_encoder",
    "get_encoder_spec",
    "instances",
    "list_encoders",
    "list_models",
    "load_pretrained",
    "losses",
    "metrics",
    "predict_tiled",
    "preprocess_input",
    "push_to_hub",
    "register_encoder",
    "save_pretrained",
    "taps_from_layers",
    "unregister_encoder",
]
