"""Data-parallel training with the engines' own machinery: choose, enter and feed a distribution.

:func:`data_parallel` picks one of Keras 3's or TensorFlow's data-parallel engines for the
current backend and returns a :class:`DataParallelScope`. Build, compile **and fit** the
model inside it (``with data_parallel(...) as dp:``):

- ``"none"`` (any backend): one device, nothing changes.
- ``"mirrored"`` (TensorFlow): ``tf.distribute.MirroredStrategy`` over the devices of one
  machine.
- ``"multi-worker"`` (TensorFlow): ``tf.distribute.MultiWorkerMirroredStrategy`` over the
  processes or hosts described by ``TF_CONFIG``.
- ``"jax-data-parallel"`` (JAX): ``keras.distribution.DataParallel`` over all devices of the
  process (of every process after ``keras.distribution.initialize()``).
- ``"auto"``: ``multi-worker`` if ``TF_CONFIG`` names several tasks, else the backend's
  kind if it sees two or more devices, else ``none``.

Batch sizes are **global**: a batch of 8 on 2 replicas is 4 examples per replica, and the
gradients are averaged over all 8, so results agree with single-device training up to
floating-point rounding. Two things are needed for that on TensorFlow, and
:meth:`DataParallelScope.prepare` / :meth:`DataParallelScope.distribute` do them:

- BatchNorm statistics must be computed over the global batch
  (:func:`synchronize_batch_norm`; Keras' ``BatchNormalization(synchronized=True)``).
  Without it each replica normalises with its own half-batch statistics and, in Keras 3, the
  replicas' copies of the moving mean/variance silently drift apart. On JAX,
  ``DataParallel`` compiles one SPMD program over the global batch, so statistics are global
  already.
- Each replica must get its own slice of every global batch.

``tf.distribute.MultiWorkerMirroredStrategy`` is used through a thin subclass that lets
``reduce`` accept the nested batches and scalar logs Keras 3 hands it (without it ``fit``
fails with "Attempt to convert a value (PerReplica...)" or "Invalid reduction dimension 0
for input with 0 dimensions", tensorflow/tensorflow#72388). The torch backend has no
data-parallel support in Keras 3; use TensorFlow or JAX.

>>> dp = data_parallel("none")
>>> with dp:
...     model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
>>> dp.kind, dp.num_replicas, dp.is_chief
('none', 1, True)
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np

__all__ = [
    "KINDS",
    "DataParallelScope",
    "DistributionError",
    "check_kind",
    "data_parallel",
    "replica_slices",
    "synchronize_batch_norm",
]

KINDS = ("auto", "none", "mirrored", "multi-worker", "jax-data-parallel")
_TF_KINDS = ("mirrored", "multi-worker")
_DOCS = "see docs/distributed.md"


class DistributionError(ValueError):
    """A data-parallel setting that cannot work here; the message names the fix."""


def _tf_config() -> dict[str, Any] | None:
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster = config["cluster"]
        tasks = sum(len(cluster[job]) for job in cluster)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise DistributionError(
            f"TF_CONFIG is not a valid cluster description ({type(error).__name__}: {error}). "
            'Expected JSON like {"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}; ' + _DOCS + "."
        ) from None
    config["_tasks"] = tasks
    return config


def _backend_error(kind: str, backend: str) -> DistributionError:
    if backend == "torch":
        return DistributionError(
            f"distribution={kind!r} is not available on the torch backend: Keras 3 has no "
            "data-parallel training for torch. Set KERAS_BACKEND=tensorflow (kinds 'mirrored', "
            "'multi-worker') or KERAS_BACKEND=jax ('jax-data-parallel'), or train on one device "
            "with distribution='none'."
        )
    if kind in _TF_KINDS:
        return DistributionError(
            f"distribution={kind!r} is a TensorFlow strategy but the Keras backend is "
            f"{backend!r}. Use distribution='jax-data-parallel' (or 'auto') on JAX, or set "
            "KERAS_BACKEND=tensorflow before importing keras."
        )
    return DistributionError(
        f"distribution={kind!r} needs the JAX backend but the Keras backend is {backend!r}. "
        "Use distribution='mirrored' or 'multi-worker' (or 'auto') on TensorFlow, or set "
        "KERAS_BACKEND=jax before importing keras."
    )


def check_kind(kind: Any) -> str:
    """Validate a distribution kind name (without looking at devices or the backend).

    >>> check_kind("mirrored")
    'mirrored'
    >>> check_kind("ddp")
    Traceback (most recent call last):
    ...
    keras_dynunet.distributed.DistributionError: distribution must be one of 'auto', 'none', \
