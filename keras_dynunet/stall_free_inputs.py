"""``fit`` / ``evaluate`` / ``predict`` inputs without tf.data's shutdown stall.

Why this exists (the "TensorFlow training uses one core of two in some fit calls"
report): on the TensorFlow backend Keras turns every input (NumPy arrays, a
``keras.utils.PyDataset``, a ``tf.data.Dataset``) into a tf.data pipeline with
``prefetch(AUTOTUNE)``. Each iterator of such a pipeline starts tf.data's autotuning
thread, which sleeps for 10 ms, 20 ms, 40 ms, ... between optimisation rounds. When
Keras drops the iterator (at the end of every epoch, of every validation pass and of
``fit``) the iterator's destructor waits for that thread, and the thread often does not
wake before its current sleep ends. So ``fit`` stalls, both cores idle, until the next
round: an epoch of 2.7 s returns after 10 ms x (2^9 - 1) = 5.11 s, exactly half speed
(``benchmarks/bench_cpu_util.py`` measures it; ``benchmarks/README.md`` has the figures).

The fix: hand Keras the same pipeline with ``options.autotune.enabled = False``. Then
no autotuning thread exists, and nothing waits. Keras' legacy prefetch autotuning
(buffer growth when the consumer starves) still runs. Keras accepts a
``DataAdapter`` in place of ``x``; :class:`StallFreeAdapter` wraps the adapter Keras
would have built and changes only its ``tf.data`` dataset. Other backends are left
untouched (they do not use tf.data).
"""

from __future__ import annotations

from typing import Any

import keras
from keras.src.trainers.data_adapters import array_slicing, data_adapter_utils, get_data_adapter
from keras.src.trainers.data_adapters.data_adapter import DataAdapter


def _tensorflow_backend() -> bool:
    return keras.backend.backend() == "tensorflow"


