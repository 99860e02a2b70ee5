"""The ``keras-dynunet`` command line.

Each subcommand has ``--help``. Failures print one line starting with
``error:`` and exit with status 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _encoders(args: argparse.Namespace) -> int:
    from keras_dynunet.registry import get_encoder_spec, list_encoders

    names = list_encoders(args.pattern)
    if not names:
        print(f"error: no encoder matches {args.pattern!r}; try '*'.", file=sys.stderr)
        return 1
    print(f"{'name':<20} {'family':<18} {'preprocessing':<13} taps (key:stride:channels)")
    for name in names:
        spec = get_encoder_spec(name)
        taps = " ".join(f"{t.key}:{t.stride}:{t.channels}" for t in spec.taps)
        print(f"{name:<20} {spec.family:<18} {spec.preprocessing:<13} {taps}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from keras_dynunet.models import list_models

    for name in list_models():
        print(name)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from keras_dynunet.demo import run_demo

    result = run_demo(
        args.out,
        encoder=args.encoder,
        size=args.size,
        train_images=args.images,
        epochs=args.epochs,
        seed=args.seed,
    )
    print(
        f"encoder {result.encoder}: Dice on held-out synthetic nuclei "
        f"{result.dice_before:.3f} before training -> {result.dice_after:.3f} after "
        f"(loss {result.loss_first:.3f} -> {result.loss_last:.3f})"
    )
    print(f"wrote {result.png} and {os.path.join(args.out, 'demo.json')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests).

    >>> build_parser().parse_args(["encoders", "resnet*"]).pattern
    'resnet*'
    """
    parser = argparse.ArgumentParser(
        prog="keras-dynunet",
        description="Dynamic U-Nets for any Keras encoder: list encoders and models, run the "
        "offline demo.",
    )
    from keras_dynunet.version import __version__

    parser.add_argument("--version", action="version", version=f"keras-dynunet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser(
        "encoders",
        help="list registry encoders and their taps",
        description="List registered encoders with family, preprocessing and tagged taps "
        "(key:stride:channels). PATTERN is an fnmatch wildcard such as 'resnet*'.",
    )
    enc.add_argument("pattern", nargs="?", default="*", help="wildcard, default '*'")
    enc.set_defaults(func=_encoders)

    models = sub.add_parser(
        "models", help="list whole-model architectures (ternaus-vgg11, unet-vanilla, ...)"
    )
    models.set_defaults(func=_models)

    demo = sub.add_parser(
        "demo",
        help="train a U-Net on synthetic nuclei offline and write a PNG",
        description="Offline demo: generates nuclei images, trains a U-Net with a registry "
        "encoder for a few epochs on the CPU, prints the Dice score on held-out images before "
        "and after training, and writes demo.png (input | target | prediction) and demo.json.",
    )
    demo.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    demo.add_argument("--encoder", default="efficientnet-lite0", help="registry encoder name")
    demo.add_argument("--size", type=int, default=128, help="image side in pixels")
    demo.add_argument("--images", type=int, default=96, help="number of training images")
    demo.add_argument("--epochs", type=int, default=6, help="training epochs")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    >>> main(["models"])
    ternaus-vgg11
    unet-vanilla
    unet-vanilla-padded
    0
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
