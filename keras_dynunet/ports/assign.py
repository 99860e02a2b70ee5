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


def leaf_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """``{name: layer}`` for every layer of ``model``, nested models flattened.

    A functional model used as a layer (an encoder inside a U-Net) is
    replaced by its own layers, recursively; a layer shared by several
    nested models is listed once.

    Args:
        model: Any Keras model.

    Returns:
        Layers by name, in model order.

    Raises:
        ValueError: Two different layers holding weights share a name.

    >>> inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a")], name="enc")
    >>> inp = keras.Input((3,))
    >>> outer = keras.Model(inp, keras.layers.Dense(1, name="b")(inner(inp)))
    >>> sorted(name for name, layer in leaf_layers(outer).items() if layer.weights)
    ['a', 'b']
    """
    found: dict[str, keras.layers.Layer] = {}

    def visit(layers: list[keras.layers.Layer]) -> None:
        for layer in layers:
            if isinstance(layer, keras.Model):
                visit(layer.layers)
                continue
            other = found.get(layer.name)
            if other is not None and other is not layer and (other.weights or layer.weights):
                raise ValueError(
                    f"Two layers named {layer.name!r} in {model.name!r} (nested models): "
                    "weights cannot be assigned by name."
                )
            found.setdefault(layer.name, layer)

    visit(model.layers)
    return found


def _require(prefix: str, params: Mapping[str, np.ndarray], names: list[str]) -> None:
    missing = [f"{prefix}.{name}" for name in names if name not in params]
    if missing:
        raise ValueError(
            f"Checkpoint is missing key(s) {missing} (present: "
            f"{sorted(f'{prefix}.{p}' for p in params)}): truncated or another architecture."
        )


def _layout(
    layer: keras.layers.Layer, prefix: str, params: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    if isinstance(layer, keras.layers.BatchNormalization):
        order = ["weight", "bias", "running_mean", "running_var"]
        needed = ["weight"] * layer.scale + ["bias"] * layer.center + order[2:]
        _require(prefix, params, needed)
        return [params[name] for name in order if name in params]
    _require(prefix, params, ["weight"])
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
    if getattr(layer, "use_bias", False):
        _require(prefix, params, ["bias"])
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
    adapt_input_channels: bool = False,
) -> list[str]:
    """Copy ``state_dict`` into ``model``'s layers, checking every shape.

    Args:
        model: The Keras model (its layers named after the checkpoint).
        state_dict: ``{"prefix.param": array}`` from a PyTorch model.
        rename: Maps a state-dict prefix (``"layer1.0.conv1"``) to a layer name.
        allow_unused: Parameter names to ignore (BatchNorm's step counter).
        skip_missing_layers: Ignore prefixes with no layer in ``model`` (e.g.
            a classifier head the headless model lacks) and return them.
        adapt_input_channels: When a convolution reading the model input has
            another input-channel count than the checkpoint (RGB weights, a
            1- or 4-channel model), adapt its kernel with
            :func:`~keras_dynunet.ports.channels.adapt_input_kernel`.

    Layers of nested models (an encoder inside a U-Net) are found by name too
    (see :func:`leaf_layers`).

    Returns:
        The prefixes that were skipped.

    Raises:
        ValueError: A layer or a key is missing, a shape differs, or model
            weights stay unassigned; the message names them.

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
    layers = leaf_layers(model)
    inputs = None
    skipped, assigned = [], set()
    for prefix, params in groups.items():
        name = rename(prefix)
        if name not in layers:
            if skip_missing_layers:
                skipped.append(prefix)
                continue
            raise ValueError(
                f"Checkpoint entry {prefix!r} maps to layer {name!r}, which model {model.name!r} "
                "does not have: the checkpoint is of another architecture."
            )
        layer = layers[name]
        arrays = _layout(layer, prefix, params)
        current = layer.get_weights()
        if (
            adapt_input_channels
            and isinstance(layer, keras.layers.Conv2D)
            and arrays
            and current
            and arrays[0].ndim == 4
            and arrays[0].shape[:2] + arrays[0].shape[3:]
            == current[0].shape[:2] + current[0].shape[3:]
            and arrays[0].shape[2] != current[0].shape[2]
        ):
            from keras_dynunet.ports.channels import _input_layers, adapt_input_kernel

            inputs = _input_layers(model) if inputs is None else inputs
            if id(layer) in inputs:
                arrays[0] = adapt_input_kernel(arrays[0], current[0].shape[2])
        if len(arrays) != len(current) or any(
            a.shape != c.shape for a, c in zip(arrays, current, strict=False)
        ):
            raise ValueError(
                f"Shape mismatch for layer {name!r} (checkpoint {prefix!r}): checkpoint "
                f"{[a.shape for a in arrays]} vs model {[c.shape for c in current]}."
            )
        layer.set_weights(arrays)
        assigned.add(name)
    unassigned = [name for name, lay in layers.items() if lay.weights and name not in assigned]
    if unassigned:
        raise ValueError(
            f"The checkpoint has no weights for {len(unassigned)} layers of {model.name!r}, "
            f"e.g. {unassigned[:5]}: missing keys, or another architecture."
        )
    return skipped
