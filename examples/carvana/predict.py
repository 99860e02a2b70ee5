"""Predict full-resolution Carvana masks and write a Kaggle submission CSV.

Every ``<data>/test/*.jpg`` (1918x1280) goes through the checkpoint whole (TernausUNet11
pads it to 1920x1280 inside the model and crops the logits back) or, with ``--tile``,
tile by tile with Gaussian blending (``kd.predict_tiled``, less memory). The mask is
``sigmoid(logits) > --threshold``, run-length encoded in Carvana's format (1-indexed
``start length`` pairs over the row-major flattened mask) and streamed into the CSV
(``img,rle_mask``, one row per image), which is written to a temporary file and renamed
into place only when complete.

Run:
    python examples/carvana/predict.py --checkpoint checkpoints/ternaus-vgg11-carvana \\
        --data /path/to/carvana --out submission.csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras
from carvana import CarvanaFolder, predict_mask, rle_encode, write_submission
from tqdm.auto import tqdm

import keras_dynunet as kd


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description="Predict a car mask for every Carvana test photo at full resolution with "
        "a keras-dynunet checkpoint (from examples/carvana/train.py) and write the Kaggle "
        "submission CSV (img,rle_mask).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint directory (or anything kd.from_pretrained accepts)",
    )
    parser.add_argument(
        "--data", "--data-dir", dest="data", required=True, help="folder holding test/*.jpg"
    )
    parser.add_argument("--subset", default="test", help="image folder under --data")
    parser.add_argument("--out", default="submission.csv", help="submission CSV to write")
    parser.add_argument("--threshold", type=float, default=0.5, help="on sigmoid(logits)")
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="predict in tiles of this size (Gaussian-blended) instead of whole photos",
    )
    parser.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    """Write the submission and return its path.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The submission CSV.
    """
    args = parse_args(argv)
    folder = CarvanaFolder(args.data, args.subset)
    model: keras.Model = kd.from_pretrained(args.checkpoint)
    preprocessing = model.checkpoint_config["preprocessing"]

    def rows() -> Iterator[tuple[str, str]]:
        for image_id in tqdm(folder.ids, desc="predict", unit="img", disable=args.quiet):
            mask = predict_mask(
                model,
                folder.image(image_id),
                preprocessing=preprocessing,
                threshold=args.threshold,
                tile=args.tile,
                overlap=args.overlap,
            )
            yield f"{image_id}.jpg", rle_encode(mask)

    path = write_submission(rows(), args.out)
    print(f"wrote {len(folder.ids)} rows to {path}")
    return path


if __name__ == "__main__":
    main()
