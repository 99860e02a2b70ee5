"""DenseNet-121/169/201 encoders from keras.applications.

Taps are the BN-ReLU outputs at the end of each dense block (before the
transition convolution), as torchvision's ``features`` exposes them.
"""

from __future__ import annotations

from keras_dynunet.encoders.applications import register_application
from keras_dynunet.taps import Tap

# variant: channels at the end of dense blocks 3 and 4
_DENSENET = {121: (1024, 1024), 169: (1280, 1664), 201: (1792, 1920)}

for _depth, (_c4, _c5) in _DENSENET.items():
    register_application(
        f"densenet{_depth}",
        f"DenseNet{_depth}",
        (
            Tap("P1", "conv1_relu", 2, 64),
            Tap("P2", "pool2_relu", 4, 256),
            Tap("P3", "pool3_relu", 8, 512),
            Tap("P4", "pool4_relu", 16, _c4),
            Tap("P5", "relu", 32, _c5),
        ),
        family="densenet",
        preprocessing="imagenet",
    )
