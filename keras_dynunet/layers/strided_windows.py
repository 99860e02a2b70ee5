"""Strided windows of a padded image as plain slices, and their transpose.

A ``kh x kw`` window op with stride ``s`` (a depthwise convolution, a max pool) reads,
for kernel tap ``(i, j)``, the input rows ``top + s*u`` and columns ``left + s*v`` for
every output ``(u, v)``. Reshaping the padded input to ``(n, H/s, s, W/s, s, c)``
makes each such strided window a contiguous slice at one stride phase
(:func:`phased` + :func:`window`), elementwise work XLA fuses. :func:`scatter_windows`
is the transpose: it adds one output-sized tensor per tap back at the input positions
that tap's window read (per stride phase a sum of shifted slices, then the phases are
interleaved), which is how the hand-written gradients of
:mod:`keras_dynunet.layers.shifted_depthwise` and
:mod:`keras_dynunet.layers.shifted_max_pool` send gradients back to the input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from keras import ops

from keras_dynunet.layers.phase_transpose import interleave_phases


def checked_padding_and_size(
    inputs: Any, padding: str, function: str, fallback: str
) -> tuple[str, int, int]:
    """The lower-cased padding and the static height and width of ``inputs``.

    Raises:
        ValueError: padding other than ``"valid"``/``"same"``, or height/width unknown
            (the message names ``function`` and the ``fallback`` op to use instead).

    >>> import numpy as np
    >>> checked_padding_and_size(np.zeros((1, 5, 7, 2)), "SAME", "f", "g")
    ('same', 5, 7)
    """
    padding = padding.lower()
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
    height, width = inputs.shape[1], inputs.shape[2]
    if height is None or width is None:
        raise ValueError(
            f"{function} needs a static height and width; "
            f"got input shape {tuple(inputs.shape)}. Use {fallback} instead."
        )
    return padding, height, width


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's ``"same"`` padding before and after one axis (extra row at the end).

    >>> same_padding(8, 3, 2), same_padding(9, 3, 2), same_padding(8, 3, 1)
    ((0, 1), (1, 1), (1, 1))
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class WindowGeometry(NamedTuple):
    """Sizes of a strided window op on an already padded ``(n, H, W, c)`` input.

    >>> geometry = WindowGeometry.of((9, 9), (3, 3), (2, 2))
    >>> geometry.out, geometry.phase_grid(), geometry.taps()[4]
    ((4, 4), (5, 5), (1, 1, 1, 1))
    """

    padded: tuple[int, int]
    out: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    kernel: tuple[int, int]

    @classmethod
    def of(
        cls,
        padded: Sequence[int],
        kernel: Sequence[int],
        strides: Sequence[int],
        dilation: Sequence[int] = (1, 1),
    ) -> WindowGeometry:
        """The geometry of a ``"valid"`` window op on a padded input of size ``padded``."""
        (height, width), (kh, kw) = tuple(padded), tuple(kernel)
        (sh, sw), (dh, dw) = tuple(strides), tuple(dilation)
        out = ((height - (kh - 1) * dh - 1) // sh + 1, (width - (kw - 1) * dw - 1) // sw + 1)
        return cls((height, width), out, (sh, sw), (dh, dw), (kh, kw))

    def taps(self) -> list[tuple[int, int, int, int]]:
        """``(i, j, top, left)``: kernel row/column and the window's corner in the input,
        in row-major kernel order."""
        (kh, kw), (dh, dw) = self.kernel, self.dilation
        return [(i, j, i * dh, j * dw) for i in range(kh) for j in range(kw)]

    def phase_grid(self) -> tuple[int, int]:
        """Rows and columns of one stride phase (the padded input split ``s x s`` ways)."""
        (height, width), (sh, sw) = self.padded, self.strides
        return -(-height // sh), -(-width // sw)


def phased(x: Any, geometry: WindowGeometry) -> Any:
    """``(n, H, W, c)`` -> ``(n, H/sh, sh, W/sw, sw, c)`` (zero rows/columns added at the
    end), so a strided window is a plain slice at one phase.

    >>> import numpy as np
    >>> geometry = WindowGeometry.of((5, 5), (3, 3), (2, 2))
    >>> tuple(phased(np.zeros((1, 5, 5, 2), "float32"), geometry).shape)
    (1, 3, 2, 3, 2, 2)
    """
    (sh, sw), (hc, wc) = geometry.strides, geometry.phase_grid()
    height, width = geometry.padded
    if hc * sh != height or wc * sw != width:
        x = ops.pad(x, ((0, 0), (0, hc * sh - height), (0, wc * sw - width), (0, 0)))
    return ops.reshape(x, (-1, hc, sh, wc, sw, x.shape[-1]))


def window(phased_input: Any, top: int, left: int, geometry: WindowGeometry) -> Any:
    """Input rows ``top + sh*u`` and columns ``left + sw*v`` for every output ``(u, v)``,
    read from the :func:`phased` view.

    >>> import numpy as np
    >>> x = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
    >>> geometry = WindowGeometry.of((5, 5), (3, 3), (2, 2))
    >>> ops.convert_to_numpy(window(phased(x, geometry), 1, 2, geometry))[0, :, :, 0].tolist()
    [[7.0, 9.0], [17.0, 19.0]]
    """
    (sh, sw), (out_h, out_w) = geometry.strides, geometry.out
    return phased_input[
        :, top // sh : top // sh + out_h, top % sh, left // sw : left // sw + out_w, left % sw, :
    ]


def window_dot(
    phased_input: Any,
    other: Any,
    top: int,
    left: int,
    geometry: WindowGeometry,
    method: str = "reduce",
) -> Any:
    """Per channel, ``sum(window(phased_input, top, left, geometry) * other)`` over the batch
    and every output position (a depthwise kernel gradient's tap).

    ``method="reduce"`` multiplies and sums, zero-padding ``other`` onto the phase grid
    rather than slicing the window: XLA:CPU (jaxlib 0.10.2) materialises each sliced window
    before the reduction; for EfficientNet-B0's depthwise layers at 512x512, batch 2 the
    kernel gradients took 431 ms sliced, 128 ms padded (``benchmarks/bench_jax_conv_grads.py``,
    2 cores). ``method="einsum"`` is one ``keras.ops.einsum`` of the sliced window and
    ``other`` (a dot with the channels as its batch dimension): XLA materialises a dot's
    operands, so the elementwise ops that produce ``other`` run once, not once per tap inside
    each tap's reduction (which one is faster depends on the XLA version and the shape; see
    :func:`keras_dynunet.layers.shifted_depthwise.kernel_gradient_method`).

    Raises:
        ValueError: ``method`` is neither ``"reduce"`` nor ``"einsum"``.

    >>> import numpy as np
    >>> x = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
    >>> geometry = WindowGeometry.of((5, 5), (3, 3), (2, 2))
    >>> other = np.ones((1, 2, 2, 1), "float32")
    >>> ops.convert_to_numpy(window_dot(phased(x, geometry), other, 1, 2, geometry)).tolist()
    [52.0]
    >>> view = phased(x, geometry)
    >>> ops.convert_to_numpy(window_dot(view, other, 1, 2, geometry, method="einsum")).tolist()
    [52.0]
    """
    if method == "einsum":
        return ops.einsum("nhwc,nhwc->c", window(phased_input, top, left, geometry), other)
    if method != "reduce":
        raise ValueError(f"window_dot: method must be 'reduce' or 'einsum', got {method!r}")
    (sh, sw), (out_h, out_w) = geometry.strides, geometry.out
    hc, wc = geometry.phase_grid()
    row, col = top // sh, left // sw
    padded = ops.pad(
        other,
        ((0, 0), (row, hc - out_h - row), (col, wc - out_w - col), (0, 0)),
    )
    return ops.sum(ops.multiply(phased_input[:, :, top % sh, :, left % sw, :], padded), (0, 1, 2))


def scatter_windows(
    sources: Sequence[Any],
    tap_term: Callable[[int, Callable[[int], Any]], Any],
    geometry: WindowGeometry,
) -> Any:
    """The transpose of reading the windows: for every tap ``t`` (in
    :meth:`WindowGeometry.taps` order), an output-sized term added back at the input
    positions tap ``t`` read.

    ``tap_term(t, take)`` builds tap ``t``'s term, where ``take(k)`` is ``sources[k]``
    (output-sized tensors, each zero-padded once) shifted onto tap ``t``'s stride phase,
    so terms are combined per phase as sums of shifted slices; then the phases are
    interleaved. The result has the padded input's size. (A depthwise convolution's
    input gradient is one source, the upstream gradient, times a kernel tap; padding the
    upstream once, rather than each term, was measured faster in XLA.)

    >>> import numpy as np
    >>> geometry = WindowGeometry.of((4, 4), (2, 2), (2, 2))
    >>> ones = np.ones((1, 2, 2, 1), "float32")
    >>> out = scatter_windows([ones], lambda t, take: take(0) * (t + 1), geometry)
    >>> ops.convert_to_numpy(out)[0, :2, :, 0].tolist()
    [[1.0, 2.0, 1.0, 2.0], [3.0, 4.0, 3.0, 4.0]]
    """
    (sh, sw), (out_h, out_w) = geometry.strides, geometry.out
    (hc, wc), (height, width) = geometry.phase_grid(), geometry.padded
    (kh, kw), (dh, dw) = geometry.kernel, geometry.dilation
    top_pad, left_pad = (kh - 1) * dh // sh, (kw - 1) * dw // sw
    pads = ((0, 0), (top_pad, max(hc - out_h, 0)), (left_pad, max(wc - out_w, 0)), (0, 0))
    padded: dict[int, Any] = {}

    def take_at(row: int, col: int) -> Callable[[int], Any]:
        def take(index: int) -> Any:
            if index not in padded:
                padded[index] = ops.pad(sources[index], pads)
            return padded[index][:, row : row + hc, col : col + wc, :]

        return take

    sums: dict[tuple[int, int], Any] = {}
    for tap, (_, _, top, left) in enumerate(geometry.taps()):
        term = tap_term(tap, take_at(top_pad - top // sh, left_pad - left // sw))
        key = (top % sh, left % sw)
        sums[key] = term if key not in sums else ops.add(sums[key], term)
    some = next(iter(sums.values()))  # a phase no tap lands on (kernel < stride) is zero
    phases = [
        [sums[(a, b)] if (a, b) in sums else ops.zeros_like(some) for b in range(sw)]
        for a in range(sh)
    ]
    return interleave_phases(phases, height, width)
