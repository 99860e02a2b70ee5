"""Train the embedded nuclei checkpoint: U-Net (EfficientNet-Lite0, ImageNet) on DSB 2018.

Data: the real Data Science Bowl 2018 image shipped in the ``stardist`` wheel
(512x512, 125 labelled nuclei). Its right-most quarter (512x128) is held out
and never seen in training; the training region (512x384) is mixed with
synthetic nuclei. Targets: (interior, border) sigmoid channels with the U-Net
weight map; loss: pixel-weighted BCE + soft Dice. Instances: watershed from
the predicted interior and border maps; score: the DSB 2018 metric on the
held-out region.

Run (the recipe of zoo/nuclei-lite0-dsb2018.yaml):
    python examples/dsb2018/train.py --out keras_dynunet/assets/nuclei-lite0-dsb2018
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np

import keras_dynunet as kd
from keras_dynunet.augment import Augmentation
from keras_dynunet.dataset import SegmentationDataset, normalize_image
from keras_dynunet.instances import dsb_split, load_dsb_example, synthetic_dataset
from keras_dynunet.losses import CombinedLoss, DiceLoss, WeightedBinaryCrossentropy
from keras_dynunet.segment import evaluate_instances

ENCODER = "efficientnet-lite0"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train the nuclei U-Net (EfficientNet-Lite0 encoder, ImageNet weights) on "
        "the training region of the real DSB 2018 image plus synthetic nuclei, evaluate the DSB "
        "score on the held-out region, and save a checkpoint directory."
    )
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=40, help="batches per epoch")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--synthetic", type=int, default=64, help="synthetic images")
    parser.add_argument("--real-copies", type=int, default=32, help="weight of the real image")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backup", help="also save the trained model as this .keras file")
    return parser.parse_args(argv)


def _scores(model: keras.Model, image: np.ndarray, labels: np.ndarray) -> dict:
    result = evaluate_instances(model, image, labels, ENCODER)
    result.pop("labels")
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    raw, labels = load_dsb_example()
    image = normalize_image(raw)  # one normalisation for the whole image
    (train_img, train_lab), (hold_img, hold_lab) = dsb_split(image, labels, holdout=0.25)
    synth_img, synth_lab = synthetic_dataset(
        args.synthetic, (256, 256), seed=args.seed, rgb=False, radius=(8.0, 16.0)
    )
    images = [train_img] * args.real_copies + list(synth_img)
    label_list = [train_lab] * args.real_copies + list(synth_lab)
    data = SegmentationDataset(
        images,
        label_list,
        batch_size=args.batch,
        crop_size=(args.crop, args.crop),
        target="sigmoid",
        weight_map=True,
        augment=Augmentation(noise=0.02),
        preprocessing=ENCODER,
        steps_per_epoch=args.steps,
        seed=args.seed,
    )
    model = kd.build_unet(
        ENCODER,
        classes=2,
        activation="sigmoid",
        encoder_weights="imagenet",
        decoder_channels=(128, 64, 32, 16, 16),
    )
    schedule = keras.optimizers.schedules.CosineDecay(args.lr, args.epochs * args.steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=CombinedLoss([WeightedBinaryCrossentropy(), DiceLoss()], [1.0, 1.0]),
    )
    start = time.time()
    history = model.fit(data, epochs=args.epochs, verbose=2)
    minutes = (time.time() - start) / 60
    if args.backup:
        model.save(args.backup)

    from keras_dynunet.checkpoint import load_pretrained, save_pretrained

    save_pretrained(
        model,
        args.out,
        preprocessing=kd.get_encoder_spec(ENCODER).preprocessing,
        class_names=["interior", "border"],
        input_size=None,
    )
    shipped = load_pretrained(args.out)  # score what is shipped, not what is in memory
    report = {
        "heldout": _scores(shipped, hold_img, hold_lab),
        "train_region": _scores(shipped, train_img, train_lab),
        "loss_first_last": [
            round(history.history["loss"][0], 4),
            round(history.history["loss"][-1], 4),
        ],
        "train_minutes": round(minutes, 1),
        "arguments": vars(args),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
