"""ConvNeXt-Tiny and -Small encoders from keras.applications.

ConvNeXt's stem is a 4x4 patchify convolution, so the shallowest tap is at
stride 4 (``P2``); the decoder adds skip-less upsampling stages to reach
full resolution.
"""

from __future__ import annotations

from keras_dynunet.encoders.applications import register_application
from keras_dynunet.taps import Tap

_WIDTHS = (96, 192, 384, 768)
_DEPTHS = {"tiny": (3, 3, 9, 3), "small": (3, 3, 27, 3)}

for _size, _depths in _DEPTHS.items():
    register_application(
        f"convnext-{_size}",
        f"ConvNeXt{_size.capitalize()}",
        tuple(
            Tap(
                f"P{stage + 2}",
                f"convnext_{_size}_stage_{stage}_block_{depth - 1}_identity",
                2 ** (stage + 2),
                width,
            )
            for stage, (depth, width) in enumerate(zip(_depths, _WIDTHS, strict=True))
        ),
        family="convnext",
    )
