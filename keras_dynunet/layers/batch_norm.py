"""Batch normalisation with a hand-written training gradient (faster on every backend).

Keras 3.15's ``BatchNormalization`` trains on the torch backend as a chain of eager
ops (``mean``, ``square``, ``mean``, ``square``, ``subtract`` for the moments; then
``subtract``, ``multiply``, ``add``), each a full pass over the activation, and
autograd records and differentiates every one of them. On a resnet34 U-Net at 512x512,
batch 2, elementwise ops (mostly these) took roughly a sixth of a training step
(torch profiler).

Here the statistics (``E[x]`` and ``E[x^2] - E[x]^2``, as Keras computes them) are taken
outside autograd, the output is one multiply-add ``x * a + b``, and the input, scale and
offset gradients are written out with ``keras.ops.custom_gradient`` (the standard
batch-norm gradient, which includes the paths through the batch mean and variance):
two reductions and five elementwise passes backward, nothing recorded forward.
``benchmarks/bench_hand_gradients.py``: resnet34 U-Net, 256x256 batch 8, 1.08x and (rerun)
1.18x training images/s. On JAX, XLA differentiates Keras' moments itself and a trace of the
resnet34 U-Net's training step showed batch-norm gradients computed twice (recomputed
inside layout transposes); the same hand-written gradient made the JAX training step
1.05-1.08x faster (resnet34) and 1.03x (efficientnet-b0) in in-process A/Bs; alternating
fresh processes (``bench_hand_gradients.py --cases batch-norm-jax,batch-norm-jax-512``)
measured 1.10x for resnet34 at 512x512 batch 2 and 0.99x at 256x256 batch 8. On
TensorFlow (Keras' moments and ``tf.nn.batch_normalization``, differentiated by the tape)
in-process A/Bs measured 1.02-1.09x without XLA and 0.99-1.07x with ``jit_compile=True``
(resnet34 and efficientnet-b0 U-Nets, 256x256 batch 8 and 512x512 batch 2). Moving
statistics, configs and weights are those of the Keras layer (tested against it, values
and gradients); in inference, with a mask, renorm or synchronised statistics the layer
*is* the Keras layer.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

#: Backends whose training step takes the hand-written gradient.
HAND_GRADIENT_BACKENDS = ("torch", "jax", "tensorflow")


def _train_normalize(
    x: Any, gamma: Any, beta: Any, axes: list[int], shape: list[int], epsilon: float
) -> tuple[Any, Any, Any]:
    """Batch-normalise ``x`` over ``axes`` with its own statistics; returns the output
    and the (gradient-free) batch mean and variance."""
    # E[x^2] - E[x]^2 as Keras computes it: torch.var over the non-channel axes of a
    # channels-last tensor took 236 ms of a resnet34 U-Net 512x2 training step (46 calls)
    constant = ops.stop_gradient(x)
    mean = ops.mean(constant, axes)
    variance = ops.maximum(ops.mean(ops.square(constant), axes) - ops.square(mean), 0.0)
    # the dynamic shape: TensorFlow traces training steps with an unknown batch size
    dynamic_shape = ops.shape(x)
    count = 1
    for axis in axes:
        count = count * dynamic_shape[axis]
    if not isinstance(count, int):
        count = ops.cast(count, x.dtype)

    @ops.custom_gradient
    def normalize(x: Any, gamma: Any, beta: Any) -> Any:
        inv = ops.rsqrt(ops.add(variance, epsilon))
        a = ops.multiply(gamma, inv)
        b = ops.subtract(beta, ops.multiply(mean, a))

        def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any, Any]:
            upstream = args[0] if upstream is None else upstream
            sum_g = ops.sum(upstream, axes)
            # sum(g * xhat) per channel, xhat = (x - mean) * inv
            sum_g_xhat = ops.multiply(
                ops.subtract(ops.sum(ops.multiply(upstream, x), axes), ops.multiply(mean, sum_g)),
                inv,
            )
            # dx = a * (g - mean(g) - xhat * mean(g * xhat)) = a*g + x*k1 + k0
            k1 = ops.negative(ops.multiply(ops.multiply(a, inv), sum_g_xhat / count))
            k0 = ops.subtract(ops.negative(ops.multiply(a, sum_g / count)), ops.multiply(k1, mean))
            dx = ops.add(
                ops.multiply(upstream, ops.reshape(a, shape)),
                ops.add(ops.multiply(x, ops.reshape(k1, shape)), ops.reshape(k0, shape)),
            )
            return dx, sum_g_xhat, sum_g

        return ops.add(ops.multiply(x, ops.reshape(a, shape)), ops.reshape(b, shape)), grad

    return normalize(x, gamma, beta), mean, variance


@keras.saving.register_keras_serializable(package="keras_dynunet")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with a fused, hand-differentiated training step.

    >>> import numpy as np
    >>> layer = FastBatchNormalization()
    >>> x = np.random.default_rng(0).normal(2.0, 3.0, (4, 5, 5, 3)).astype("float32")
    >>> y = ops.convert_to_numpy(layer(x, training=True))
    >>> bool(abs(y.mean()) < 1e-3 and abs(y.std() - 1) < 1e-2)
    True
    """

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        if not (
            keras.backend.backend() in HAND_GRADIENT_BACKENDS
            and training
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
        ):
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        channels = x.shape[self.axis]
        gamma = ops.cast(self.gamma, x.dtype) if self.scale else ops.ones((channels,), x.dtype)
        beta = ops.cast(self.beta, x.dtype) if self.center else ops.zeros((channels,), x.dtype)
        axes = [axis for axis in range(len(x.shape)) if axis != self.axis % len(x.shape)]
        shape = [1] * len(x.shape)
        shape[self.axis] = channels
        outputs, mean, variance = _train_normalize(x, gamma, beta, axes, shape, self.epsilon)
        momentum = self.momentum
        self.moving_mean.assign(
            ops.cast(self.moving_mean, x.dtype) * momentum + mean * (1.0 - momentum)
        )
        self.moving_variance.assign(
            ops.cast(self.moving_variance, x.dtype) * momentum + variance * (1.0 - momentum)
        )
        return ops.cast(outputs, self.compute_dtype)


FastBatchNormalization = BatchNormalization
