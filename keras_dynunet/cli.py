"""The ``keras-dynunet`` command line.

Each subcommand has ``--help``. Failures print one line starting with
``error:`` and exit with status 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pickle import UnpicklingError

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

    result = run_demo(args.out, checkpoint=args.checkpoint)
    print(f"checkpoint {result.checkpoint}")
    print(
        f"real DSB 2018 image: {result.instances} nuclei found ({result.true_instances} "
        f"labelled); DSB score {result.dsb_score:.4f} on the whole image, "
        f"{result.heldout_dsb_score:.4f} on the held-out quarter never seen in training"
    )
    print(f"wrote {result.overlay} (predicted outlines | ground truth) and demo.json")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from keras_dynunet.hub import from_pretrained
    from keras_dynunet.predict import predict_files

    model = from_pretrained(args.ref, args.revision)
    for result in predict_files(model, args.images, args.out, tile=args.tile):
        found = "" if result.instances is None else f" ({result.instances} instances)"
        print(f"{result.image}: {result.mask}, {result.overlay}{found}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from keras_dynunet.hub import pull

    path = pull(args.ref, args.revision, cache_dir=args.cache_dir, force_download=args.force)
    print(path)
    return 0


def _push(args: argparse.Namespace) -> int:
    from huggingface_hub import constants

    from keras_dynunet.hub import push_to_hub

    sha = push_to_hub(
        args.directory,
        args.repo_id,
        private=args.private,
        commit_message=args.message,
        revision=args.revision,
    )
    print(f"pushed {args.directory} to hf://{args.repo_id}@{sha}")
    print(f"{constants.ENDPOINT}/{args.repo_id}/commit/{sha}")
    return 0


def _zoo_list(args: argparse.Namespace) -> int:
    from keras_dynunet.zoo import list_cards, load_card

    names = list_cards()
    if not names:
        print("error: no zoo cards found (see KERAS_DYNUNET_ZOO).", file=sys.stderr)
        return 1
    print(f"{'name':<30} {'status':<10} {'model':<28} {'encoder':<20} repo")
    for name in names:
        card = load_card(name)
        arch = card["architecture"]
        repo = f"{card['repo_id']}@{card['revision'][:12]}" if card["revision"] else "-"
        print(
            f"{name:<30} {card['status']:<10} {arch['model_class']:<28} {arch['encoder']:<20} "
            f"{repo}"
        )
    return 0


def _zoo_show(args: argparse.Namespace) -> int:
    import yaml

    from keras_dynunet.zoo import load_card

    print(yaml.safe_dump(load_card(args.name), sort_keys=False, allow_unicode=True), end="")
    return 0


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    from keras_dynunet.training import FINAL_DIR, load_config, train

    config = load_config(args.config)
    if args.distribution is not None:
        config = dataclasses.replace(config, distribution=args.distribution)
    train(config, args.workdir, verbose=1 if args.verbose else 2)
    # Not read back from WORKDIR: on other workers than the chief it may be mid-update.
    print(f"trained to epoch {config.epochs}; final checkpoint {args.workdir}/{FINAL_DIR}")
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
        help="segment the real DSB 2018 nuclei image with the embedded checkpoint (offline)",
        description="Offline demo: loads the embedded nuclei-lite0-dsb2018 checkpoint, segments "
        "the real Data Science Bowl 2018 image shipped in the stardist wheel, splits touching "
        "nuclei by watershed, prints the instance count and the DSB score against the real "
        "labels (whole image, and the held-out quarter never seen in training), and writes "
        "overlay.png (predicted outlines | ground-truth outlines) and demo.json.",
    )
    demo.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    demo.add_argument(
        "--checkpoint", default=None, help="another checkpoint directory (default: embedded)"
    )
    demo.set_defaults(func=_demo)

    predict = sub.add_parser(
        "predict",
        help="predict masks or instances for your images, with PNG overlays",
        description="Load a checkpoint (zoo name such as nuclei-lite0-dsb2018, hf://org/repo, "
        "org/repo or a directory) and predict each IMAGE (PNG, JPEG, BMP, TIFF; any size, large "
        "ones in tiles). Instance checkpoints write <stem>_labels.png (16-bit instance ids) and "
        "<stem>_overlay.png (outlines); semantic ones write <stem>_mask.png and a tinted overlay.",
    )
    predict.add_argument("ref", help="checkpoint: zoo name, hf://org/repo[@rev], org/repo or dir")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--out", default="predictions", help="output folder")
    predict.add_argument("--revision", default=None, help="Hub revision (branch, tag or sha)")
    predict.add_argument("--tile", type=int, default=512, help="tile size for large images")
    predict.set_defaults(func=_predict)

    pull = sub.add_parser(
        "pull",
        help="download a checkpoint into the Hugging Face cache and print its folder",
        description="Download (or find in the Hugging Face cache) a keras-dynunet checkpoint, "
        "verify its config.json and SHA-256, and print the local folder. REF is "
        "hf://org/repo[@revision], org/repo, a zoo card name (`keras-dynunet zoo list`) or a "
        "local checkpoint folder. Honours HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT and HF_TOKEN; "
        "run it on a connected machine, then load offline with kd.from_pretrained(REF).",
    )
    pull.add_argument("ref", help="hf://org/repo[@rev], org/repo, zoo name or folder")
    pull.add_argument("--revision", help="branch, tag or commit sha (default: main)")
    pull.add_argument("--cache-dir", help="Hugging Face cache folder (default: HF_HUB_CACHE)")
    pull.add_argument(
        "--force", action="store_true", help="download again even if cached (repairs a cache)"
    )
    pull.set_defaults(func=_pull)

    push = sub.add_parser(
        "push",
        help="upload a checkpoint folder to the Hugging Face Hub in one commit",
        description="Verify a checkpoint folder written by kd.save_pretrained (config.json, "
        "model.weights.h5, README.md), create REPO_ID if needed and upload the files in a single "
        "commit. Prints the commit sha to pin (hf://REPO_ID@SHA). Needs a write token (HF_TOKEN "
        "or `hf auth login`).",
    )
    push.add_argument("directory", help="checkpoint folder")
    push.add_argument("repo_id", help="org/name on the Hub")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--message", default="Upload keras-dynunet checkpoint", help="commit message")
    push.add_argument("--revision", help="branch to commit to (created from main if missing)")
    push.set_defaults(func=_push)

    zoo = sub.add_parser(
        "zoo",
        help="list or show model zoo cards",
        description="Model zoo cards (zoo/<name>.yaml): what each checkpoint is, where it is "
        "published, and how its metrics were measured.",
    )
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True)
    zoo_list = zoo_sub.add_parser(
        "list",
        help="one line per card: status, model, encoder, pinned repo",
        description="List zoo cards with their status (published, recipe, packaged), model "
        "class, encoder and pinned Hub repository.",
    )
    zoo_list.set_defaults(func=_zoo_list)
    zoo_show = zoo_sub.add_parser(
        "show",
        help="print one card (validated) as YAML",
        description="Validate a zoo card against the schema and print it as YAML.",
    )
    zoo_show.add_argument("name", help="card name, see `keras-dynunet zoo list`")
    zoo_show.set_defaults(func=_zoo_show)
    from keras_dynunet.ports.convert import add_convert_parser

    add_convert_parser(sub)
    train = sub.add_parser(
        "train",
        help="train (or resume) a U-Net from a JSON/YAML config, checkpointing atomically",
        description="Train a DynUNet described by CONFIG (JSON or YAML: encoder, target, data, "
        "epochs, steps_per_epoch, batch_size, crop, lr, seed, checkpoint_every, distribution; "
        "see keras_dynunet.training.TrainConfig) in --workdir. Weights, optimizer state and "
        "counters are checkpointed atomically at every epoch end (and every checkpoint_every "
        "steps); running the same command again resumes from the last checkpoint, and a "
        "different config is refused. The final model is saved to WORKDIR/final (load it with "
        "kd.load_pretrained). Data-parallel training (--distribution, docs/distributed.md): "
        "batch_size is the global batch; with multi-worker, start the same command on every "
        "worker with its TF_CONFIG; only the chief writes to WORKDIR, which must be on storage "
        "all workers see.",
    )
    train.add_argument("config", help="training config file (.json, .yaml)")
    train.add_argument("--workdir", required=True, help="work directory (created; resumed)")
    from keras_dynunet.distributed import KINDS

    train.add_argument(
        "--distribution",
        choices=KINDS,
        default=None,
        help="data-parallel engine, overriding the config's 'distribution' (default 'none'): "
        "'mirrored' = tf.distribute.MirroredStrategy over this machine's GPUs; "
        "'multi-worker' = tf.distribute.MultiWorkerMirroredStrategy over the hosts in "
        "TF_CONFIG; 'jax-data-parallel' = keras.distribution.DataParallel (KERAS_BACKEND=jax); "
        "'auto' picks one from TF_CONFIG and the devices; 'none' = one device",
    )
    train.add_argument(
        "--no-progress-bar",
        dest="verbose",
        action="store_false",
        help="one line per epoch instead of Keras' progress bar",
    )
    train.set_defaults(func=_train)
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
    except (
        ValueError, KeyError, TypeError, OSError, RuntimeError, ImportError, UnpicklingError
    ) as error:  # fmt: skip
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
