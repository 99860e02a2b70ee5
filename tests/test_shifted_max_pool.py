"""The strided-window max pool equals ``keras.ops.max_pool``, gradients and ties included.
Every backend."""

import numpy as np
import pytest
from autodiff import value_and_grads
from keras import ops

from keras_dynunet.layers.shifted_max_pool import max_pool_by_shifts
from keras_dynunet.layers.strided_windows import WindowGeometry, scatter_windows

pytestmark = pytest.mark.backends

CASES = [
    ((9, 8), (3, 3), (2, 2), "valid"),
    ((9, 8), (3, 3), (2, 2), "same"),
    ((16, 16), (2, 2), (2, 2), "valid"),
    ((15, 13), (2, 2), (2, 2), "same"),
    ((10, 11), (3, 3), (1, 1), "same"),
    ((13, 11), (3, 2), (2, 1), "valid"),
    ((12, 12), (2, 2), (3, 3), "valid"),
]


@pytest.mark.parametrize(("size", "pool", "strides", "padding"), CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_values_and_gradients_equal_keras_max_pool(size, pool, strides, padding, ties):
    """With ``ties``, integer inputs in 0..2: most windows hold their maximum several
    times, and only the first one (row-major) may receive the gradient."""
    rng = np.random.default_rng(sum(size) + pool[0])
    if ties:
        x = rng.integers(0, 3, size=(2, *size, 3)).astype("float32")
    else:
        x = rng.normal(size=(2, *size, 3)).astype("float32")

    def keras_op(x):
        return ops.max_pool(x, pool, strides, padding)

    def ours(x):
        return max_pool_by_shifts(x, pool, strides, padding)

    want, (want_dx,) = value_and_grads(keras_op, x)
    got, (got_dx,) = value_and_grads(ours, x)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_dx, want_dx, rtol=1e-6, atol=1e-6)
    # each output's gradient lands on exactly one input (no double counting on ties)
    # (gradient of w * sum(pooled): w at every input per window it wins, 0 elsewhere)
    _, (counts,) = value_and_grads(lambda x: ops.reshape(ops.sum(ours(x)), (1,)), x)
    np.testing.assert_allclose(counts.sum() / counts[counts > 0].min(), got.size, rtol=1e-5)


def test_gradient_goes_to_the_first_maximum_only():
    x = np.zeros((1, 2, 2, 1), "float32")  # one 2x2 window, four equal maxima
    _, (dx,) = value_and_grads(lambda t: max_pool_by_shifts(t, (2, 2), (2, 2)), x)
    assert dx[0, 0, 0, 0] > 0.0
    assert dx[0, :, :, 0].ravel()[1:].tolist() == [0.0, 0.0, 0.0]


def test_scatter_windows_is_the_transpose_of_reading_windows():
    """<scatter(terms), x> == sum_t <terms[t], window_t(x)> for random x and terms."""
    from keras_dynunet.layers.strided_windows import phased, window

    rng = np.random.default_rng(3)
    geometry = WindowGeometry.of((11, 9), (3, 2), (2, 3), (1, 2))
    x = rng.normal(size=(2, 11, 9, 4)).astype("float32")
    terms = [rng.normal(size=(2, *geometry.out, 4)).astype("float32") for _ in geometry.taps()]
    back = ops.convert_to_numpy(scatter_windows(terms, lambda t, take: take(t), geometry))
    view = phased(x, geometry)
    reads = [
        ops.convert_to_numpy(window(view, top, left, geometry))
        for _, _, top, left in geometry.taps()
    ]
    assert back.shape == x.shape
    np.testing.assert_allclose(
        (back * x).sum(), sum((t * r).sum() for t, r in zip(terms, reads, strict=True)), rtol=1e-4
    )


@pytest.mark.parametrize(
    ("size", "kernel", "strides", "dilation"),
    [
        ((11, 9), (3, 2), (2, 3), (1, 2)),
        ((8, 8), (3, 3), (1, 1), (1, 1)),
        ((9, 7), (5, 3), (2, 2), (1, 1)),
    ],
)
@pytest.mark.parametrize("method", ["reduce", "einsum"])
def test_window_dot_equals_reading_the_windows(size, kernel, strides, dilation, method):
    from keras_dynunet.layers.strided_windows import phased, window, window_dot

    rng = np.random.default_rng(4)
    geometry = WindowGeometry.of(size, kernel, strides, dilation)
    view = phased(rng.normal(size=(2, *size, 3)).astype("float32"), geometry)
    other = rng.normal(size=(2, *geometry.out, 3)).astype("float32")
    for _, _, top, left in geometry.taps():
        want = (ops.convert_to_numpy(window(view, top, left, geometry)) * other).sum((0, 1, 2))
        got = ops.convert_to_numpy(window_dot(view, other, top, left, geometry, method))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_window_dot_refuses_an_unknown_method():
    from keras_dynunet.layers.strided_windows import phased, window_dot

    geometry = WindowGeometry.of((4, 4), (3, 3), (1, 1))
    view = phased(np.zeros((1, 4, 4, 2), "float32"), geometry)
    with pytest.raises(ValueError, match="method must be 'reduce' or 'einsum', got 'conv'"):
        window_dot(view, np.zeros((1, 2, 2, 2), "float32"), 0, 0, geometry, "conv")


def test_refuses_unknown_padding_and_unknown_sizes():
    x = np.zeros((1, 8, 8, 2), "float32")
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        max_pool_by_shifts(x, (2, 2), (2, 2), padding="causal")

    class Unknown:
        shape = (1, None, 8, 2)

    with pytest.raises(ValueError, match="static height and width"):
        max_pool_by_shifts(Unknown(), (2, 2), (2, 2))
