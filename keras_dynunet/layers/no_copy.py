"""2D convolution and pooling layers that skip two tensor copies per call on PyTorch.

Keras 3.15's torch backend runs a ``channels_last`` convolution as
``permute(0, 3, 1, 2).contiguous()`` (a full copy to NCHW), then
``.contiguous(memory_format=torch.channels_last)`` (a second copy, back to NHWC
memory), the convolution, and a permute back. On a resnet34 U-Net at 256x256 those
copies took about a third of the forward time (``aten::copy_``, measured with the
torch profiler; see ``benchmarks/README.md``).

The layers here are the Keras layers with one change on the torch backend: the
input is transposed to a ``channels_first`` *view* (``ops.transpose`` is a
``torch.permute``, no copy) and the op is called with
``data_format="channels_first"``. PyTorch then sees an NCHW tensor with
channels-last strides and runs its channels-last kernels directly; the output,
permuted back, is an ordinary contiguous NHWC tensor. Weights, configs and results
are those of the Keras layer (tested to float32 rounding), so checkpoints are
interchangeable.

The convolutions and max pooling have a second fast path, on JAX: XLA:CPU runs
depthwise convolutions (and their gradients), the filter gradient of input-dilated
convolutions and the max-pool gradient (``select_and_scatter``) through slow generic
code, and its own filter gradient of stride-1 convolutions is slow at small batches, so
there they compute
:func:`keras_dynunet.layers.upstream_filter_gradient.conv_with_upstream_filter_gradient`
(stride-1 convolutions where
:func:`~keras_dynunet.layers.upstream_filter_gradient.prefers_upstream_filter_gradient`
says so; also the per-phase convolutions of transposed convolutions),
:func:`keras_dynunet.layers.shifted_depthwise.depthwise_conv_by_shifts`,
:func:`keras_dynunet.layers.phase_transpose.conv_transpose_by_phases` (dilation 1) and
:func:`keras_dynunet.layers.shifted_max_pool.max_pool_by_shifts`; nearest upsampling
takes :func:`keras_dynunet.layers.nearest_upsampling.upsample_nearest`, whose gradient
YNNPACK does not fuse into a slow convolution. TensorFlow with XLA
(``compile(jit_compile=True)``) runs the same XLA:CPU code, so there the five layers take
the same forms when the model marks them ``xla_compiled`` (the models of this library do,
see :mod:`keras_dynunet.xla_compiled`). Otherwise, on TensorFlow and JAX, the layers are
exactly the Keras layers.

:func:`use_no_copy_layers` converts a functional model built from plain Keras layers
(such as a ``keras.applications`` encoder); the registry does that for its encoders
on the torch backend, and on JAX and TensorFlow for models with convolutions or max
pooling.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_dynunet.layers.batch_norm import FastBatchNormalization
from keras_dynunet.layers.nearest_upsampling import upsample_nearest
from keras_dynunet.layers.phase_transpose import conv_transpose_by_phases
from keras_dynunet.layers.shifted_depthwise import depthwise_conv_by_shifts
from keras_dynunet.layers.shifted_max_pool import max_pool_by_shifts
from keras_dynunet.layers.upstream_filter_gradient import (
    conv_with_upstream_filter_gradient,
    prefers_upstream_filter_gradient,
)

_TO_FIRST = (0, 3, 1, 2)
_TO_LAST = (0, 2, 3, 1)


def _torch_channels_last(data_format: str) -> bool:
    return keras.backend.backend() == "torch" and data_format == "channels_last"


def _xla_forms(layer: keras.layers.Layer, inputs: Any) -> bool:
    """Whether ``layer`` computes its XLA-friendly form: on JAX, and on TensorFlow when
    the model runs it XLA-compiled on CPU (``layer.xla_compiled``, set by
    :class:`~keras_dynunet.xla_compiled.XLACompiledLayersMixin`), for channels-last
    inputs whose height and width are known (the fast forms need them)."""
    backend = keras.backend.backend()
    return (
        (backend == "jax" or (backend == "tensorflow" and getattr(layer, "xla_compiled", False)))
        and layer.data_format == "channels_last"
        and None not in tuple(inputs.shape[1:3])
    )


def _on_channels_first_view(op: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
    """``op(inputs, *args, data_format="channels_first", **kwargs)`` on a channels-first
    *view* of channels-last ``inputs``, the result permuted back (permutes are views on torch)."""
    outputs = op(ops.transpose(inputs, _TO_FIRST), *args, data_format="channels_first", **kwargs)
    return ops.transpose(outputs, _TO_LAST)


def _add_bias(layer: keras.layers.Layer, outputs: Any, channels: int) -> Any:
    if layer.use_bias:
        outputs = ops.add(outputs, ops.reshape(layer.bias, (1, 1, 1, channels)))
    return outputs if layer.activation is None else layer.activation(outputs)


@keras.saving.register_keras_serializable(package="keras_dynunet")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` without the torch backend's two layout copies; where XLA
    compiles it, with :mod:`~keras_dynunet.layers.upstream_filter_gradient`'s filter
    gradient (stride-1 convolutions that keep or reduce the channels).

    >>> import numpy as np
    >>> layer = NoCopyConv2D(4, 3, padding="same")
    >>> tuple(layer(np.zeros((1, 8, 8, 2), "float32")).shape)
    (1, 8, 8, 4)
    """

    #: Set when the layer runs XLA-compiled on TensorFlow (then it takes the JAX forms).
    xla_compiled: bool = False

    def _upstream_filter_gradient(self, inputs: Any) -> bool:
        """Whether the kernel gradient is
        :func:`~keras_dynunet.layers.upstream_filter_gradient.upstream_filter_gradient`: where
        XLA compiles a stride-1 undilated ungrouped conv with a kernel over 1x1, and
        :func:`~keras_dynunet.layers.upstream_filter_gradient.prefers_upstream_filter_gradient`
        says so."""
        kernel_height, kernel_width = self.kernel_size
        return (
            _xla_forms(self, inputs)
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.groups == 1
            and self.padding in ("same", "valid")
            and kernel_height * kernel_width > 1
            and prefers_upstream_filter_gradient(inputs.shape[0], inputs.shape[-1], self.filters)
        )

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        """The convolution (bias and activation are added by ``call``)."""
        if self._upstream_filter_gradient(inputs):
            return conv_with_upstream_filter_gradient(inputs, kernel, self.padding)
        if not _torch_channels_last(self.data_format):
            return super().convolution_op(inputs, kernel)
        return _on_channels_first_view(
            ops.conv,
            inputs,
            kernel,
            strides=list(self.strides),
            padding=self.padding,
            dilation_rate=self.dilation_rate,
        )


