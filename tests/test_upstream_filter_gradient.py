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

CASES = [  # (batch, height, width, in channels, out channels, kernel)
    (2, 8, 8, 3, 4, (3, 3)),
    (1, 9, 7, 5, 2, (3, 3)),
    (2, 6, 10, 4, 4, (5, 5)),
    (3, 7, 8, 2, 3, (3, 5)),
    (2, 5, 6, 3, 2, (1, 3)),
    (8, 4, 4, 6, 2, (3, 3)),
]


@pytest.mark.parametrize(("batch", "height", "width", "cin", "cout", "kernel"), CASES)
def test_values_and_gradients_equal_keras_conv(batch, height, width, cin, cout, kernel):
    rng = np.random.default_rng(batch * height + cin)
    x = rng.normal(size=(batch, height, width, cin)).astype("float32")
    k = rng.normal(size=(*kernel, cin, cout)).astype("float32")
    want, (want_dx, want_dk) = value_and_grads(lambda x, k: ops.conv(x, k, padding="same"), x, k)
    got, (got_dx, got_dk) = value_and_grads(conv_with_upstream_filter_gradient, x, k)
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


def test_prefers_small_batches_and_channel_reductions():
    assert prefers_upstream_filter_gradient(1, 16, 16)
    assert prefers_upstream_filter_gradient(LARGE_BATCH - 1, 16, 64)
    assert not prefers_upstream_filter_gradient(LARGE_BATCH, 16, 16)
    assert not prefers_upstream_filter_gradient(LARGE_BATCH, 16, 64)
    assert prefers_upstream_filter_gradient(LARGE_BATCH, 64, 16)
    assert not prefers_upstream_filter_gradient(None, 64, 16)


def _layer(xla: bool, **options) -> NoCopyConv2D:
    layer = NoCopyConv2D(**{"filters": 4, "kernel_size": 3, "padding": "same", **options})
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
        ({"kernel_size": 2}, 2, False),
        ({"padding": "valid"}, 2, False),
        ({"dilation_rate": 2}, 2, False),
        ({}, LARGE_BATCH, False),  # 3 -> 4 channels: XLA's own is as fast
        ({"filters": 2}, LARGE_BATCH, XLA),
    ],
)
def test_no_copy_conv_takes_it_only_for_eligible_convolutions(options, batch, taken):
    x = np.zeros((batch, 8, 8, 3), "float32")
    assert _layer(True, **options)._upstream_filter_gradient(x) is taken
    # without XLA compilation only JAX (always compiled) takes it
    on_jax = keras.backend.backend() == "jax"
    assert _layer(False, **options)._upstream_filter_gradient(x) is (taken and on_jax)


def test_no_copy_conv_gradients_equal_keras_conv2d():
    """The whole layer (bias, activation) against ``keras.layers.Conv2D`` with the same weights."""
    ours = _layer(True, activation="relu")
    plain = keras.layers.Conv2D(4, 3, padding="same", activation="relu")
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
