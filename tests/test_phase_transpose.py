"""Transposed convolution by output phases equals ``keras.ops.conv_transpose``. Every backend."""

import numpy as np
import pytest
from autodiff import value_and_grads
from keras import ops

from keras_dynunet.layers.phase_transpose import conv_transpose_by_phases

pytestmark = pytest.mark.backends


@pytest.mark.parametrize("size", [(5, 6), (8, 8)])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_equals_keras_conv_transpose(size, kernel, stride, padding):
    rng = np.random.default_rng(kernel * 10 + stride)
    x = rng.normal(size=(2, *size, 4)).astype("float32")
    k = rng.normal(size=(kernel, kernel, 3, 4)).astype("float32")
    want = ops.convert_to_numpy(ops.conv_transpose(x, k, strides=stride, padding=padding))
    got = ops.convert_to_numpy(conv_transpose_by_phases(x, k, (stride, stride), padding))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("strides", "output_padding", "kernel"),
    [
        ((2, 3), (1, 2), (3, 3)),
        ((2, 2), (0, 1), (3, 3)),
        ((3, 2), None, (2, 5)),
        ((4, 4), (3, 2), (2, 2)),
    ],
)
def test_unequal_strides_kernels_and_output_padding(strides, output_padding, kernel):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 7, 6, 2)).astype("float32")
    k = rng.normal(size=(*kernel, 5, 2)).astype("float32")
    for padding in ("same", "valid"):
        want = ops.conv_transpose(x, k, strides, padding, output_padding)
        got = conv_transpose_by_phases(x, k, strides, padding, output_padding)
        np.testing.assert_allclose(
            ops.convert_to_numpy(got), ops.convert_to_numpy(want), rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [(3, 2, "valid"), (3, 2, "same"), (4, 2, "same"), (2, 2, "valid")],
)
@pytest.mark.parametrize("swap", [False, True])
def test_gradients_equal_keras_conv_transpose(kernel, stride, padding, swap):
    """With and without the per-phase upstream-image filter gradient (6 -> 4 channels:
    fewer out than in, so ``prefers_upstream_filter_gradient`` takes it when asked)."""
    rng = np.random.default_rng(kernel + stride)
    x = rng.normal(size=(2, 5, 6, 6)).astype("float32")
    k = rng.normal(size=(kernel, kernel, 4, 6)).astype("float32")
    want, (want_dx, want_dk) = value_and_grads(
        lambda x, k: ops.conv_transpose(x, k, strides=stride, padding=padding), x, k
    )
    got, (got_dx, got_dk) = value_and_grads(
        lambda x, k: conv_transpose_by_phases(
            x, k, (stride, stride), padding, upstream_filter_gradient=swap
        ),
        x,
        k,
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_dx, want_dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_dk, want_dk, rtol=1e-4, atol=1e-4)


def test_asks_for_the_swapped_filter_gradient_only_where_preferred(monkeypatch):
    import keras_dynunet.layers.phase_transpose as phase_transpose

    calls = []
    original = phase_transpose.conv_with_upstream_filter_gradient

    def spy(*args, **kwargs):
        calls.append(tuple(args[1].shape))
        return original(*args, **kwargs)

    monkeypatch.setattr(phase_transpose, "conv_with_upstream_filter_gradient", spy)
    x = np.zeros((2, 4, 4, 6), "float32")
    conv_transpose_by_phases(x, np.zeros((3, 3, 4, 6), "float32"), (2, 2))
    assert calls == []  # not asked
    conv_transpose_by_phases(
        x, np.zeros((3, 3, 8, 6), "float32"), (2, 2), upstream_filter_gradient=True
    )
    assert calls == []  # asked, but 6 -> 8 channels widens
    conv_transpose_by_phases(
        x, np.zeros((3, 3, 4, 6), "float32"), (2, 2), upstream_filter_gradient=True
    )
    assert sorted(calls) == [(1, 1, 6, 4), (1, 2, 6, 4), (2, 1, 6, 4), (2, 2, 6, 4)]


def test_refuses_unknown_padding_and_unknown_sizes():
    k = np.zeros((3, 3, 2, 2), "float32")
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        conv_transpose_by_phases(np.zeros((1, 4, 4, 2), "float32"), k, padding="full")

    class Unknown:
        shape = (1, 4, None, 2)

    with pytest.raises(ValueError, match="static height and width"):
        conv_transpose_by_phases(Unknown(), k)
