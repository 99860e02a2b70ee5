"""``keras-dynunet convert``: a PyTorch checkpoint -> a keras-dynunet checkpoint directory.

- ``--from ternausnet`` (``--arch unet11``): TernausNet ``UNet11`` ->
  ``TernausUNet11`` (outputs equal to TernausNet's).
- ``--from smp`` (``--arch resnet34`` ...): segmentation_models_pytorch
  ``Unet`` with a ResNet encoder -> ``DynUNet`` (outputs equal to SMP's).
- ``--from torchvision`` (``--arch resnet34``, ``vgg11-ternaus``, ``vgg16``
  ...): an ImageNet classifier -> a ``DynUNet`` whose *encoder* holds the
  converted weights and whose decoder and head (``--classes``) are freshly
  initialised, ready for fine-tuning.

The directory is written by :func:`keras_dynunet.checkpoint.save_pretrained`
(``config.json`` + ``model.weights.h5`` + ``README.md``) with ``"imagenet"``
preprocessing (all three sources normalise RGB with the ImageNet mean/std).
The input file is read without torch and without unpickling code.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keep `keras-dynunet --help` fast: keras is imported on use
    import keras

FORMATS = ("ternausnet", "smp", "torchvision")
PREPROCESSING = "imagenet"


def convert_checkpoint(
    source: str,
    checkpoint: str | os.PathLike[str],
    arch: str | None = None,
    *,
    classes: int = 1,
    in_channels: int | None = None,
) -> keras.Model:
    """Convert a PyTorch checkpoint into the equivalent keras-dynunet model.

    Args:
        source: ``"ternausnet"``, ``"smp"`` or ``"torchvision"``.
        checkpoint: ``.pth`` (zip or legacy) or ``.safetensors`` state dict.
        arch: ``"unet11"`` (ternausnet), the encoder (smp: checked against the
            checkpoint) or the registry encoder (torchvision); ``None`` detects it.
        classes: Output channels of the new head (torchvision only; the other
            sources take them from the checkpoint).
        in_channels: Input channels; default the checkpoint's (3 for
            torchvision). Pretrained RGB kernels are adapted to other counts.

    Returns:
        A ``TernausUNet11`` or ``DynUNet`` with the converted weights.

    Raises:
        ValueError: Unknown source or architecture, or the checkpoint does not
            match (the message names the key or layer).

    >>> convert_checkpoint("caffe", "model.pth")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Unknown source 'caffe'; choose one of ('ternausnet', 'smp', 'torchvision').
    """
    if source not in FORMATS:
        raise ValueError(f"Unknown source {source!r}; choose one of {FORMATS}.")
    shape = None if in_channels is None else (None, None, int(in_channels))
    if source == "ternausnet":
        from keras_dynunet.ports.ternausnet import ternausnet_unet11

        if arch not in (None, "unet11", "UNet11", "ternaus-vgg11"):
            raise ValueError(f"--from ternausnet converts UNet11 only, got --arch {arch!r}.")
        return ternausnet_unet11(checkpoint, input_shape=shape)
    if source == "smp":
        from keras_dynunet.ports.smp import smp_unet

        return smp_unet(checkpoint, input_shape=shape, encoder_name=arch)
    from keras_dynunet.model import build_unet
    from keras_dynunet.ports.torchvision import (
        REGISTRY_NAMES,
        detect_torchvision_arch,
        load_state_dict,
        load_torchvision_weights,
    )

    state = load_state_dict(checkpoint)
    detected = detect_torchvision_arch(state)
    name = REGISTRY_NAMES.get(arch, arch) if arch else REGISTRY_NAMES.get(detected)
    if name is None:
        raise ValueError(f"torchvision {detected} has no registry encoder; pass --arch.")
    model = build_unet(name, classes=classes, input_shape=shape or (None, None, 3))
    load_torchvision_weights(model.encoder, state, name)
    return model


def add_convert_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``convert`` subcommand to an ``argparse`` subparsers object.

    Args:
        subparsers: The object returned by ``parser.add_subparsers()``.

    Returns:
        The ``convert`` parser (its ``func`` default is :func:`run_convert`).

    >>> parser = argparse.ArgumentParser(prog="keras-dynunet")
    >>> _ = add_convert_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["convert", "--from", "smp", "unet.pth", "out"])
    >>> args.source, args.checkpoint, args.out_dir, args.func.__name__
    ('smp', 'unet.pth', 'out', 'run_convert')
    """
    parser = subparsers.add_parser(
        "convert",
        help="convert a TernausNet, segmentation_models_pytorch or torchvision checkpoint",
        description="Convert a PyTorch state dict (.pth zip or legacy, or .safetensors; read "
        "without torch) into a keras-dynunet checkpoint directory (config.json, "
        "model.weights.h5, README.md). ternausnet: UNet11 -> TernausUNet11; smp: Unet with a "
        "ResNet encoder -> DynUNet; torchvision: VGG/ResNet ImageNet classifier -> DynUNet "
        "with that encoder and a new decoder (--classes). Outputs match the PyTorch models.",
    )
    parser.add_argument("--from", dest="source", required=True, choices=FORMATS)
    parser.add_argument(
        "--arch",
        help="unet11 (ternausnet); encoder such as resnet34 (smp, checked); registry encoder "
        "such as resnet50, vgg11-ternaus, vgg16 (torchvision). Default: detected",
    )
    parser.add_argument(
        "--classes", type=int, default=1, help="torchvision only: output channels (default 1)"
    )
    parser.add_argument(
        "--in-channels", type=int, help="input channels (RGB kernels adapted); default 3"
    )
    parser.add_argument(
        "--class-names", nargs="+", help="one name per output channel (after the file arguments)"
    )
    parser.add_argument("checkpoint", help="PyTorch state dict (.pth, .pt, .safetensors)")
    parser.add_argument("out_dir", help="checkpoint directory to write (replaced if it is one)")
    parser.set_defaults(func=run_convert)
    return parser


def run_convert(args: argparse.Namespace) -> int:
    """Run ``keras-dynunet convert`` (see :func:`add_convert_parser`); returns 0.

    Args:
        args: Parsed arguments (``source``, ``arch``, ``classes``,
            ``in_channels``, ``class_names``, ``checkpoint``, ``out_dir``).

    Returns:
        The exit status, 0.

    Raises:
        FileNotFoundError: No such checkpoint.
        ValueError: The checkpoint cannot be converted (named key or layer).

    >>> ns = argparse.Namespace(source="smp", arch=None, classes=1, in_channels=None,
    ...                         class_names=None, checkpoint="missing.pth", out_dir="out")
    >>> run_convert(ns)
    Traceback (most recent call last):
    ...
    FileNotFoundError: Checkpoint 'missing.pth' does not exist.
    """
    from keras_dynunet.checkpoint import save_pretrained

    model = convert_checkpoint(
        args.source,
        args.checkpoint,
        args.arch,
        classes=args.classes,
        in_channels=args.in_channels,
    )
    path = save_pretrained(
        model, args.out_dir, preprocessing=PREPROCESSING, class_names=args.class_names
    )
    print(f"converted {args.checkpoint} ({args.source}) -> {path} ({model.name})")
    return 0
