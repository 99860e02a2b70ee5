"""The shifted-window depthwise convolution equals ``keras.ops.depthwise_conv``. Every backend."""

import numpy as np
import pytest
from autodiff import value_and_grads
from keras import ops

from keras_dynunet.layers import shifted_depthwise
from keras_dynunet.layers.shifted_depthwise import depthwise_conv_by_shifts, kernel_gradient_method
from keras_dynunet.layers.strided_windows import WindowGeometry

pytestmark = pytest.mark.backends


@pytest.mark.parametrize("size", [(9, 8), (16, 16), (7, 12)])
@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_equals_keras_depthwise_conv(size, kernel, stride, padding):
    rng = np.random.default_rng(kernel * 10 + stride)
    x = rng.normal(size=(2, *size, 4)).astype("float32")
    k = rng.normal(size=(kernel, kernel, 4, 1)).astype("float32")
    want = ops.convert_to_numpy(ops.depthwise_conv(x, k, strides=stride, padding=padding))
    got = ops.convert_to_numpy(depthwise_conv_by_shifts(x, k, (stride, stride), padding))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("strides", "dilation", "multiplier"), [((1, 2), (1, 1), 3), ((1, 1), (2, 3), 2)]
)
def test_unequal_strides_dilation_and_depth_multiplier(strides, dilation, multiplier):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 13, 11, 3)).astype("float32")
    k = rng.normal(size=(3, 3, 3, multiplier)).astype("float32")
    for padding in ("same", "valid"):
        want = ops.depthwise_conv(x, k, strides, padding, dilation_rate=dilation)
        got = depthwise_conv_by_shifts(x, k, strides, padding, dilation)
        np.testing.assert_allclose(
            ops.convert_to_numpy(got), ops.convert_to_numpy(want), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize(
    ("size", "kernel", "strides", "dilation", "padding"),
    [
        ((9, 8), 3, (1, 1), (1, 1), "same"),
        ((16, 16), 5, (1, 1), (1, 1), "same"),
        ((9, 8), 3, (2, 2), (1, 1), "same"),
        ((16, 16), 5, (2, 2), (1, 1), "same"),
        ((13, 11), 3, (2, 1), (1, 1), "valid"),
        ((13, 11), 3, (1, 1), (2, 3), "same"),
        ((14, 12), 3, (2, 2), (2, 2), "valid"),
        ((7, 12), 1, (2, 2), (1, 1), "same"),
    ],
)
@pytest.mark.parametrize("method", ["reduce", "einsum"])
def test_gradients_equal_keras_depthwise_conv(
    size, kernel, strides, dilation, padding, method, monkeypatch
):
    """The hand-written input and kernel gradients match autodiff of Keras' op, with either
    kernel-gradient method."""
    chosen = []

    def forced(geometry, backend=None):
        chosen.append(kernel_gradient_method(geometry, backend))
        return method

    monkeypatch.setattr(shifted_depthwise, "kernel_gradient_method", forced)
    rng = np.random.default_rng(kernel + strides[0])
    x = rng.normal(size=(2, *size, 3)).astype("float32")
    k = rng.normal(size=(kernel, kernel, 3, 2)).astype("float32")

    def keras_op(x, k):
        return ops.depthwise_conv(x, k, strides, padding, dilation_rate=dilation)

    def ours(x, k):
        return depthwise_conv_by_shifts(x, k, strides, padding, dilation)

    want, (want_dx, want_dk) = value_and_grads(keras_op, x, k)
    got, (got_dx, got_dk) = value_and_grads(ours, x, k)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_dx, want_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_dk, want_dk, rtol=1e-4, atol=1e-4)
    assert chosen, "the kernel gradient did not ask which method to use"


@pytest.mark.parametrize(
    ("size", "strides", "backend", "want"),
    [
        ((28, 28), (1, 1), "tensorflow", "einsum"),  # phase grid 32 x 32
        ((29, 28), (1, 1), "tensorflow", "reduce"),  # 33 rows
        ((60, 60), (2, 2), "tensorflow", "einsum"),  # 64 / 2
        ((62, 60), (2, 2), "tensorflow", "reduce"),
        ((16, 16), (1, 1), "jax", "reduce"),
        ((16, 16), (1, 1), "torch", "reduce"),
    ],
)
def test_kernel_gradient_method_rule(size, strides, backend, want):
    """Dots on TensorFlow (XLA) up to a 32 x 32 stride-phase grid, reductions otherwise."""
    geometry = WindowGeometry.of((size[0] + 4, size[1] + 4), (5, 5), strides)
    assert kernel_gradient_method(geometry, backend) == want


def test_kernel_gradient_method_follows_the_current_backend():
    import keras

    geometry = WindowGeometry.of((12, 12), (3, 3), (1, 1))
    want = "einsum" if keras.backend.backend() == "tensorflow" else "reduce"
    assert kernel_gradient_method(geometry) == want


def test_refuses_unknown_padding_and_unknown_sizes():
    x = np.zeros((1, 8, 8, 2), "float32")
    k = np.zeros((3, 3, 2, 1), "float32")
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        depthwise_conv_by_shifts(x, k, padding="causal")

    class Unknown:
        shape = (1, None, 8, 2)

    with pytest.raises(ValueError, match="static height and width"):
        depthwise_conv_by_shifts(Unknown(), k)
