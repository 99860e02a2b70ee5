"""Backend-neutral gradients for the tests: ``d(sum(fn(*inputs) * w))/d(inputs)``.

``w`` is a fixed random cotangent, so every output element is weighted differently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np


def _cotangent(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(1).random(tuple(shape), "float32")


def value_and_grads(fn: Callable[..., Any], *inputs: np.ndarray) -> tuple[np.ndarray, list]:
    """``fn(*inputs)`` and the gradient of ``sum(fn(*inputs) * w)`` for each input, as numpy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(x) for x in inputs]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            y = fn(*tensors)
            loss = tf.reduce_sum(y * _cotangent(y.shape))
        return np.asarray(y), [np.asarray(g) for g in tape.gradient(loss, tensors)]
    if backend == "jax":
        import jax

        def loss(*args):
            y = fn(*args)
            return (y * _cotangent(y.shape)).sum(), y

        argnums = tuple(range(len(inputs)))
        (_, y), grads = jax.value_and_grad(loss, argnums=argnums, has_aux=True)(*inputs)
        return np.asarray(y), [np.asarray(g) for g in grads]
    import torch

    tensors = [torch.tensor(x, requires_grad=True) for x in inputs]
    y = fn(*tensors)
    (y * torch.tensor(_cotangent(y.shape))).sum().backward()
    return y.detach().cpu().numpy(), [t.grad.cpu().numpy() for t in tensors]
