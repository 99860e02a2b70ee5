"""Train TernausNet UNet11 on Carvana: the recipe of zoo/ternaus-vgg11-carvana.yaml.

The defaults are the card's ``training.arguments``: VGG11 encoder with torchvision's
ImageNet weights, Adam at a constant learning rate of 1e-4, TernausNet's loss
``BCE - log(soft Jaccard)`` on logits, 100 epochs, full-resolution crops of 1280x1920
(the 1918-wide photos reflect-padded by two columns), horizontal flips and mild
brightness/contrast/gamma jitter, seed 0. A fifth of the cars (all 16 views of each) is
held out for validation. The checkpoint directory (``kd.save_pretrained`` with the zoo
card) is rewritten after every epoch; at the end the mean per-image validation Dice
(the Kaggle metric) and IoU are measured at full resolution and printed.

Run:
    python examples/carvana/train.py --data /path/to/carvana --out checkpoints/carvana
    python examples/carvana/train.py --evaluate --data /path/to/carvana --out checkpoints/carvana
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras
from carvana import (
    CARD_NAME,
    CarvanaDataset,
    CarvanaFolder,
    build_ternaus,
    evaluate,
    split_by_car,
    ternaus_loss,
)

import keras_dynunet as kd
from keras_dynunet.metrics import DiceCoefficient, IoUScore
from keras_dynunet.zoo import load_card

# The card's training.arguments (tests/test_carvana_example.py checks they agree).
DEFAULTS: dict[str, Any] = {
    "encoder_weights": "imagenet",
    "learning_rate": 1e-4,
    "batch_size": 2,
    "epochs": 100,
    "crop_size": [1280, 1920],
    "num_filters": 32,
    "val_fraction": 0.2,
    "jaccard_weight": 1.0,
    "seed": 0,
}
DEFAULT_OUT = "checkpoints/ternaus-vgg11-carvana"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments; every default is the zoo card's recipe.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description="Train TernausNet UNet11 (VGG11 encoder, ImageNet weights) on the Kaggle "
        "Carvana Image Masking Challenge with TernausNet's loss BCE - log(soft Jaccard) and "
        "Adam, save a keras-dynunet checkpoint after every epoch, and print the mean "
        "per-image validation Dice at full resolution. Defaults follow "
        "zoo/ternaus-vgg11-carvana.yaml.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data",
        "--data-dir",
        dest="data",
        required=True,
        help="Carvana folder holding train/*.jpg and train_masks/*_mask.gif "
        "(or train_masks.csv, used for images without a GIF)",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help="checkpoint directory to write/read")
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="do not train: load the checkpoint --out and print its validation Dice/IoU",
    )
    parser.add_argument(
        "--epochs", type=int, default=DEFAULTS["epochs"], help="passes over the training cars"
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULTS["batch_size"], help="crops per step"
    )
    parser.add_argument(
        "--crop-size",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        default=DEFAULTS["crop_size"],
        help="random training crop (reflect-padded where the photo is smaller)",
    )
    parser.add_argument(
        "--lr", type=float, default=DEFAULTS["learning_rate"], help="Adam learning rate"
    )
    parser.add_argument(
        "--encoder-weights",
        choices=("imagenet", "none"),
        default=DEFAULTS["encoder_weights"],
        help="VGG11 encoder initialisation: torchvision's ImageNet weights (downloaded once, "
        "converted and cached by keras-dynunet) or random",
    )
    parser.add_argument(
        "--num-filters",
        type=int,
        default=DEFAULTS["num_filters"],
        help="decoder base width (TernausNet: 32)",
    )
    parser.add_argument(
        "--jaccard-weight",
        type=float,
        default=DEFAULTS["jaccard_weight"],
        help="w in the loss BCE - w log(soft Jaccard)",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULTS["val_fraction"],
        help="fraction of cars (all their views) held out for validation",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS["seed"],
        help="seeds the validation split, the crops/augmentation and the initialisation",
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="batches per epoch (default: one pass over the training images)",
    )
    parser.add_argument(
        "--validation-steps",
        type=int,
        default=None,
        help="validation batches after each epoch (default: all validation images; 0: none)",
    )
    parser.add_argument(
        "--max-val-images",
        type=int,
        default=None,
        help="score only the first N validation images at the end (default: all)",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="on sigmoid(logits)")
    parser.add_argument("--no-augment", action="store_true", help="no flips or jitter")
    parser.add_argument("--workers", type=int, default=4, help="data loading threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


class SaveCheckpoint(keras.callbacks.Callback):
    """Rewrite the checkpoint directory (atomically) at the end of every epoch.

    Args:
        directory: Checkpoint directory.
        card: The zoo card dict, rendered into the checkpoint's README.
        input_size: ``[height, width]`` trained at, stored in ``config.json``.
    """

    def __init__(self, directory: str | Path, card: dict[str, Any], input_size: list[int]):
        super().__init__()
        self.directory = Path(directory)
        self.card = card
        self.input_size = input_size

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Save the model after epoch ``epoch``."""
        kd.save_pretrained(
            self.model,
            self.directory,
            preprocessing=self.card["preprocessing"],
            class_names=self.card["class_names"],
            input_size=self.input_size,
            card=self.card,
        )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train (or, with ``--evaluate``, only score) and return the results.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        ``{"checkpoint", "dice", "iou", "images", "train_ids", "val_ids", "history"}``.
    """
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    card = load_card(CARD_NAME)
    preprocessing = card["preprocessing"]
    folder = CarvanaFolder(args.data, "train")
    train_ids, val_ids = split_by_car(folder.ids, args.val_fraction, args.seed)
    print(
        f"{len(folder.ids)} images: {len(train_ids)} for training, {len(val_ids)} for "
        f"validation (split by car, seed {args.seed})"
    )
    result: dict[str, Any] = {
        "checkpoint": str(Path(args.out).expanduser().absolute()),
        "train_ids": train_ids,
        "val_ids": val_ids,
        "history": {},
    }

    if args.evaluate:
        model = kd.from_pretrained(args.out)
        preprocessing = model.checkpoint_config["preprocessing"]
    else:
        try:
            model = build_ternaus(args.num_filters, args.encoder_weights)
        except kd.WeightsUnavailableError as error:
            raise SystemExit(
                f"ImageNet VGG11 encoder weights are unavailable:\n  {error}\nThe TernausNet "
                "recipe starts from them. Put the file where the message says, or train from "
                "scratch with --encoder-weights none (expect lower scores)."
            ) from None
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=args.lr),
            loss=ternaus_loss(args.jaccard_weight),
            metrics=[DiceCoefficient(from_logits=True), IoUScore(from_logits=True)],
        )
        loader = {"workers": args.workers, "use_multiprocessing": False}
        train_data = CarvanaDataset(
            folder,
            train_ids,
            batch_size=args.batch_size,
            crop_size=args.crop_size,
            augment=not args.no_augment,
            preprocessing=preprocessing,
            steps_per_epoch=args.steps_per_epoch,
            seed=args.seed,
            **loader,
        )
        val_data = None
        if val_ids and args.validation_steps != 0:
            val_data = CarvanaDataset(
                folder,
                val_ids,
                batch_size=args.batch_size,
                crop_size=None,  # whole photos: every validation photo has the same size
                preprocessing=preprocessing,
                **loader,
            )
        start = time.time()
        history = model.fit(
            train_data,
            validation_data=val_data,
            validation_steps=args.validation_steps,
            epochs=args.epochs,
            callbacks=[SaveCheckpoint(args.out, card, list(args.crop_size))],
            verbose=0 if args.quiet else "auto",
        )
        result["history"] = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        print(f"trained {args.epochs} epoch(s) in {time.time() - start:.0f} s")
        print(f"checkpoint: {result['checkpoint']}")

    if not val_ids:
        print("no validation images (--val-fraction 0): nothing to score")
        return result
    scored = val_ids[: args.max_val_images] if args.max_val_images else val_ids
    scores = evaluate(
        model,
        folder,
        scored,
        preprocessing=preprocessing,
        threshold=args.threshold,
        progress=not args.quiet,
    )
    result.update(scores)
    print(
        f"validation Dice: {scores['dice']:.4f}  IoU: {scores['iou']:.4f}  (mean per image "
        f"over {scores['images']} full-resolution images, threshold {args.threshold})"
    )
    return result


if __name__ == "__main__":
    summary = main()
    keys = ("checkpoint", "dice", "iou", "images")
    print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=2))
