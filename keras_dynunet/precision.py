"""Mixed precision for the models this library builds.

``precision="mixed_bfloat16"`` (or ``"mixed_float16"``) builds every layer with
that Keras dtype policy: variables stay float32, computation runs in 16 bits, and
the model's output layer stays float32 so losses and metrics see float32 logits.
``model.compile`` then wraps the optimizer in a ``LossScaleOptimizer`` for
``mixed_float16`` by itself. bfloat16 needs no loss scaling and is the one to try on
CPUs with AVX-512 BF16 / AMX; float16 is for GPUs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check_precision(precision: str) -> str:
    """Validate a precision name.

    >>> check_precision("mixed_bfloat16")
    'mixed_bfloat16'
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {PRECISIONS}, got {precision!r}. Use "
            "'mixed_bfloat16' on CPUs and TPUs, 'mixed_float16' on GPUs."
        )
    return precision


@contextlib.contextmanager
def precision_scope(precision: str | None) -> Iterator[None]:
    """Build layers under the dtype policy ``precision``; the old global policy comes back after.

    ``None`` leaves Keras' global policy alone (``keras.config.set_dtype_policy``).

    >>> with precision_scope("mixed_bfloat16"):
    ...     layer = keras.layers.Dense(2)
    >>> layer.compute_dtype, layer.variable_dtype, keras.config.dtype_policy().name
    ('bfloat16', 'float32', 'float32')
    """
    if precision is None:
        yield
        return
    check_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
