"""``DynUNet``: a U-Net generated for any encoder, as a plain functional Keras model.

The encoder is a nested functional model (``model.encoder``) whose outputs
are its taps; the decoder is generated from the taps (see
:func:`keras_dynunet.decoders.unet_decoder`). Inputs whose spatial size is
not a multiple of the encoder's deepest stride (or is ``None``) are
zero-padded at the bottom/right and the output is cropped back, so any input
size works and the output always has the input's size.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from keras_dynunet.decoders import unet_decoder
from keras_dynunet.discover import discover_taps, taps_from_layers
from keras_dynunet.folded_batch_norm import call_folded
from keras_dynunet.graph import measure_features
from keras_dynunet.hub_mixin import HubMixin
from keras_dynunet.layers import MatchSpatial, pad_to_stride
from keras_dynunet.layers.no_copy import NoCopyConv2D
from keras_dynunet.precision import PRECISIONS, precision_scope
from keras_dynunet.registry import get_encoder, get_encoder_spec, tap_model
from keras_dynunet.stall_free_inputs import StallFreeFitMixin
from keras_dynunet.taps import Tap
from keras_dynunet.xla_compiled import XLACompiledLayersMixin

HEAD_ACTIVATIONS = (None, "linear", "sigmoid", "softmax")
_TAP_KEY = re.compile(r"^P\d$")


def _is_tap_model(model: keras.Model) -> bool:
    outputs = model.output
    return isinstance(outputs, dict) and all(_TAP_KEY.match(key) for key in outputs)


def _tap_layer_name(tensor: keras.KerasTensor) -> str:
    return tensor._keras_history.operation.name


def resolve_encoder(
    encoder: str | keras.Model,
    input_shape: Sequence[int | None],
    encoder_weights: str | None = None,
    taps: Sequence[str] | Mapping[str, str] | Sequence[Tap] | None = None,
) -> tuple[keras.Model, tuple[Tap, ...], str]:
    """Turn a registry name or any functional model into a tap model.

    Args:
        encoder: Registry name, or a functional ``keras.Model``.
        input_shape: The U-Net's input shape (spatial sizes may be ``None``).
        encoder_weights: Weights for a registry encoder (see ``get_encoder``).
        taps: For a model: layer names, ``{key: layer}``, or :class:`Tap`
            objects; ``None`` discovers them.

    Returns:
        ``(tap_model, taps, encoder_name)``.

    >>> enc, taps, name = resolve_encoder("resnet18", (None, None, 3))
    >>> name, [t.stride for t in taps]
    ('resnet18', [2, 4, 8, 16, 32])
    """
    if isinstance(encoder, str):
        spec = get_encoder_spec(encoder)
        if taps is not None:
            raise ValueError(
                f"taps=... selects layers of your own model; registry encoder {spec.name!r} "
                "declares its taps already."
            )
        return get_encoder(spec.name, input_shape, encoder_weights), spec.taps, spec.name
    if not isinstance(encoder, keras.Model):
        raise TypeError(
            f"encoder must be a registry name or a keras.Model, got {type(encoder).__name__}."
        )
    if encoder_weights is not None:
        raise ValueError(
            "encoder_weights applies to registry encoders; load weights into your model first."
        )
    if not encoder.inputs:
        raise ValueError(
            f"Model {encoder.name!r} has no symbolic input; build it functionally "
            "(keras.Input -> layers -> keras.Model) or call it on a keras.Input first."
        )
    if _is_tap_model(encoder):
        found = tuple(
            sorted(
                taps_from_layers(
                    encoder, {key: _tap_layer_name(t) for key, t in encoder.output.items()}
                ),
                key=lambda tap: tap.stride,
            )
        )
        return encoder, found, encoder.name
    if taps is None:
        found = discover_taps(encoder)
    elif all(isinstance(tap, Tap) for tap in taps):
        found = taps_from_layers(encoder, {tap.key: tap.layer for tap in taps})
    else:
        found = taps_from_layers(encoder, taps)
    return tap_model(encoder, found, name=f"{encoder.name}_taps"), found, encoder.name


@keras.saving.register_keras_serializable(package="keras_dynunet")
class DynUNet(XLACompiledLayersMixin, StallFreeFitMixin, HubMixin, keras.Model):
    """A U-Net whose decoder is generated from its encoder's taps.

    Args:
        encoder: Registry name (``"resnet34"``) or any functional keras.Model.
        classes: Output channels.
        input_shape: ``(height, width, channels)``; spatial sizes may be ``None``.
        encoder_weights: ``None``, ``"imagenet"``, or a ``.weights.h5`` / PyTorch
            checkpoint path (registry encoders; see ``get_encoder``).
        taps: For a model encoder: layer names or ``{key: layer}``; ``None``
            discovers the deepest layer at each stride.
        decoder_channels: Widths, deep to shallow; default 16 x stride.
        upsampling: ``"nearest"``, ``"bilinear"``, ``"transpose"`` or
            ``"pixelshuffle"``.
        center: Two extra conv blocks on the deepest feature.
        norm: Decoder normalisation: ``"batch"``, ``"group"``, ``"layer"``, ``"none"``.
        decoder_activation: Activation inside the decoder blocks.
        activation: Head activation: ``None`` (logits), ``"sigmoid"``, ``"softmax"``.
        blocks_per_stage: Conv blocks per decoder stage.
        head_kernel_size: Kernel of the final convolution (segmentation_models_pytorch
            uses 3).
        norm_epsilon: Decoder normalisation epsilon (PyTorch ports use ``1e-5``).
        precision: ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"``: the dtype
            policy of every layer built here (variables stay float32, the output is
            float32). ``None`` (default) uses Keras' global policy
            (``keras.config.set_dtype_policy``). A model passed as ``encoder`` keeps its
            own policy.
        name: Model name.

    >>> model = DynUNet("resnet18", classes=2, input_shape=(None, None, 3))
    >>> model.output_shape, [t.key for t in model.taps]
    ((None, None, None, 2), ['P1', 'P2', 'P3', 'P4', 'P5'])
    """

    def __init__(
        self,
        encoder: str | keras.Model = "resnet34",
        classes: int = 1,
        *,
        input_shape: Sequence[int | None] = (None, None, 3),
        encoder_weights: str | None = None,
        taps: Sequence[Any] | Mapping[str, str] | None = None,
        decoder_channels: Sequence[int] | None = None,
        upsampling: str = "nearest",
        center: bool = False,
        norm: str = "batch",
        decoder_activation: str = "relu",
        activation: str | None = None,
        blocks_per_stage: int = 2,
        head_kernel_size: int = 1,
        norm_epsilon: float = 1e-3,
        precision: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"input_shape must be (height, width, channels) with known channels, got "
                f"{input_shape}. Example: (None, None, 3)."
            )
        if not isinstance(classes, int) or classes < 1:
            raise ValueError(f"classes must be a positive integer, got {classes!r}.")
        if activation not in HEAD_ACTIVATIONS:
            raise ValueError(f"activation must be one of {HEAD_ACTIVATIONS}, got {activation!r}.")
        if isinstance(taps, Sequence) and taps and isinstance(taps[0], Mapping):
            taps = [Tap.from_dict(t) for t in taps]

        if precision is None:  # Keras' global dtype policy, recorded if it is one of ours
            global_policy = keras.config.dtype_policy().name
            precision = global_policy if global_policy in PRECISIONS else None
        with precision_scope(precision):
            # === Encoder ===
            encoder_input_shape = input_shape
            if isinstance(encoder, str):
                max_stride = get_encoder_spec(encoder).max_stride
                encoder_input_shape = (
                    tuple(
                        None if d is None else -(-d // max_stride) * max_stride
                        for d in input_shape[:2]
                    )
                    + input_shape[2:]
                )
            encoder_model, found_taps, encoder_name = resolve_encoder(
                encoder, encoder_input_shape, encoder_weights, taps
            )
            max_stride = found_taps[-1].stride
            enc_channels = encoder_model.inputs[0].shape[-1]
            if enc_channels != input_shape[-1]:
                raise ValueError(
                    f"The encoder takes {enc_channels} input channels but input_shape has "
                    f"{input_shape[-1]}; build the encoder for {input_shape[-1]} channels."
                )
            for dim in input_shape[:2]:
                if dim is not None and dim < max_stride:
                    raise ValueError(
                        f"Input size {input_shape[:2]} is smaller than the encoder's total stride "
                        f"{max_stride}; use inputs of at least {max_stride} pixels per side."
                    )
            tensors = [encoder_model.output[tap.key] for tap in found_taps]
            exact = all(f.exact for f in measure_features(encoder_model, tensors))

            # === Functional Model ===
            inputs = keras.Input(input_shape, name="image")
            x, needs_pad = pad_to_stride(inputs, max_stride)
            features = encoder_model(x)
            x = unet_decoder(
                features,
                found_taps,
                decoder_channels=decoder_channels,
                upsampling=upsampling,
                center=center,
                norm=norm,
                activation=decoder_activation,
                blocks_per_stage=blocks_per_stage,
                align_skips=not exact,
                norm_epsilon=norm_epsilon,
            )
            x = NoCopyConv2D(classes, head_kernel_size, padding="same", name="head")(x)
            if needs_pad or not exact:
                x = MatchSpatial(name="crop_to_input")([x, inputs])
            outputs = keras.layers.Activation(
                activation or "linear", dtype="float32", name="output"
            )(x)
        super().__init__(
            inputs=inputs, outputs=outputs, name=name or f"unet_{encoder_name}", **kwargs
        )

        # === Config ===
        self.encoder = encoder_model
        self.encoder_name = encoder_name
        self.taps = found_taps
        self._config = {
            "encoder": encoder
            if isinstance(encoder, str)
            else keras.saving.serialize_keras_object(encoder_model),
            "classes": classes,
            "input_shape": list(input_shape),
            "encoder_weights": None,
            "taps": None if isinstance(encoder, str) else [t.to_dict() for t in found_taps],
            "decoder_channels": None if decoder_channels is None else list(decoder_channels),
            "upsampling": upsampling,
            "center": center,
            "norm": norm,
            "decoder_activation": decoder_activation,
            "activation": activation,
            "blocks_per_stage": blocks_per_stage,
            "head_kernel_size": head_kernel_size,
            "norm_epsilon": norm_epsilon,
            "precision": precision,
        }

    #: Inference folds each convolution's batch norm into the convolution
    #: (:mod:`keras_dynunet.folded_batch_norm`; same outputs to float rounding, fewer passes
    #: over the activations). Set to ``False`` before the first call to run the layers as built.
    fold_batch_norm: bool = True

    def call(
        self, inputs: Any, training: bool | None = None, mask: Any = None, **kwargs: Any
    ) -> Any:
        """The functional graph; in inference on real tensors, with batch norms folded."""
        if (
            training
            or mask is not None
            or kwargs
            or not self.fold_batch_norm
            or any(isinstance(x, keras.KerasTensor) for x in keras.tree.flatten(inputs))
        ):
            return super().call(inputs, training=training, mask=mask, **kwargs)
        return call_folded(self, inputs)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (weights excluded), JSON-serialisable."""
        return {"name": self.name, "trainable": self.trainable, **self._config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DynUNet:
        """Rebuild from :meth:`get_config` (a serialised encoder model is deserialised)."""
        config = dict(config)
        if isinstance(config.get("encoder"), dict):
            config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
            config["taps"] = None  # a tap model carries its taps
        return cls(**config)

    def freeze_encoder(self) -> None:
        """Make the encoder non-trainable (recompile afterwards).

        In Keras 3 a non-trainable ``BatchNormalization`` also runs in inference
        mode: it uses and keeps its moving statistics (unlike PyTorch's
        ``requires_grad=False``, which keeps updating them). This is what you
        want for fine-tuning a pretrained encoder on small batches.

        >>> m = DynUNet("resnet18")
        >>> m.freeze_encoder(); m.encoder.trainable
        False
        """
        self.encoder.trainable = False

    def unfreeze_encoder(self, keep_batchnorm_frozen: bool = False) -> None:
        """Make the encoder trainable again (recompile afterwards).

        Args:
            keep_batchnorm_frozen: Leave the encoder's BatchNormalization layers
                frozen (inference mode, statistics kept), the usual choice when
                fine-tuning with small batches.

        >>> m = DynUNet("resnet18")
        >>> m.freeze_encoder(); m.unfreeze_encoder(keep_batchnorm_frozen=True)
        >>> m.encoder.trainable, m.encoder.get_layer("bn1").trainable
        (True, False)
        """
        self.encoder.trainable = True
        if keep_batchnorm_frozen:
            for layer in self.encoder.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False


def build_unet(encoder: str | keras.Model = "resnet34", classes: int = 1, **kwargs: Any) -> DynUNet:
    """Build a :class:`DynUNet` (see its arguments).

    Args:
        encoder: Registry name or any functional keras.Model.
        classes: Output channels.
        **kwargs: Any :class:`DynUNet` keyword argument.

    >>> model = build_unet("resnet18", classes=3)
    >>> model.input_shape, model.output_shape
    ((None, None, None, 3), (None, None, None, 3))
    """
    return DynUNet(encoder, classes, **kwargs)