class StallFreeAdapter(DataAdapter):
    """Keras' own data adapter for an input, with tf.data autotuning switched off.

    Args:
        inner: The adapter Keras builds for the input
            (``keras.src.trainers.data_adapters.get_data_adapter``).

    >>> import numpy as np
    >>> a = StallFreeAdapter.for_input(np.zeros((10, 4, 4, 1)), np.zeros((10, 4, 4, 1)),
    ...                                batch_size=4)
    >>> a.num_batches, a.partial_batch_size
    (3, 2)
    """

    def __init__(self, inner: DataAdapter) -> None:
        self._inner = inner

    @classmethod
    def for_input(cls, x: Any, y: Any = None, **kwargs: Any) -> DataAdapter:
        """Build Keras' adapter for ``(x, y, ...)`` and wrap it (an adapter is kept).

        Args:
            x: Anything ``model.fit`` accepts as ``x``.
            y: Targets, for array inputs.
            **kwargs: ``sample_weight``, ``batch_size``, ``steps_per_epoch``,
                ``shuffle``, ``class_weight``, as ``get_data_adapter`` takes them.

        Returns:
            A :class:`StallFreeAdapter` (``x`` itself if it is one already).

        >>> import numpy as np
        >>> a = StallFreeAdapter.for_input(np.zeros((3, 2)), batch_size=2)
        >>> StallFreeAdapter.for_input(a) is a
        True
        """
        if isinstance(x, StallFreeAdapter):
            return x
        return cls(get_data_adapter(x, y, **kwargs))

    def get_tf_dataset(self) -> Any:
        """The inner adapter's ``tf.data`` pipeline with ``autotune.enabled = False``."""
        import tensorflow as tf

        dataset = self._inner.get_tf_dataset()
        if not isinstance(dataset, tf.data.Dataset):  # a tf.distribute dataset: keep it
            return dataset
        options = tf.data.Options()
        options.autotune.enabled = False
        return dataset.with_options(options)

    def get_numpy_iterator(self) -> Any:
        """The inner adapter's NumPy iterator."""
        return self._inner.get_numpy_iterator()

    def get_jax_iterator(self) -> Any:
        """The inner adapter's JAX iterator."""
        return self._inner.get_jax_iterator()

    def get_torch_dataloader(self) -> Any:
        """The inner adapter's PyTorch data loader."""
        return self._inner.get_torch_dataloader()

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch, if known."""
        return self._inner.num_batches

    @property
    def batch_size(self) -> int | None:
        """Batch size, if known."""
        return self._inner.batch_size

    @property
    def has_partial_batch(self) -> bool | None:
        """Whether the last batch is smaller."""
        return self._inner.has_partial_batch

    @property
    def partial_batch_size(self) -> int | None:
        """Size of the last, smaller batch."""
        return self._inner.partial_batch_size

    def on_epoch_begin(self) -> None:
        """Forwarded (a ``PyDataset`` starts its workers here)."""
        self._inner.on_epoch_begin()

    def on_epoch_end(self) -> None:
        """Forwarded (a ``PyDataset`` calls its own ``on_epoch_end`` here)."""
        self._inner.on_epoch_end()


def _wrap_pair(data: Any, batch_size: int | None, steps: int | None) -> Any:
    """An ``(x, y[, sample_weight])`` tuple or a dataset -> one stall-free adapter."""
    if data is None or isinstance(data, StallFreeAdapter):
        return data
    x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
    return StallFreeAdapter.for_input(
        x, y, sample_weight=sample_weight, batch_size=batch_size, steps_per_epoch=steps
    )


class StallFreeFitMixin:
    """Model methods that feed Keras stall-free inputs on the TensorFlow backend.

    ``fit``, ``evaluate`` and ``predict`` keep Keras' signatures and semantics
    (``validation_split`` is applied first, exactly as Keras does); only the tf.data
    pipeline Keras builds loses its autotuning thread. On JAX and PyTorch they are
    Keras' own methods.

    >>> import numpy as np, keras_dynunet as kd
    >>> m = kd.VanillaUNet(input_shape=(8, 8, 1), classes=1, base_filters=2, depth=2,
    ...                    padding="same")
    >>> m.compile(optimizer="sgd", loss="mse")
    >>> h = m.fit(np.ones((4, 8, 8, 1)), np.ones((4, 8, 8, 1)), batch_size=2, verbose=0)
    >>> len(h.history["loss"]), m.predict(np.ones((3, 8, 8, 1)), verbose=0).shape
    (1, (3, 8, 8, 1))
    """

    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: Any = "auto",
        callbacks: Any = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: Any = True,
        class_weight: Any = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
    ) -> Any:
        """``keras.Model.fit`` with stall-free inputs (see the class docstring)."""
        if _tensorflow_backend() and x is not None:
            if validation_split and validation_data is None:
                (x, y, sample_weight), validation_data = array_slicing.train_validation_split(
                    (x, y, sample_weight), validation_split=validation_split
                )
                validation_split = 0.0
            x = StallFreeAdapter.for_input(
                x,
                y,
                sample_weight=sample_weight,
                batch_size=batch_size,
                steps_per_epoch=steps_per_epoch,
                shuffle=shuffle,
                class_weight=class_weight,
            )
            y = sample_weight = class_weight = None
            validation_data = _wrap_pair(
                validation_data, validation_batch_size or batch_size, validation_steps
            )
        return super().fit(  # type: ignore[misc]
            x=x,
            y=y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            class_weight=class_weight,
            sample_weight=sample_weight,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            validation_batch_size=validation_batch_size,
            validation_freq=validation_freq,
        )

    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: Any = "auto",
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Any = None,
        return_dict: bool = False,
        **kwargs: Any,
    ) -> Any:
        """``keras.Model.evaluate`` with stall-free inputs."""
        if _tensorflow_backend() and x is not None:
            x = StallFreeAdapter.for_input(
                x, y, sample_weight=sample_weight, batch_size=batch_size, steps_per_epoch=steps
            )
            y = sample_weight = None
        return super().evaluate(  # type: ignore[misc]
            x=x,
            y=y,
            batch_size=batch_size,
            verbose=verbose,
            sample_weight=sample_weight,
            steps=steps,
            callbacks=callbacks,
            return_dict=return_dict,
            **kwargs,
        )

    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: Any = "auto",
        steps: int | None = None,
        callbacks: Any = None,
    ) -> Any:
        """``keras.Model.predict`` with stall-free inputs."""
        if _tensorflow_backend():
            x = StallFreeAdapter.for_input(
                x, batch_size=batch_size, steps_per_epoch=steps, shuffle=False
            )
        return super().predict(  # type: ignore[misc]
            x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks
        )
