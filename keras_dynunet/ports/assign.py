"""Assign a PyTorch state dict (numpy arrays) to Keras layers by name.

Layer names are derived from state-dict prefixes by a ``rename`` function
(``"_blocks.3._bn1"`` -> ``"blocks_3_bn1"``); each layer kind converts its
PyTorch layout (conv ``OIHW`` -> ``HWIO``, depthwise ``(C, 1, k, k)`` ->
``(k, k, C, 1)``, transposed conv ``(in, out, k, k)`` -> ``(k, k, out, in)``,
dense ``(out, in)`` -> ``(in, out)``, BatchNorm running statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
import numpy as np


def _layout(layer: keras.layers.Layer, params: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    if isinstance(layer, keras.layers.BatchNormalization):
        order = ["weight", "bias", "running_mean", "running_var"]
        return [params[name] for name in order if name in params]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        arrays = [params["weight"].transpose(2, 3, 0, 1)]
    elif isinstance(layer, (keras.layers.Conv2DTranspose, keras.layers.Conv2D)):
        # torch conv (out, in, kh, kw) and conv-transpose (in, out, kh, kw) both become
        # Keras (kh, kw, in, out) and (kh, kw, out, in) with the same permutation.
        arrays = [params["weight"].transpose(2, 3, 1, 0)]
    elif isinstance(layer, keras.layers.Dense):
        arrays = [params["weight"].T]
    else:
        raise ValueError(
            f"No PyTorch layout rule for layer {layer.name!r} ({type(layer).__name__})."
        )
    if "bias" in params:
        arrays.append(params["bias"])
    return arrays


def assign_state_dict(
    model: keras.Model,
    state_dict: Mapping[str, np.ndarray],
    rename: Callable[[str], str],
    *,
    allow_unused: tuple[str, ...] = ("num_batches_tracked",),
    skip_missing_layers: bool = False,
) -> list[str]:
    """Copy ``state_dict`` into ``model``'s layers, checking every shape.

    Args:
        model: The Keras model (its layers named after the checkpoint).
        state_dict: ``{"prefix.param": array}`` from a PyTorch model.
        rename: Maps a state-dict prefix (``"layer1.0.conv1"``) to a layer name.
        allow_unused: Parameter names to ignore (BatchNorm's step counter).
        skip_missing_layers: Ignore prefixes with no layer in ``model`` (e.g.
            a classifier head the headless model lacks) and return them.

    Returns:
        The prefixes that were skipped.

    Raises:
        ValueError: A layer is missing, a shape differs, or model weights
            stay unassigned; the message names them.

    >>> dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")])
    >>> sd = {"fc.weight": np.ones((2, 3), "float32"), "fc.bias": np.zeros(2, "float32")}
    >>> assign_state_dict(dense, sd, rename=lambda p: p)
    []
    >>> tuple(dense.get_layer("fc").kernel.shape)
    (3, 2)
    """
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        prefix, _, param = key.rpartition(".")
        if param in allow_unused:
            continue
        groups.setdefault(prefix, {})[param] = np.asarray(value)
    names = {layer.name for layer in model.layers}
    skipped, assigned = [], set()
    for prefix, params in groups.items():
        name = rename(prefix)
        if name not in names:
            if skip_missing_layers:
                skipped.append(prefix)
                continue
            raise ValueError(
                f"Checkpoint entry {prefix!r} maps to layer {name!r}, which model {model.name!r} "
                "does not have: the checkpoint is of another architecture."
            )
        layer = model.get_layer(name)
        arrays = _layout(layer, params)
        current = layer.get_weights()
        if len(arrays) != len(current) or any(
            a.shape != c.shape for a, c in zip(arrays, current, strict=False)
        ):
            raise ValueError(
                f"Shape mismatch for layer {name!r} (checkpoint {prefix!r}): checkpoint "
                f"{[a.shape for a in arrays]} vs model {[c.shape for c in current]}."
            )
        layer.set_weights(arrays)
        assigned.add(name)
    unassigned = [lay.name for lay in model.layers if lay.weights and lay.name not in assigned]
    if unassigned:
        raise ValueError(
            f"The checkpoint has no weights for {len(unassigned)} layers of {model.name!r}, "
            f"e.g. {unassigned[:5]}: missing keys, or another architecture."
        )
    return skipped
