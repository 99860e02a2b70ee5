"""Models that tell their layers when TensorFlow runs them XLA-compiled on CPU.

XLA:CPU runs depthwise convolutions, the filter gradient of transposed convolutions and
the max-pool gradient through slow generic code, on JAX and on TensorFlow with
``jit_compile=True`` alike. keras-dynunet's no-copy layers have XLA-friendly forms for
them (:mod:`keras_dynunet.layers.no_copy`), always used on JAX. On TensorFlow a layer
cannot see whether the function it is traced into will be XLA-compiled, but the model
knows: Keras reads ``model.jit_compile`` when it builds its train / test / predict
functions, and :class:`XLACompiledLayersMixin` marks the layers from that value (only when
every device is a CPU; GPUs have their own kernels for these ops). Measured in
``benchmarks/README.md`` (``bench_throughput.py``, ``tensorflow-xla`` rows).
"""

from __future__ import annotations

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


class XLACompiledLayersMixin:
    """Keeps the layers' ``xla_compiled`` equal to ``jit_compile`` on TensorFlow CPU.

    ``jit_compile`` is Keras' own property; reading or setting it (``compile`` sets it,
    ``fit`` / ``predict`` read it before tracing) marks the layers.

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
        value = keras.Model.jit_compile.fget(self)
        self._mark_xla_layers(value)
        return value

    @jit_compile.setter
    def jit_compile(self, value: Any) -> None:
        keras.Model.jit_compile.fset(self, value)
        self._mark_xla_layers(self._jit_compile)

    def _mark_xla_layers(self, value: Any) -> None:
        compiled = keras.backend.backend() == "tensorflow" and bool(value) and _cpu_only()
        mark_xla_compiled(self, compiled)