@keras.saving.register_keras_serializable(package="keras_dynunet")
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` without the torch backend's layout copies, and
    computed as a sum of shifted windows on JAX (much faster on XLA:CPU).

    >>> import numpy as np
    >>> tuple(NoCopyDepthwiseConv2D(3, padding="same")(np.zeros((1, 8, 8, 2), "float32")).shape)
    (1, 8, 8, 2)
    """

    #: Set when the layer runs XLA-compiled on TensorFlow (then it takes the JAX forms).
    xla_compiled: bool = False

    def depthwise_op(self, inputs: Any, kernel: Any) -> Any:
        """The depthwise convolution of ``inputs`` with ``kernel`` (no bias or activation)."""
        if _xla_forms(self, inputs):
            return depthwise_conv_by_shifts(
                inputs, kernel, self.strides, self.padding, self.dilation_rate
            )
        options = {
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
        }
        if _torch_channels_last(self.data_format):
            return _on_channels_first_view(ops.depthwise_conv, inputs, kernel, **options)
        return ops.depthwise_conv(inputs, kernel, data_format=self.data_format, **options)

    def call(self, inputs: Any) -> Any:
        """Depthwise convolution, bias, activation."""
        if not (_xla_forms(self, inputs) or _torch_channels_last(self.data_format)):
            return super().call(inputs)
        outputs = self.depthwise_op(inputs, self.kernel)
        return _add_bias(self, outputs, self.depth_multiplier * inputs.shape[-1])


@keras.saving.register_keras_serializable(package="keras_dynunet")
class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose`` without the torch backend's layout copy, and
    run as one ordinary convolution per output phase on JAX (much faster on XLA:CPU).

    >>> import numpy as np
    >>> tuple(NoCopyConv2DTranspose(4, 2, strides=2)(np.zeros((1, 8, 8, 2), "float32")).shape)
    (1, 16, 16, 4)
    """

    #: Set when the layer runs XLA-compiled on TensorFlow (then it takes the JAX forms).
    xla_compiled: bool = False

    def call(self, inputs: Any) -> Any:
        """Transposed convolution, bias, activation."""
        undilated = tuple(self.dilation_rate) == (1, 1)
        if undilated and _xla_forms(self, inputs):
            outputs = conv_transpose_by_phases(
                inputs,
                self.kernel,
                self.strides,
                self.padding,
                self.output_padding,
                upstream_filter_gradient=True,
            )
            return _add_bias(self, outputs, self.filters)
        if not _torch_channels_last(self.data_format):
            return super().call(inputs)
        outputs = _on_channels_first_view(
            ops.conv_transpose,
            inputs,
            self.kernel,
            strides=list(self.strides),
            padding=self.padding,
            output_padding=self.output_padding,
            dilation_rate=self.dilation_rate,
        )
        return _add_bias(self, outputs, self.filters)


@keras.saving.register_keras_serializable(package="keras_dynunet")
class MaxPooling2D(keras.layers.MaxPooling2D):
    """``keras.layers.MaxPooling2D`` without the torch backend's layout copy; on JAX
    with :func:`~keras_dynunet.layers.shifted_max_pool.max_pool_by_shifts`' gradient.

    >>> import numpy as np
    >>> tuple(NoCopyMaxPooling2D(2)(np.zeros((1, 8, 8, 2), "float32")).shape)
    (1, 4, 4, 2)
    """

    #: Set when the layer runs XLA-compiled on TensorFlow (then it takes the JAX forms).
    xla_compiled: bool = False

    def call(self, inputs: Any) -> Any:
        """Max pooling."""
        if _xla_forms(self, inputs):
            return max_pool_by_shifts(inputs, self.pool_size, self.strides, self.padding)
        if not _torch_channels_last(self.data_format):
            return super().call(inputs)
        return _on_channels_first_view(
            ops.max_pool,
            inputs,
            pool_size=self.pool_size,
            strides=self.strides,
            padding=self.padding,
        )


@keras.saving.register_keras_serializable(package="keras_dynunet")
class UpSampling2D(keras.layers.UpSampling2D):
    """``keras.layers.UpSampling2D``; where XLA compiles nearest upsampling, with
    :func:`~keras_dynunet.layers.nearest_upsampling.upsample_nearest`'s gradient.

    >>> import numpy as np
    >>> tuple(NoCopyUpSampling2D(2)(np.zeros((1, 4, 4, 2), "float32")).shape)
    (1, 8, 8, 2)
    """

    #: Set when the layer runs XLA-compiled on TensorFlow (then it takes the JAX forms).
    xla_compiled: bool = False

    def call(self, inputs: Any) -> Any:
        """Upsampling."""
        if self.interpolation == "nearest" and _xla_forms(self, inputs):
            return upsample_nearest(inputs, self.size)
        return super().call(inputs)


# The classes carry the Keras class names on purpose: Keras weight files
# (``.weights.h5``) key each layer by its snake-cased class name, so these names
# keep weight files interchangeable with models built from the Keras layers.
NoCopyConv2D = Conv2D
NoCopyDepthwiseConv2D = DepthwiseConv2D
NoCopyConv2DTranspose = Conv2DTranspose
NoCopyMaxPooling2D = MaxPooling2D
NoCopyUpSampling2D = UpSampling2D

#: Keras layer class -> its no-copy replacement (exact classes only, not subclasses);
#: BatchNormalization -> the fused-gradient batch norm of ``layers.batch_norm``.
NO_COPY_LAYERS: dict[type, type] = {
    keras.layers.Conv2D: NoCopyConv2D,
    keras.layers.DepthwiseConv2D: NoCopyDepthwiseConv2D,
    keras.layers.Conv2DTranspose: NoCopyConv2DTranspose,
    keras.layers.MaxPooling2D: NoCopyMaxPooling2D,
    keras.layers.UpSampling2D: NoCopyUpSampling2D,
    keras.layers.BatchNormalization: FastBatchNormalization,
}

#: Backend -> the Keras layer classes whose no-copy replacement runs differently there.
_DIFFERENT_ON: dict[str, frozenset[type]] = {
    "torch": frozenset(NO_COPY_LAYERS),
    "jax": frozenset(
        {
            keras.layers.Conv2D,
            keras.layers.DepthwiseConv2D,
            keras.layers.Conv2DTranspose,
            keras.layers.MaxPooling2D,
            keras.layers.UpSampling2D,
        }
    ),
}
# on TensorFlow the same five switch to the JAX forms when XLA-compiled
_DIFFERENT_ON["tensorflow"] = _DIFFERENT_ON["jax"]


def use_no_copy_layers(model: keras.Model, force: bool = False) -> keras.Model:
    """A copy of a functional ``model`` with its 2D conv/pool and batch-norm layers replaced.

    Only exact ``Conv2D``, ``DepthwiseConv2D``, ``Conv2DTranspose``, ``MaxPooling2D`` and
    ``UpSampling2D`` layers are replaced, and ``BatchNormalization`` by
    :class:`~keras_dynunet.layers.batch_norm.FastBatchNormalization` (subclasses keep their
    own ``call``);
    weights are copied. The result computes the same function. The layers differ
    from Keras' on the torch backend, and on JAX for convolutions, max pooling and nearest
    upsampling (not batch norm); when ``model`` has none of those, it is returned itself
    unless ``force`` is set.

    Args:
        model: A functional Keras model.
        force: Convert on every backend (for tests).

    Returns:
        The converted model (``model`` itself if there is nothing to do).

    >>> inputs = keras.Input((16, 16, 3))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    >>> converted = use_no_copy_layers(model, force=True)
    >>> type(converted.layers[1]) is NoCopyConv2D, converted.layers[1].name == model.layers[1].name
    (True, True)
    """
    replaceable = set(NO_COPY_LAYERS) if force else _DIFFERENT_ON.get(keras.backend.backend(), ())
    if not {type(layer) for layer in model.layers} & set(replaceable):
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        cls = NO_COPY_LAYERS.get(type(layer), type(layer))
        return cls.from_config(layer.get_config())

    converted = keras.models.clone_model(model, clone_function=clone)
    for old, new in zip(model.layers, converted.layers, strict=True):
        new.set_weights(old.get_weights())
    return converted
