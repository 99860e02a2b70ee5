"""The encoder registry: names -> :class:`~keras_dynunet.taps.EncoderSpec`.

Encoder families register themselves when :mod:`keras_dynunet.encoders` is
imported. :func:`get_encoder` builds the backbone, checks every declared tap
symbolically (the layer exists, its stride and channels are as declared)
and returns a functional model whose outputs are the taps, keyed ``"P0"`` ..
``"P5"``.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence

import keras

from keras_dynunet.graph import layer_output, measure_features
from keras_dynunet.taps import EncoderSpec, Tap
from keras_dynunet.weights import build_backbone, load_weights_file

_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec, *, overwrite: bool = False) -> EncoderSpec:
    """Add an encoder to the registry.

    Args:
        spec: The encoder's specification.
        overwrite: Replace an existing entry of the same name.

    Returns:
        ``spec``, so the call can be used as an expression.

    Raises:
        ValueError: If the name is taken and ``overwrite`` is false.

    >>> import keras
    >>> from keras_dynunet.taps import EncoderSpec, Tap
    >>> def tiny(input_shape):
    ...     x = inp = keras.Input(input_shape)
    ...     x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c1")(x)
    ...     return keras.Model(inp, x)
    >>> _ = register_encoder(EncoderSpec("doc-tiny", tiny, (Tap("P1", "c1", 2, 8),)))
    >>> list_encoders("doc-*")
    ['doc-tiny']
    >>> unregister_encoder("doc-tiny")
    """
    if not isinstance(spec, EncoderSpec):
        raise TypeError(f"register_encoder takes an EncoderSpec, got {type(spec).__name__}.")
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(
            f"An encoder named {spec.name!r} is already registered; pass overwrite=True "
            "to replace it or choose another name."
        )
    _REGISTRY[spec.name] = spec
    return spec


def unregister_encoder(name: str) -> None:
    """Remove an encoder from the registry (mainly for tests).

    >>> unregister_encoder("no-such-encoder")
    """
    _REGISTRY.pop(name, None)


def _ensure_builtin() -> None:
    import keras_dynunet.encoders  # noqa: F401  (importing registers the families)


def list_encoders(pattern: str = "*") -> list[str]:
    """Sorted registry names matching an fnmatch ``pattern``.

    >>> list_encoders("resnet*")
    ['resnet101', 'resnet152', 'resnet18', 'resnet34', 'resnet50']
    """
    _ensure_builtin()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern.lower()))


def get_encoder_spec(name: str) -> EncoderSpec:
    """The :class:`EncoderSpec` registered as ``name``.

    Raises:
        KeyError: For an unknown name; the message lists the closest names.

    >>> get_encoder_spec("resnet34").taps[-1]
    Tap(key='P5', layer='layer4', stride=32, channels=512)
    """
    _ensure_builtin()
    if not isinstance(name, str):
        raise TypeError(f"Encoder name must be a string, got {type(name).__name__}.")
    key = name.lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=5, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise KeyError(
        f"Unknown encoder {name!r}.{hint} See keras_dynunet.list_encoders() for all "
        f"{len(_REGISTRY)} names, or pass your own keras.Model."
    )


def check_taps(model: keras.Model, taps: Sequence[Tap], owner: str) -> list[keras.KerasTensor]:
    """Verify symbolically that each tap exists with its declared stride and channels.

    Args:
        model: The backbone whose layers the taps name.
        taps: The declared taps.
        owner: Encoder name for error messages.

    Returns:
        The taps' symbolic tensors, in order.

    Raises:
        ValueError: Naming the first wrong tap and what was measured.

    >>> import keras
    >>> inp = keras.Input((None, None, 3))
    >>> out = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c1")(inp)
    >>> m = keras.Model(inp, out)
    >>> check_taps(m, [Tap("P2", "c1", 4, 8)], "demo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Encoder 'demo', tap P2 (layer 'c1'): declared stride 4 ..., measured stride 2 ...
    """
    tensors = []
    for tap in taps:
        try:
            tensors.append(layer_output(model, tap.layer))
        except ValueError as error:
            raise ValueError(f"Encoder {owner!r}, tap {tap.key}: {error}") from None
    for tap, feature in zip(taps, measure_features(model, tensors), strict=True):
        if feature.stride != tap.stride or feature.channels != tap.channels:
            fix = (
                f"key 'P{feature.stride.bit_length() - 1}', stride {feature.stride}"
                if feature.stride
                else "a layer whose stride is a power of two"
            )
            raise ValueError(
                f"Encoder {owner!r}, tap {tap.key} (layer {tap.layer!r}): declared stride "
                f"{tap.stride} and {tap.channels} channels, measured stride {feature.stride} "
                f"and {feature.channels} channels. Fix the Tap declaration ({fix}, "
                f"channels {feature.channels})."
            )
    return tensors


def tap_model(
    backbone: keras.Model, taps: Sequence[Tap], name: str, owner: str | None = None
) -> keras.Model:
    """A functional model from ``backbone``'s input to its taps, keyed by tap key.

    The taps are validated with :func:`check_taps` first.

    >>> vgg = keras.applications.VGG16(weights=None, include_top=False)
    >>> tap_model(vgg, [Tap("P1", "block2_conv2", 2, 128)], name="vgg_taps").output["P1"].shape
    (None, None, None, 128)
    """
    tensors = check_taps(backbone, taps, owner or name)
    outputs = {tap.key: tensor for tap, tensor in zip(taps, tensors, strict=True)}
    return keras.Model(backbone.inputs[0], outputs, name=name)


def get_encoder(
    name: str,
    input_shape: Sequence[int | None] = (None, None, 3),
    weights: str | None = None,
) -> keras.Model:
    """Build a registered encoder whose outputs are its tagged taps.

    Args:
        name: Registry name (see :func:`list_encoders`).
        input_shape: Input shape without the batch axis; spatial dimensions
            may be ``None``. The channel count may differ from 3.
        weights: ``None`` (random init), ``"imagenet"`` or any other source
            the spec lists, or a path to a ``.weights.h5`` file or a PyTorch
            checkpoint (``.pth``/``.pt``/``.safetensors``) of the same layout.
            Pretrained RGB weights are adapted when the input has another
            channel count.

    Returns:
        A functional ``keras.Model`` named ``"{name}_encoder"`` whose output is
        a dict ``{"P1": tensor, ...}``, one entry per tap.

    >>> enc = get_encoder("resnet18")
    >>> {key: tensor.shape[-1] for key, tensor in enc.output.items()}
    {'P1': 64, 'P2': 64, 'P3': 128, 'P4': 256, 'P5': 512}
    """
    spec = get_encoder_spec(name)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] is None or int(input_shape[-1]) < 1:
        raise ValueError(
            f"Encoder {spec.name!r}: input_shape must be (height, width, channels) with a "
            f"known channel count, got {input_shape}. Example: (None, None, 3)."
        )
    for dim in input_shape[:2]:
        if dim is not None and int(dim) < spec.max_stride:
            raise ValueError(
                f"Encoder {spec.name!r} reduces the input by {spec.max_stride}; an input of "
                f"{input_shape[:2]} is too small. Use at least {spec.max_stride} pixels per side."
            )
    backbone = build_backbone(spec, input_shape, weights)
    encoder = tap_model(backbone, spec.taps, name=f"{spec.name}_encoder", owner=spec.name)
    if weights is not None and weights not in spec.weight_sources:
        load_weights_file(encoder, weights)
    return encoder
