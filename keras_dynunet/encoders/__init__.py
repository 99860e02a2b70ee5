"""Built-in encoder families; importing this package registers them."""

from keras_dynunet.encoders import (
    convnext,
    densenet,
    efficientnet,
    efficientnet_lite,
    mobilenet,
    resnet,
    vgg,
)

__all__ = [
    "convnext",
    "densenet",
    "efficientnet",
    "efficientnet_lite",
    "mobilenet",
    "resnet",
    "vgg",
]
