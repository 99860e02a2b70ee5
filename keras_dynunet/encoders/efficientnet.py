"""EfficientNet (B0-B7) and EfficientNetV2 encoders from keras.applications.

Taps are the last block of each stage that ends at a new stride, named as
keras.applications names them (``block{stage}{letter}_add``, or the block's
projection when a stage has a single block). Stage depths and widths follow
the compound-scaling rules of the applications' own code; the registry test
checks every declared tap against the built model.
"""

from __future__ import annotations

import math

from keras_dynunet.encoders.applications import register_application
from keras_dynunet.taps import Tap

# EfficientNet B: (width, depth) coefficients per variant.
_B_SCALING = {
    0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2), 3: (1.2, 1.4),
    4: (1.4, 1.8), 5: (1.6, 2.2), 6: (1.8, 2.6), 7: (2.0, 3.1),
}  # fmt: skip
_B_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_B_FILTERS = (16, 24, 40, 80, 112, 192, 320)
_B_TAP_STAGES = (1, 2, 3, 5, 7)  # stages that end at strides 2, 4, 8, 16, 32

# EfficientNetV2: per variant (width, depth, base repeats, base filters).
_V2_B_REPEATS = (1, 2, 2, 3, 5, 8)
_V2_B_FILTERS = (16, 32, 48, 96, 112, 192)
_V2_CONFIGS = {
    "b0": (1.0, 1.0, _V2_B_REPEATS, _V2_B_FILTERS),
    "b1": (1.0, 1.1, _V2_B_REPEATS, _V2_B_FILTERS),
    "b2": (1.1, 1.2, _V2_B_REPEATS, _V2_B_FILTERS),
    "b3": (1.2, 1.4, _V2_B_REPEATS, _V2_B_FILTERS),
    "s": (1.0, 1.0, (2, 4, 4, 6, 9, 15), (24, 48, 64, 128, 160, 256)),
}
_V2_TAP_STAGES = (1, 2, 3, 5, 6)


def round_filters(filters: int, width: float, divisor: int = 8, v2: bool = False) -> int:
    """Scale a channel count as EfficientNet does (to a multiple of ``divisor``).

    EfficientNet (v1) rounds up when rounding lost more than 10%; the V2
    applications code does not.

    >>> round_filters(40, 1.1), round_filters(16, 1.2), round_filters(16, 1.2, v2=True)
    (48, 24, 16)
    """
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * scaled and not v2 else new)


def _stage_end(stage: int, repeats: int, single: str) -> str:
    if repeats > 1:
        return f"block{stage}{chr(ord('a') + repeats - 1)}_add"
    return f"block{stage}a_{single}"


def efficientnet_taps(
    width: float, depth: float, repeats: tuple[int, ...], filters: tuple[int, ...],
    tap_stages: tuple[int, ...], v2: bool = False,
) -> tuple[Tap, ...]:  # fmt: skip
    """Taps of a scaled EfficientNet from its stage table.

    >>> efficientnet_taps(1.0, 1.0, _B_REPEATS, _B_FILTERS, _B_TAP_STAGES)[-1]
    Tap(key='P5', layer='block7a_project_bn', stride=32, channels=320)
    """
    taps = []
    for level, stage in enumerate(tap_stages, start=1):
        count = math.ceil(depth * repeats[stage - 1])
        single = "project_activation" if stage == 1 and v2 else "project_bn"
        taps.append(
            Tap(
                f"P{level}",
                _stage_end(stage, count, single),
                2**level,
                round_filters(filters[stage - 1], width, v2=v2),
            )
        )
    return tuple(taps)


for _variant, (_width, _depth) in _B_SCALING.items():
    register_application(
        f"efficientnet-b{_variant}",
        f"EfficientNetB{_variant}",
        efficientnet_taps(_width, _depth, _B_REPEATS, _B_FILTERS, _B_TAP_STAGES),
        family="efficientnet",
    )

for _variant, (_width, _depth, _repeats, _filters) in _V2_CONFIGS.items():
    register_application(
        f"efficientnetv2-{_variant}",
        f"EfficientNetV2{_variant.upper()}",
        efficientnet_taps(_width, _depth, _repeats, _filters, _V2_TAP_STAGES, v2=True),
        family="efficientnetv2",
    )
