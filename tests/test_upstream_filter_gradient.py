"""The upstream-image filter gradient equals autodiff of ``keras.ops.conv``, and the no-copy
``Conv2D`` takes it exactly where it should. Every backend."""

import keras
import numpy as np
import pytest
from autodiff import value_and_grads
from keras import ops

from keras_dynunet.layers.no_copy import NoCopyConv2D
from keras_dynunet.layers.upstream_filter_gradient import (
    LARGE_BATCH,
    conv_with_upstream_filter_gradient,
    prefers_upstream_filter_gradient,
    upstream_filter_gradient,
)

pytestmark = pytest.mark.backends

CASES = [  # (batch, height, width, in channels, out channels, kernel, padding)
    (2, 8, 8, 3, 4, (3, 3), "same"),
    (1, 9, 7, 5, 2, (3, 3), "same"),
    (2, 6, 10, 4, 4, (5, 5), "same"),
    (3, 7, 8, 2, 3, (3, 5), "same"),
    (2, 5, 6, 3, 2, (1, 3), "same"),
    (8, 4, 4, 6, 2, (3, 3), "same"),
    (2, 7, 6, 3, 2, (2, 2), "same"),  # even: one more zero after than before
    (1, 8, 9, 2, 3, (4, 1), "same"),
    (2, 9, 7, 4, 3, (3, 3), "valid"),
    (2, 8, 8, 4, 3, (2, 2), "valid"),  # the per-phase kernels of a 3x3 stride-2 transposed conv
    (1, 6, 7, 3, 2, (1, 2), "valid"),
]


@pytest.mark.parametrize(("batch", "height", "width", "cin", "cout", "kernel", "padding"), CASES)
def test_values_and_gradients_equal_keras_conv(batch, height, width, cin, cout, kernel, padding):
    rng = np.random.default_rng(batch * height + cin)
    x = rng.normal(size=(batch, height, width, cin)).astype("float32")
    k = rng.normal(size=(*kernel, cin, cout)).astype("float32")
    want, (want_dx, want_dk) = value_and_grads(lambda x, k: ops.conv(x, k, padding=padding), x, k)
    got, (got_dx, got_dk) = value_and_grads(
        lambda x, k: conv_with_upstream_filter_gradient(x, k, padding), x, k
    )
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_dx, want_dx, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got_dk, want_dk, rtol=1e-5, atol=1e-4)
    assert got_dk.shape == k.shape


def test_filter_gradient_by_direct_summation():
    """Against the definition ``dW[i, j, c, o] = sum_p x_padded[p + (i, j), c] * dy[p, o]``."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    dy = rng.normal(size=(2, 5, 6, 2)).astype("float32")
    padded = np.pad(x, ((0, 0), (1, 1), (2, 2), (0, 0)))
    want = np.zeros((3, 5, 3, 2), "float32")
    for i in range(3):
        for j in range(5):
            want[i, j] = np.einsum("nhwc,nhwo->co", padded[:, i : i + 5, j : j + 6], dy)
    got = ops.convert_to_numpy(upstream_filter_gradient(x, dy, (3, 5)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # "valid": no padding, the output is smaller by the kernel size - 1
    dy_valid = dy[:, :3, :2]
    for i in range(3):
        for j in range(5):
            want[i, j] = np.einsum("nhwc,nhwo->co", x[:, i : i + 3, j : j + 2], dy_valid)
    got = ops.convert_to_numpy(upstream_filter_gradient(x, dy_valid, (3, 5), "valid"))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_refuses_unknown_padding():
    x, k = np.zeros((1, 4, 4, 2), "float32"), np.zeros((3, 3, 2, 2), "float32")
    with pytest.raises(ValueError, match="padding must be 'same' or 'valid'"):
        conv_with_upstream_filter_gradient(x, k, "causal")


def test_prefers_channel_reductions_and_small_batches_that_keep_channels():
    assert prefers_upstream_filter_gradient(1, 16, 16)
    assert not prefers_upstream_filter_gradient(LARGE_BATCH - 1, 16, 64)  # widening: XLA's
    assert not prefers_upstream_filter_gradient(1, 3, 64)
    assert not prefers_upstream_filter_gradient(LARGE_BATCH, 16, 16)
    assert not prefers_upstream_filter_gradient(LARGE_BATCH, 16, 64)
    assert prefers_upstream_filter_gradient(LARGE_BATCH, 64, 16)
    assert not prefers_upstream_filter_gradient(None, 64, 16)


def _layer(xla: bool, **options) -> NoCopyConv2D:
    layer = NoCopyConv2D(**{"filters": 3, "kernel_size": 3, "padding": "same", **options})
    layer.build((None, 8, 8, 3))
    layer.xla_compiled = xla  # TensorFlow: as if the model were compiled with jit_compile=True
    return layer


XLA = keras.backend.backend() in ("jax", "tensorflow")


@pytest.mark.parametrize(
    ("options", "batch", "taken"),
    [
        ({}, 2, XLA),
        ({"strides": 2}, 2, False),
        ({"kernel_size": 1}, 2, False),
        ({"kernel_size": 2}, 2, XLA),
        ({"padding": "valid"}, 2, XLA),
        ({"dilation_rate": 2}, 2, False),
        ({"groups": 3}, 2, False),
        ({"filters": 4}, 2, False),  # 3 -> 4 channels: XLA's own moves the smaller tensor
        ({}, LARGE_BATCH, False),  # 3 -> 3 channels: XLA's own is as fast
        ({"filters": 2}, LARGE_BATCH, XLA),
    ],
)
def test_no_copy_conv_takes_it_only_for_eligible_convolutions(options, batch, taken):
    x = np.zeros((batch, 8, 8, 3), "float32")
    assert _layer(True, **options)._upstream_filter_gradient(x) is taken
    # without XLA compilation only JAX (always compiled) takes it
    on_jax = keras.backend.backend() == "jax"
    assert _layer(False, **options)._upstream_filter_gradient(x) is (taken and on_jax)


@pytest.mark.parametrize(("kernel", "padding"), [(3, "same"), (2, "same"), (3, "valid")])
def test_no_copy_conv_gradients_equal_keras_conv2d(kernel, padding):
    """The whole layer (bias, activation) against ``keras.layers.Conv2D`` with the same weights."""
    ours = _layer(True, activation="relu", kernel_size=kernel, padding=padding)
    plain = keras.layers.Conv2D(3, kernel, padding=padding, activation="relu")
    plain.build((None, 8, 8, 3))
    rng = np.random.default_rng(3)
    weights = [rng.normal(size=w.shape).astype("float32") for w in plain.get_weights()]
    plain.set_weights(weights)
    ours.set_weights(weights)
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    assert ours._upstream_filter_gradient(x) is XLA

    def run(layer):
        return value_and_grads(
            lambda x, k: layer.activation(ops.add(layer.convolution_op(x, k), layer.bias)),
            x,
            weights[0],
        )

    want, (want_dx, want_dk) = run(plain)
    got, (got_dx, got_dk) = run(ours)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_dx, want_dx, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got_dk, want_dk, rtol=1e-5, atol=1e-4)
