"""Models that tell their layers when TensorFlow runs them XLA-compiled on CPU.

XLA:CPU runs depthwise convolutions, the filter gradient of transposed convolutions and
the max-pool gradient through slow generic code, on JAX and on TensorFlow with
``jit_compile=True`` alike. keras-dynunet's no-copy layers have XLA-friendly forms for
them (:mod:`keras_dynunet.layers.no_copy`), always used on JAX. On TensorFlow a layer
cannot see whether the function it is traced into will be XLA-compiled, but the model
knows: Keras reads ``model.jit_compile`` when it builds its train / test / predict
functions, and :class:`XLACompiledLayersMixin` marks the layers from that value there (only when
every device is a CPU; GPUs have their own kernels for these ops). The XLA forms need
the input's height and width at trace time. Keras' TensorFlow trainer traces its
functions with ``reduce_retracing=True``, which traces a second input size with unknown
spatial sizes (the layers would fall back to the slow ops); while XLA is on, the mixin has
Keras trace one function per input shape instead, as XLA compiles one per shape anyway
(and as JAX traces). Measured in ``benchmarks/README.md`` (``bench_throughput.py``,
``tensorflow-xla`` rows).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras

#: Layer attribute that selects the XLA-friendly forms on TensorFlow.
XLA_ATTRIBUTE = "xla_compiled"


def mark_xla_compiled(model: keras.Model, compiled: bool) -> int:
    """Set ``xla_compiled`` on every layer of ``model`` (nested too) that has it.

    Args:
        model: A Keras model.
        compiled: Whether TensorFlow will run the model XLA-compiled on CPU.

    Returns:
        How many layers were marked.

    >>> from keras_dynunet.layers.no_copy import NoCopyMaxPooling2D
    >>> inputs = keras.Input((8, 8, 3))
    >>> model = keras.Model(inputs, NoCopyMaxPooling2D(2)(inputs))
    >>> mark_xla_compiled(model, True), model.layers[1].xla_compiled
    (1, True)
    """
    marked = 0
    for layer in model._flatten_layers(include_self=False):
        if hasattr(type(layer), XLA_ATTRIBUTE):
            setattr(layer, XLA_ATTRIBUTE, compiled)
            marked += 1
    return marked


def _cpu_only() -> bool:
    return all(device.lower().startswith("cpu") for device in keras.distribution.list_devices())


@contextlib.contextmanager
def traced_per_shape(enabled: bool) -> Iterator[None]:
    """While active (and ``enabled``), ``tf.function`` ignores ``reduce_retracing=True``.

    Keras' TensorFlow trainer builds its ``tf.function`` objects inside
    ``make_train_function`` / ``make_test_function`` / ``make_predict_function``; building
    them in this context gives one trace per input shape.

    Args:
        enabled: ``False`` makes this a no-op (other backends, XLA off).

    >>> with traced_per_shape(False):
    ...     pass
    """
    if not enabled:
        yield
        return
    import tensorflow as tf

    original = tf.function

    def function(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **{**kwargs, "reduce_retracing": False})

    tf.function = function
    try:
        yield
    finally:
        tf.function = original


class XLACompiledLayersMixin:
    """Keeps the layers' ``xla_compiled`` equal to ``jit_compile`` on TensorFlow CPU.

    Setting Keras' ``jit_compile`` property (``compile`` does) and building Keras' train /
    test / predict functions (before they trace) mark the layers; with the XLA forms on,
    those functions are traced per input shape.

    >>> class Net(XLACompiledLayersMixin, keras.Model):
    ...     pass
    >>> inputs = keras.Input((8, 8, 3))
    >>> from keras_dynunet.layers.no_copy import NoCopyMaxPooling2D
    >>> net = Net(inputs, NoCopyMaxPooling2D(2)(inputs))
    >>> net.compile(jit_compile=True)
    >>> net.layers[1].xla_compiled == (keras.backend.backend() == "tensorflow")
    True
    """

    @property
    def jit_compile(self) -> Any:
        return keras.Model.jit_compile.fget(self)

    @jit_compile.setter
    def jit_compile(self, value: Any) -> None:
        keras.Model.jit_compile.fset(self, value)
        self._mark_xla_layers(self._jit_compile)

    def _mark_xla_layers(self, value: Any) -> bool:
        compiled = keras.backend.backend() == "tensorflow" and bool(value) and _cpu_only()
        mark_xla_compiled(self, compiled)
        return compiled

    def _xla_layers_marked(self) -> bool:
        return self._mark_xla_layers(self.jit_compile)

    def make_train_function(self, force: bool = False) -> Any:
        """Keras' train function, traced per input shape when the XLA forms are on."""
        with traced_per_shape(self._xla_layers_marked()):
            return super().make_train_function(force)

    def make_test_function(self, force: bool = False) -> Any:
        """Keras' test function, traced per input shape when the XLA forms are on."""
        with traced_per_shape(self._xla_layers_marked()):
            return super().make_test_function(force)

    def make_predict_function(self, force: bool = False) -> Any:
        """Keras' predict function, traced per input shape when the XLA forms are on."""
        with traced_per_shape(self._xla_layers_marked()):
            return super().make_predict_function(force)
