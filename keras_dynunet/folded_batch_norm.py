"""Inference with each convolution's batch norm folded into the convolution.

In inference a batch norm after a convolution is an affine map per channel,
``y = conv(x) * a + b`` with ``a = gamma / sqrt(moving_variance + epsilon)`` and
``b = beta - moving_mean * a``, so the pair is one convolution with kernel ``kernel * a``
and bias ``bias * a + b``. That saves the batch norm's full pass over the activation
(on the PyTorch backend a subtract that allocates a new tensor, then two in-place
passes; on TensorFlow three ops). Measured (``benchmarks/bench_folded_batch_norm.py``,
results/folded_batch_norm.json) on efficientnet-b0 and resnet34 U-Nets, see
``benchmarks/README.md``.

The folded kernel is computed from the live variables at every call, so it is never
stale (after training, loading weights, or in a JAX stateless call); a pair is folded
only where that costs less than the pass it saves, i.e. where the convolution's
output has more pixels than its kernel has taps times input channels (deep layers of
small inputs keep the batch norm). Only pairs that compute exactly the same function
are folded: a ``Conv2D`` / ``DepthwiseConv2D`` (Keras' or keras-dynunet's no-copy
layer, channels-last, no activation, not quantized) whose only use is a
``BatchNormalization`` over the channel axis that reads nothing else; neither layer is
shared, and the convolution's output is not a model output. Nested functional models
(the encoder) are folded too. Training is untouched.

:class:`~keras_dynunet.model.DynUNet` calls :func:`call_folded` for every inference
call on real tensors (``predict``, ``predict_on_batch``, ``model(x)``); set
``model.fold_batch_norm = False`` to run the layers as built.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import keras
from keras import ops

from keras_dynunet.layers.batch_norm import FastBatchNormalization
from keras_dynunet.layers.no_copy import NoCopyConv2D, NoCopyDepthwiseConv2D

try:  # Keras' own graph runner (private API, present in Keras 3.0-3.15)
    from keras.src.models.functional import Functional
    from keras.src.models.functional import operation_fn as _keras_operation_fn
except ImportError:  # pragma: no cover - a Keras without it runs the layers as built
    Functional = None
    _keras_operation_fn = None

#: Exact layer classes that may be folded (subclasses may compute something else).
FOLDABLE_CONVOLUTIONS: tuple[type, ...] = (
    keras.layers.Conv2D,
    NoCopyConv2D,
    keras.layers.DepthwiseConv2D,
    NoCopyDepthwiseConv2D,
)
FOLDABLE_NORMS: tuple[type, ...] = (keras.layers.BatchNormalization, FastBatchNormalization)

_PAIRS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _is_depthwise(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.DepthwiseConv2D)


def _foldable_convolution(layer: Any) -> bool:
    return (
        type(layer) in FOLDABLE_CONVOLUTIONS
        and layer.data_format == "channels_last"
        and layer.activation in (None, keras.activations.linear)
        and not getattr(layer, "quantization_mode", None)
        and len(layer._inbound_nodes) == 1
        and len(layer._outbound_nodes) == 1
    )


def _foldable_norm(layer: Any) -> bool:
    if type(layer) not in FOLDABLE_NORMS or len(layer._inbound_nodes) != 1:
        return False
    node = layer._inbound_nodes[0]
    rank = len(node.input_tensors[0].shape) if len(node.input_tensors) == 1 else 0
    return (
        rank == 4
        and layer.axis % rank == rank - 1
        and not layer.renorm
        and not getattr(layer, "synchronized", False)
    )


def foldable_pairs(model: keras.Model) -> dict[keras.layers.Layer, keras.layers.Layer]:
    """The ``{convolution: batch norm}`` pairs of ``model``'s own graph that fold exactly.

    Nested models are not searched (:func:`call_folded` asks each one for its own pairs).

    Args:
        model: A functional Keras model.

    Returns:
        Convolution layer -> the ``BatchNormalization`` layer it feeds.

    >>> inputs = keras.Input((8, 8, 3))
    >>> features = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    >>> outputs = keras.layers.BatchNormalization(name="norm")(features)
    >>> model = keras.Model(inputs, outputs)
    >>> {conv.name: norm.name for conv, norm in foldable_pairs(model).items()}
    {'conv': 'norm'}
    """
    if model in _PAIRS:
        return _PAIRS[model]
    model_outputs = {id(tensor) for tensor in model.outputs}
    pairs = {}
    for layer in model.layers:
        if not _foldable_norm(layer):
            continue
        tensor = layer._inbound_nodes[0].input_tensors[0]
        convolution = tensor._keras_history.operation
        if id(tensor) not in model_outputs and _foldable_convolution(convolution):
            pairs[convolution] = layer
    _PAIRS[model] = pairs
    return pairs


def worth_folding(convolution: keras.layers.Layer, input_shape: tuple[int | None, ...]) -> bool:
    """Whether folding reads and writes fewer values than the batch norm it removes.

    Folding costs one pass over the kernel (``kernel * a``) and saves one over the
    output, so it pays when the output has more pixels (batch x height x width) than
    the kernel has ``kernel_height * kernel_width * input_channels / groups`` entries
    per output channel. Unknown sizes count as large (batch as 1).

    Args:
        convolution: A ``Conv2D`` or ``DepthwiseConv2D`` layer.
        input_shape: The shape of its input, ``(batch, height, width, channels)``.

    Returns:
        ``True`` if the pair should be folded.

    >>> conv = keras.layers.Conv2D(512, 3, padding="same")
    >>> worth_folding(conv, (8, 64, 64, 256)), worth_folding(conv, (1, 8, 8, 512))
    (True, False)
    """
    batch, height, width, channels = input_shape
    if height is None or width is None:
        return True
    out_height, out_width = convolution.compute_output_shape((1, height, width, channels))[1:3]
    pixels = (batch or 1) * out_height * out_width
    taps = math.prod(convolution.kernel_size)
    if not _is_depthwise(convolution):
        taps *= channels // convolution.groups
    return pixels > taps


def _convolve(convolution: keras.layers.Layer, inputs: Any, kernel: Any) -> Any:
    if not _is_depthwise(convolution):
        return convolution.convolution_op(inputs, kernel)
    # Keras' DepthwiseConv2D has no op method; the no-copy layer's computes the same function
    return NoCopyDepthwiseConv2D.depthwise_op(convolution, inputs, kernel)


def folded_convolution(
    convolution: keras.layers.Layer, norm: keras.layers.Layer, inputs: Any
) -> Any:
    """``norm(convolution(inputs), training=False)`` as one convolution with folded weights.

    Args:
        convolution: A foldable ``Conv2D`` / ``DepthwiseConv2D`` (built).
        norm: The ``BatchNormalization`` layer that follows it (built).
        inputs: A channels-last batch.

    Returns:
        The batch norm's output (in its compute dtype).

    >>> import numpy as np
    >>> conv, norm = keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()
    >>> x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    >>> reference = ops.convert_to_numpy(norm(conv(x), training=False))
    >>> folded = ops.convert_to_numpy(folded_convolution(conv, norm, x))
    >>> bool(np.allclose(folded, reference, atol=1e-5))
    True
    """
    scale = ops.rsqrt(ops.add(ops.convert_to_tensor(norm.moving_variance), norm.epsilon))
    if norm.scale:
        scale = ops.multiply(scale, norm.gamma)
    shift = ops.negative(ops.multiply(norm.moving_mean, scale))
    if norm.center:
        shift = ops.add(shift, norm.beta)
    if convolution.use_bias:
        shift = ops.add(shift, ops.multiply(convolution.bias, scale))
    kernel = ops.convert_to_tensor(convolution.kernel)
    if _is_depthwise(convolution):  # (kh, kw, channels, multiplier): output = c * m + j
        kernel = ops.multiply(kernel, ops.reshape(scale, tuple(kernel.shape[2:])))
    else:
        kernel = ops.multiply(kernel, scale)
    dtype = convolution.compute_dtype
    outputs = _convolve(convolution, ops.cast(inputs, dtype), ops.cast(kernel, dtype))
    return ops.cast(ops.add(outputs, ops.cast(shift, dtype)), norm.compute_dtype)


def _is_plain_functional(operation: Any) -> bool:
    return Functional is not None and type(operation) is Functional


def call_folded(model: keras.Model, inputs: Any) -> Any:
    """``model(inputs, training=False)``, with every foldable convolution + batch norm folded.

    Runs the functional graph with Keras' own runner; pairs that
    :func:`foldable_pairs` finds and :func:`worth_folding` accepts for the actual input
    sizes become :func:`folded_convolution`, every other layer is called as usual,
    and nested plain functional models are run the same way.

    Args:
        model: A functional Keras model (built).
        inputs: Real tensors or arrays (not symbolic ``KerasTensor`` inputs).

    Returns:
        The model's outputs, structured as ``model(inputs)`` returns them.

    >>> import numpy as np
    >>> inputs = keras.Input((8, 8, 3))
    >>> features = keras.layers.Conv2D(4, 3)(inputs)
    >>> model = keras.Model(inputs, keras.layers.BatchNormalization()(features))
    >>> x = np.ones((2, 8, 8, 3), "float32")
    >>> reference = ops.convert_to_numpy(model(x, training=False))
    >>> bool(np.allclose(ops.convert_to_numpy(call_folded(model, x)), reference, atol=1e-5))
    True
    """
    if _keras_operation_fn is None:  # pragma: no cover - see the import above
        return model(inputs, training=False)
    pairs = foldable_pairs(model)
    norms = set(pairs.values())
    folded: set[int] = set()

    def operation_fn(operation: Any) -> Any:
        if operation in pairs:
            norm = pairs[operation]

            def convolution_call(x: Any, **kwargs: Any) -> Any:
                if not worth_folding(operation, tuple(x.shape)):
                    return operation(x)
                folded.add(id(norm))
                return folded_convolution(operation, norm, x)

            return convolution_call
        if operation in norms:

            def norm_call(x: Any, **kwargs: Any) -> Any:
                return x if id(operation) in folded else operation(x, training=False)

            return norm_call
        if _is_plain_functional(operation):
            return lambda x, **kwargs: call_folded(operation, x)
        return _keras_operation_fn(operation, training=False)

    outputs = model._run_through_graph(model._standardize_inputs(inputs), operation_fn=operation_fn)
    return outputs[0] if isinstance(outputs, list | tuple) and len(outputs) == 1 else outputs