'mirrored', 'multi-worker', 'jax-data-parallel'; got 'ddp'.
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise DistributionError(
            f"distribution must be one of {', '.join(repr(k) for k in KINDS)}; got {kind!r}."
        )
    return kind


def _normalise_device(name: str) -> str:
    """``"/device:GPU:1"``, ``"/gpu:1"``, ``"GPU:1"`` -> ``"gpu:1"``."""
    text = str(name).strip().lower()
    return text.rsplit("device:", 1)[-1].lstrip("/")


def _choose_devices(devices: Sequence[str], known: Sequence[str], unknown: str) -> list[str]:
    """The names in ``known`` that ``devices`` spell (any case or prefix); else raise.

    The error reads ``device '<name>' <unknown>``.
    """
    by_key = {_normalise_device(name): name for name in known}
    chosen = []
    for device in devices:
        key = _normalise_device(device)
        if key not in by_key:
            raise DistributionError(f"device {device!r} {unknown}")
        chosen.append(by_key[key])
    return chosen


def _resolve_tf_devices(devices: Sequence[str] | None) -> list[str]:
    import tensorflow as tf

    if devices is None:
        available = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return [d.name for d in available]
    all_names = [d.name for d in tf.config.list_logical_devices()]
    return _choose_devices(
        devices,
        all_names,
        f"does not exist; TensorFlow sees {sorted(_normalise_device(n) for n in all_names)}. "
        "(Several CPU replicas need "
        "tf.config.set_logical_device_configuration before TensorFlow starts.)",
    )


def _resolve_jax_devices(devices: Sequence[str] | None) -> list[str]:
    available = list(keras.distribution.list_devices())
    if devices is None:
        return available
    return _choose_devices(
        devices,
        available,
        f"is not one of JAX's devices {available}. (Several CPU devices "
        "need XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts.)",
    )


@functools.cache
def _multi_worker_class() -> type:
    import tensorflow as tf

    class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """``MultiWorkerMirroredStrategy`` whose ``reduce`` takes what Keras 3 passes it.

        Keras 3 (up to at least 3.15) calls ``strategy.reduce("MEAN", (x, y), axis=None)``
        on the first data batch and ``strategy.reduce("MEAN", scalar, axis=0)`` on every
        logged metric; the multi-worker strategy accepts neither a nest nor ``axis=0`` on a
        scalar (tensorflow/tensorflow#72388). This reduces each leaf, over the replicas only
        for scalars. Gradients and BatchNorm statistics do not go through ``reduce``.
        """

        def reduce(self, reduce_op: Any, value: Any, axis: int | None = None) -> Any:
            def one(leaf: Any) -> Any:
                local = (
                    leaf.values[0] if isinstance(leaf, tf.distribute.DistributedValues) else leaf
                )
                rank = len(getattr(local, "shape", ()))
                parent = super(KerasMultiWorkerMirroredStrategy, self)
                return parent.reduce(reduce_op, leaf, axis if rank else None)

            return tf.nest.map_structure(one, value)

    return KerasMultiWorkerMirroredStrategy


def synchronize_batch_norm(model: keras.Model, enabled: bool = True) -> list[keras.layers.Layer]:
    """Turn Keras' ``BatchNormalization(synchronized=...)`` on (or off) in every BN layer.

    With ``synchronized=True`` (TensorFlow only) a BatchNormalization layer all-reduces the
    sum, the sum of squares and the count of its inputs over the replicas of the current
    ``tf.distribute`` strategy, so the batch statistics (and the moving averages) are those
    of the global batch; outside a strategy it computes ordinary statistics. The flag is
    read when the layer is called, so set it before the first ``fit`` traces the model.

    Args:
        model: Any Keras model; nested models are searched.
        enabled: The value to set.

    Returns:
        The layers whose flag changed.

    Raises:
        DistributionError: ``enabled=True`` on a backend other than TensorFlow (on JAX,
            ``DataParallel`` computes global statistics without it).

    Examples:
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
        >>> [layer.synchronized for layer in synchronize_batch_norm(m)]
        [True]
        >>> len(synchronize_batch_norm(m)), len(synchronize_batch_norm(m, False))
        (0, 1)
    """
    if enabled and keras.backend.backend() != "tensorflow":
        raise DistributionError(
            "synchronized BatchNorm exists on the TensorFlow backend only; on JAX, "
            "keras.distribution.DataParallel already normalises with global batch statistics."
        )
    changed = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.synchronized != enabled:
            layer.synchronized = enabled
            changed.append(layer)
    return changed


