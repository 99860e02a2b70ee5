"""2D max pooling with a hand-written gradient made of strided windows.

On the JAX backend the gradient of ``keras.ops.max_pool`` is XLA's
``select_and_scatter``, which XLA:CPU lowers to index tensors (four ``iota``s the size
of the padded input), an argmax ``reduce_window`` carrying them and a ``scatter``: in
a resnet34 U-Net training step at 512x512, batch 2 the 3x3 stride-2 stem pool's
gradient took about 200 ms of a 3.8 s step (``jax.profiler`` trace, jaxlib 0.10.2,
2 cores). Here the forward pass is ``keras.ops.max_pool`` and the gradient is written
out: for every kernel tap, in row-major order, the window of the input that equals the
pooled output and was not matched by an earlier tap receives the upstream gradient
(XLA's tie rule: the first maximum in the window wins); the per-tap tensors are added
back at the input positions their windows read
(:func:`keras_dynunet.layers.strided_windows.scatter_windows`). Elementwise work XLA
fuses: forward + gradient 143 -> 23 ms for that stem pool (161 -> 42 ms at 256x256,
batch 8) and 535 -> 161 ms for a 2x2 stride-2 pool of a ``(2, 512, 512, 64)`` tensor
(``benchmarks/bench_jax_layers.py``). XLA runs the index work partly in parallel with the
convolutions, so whole training steps gain less than that
(``benchmarks/bench_hand_gradients.py``).

:class:`keras_dynunet.layers.no_copy.MaxPooling2D` uses this on the JAX backend; values
and gradients equal ``keras.ops.max_pool``'s, ties included (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras import ops

from keras_dynunet.layers import strided_windows as windows
from keras_dynunet.layers.strided_windows import WindowGeometry


def max_pool_by_shifts(
    inputs: Any,
    pool_size: Sequence[int],
    strides: Sequence[int],
    padding: str = "valid",
) -> Any:
    """``keras.ops.max_pool`` on channels-last 2D inputs, with a strided-window gradient.

    Args:
        inputs: ``(batch, height, width, channels)`` tensor with static height and width.
        pool_size: ``(ph, pw)``.
        strides: ``(sh, sw)``.
        padding: ``"valid"`` or ``"same"`` (TensorFlow's convention; padded positions
            never win).

    Returns:
        The pooled ``(batch, out_h, out_w, channels)`` tensor.

    Raises:
        ValueError: unknown padding, or height/width not known when called.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(2, 9, 8, 3)).astype("float32")
    >>> a = max_pool_by_shifts(x, (3, 3), (2, 2), padding="same")
    >>> b = ops.max_pool(x, 3, 2, padding="same")
    >>> tuple(a.shape), bool(np.array_equal(a, b))
    ((2, 5, 4, 3), True)
    """
    padding, height, width = windows.checked_padding_and_size(
        inputs, padding, "max_pool_by_shifts", "keras.ops.max_pool"
    )
    (ph, pw), (sh, sw) = tuple(pool_size), tuple(strides)
    pads = ((0, 0), (0, 0))
    if padding == "same":
        pads = (windows.same_padding(height, ph, sh), windows.same_padding(width, pw, sw))
    geometry = WindowGeometry.of((height + sum(pads[0]), width + sum(pads[1])), (ph, pw), (sh, sw))
    return _max_pool_with_gradient(geometry, padding, pads)(ops.convert_to_tensor(inputs))


def _first_maximum_terms(inputs: Any, pooled: Any, upstream: Any, geometry: WindowGeometry) -> list:
    """Per tap, the upstream gradient where that tap holds its window's first maximum."""
    phased_input = windows.phased(inputs, geometry)
    zeros = ops.zeros_like(upstream)
    claimed, terms = None, []
    for _, _, top, left in geometry.taps():
        wins = ops.equal(windows.window(phased_input, top, left, geometry), pooled)
        if claimed is not None:
            wins = ops.logical_and(wins, ops.logical_not(claimed))
        claimed = wins if claimed is None else ops.logical_or(claimed, wins)
        terms.append(ops.where(wins, upstream, zeros))
    return terms


def _max_pool_with_gradient(geometry: WindowGeometry, padding: str, pads: tuple) -> Any:
    """``keras.ops.max_pool`` whose gradient is :func:`_first_maximum_terms` scattered back."""
    (top, bottom), (left, right) = pads
    height, width = geometry.padded

    @ops.custom_gradient
    def pool(inputs: Any) -> Any:
        pooled = ops.max_pool(inputs, geometry.kernel, geometry.strides, padding)

        def grad(*args: Any, upstream: Any = None) -> Any:
            upstream = args[0] if upstream is None else upstream
            padded = inputs
            if top or bottom or left or right:  # padded positions must never equal a maximum
                padded = ops.pad(
                    inputs,
                    ((0, 0), (top, bottom), (left, right), (0, 0)),
                    constant_values=-float("inf"),
                )
            terms = _first_maximum_terms(padded, pooled, upstream, geometry)
            return windows.scatter_windows(terms, lambda tap, take: take(tap), geometry)[
                :, top : height - bottom, left : width - right, :
            ]

        return pooled, grad

    return pool