def replica_slices(global_batch: int, num_replicas: int) -> list[slice]:
    """The slice of a global batch that each replica trains on (contiguous, equal sizes).

    Raises:
        DistributionError: ``global_batch`` is not a multiple of ``num_replicas``.

    >>> replica_slices(8, 2)
    [slice(0, 4, None), slice(4, 8, None)]
    """
    if global_batch % num_replicas:
        raise DistributionError(
            f"the global batch size {global_batch} is not divisible by the {num_replicas} "
            f"replicas; choose a multiple of {num_replicas} (batch sizes are global: each "
            "replica gets batch_size / replicas examples)."
        )
    per = global_batch // num_replicas
    return [slice(r * per, (r + 1) * per) for r in range(num_replicas)]


class DataParallelScope:
    """A chosen data-parallel engine; use it as a context manager (see :func:`data_parallel`).

    Attributes:
        kind: The resolved kind (``"none"``, ``"mirrored"``, ``"multi-worker"`` or
            ``"jax-data-parallel"``).
        backend: The Keras backend.
        strategy: The engine object: a ``tf.distribute`` strategy, a
            ``keras.distribution.DataParallel``, or ``None``.
        num_replicas: Replicas in sync (devices over all workers).
        num_workers: Processes taking part (1 unless multi-worker / multi-process JAX).
        worker_index: This process's index among them.
        is_chief: Whether this process should write checkpoints and final models (the
            others write to temporary folders, or not at all).

    >>> with data_parallel("none") as dp:
    ...     dp.strategy is None, dp.num_workers
    (True, 1)
    """

    def __init__(
        self,
        kind: str,
        backend: str,
        strategy: Any = None,
        *,
        num_replicas: int = 1,
        num_workers: int = 1,
        worker_index: int = 0,
        is_chief: bool = True,
    ) -> None:
        self.kind, self.backend, self.strategy = kind, backend, strategy
        self.num_replicas, self.num_workers = num_replicas, num_workers
        self.worker_index, self.is_chief = worker_index, is_chief
        self._stack: list[contextlib.ExitStack] = []

    def __repr__(self) -> str:
        return (
            f"DataParallelScope(kind={self.kind!r}, backend={self.backend!r}, "
            f"num_replicas={self.num_replicas}, num_workers={self.num_workers}, "
            f"worker_index={self.worker_index}, is_chief={self.is_chief})"
        )

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """The engine's own scope (``strategy.scope()``, ``distribution.scope()``).

        Entering the :class:`DataParallelScope` itself enters this.

        >>> with data_parallel("none").scope():
        ...     float(keras.Variable(2.0).numpy())
        2.0
        """
        if self.strategy is None:
            return contextlib.nullcontext()
        return self.strategy.scope()

    def __enter__(self) -> DataParallelScope:
        stack = contextlib.ExitStack()
        stack.enter_context(self.scope())
        self._stack.append(stack)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.pop().__exit__(*exc_info)

    def prepare(self, model: keras.Model) -> keras.Model:
        """Make ``model`` train like on one device: synchronized BatchNorm on TF strategies.

        Returns:
            ``model`` (changed in place).

        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
        >>> data_parallel("none").prepare(m).layers[0].synchronized
        False
        """
        if self.kind in _TF_KINDS:
            synchronize_batch_norm(model, True)
        return model

    def distribute(self, batches: Sequence[tuple[np.ndarray, np.ndarray]]) -> Any:
        """Feed a sequence of **global** ``(x, y)`` batches to ``fit``, one slice per replica.

        ``batches`` is a ``keras.utils.PyDataset`` or any sequence (``len`` and indexing)
        of NumPy batches whose batch size is a multiple of :attr:`num_replicas`. Batch
        ``i`` must be the same on every worker (e.g. a function of a seed and ``i``): each
        worker computes it and keeps only its own replicas' slices (see
        :func:`replica_slices`), so every example is used exactly once per step. Pass
        ``steps_per_epoch=len(batches)`` to ``fit``: Keras cannot count the steps of a
        distributed dataset (without it, it warns "Your input ran out of data" at the end
        of every epoch).

        Returns:
            For ``"none"`` and single-process JAX, the global batches as a
            ``keras.utils.PyDataset`` (``batches`` itself if it is one; Keras shards each
            global batch over the devices); a per-process slice of them for
            multi-process JAX; a ``tf.distribute`` distributed dataset for the TensorFlow
            strategies.

        Examples:
            >>> batches = [(np.zeros((2, 4)), np.zeros((2, 1)))] * 3
            >>> data = data_parallel("none").distribute(batches)
            >>> len(data), data[0][0].shape
            (3, (2, 4))
        """
        if self.kind == "none" or (self.kind == "jax-data-parallel" and self.num_workers == 1):
            return batches if isinstance(batches, keras.utils.PyDataset) else _Batches(batches)
        if self.kind == "jax-data-parallel":
            self.strategy.auto_shard_dataset = False  # each process feeds its own slice
            return _ProcessSlice(batches, self.num_workers, self.worker_index)
        return self._tf_distributed(batches)

    def _tf_distributed(self, batches: Sequence[tuple[np.ndarray, np.ndarray]]) -> Any:
        import tensorflow as tf

        x0, y0 = batches[0]
        global_batch = len(x0)
        slices = replica_slices(global_batch, self.num_replicas)
        per = global_batch // self.num_replicas

        def spec(array: np.ndarray) -> Any:
            return tf.TensorSpec((per, *array.shape[1:]), tf.as_dtype(array.dtype))

        def dataset_fn(context: Any) -> Any:
            local = self.num_replicas // context.num_input_pipelines
            first = context.input_pipeline_id * local
            mine = slices[first : first + local]

            def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
                for index in range(len(batches)):
                    x, y = batches[index]
                    if len(x) != global_batch or len(y) != global_batch:
                        raise DistributionError(
                            f"batch {index} has {len(x)} examples, but every batch must have "
                            f"the global batch size {global_batch}."
                        )
                    for part in mine:  # one element per local replica, in replica order
                        yield x[part], y[part]

            dataset = tf.data.Dataset.from_generator(
                generate, output_signature=(spec(x0), spec(y0))
            )
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.OFF  # sharded above, by replica
            )
            return dataset.with_options(options).prefetch(2)

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def all_workers_agree(self, values: Sequence[float]) -> bool:
        """Whether every worker passed the same ``values`` (a collective: call on all workers).

        Used to check that all workers resumed from the same checkpoint. Always ``True``
        for a single worker.

        >>> data_parallel("none").all_workers_agree([1.0, 2.0])
        True
        """
        if self.num_workers == 1:
            return True
        local = np.asarray(values, dtype=np.float64)[None]
        if self.kind == "multi-worker":
            import tensorflow as tf

            tensor = tf.constant(local)
            gathered = self.strategy.gather(
                self.strategy.experimental_distribute_values_from_function(lambda _: tensor),
                axis=0,
            )
            rows = np.asarray(gathered)
        else:
            from jax.experimental import multihost_utils

            rows = np.asarray(multihost_utils.process_allgather(local, tiled=True))
        return bool(np.all(rows == rows[:1]))


class _Batches(keras.utils.PyDataset):
    """A sequence of ``(x, y)`` batches as a ``PyDataset``."""

    def __init__(self, batches: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        super().__init__()
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.batches[i]


class _ProcessSlice(keras.utils.PyDataset):
    """This process's contiguous share of every global batch (multi-process JAX)."""

    def __init__(self, base: Any, num_processes: int, index: int) -> None:
        super().__init__()
        self.base, self.num_processes, self.index = base, num_processes, index

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.base[i]
        part = replica_slices(len(x), self.num_processes)[self.index]
        return x[part], y[part]


def data_parallel(kind: str = "auto", devices: Sequence[str] | None = None) -> DataParallelScope:
    """Choose a data-parallel engine for the current Keras backend.

    Build, compile and fit the model inside the returned scope, after
    :meth:`~DataParallelScope.prepare`, and feed ``fit`` through
    :meth:`~DataParallelScope.distribute`::

        with data_parallel("auto") as dp:
            model = dp.prepare(build_and_compile())
            model.fit(dp.distribute(batches), steps_per_epoch=len(batches), epochs=...)

    Args:
        kind: One of :data:`KINDS`: ``"none"``, ``"mirrored"`` (TensorFlow, one machine),
            ``"multi-worker"`` (TensorFlow, ``TF_CONFIG``), ``"jax-data-parallel"``
            (JAX), or ``"auto"`` (the first that applies: multi-worker if ``TF_CONFIG``
            names two or more tasks; mirrored/jax-data-parallel if the backend sees two or
            more devices of its default type; otherwise none; torch: none).
        devices: For ``"mirrored"`` and ``"jax-data-parallel"``: device names such as
            ``["gpu:0", "gpu:1"]`` (default: all GPUs, or all CPU devices if there is no
            GPU). Not allowed for the others.

    Returns:
        A :class:`DataParallelScope`.

    Raises:
        DistributionError: An unknown kind, a kind for another backend, any kind but
            ``"none"``/``"auto"`` on torch, unknown devices, ``"multi-worker"`` without
            ``TF_CONFIG`` or after TensorFlow has started. Each message names the fix.

    Creating ``"multi-worker"`` starts this worker's server and must happen before
    TensorFlow runs anything else; all workers must create it.

    >>> data_parallel("none")
    DataParallelScope(kind='none', backend='tensorflow', num_replicas=1, num_workers=1, \
worker_index=0, is_chief=True)
    >>> dp = data_parallel("mirrored", devices=["cpu:0"])  # one replica on the CPU
    >>> with dp:
    ...     v = keras.Variable(1.0)
    >>> dp.strategy.__class__.__name__, dp.num_replicas, type(v.value).__name__
    ('MirroredStrategy', 1, 'MirroredVariable')
    >>> data_parallel("jax-data-parallel")
    Traceback (most recent call last):
    ...
    keras_dynunet.distributed.DistributionError: distribution='jax-data-parallel' needs the \
JAX backend but the Keras backend is 'tensorflow'. Use distribution='mirrored' or \
'multi-worker' (or 'auto') on TensorFlow, or set KERAS_BACKEND=jax before importing keras.
    """
    kind = check_kind(kind)
    backend = keras.backend.backend()
    if kind == "none":
        if devices is not None:
            raise DistributionError("devices=... needs a distribution kind other than 'none'.")
        return DataParallelScope("none", backend)
    if kind == "auto":
        kind = _auto_kind(backend)
        if kind == "none":
            if devices is not None:
                raise DistributionError(
                    "devices=... was given but distribution='auto' found a single device; "
                    "name the kind explicitly."
                )
            return DataParallelScope("none", backend)
    if backend == "torch" or (backend == "tensorflow") != (kind in _TF_KINDS):
        raise _backend_error(kind, backend)
    if kind == "mirrored":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(devices=_resolve_tf_devices(devices))
        return DataParallelScope(
            kind, backend, strategy, num_replicas=int(strategy.num_replicas_in_sync)
        )
    if kind == "multi-worker":
        return _multi_worker(devices)
    import jax

    distribution = keras.distribution.DataParallel(devices=_resolve_jax_devices(devices))
    return DataParallelScope(
        kind,
        backend,
        distribution,
        num_replicas=int(distribution.device_mesh.devices.size),
        num_workers=int(jax.process_count()),
        worker_index=int(jax.process_index()),
        is_chief=jax.process_index() == 0,
    )


def _auto_kind(backend: str) -> str:
    if backend == "tensorflow":
        config = _tf_config()
        if config is not None and config["_tasks"] > 1:
            return "multi-worker"
        return "mirrored" if len(_resolve_tf_devices(None)) > 1 else "none"
    if backend == "jax":
        return "jax-data-parallel" if len(keras.distribution.list_devices()) > 1 else "none"
    return "none"


def _multi_worker(devices: Sequence[str] | None) -> DataParallelScope:
    if devices is not None:
        raise DistributionError(
            "devices=... is not used by 'multi-worker': every worker trains on all its GPUs "
            "(or its CPU); restrict them with CUDA_VISIBLE_DEVICES."
        )
    config = _tf_config()
    if config is None:
        raise DistributionError(
            "distribution='multi-worker' needs the TF_CONFIG environment variable on every "
            'worker, e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\' (index 1 on the second host); ' + _DOCS + "."
        )
    try:
        strategy = _multi_worker_class()()
    except RuntimeError as error:
        raise DistributionError(
            f"could not start MultiWorkerMirroredStrategy ({error}). Create it (call "
            "data_parallel('multi-worker') or keras_dynunet.training.train) before TensorFlow "
            "runs any other operation in this process."
        ) from None
    resolver = strategy.cluster_resolver
    jobs = resolver.cluster_spec().as_dict()
    chiefs = len(jobs.get("chief", []))
    task_id = int(resolver.task_id or 0)
    index = task_id if resolver.task_type == "chief" else chiefs + task_id
    return DataParallelScope(
        "multi-worker",
        "tensorflow",
        strategy,
        num_replicas=int(strategy.num_replicas_in_sync),
        num_workers=chiefs + len(jobs.get("worker", [])),
        worker_index=index,
        is_chief=index == 0,  # the chief, or worker 0 when there is no chief
    )
