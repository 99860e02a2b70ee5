"""examples/carvana: RLE, loader, split, loss, and train.py + predict.py end to end.

The data is a tiny generated dataset in Kaggle's Carvana layout: 6 "cars" x 2 views of
64x94 photos (a car-like ellipse on a noisy background, 1280x1918 scaled down, the width
still not a multiple of 32), GIF masks for most images, ``train_masks.csv`` with the RLE
of every mask, and 3 test photos.
"""

import csv
import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import keras_dynunet as kd
from keras_dynunet.zoo import load_card

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "carvana"
sys.path.insert(0, str(EXAMPLE))

carvana = importlib.import_module("carvana")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"carvana_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_script = _load("train")
predict_script = _load("predict")

SHAPE = (64, 94)  # (height, width): Carvana's 1280x1918 / 20, width not a multiple of 32
CARS = [f"{i:02d}c0ffee{i:04d}" for i in range(6)]
VIEWS = (1, 9)
NO_GIF = {f"{CARS[1]}_01", f"{CARS[4]}_09"}  # masks read from train_masks.csv instead


def _car(rng, shape=SHAPE):
    """A photo with a car-like ellipse (+ a roof) on a noisy background, and its mask."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = h * rng.uniform(0.5, 0.6), w * rng.uniform(0.45, 0.55)
    body = ((yy - cy) / (0.2 * h)) ** 2 + ((xx - cx) / (0.38 * w)) ** 2 <= 1
    roof = ((yy - cy + 0.18 * h) / (0.14 * h)) ** 2 + ((xx - cx) / (0.2 * w)) ** 2 <= 1
    mask = body | roof
    image = rng.normal(200, 12, (h, w, 3))
    image[mask] = rng.uniform(20, 120, 3) + rng.normal(0, 10, (int(mask.sum()), 3))
    return np.clip(image, 0, 255).astype(np.uint8), mask.astype(np.uint8)


def _save_gif(mask, path):
    gif = Image.fromarray(mask.astype(np.uint8), "P")
    gif.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)  # Kaggle's black/white palette
    gif.save(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("carvana")
    for sub in ("train", "train_masks", "test"):
        (root / sub).mkdir()
    rng = np.random.default_rng(0)
    masks = {}
    for car in CARS:
        for view in VIEWS:
            image_id = f"{car}_{view:02d}"
            image, mask = _car(rng)
            Image.fromarray(image).save(root / "train" / f"{image_id}.jpg", quality=95)
            if image_id not in NO_GIF:
                _save_gif(mask, root / "train_masks" / f"{image_id}_mask.gif")
            masks[image_id] = mask
    with open(root / "train_masks.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["img", "rle_mask"])
        for image_id, mask in masks.items():
            writer.writerow([f"{image_id}.jpg", carvana.rle_encode(mask)])
    test_ids = [f"7e57{i:08d}_{v:02d}" for i, v in ((0, 1), (0, 2), (1, 16))]
    for image_id in test_ids:
        Image.fromarray(_car(rng)[0]).save(root / "test" / f"{image_id}.jpg", quality=95)
    return {"root": root, "masks": masks, "test_ids": test_ids}


# === RLE ===


def test_rle_hand_checked_string_is_row_major_and_one_indexed():
    mask = np.array(
        [
            [0, 1, 1, 0],
            [0, 0, 0, 1],
            [1, 1, 0, 0],
        ]
    )
    # Row major, 1-indexed: pixels 2, 3 (row 0) and 8, 9, 10 (end of row 1, start of row 2).
    assert carvana.rle_encode(mask) == "2 2 8 3"
    assert carvana.rle_encode(mask) != "3 2 6 2 11 1"  # the column-major reading
    np.testing.assert_array_equal(carvana.rle_decode("2 2 8 3", (3, 4)), mask)
    assert carvana.rle_encode(np.ones((2, 2))) == "1 4"  # first and last pixel
    assert carvana.rle_encode(np.zeros((3, 5), bool)) == ""
    np.testing.assert_array_equal(carvana.rle_decode("", (2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(carvana.rle_decode(float("nan"), (1, 2)), np.zeros((1, 2)))


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (17, 5), carvana.IMAGE_SHAPE])
def test_rle_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.05, 0.5, 1.0):
        mask = (rng.random(shape) < density).astype(np.uint8)
        decoded = carvana.rle_decode(carvana.rle_encode(mask), shape)
        assert decoded.dtype == np.uint8 and decoded.shape == tuple(shape)
        np.testing.assert_array_equal(decoded, mask)
    _, car = _car(rng, shape) if min(shape) > 8 else (None, np.ones(shape, np.uint8))
    np.testing.assert_array_equal(carvana.rle_decode(carvana.rle_encode(car), shape), car)


def test_rle_agrees_with_the_official_train_masks_csv():
    # The first three runs of 00087a6bd4dc_01.jpg in Kaggle's train_masks.csv. Read row
    # major on the 1280x1918 grid they are three consecutive rows of the car's roof,
    # each wider than the last and centred on the photo's middle column (~959).
    mask = carvana.rle_decode("879386 40 881253 141 883140 205", carvana.IMAGE_SHAPE)
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows.tolist() == [458, 459, 460]
    spans = [np.flatnonzero(mask[r])[[0, -1]].tolist() for r in rows]
    assert spans == [[941, 980], [890, 1030], [859, 1063]]
    assert all(abs((a + b) / 2 - 959) < 10 for a, b in spans)
    # Column major, the same numbers would be 3 vertical runs in 3 scattered columns.
    column_major = mask.reshape(-1).reshape(carvana.IMAGE_SHAPE[::-1]).T
    assert len(np.flatnonzero(column_major.any(axis=0))) > 3


@pytest.mark.parametrize(
    ("rle", "message"),
    [("1 2 3", "pairs"), ("0 2", ">= 1"), ("5 2 1 2", "sorted"), ("11 2", "ends at pixel 12")],
)
def test_rle_decode_rejects_malformed_strings(rle, message):
    with pytest.raises(ValueError, match=message):
        carvana.rle_decode(rle, (2, 5))


# === Loader, split, dataset ===


def test_loader_reads_gif_masks_and_falls_back_to_the_csv(data):
    folder = carvana.CarvanaFolder(data["root"], "train")
    assert folder.ids == sorted(data["masks"])
    for image_id, expected in data["masks"].items():
        image = folder.image(image_id)
        assert image.shape == (*SHAPE, 3) and image.dtype == np.uint8
        mask = folder.mask(image_id)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        np.testing.assert_array_equal(mask, expected)
    assert {i for i in folder.ids if not (folder.mask_dir / f"{i}_mask.gif").exists()} == NO_GIF
    assert carvana.read_rle_csv(folder.csv_path)[CARS[0] + "_01"] == carvana.rle_encode(
        data["masks"][CARS[0] + "_01"]
    )
    assert carvana.CarvanaFolder(data["root"], "test").ids == sorted(data["test_ids"])
    with pytest.raises(FileNotFoundError, match="--data must be the Carvana folder"):
        carvana.CarvanaFolder(data["root"] / "nowhere")


def test_parse_image_id():
    assert carvana.parse_image_id("00087a6bd4dc_01.jpg") == ("00087a6bd4dc", 1)
    assert carvana.parse_image_id("fff9b3a5373f_16_mask.gif") == ("fff9b3a5373f", 16)
    with pytest.raises(ValueError, match="<car>_<view:02d>"):
        carvana.parse_image_id("no-view.jpg")


def test_split_never_splits_a_car_and_is_deterministic(data):
    ids = [f"{car:012x}_{view:02d}" for car in range(318) for view in range(1, 17)]
    train, val = carvana.split_by_car(ids, 0.2, seed=0)
    cars = {split: {carvana.parse_image_id(i)[0] for i in part} for split, part in
            (("train", train), ("val", val))}  # fmt: skip
    assert not cars["train"] & cars["val"]
    assert sorted(train + val) == sorted(ids) and len(cars["val"]) == 64
    assert len(val) == 64 * 16
    assert carvana.split_by_car(reversed(ids), 0.2, seed=0) == (train, val)
    assert carvana.split_by_car(ids, 0.2, seed=1) != (train, val)
    assert carvana.split_by_car(ids, 0.0) == (sorted(ids), [])

    train, val = carvana.split_by_car(data["masks"], 0.2, seed=0)
    train_cars = {carvana.parse_image_id(i)[0] for i in train}
    val_cars = {carvana.parse_image_id(i)[0] for i in val}
    assert len(val_cars) == 1 and not train_cars & val_cars and len(val) == len(VIEWS)


def test_dataset_batches_crops_and_flips_image_and_mask_together(data):
    folder = carvana.CarvanaFolder(data["root"])
    ds = carvana.CarvanaDataset(
        folder, folder.ids, batch_size=3, crop_size=(32, 96), augment=True, seed=1
    )
    x, y = ds[0]
    assert x.shape == (3, 32, 96, 3) and y.shape == (3, 32, 96, 1)
    assert x.dtype == y.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
    assert abs(float(x.mean())) < 3  # ImageNet-normalised
    np.testing.assert_array_equal(ds[0][1], y)  # a function of (seed, epoch, index)
    # Car pixels are dark in these photos: the mask must follow the image through
    # crops and flips.
    grey = x.mean(axis=-1)
    assert grey[y[..., 0] == 1].mean() < grey[y[..., 0] == 0].mean() - 1
    whole = carvana.CarvanaDataset(folder, folder.ids[:2], batch_size=2)
    x, y = whole[0]
    assert x.shape == (2, *SHAPE, 3)
    np.testing.assert_array_equal(y[0, ..., 0], data["masks"][folder.ids[0]])


# === Loss and encoder weights ===


def test_log_jaccard_and_ternaus_loss_match_numpy():
    rng = np.random.default_rng(0)
    y = (rng.random((2, 8, 8, 1)) < 0.4).astype("float32")
    logits = rng.normal(size=(2, 8, 8, 1)).astype("float32")
    p = 1 / (1 + np.exp(-logits))
    jaccard = (np.sum(y * p) + 1) / (np.sum(y) + np.sum(p) - np.sum(y * p) + 1)
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    log_j = carvana.LogJaccardLoss(from_logits=True)(y, logits)
    np.testing.assert_allclose(float(log_j), -np.log(jaccard), rtol=1e-5)
    total = carvana.ternaus_loss()(y, logits)
    np.testing.assert_allclose(float(total), bce - np.log(jaccard), rtol=1e-5)
    half = carvana.ternaus_loss(jaccard_weight=0.5)(y, logits)
    np.testing.assert_allclose(float(half), bce - 0.5 * np.log(jaccard), rtol=1e-5)


def test_encoder_weights_are_copied_by_layer_name():
    model = kd.TernausUNet11(num_filters=4)
    encoder = kd.get_encoder("vgg11-ternaus")  # random weights stand in for ImageNet's
    copied = carvana.load_encoder_weights(model, encoder)
    assert copied == ["conv1", "conv2", "conv3s", "conv3", "conv4s", "conv4", "conv5s", "conv5"]
    for name in copied:
        for a, b in zip(
            model.get_layer("encoder").get_layer(name).get_weights(),
            encoder.get_layer(name).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)


def test_missing_imagenet_weights_stop_with_a_clear_message(data, monkeypatch):
    def offline(*args, **kwargs):
        raise kd.WeightsUnavailableError("Could not download https://example.invalid/vgg11.pth")

    monkeypatch.setattr(kd, "get_encoder", offline)
    with pytest.raises(SystemExit, match="--encoder-weights none"):
        train_script.main(["--data", str(data["root"]), "--num-filters", "4", "--quiet"])


# === The scripts ===


def test_train_defaults_are_the_zoo_card_recipe(capsys):
    args = train_script.parse_args(["--data", "somewhere"])
    recipe = load_card("ternaus-vgg11-carvana")["training"]["arguments"]
    assert recipe["model"] == "ternaus-vgg11" and recipe["optimizer"] == "adam"
    assert args.encoder_weights == recipe["encoder_weights"] == "imagenet"
    assert args.lr == recipe["learning_rate"] == 1e-4
    assert args.batch_size == recipe["batch_size"]
    assert args.epochs == recipe["epochs"]
    assert args.crop_size == recipe["input_size"] == [1280, 1920]
    assert args.num_filters == recipe["num_filters"] == 32
    assert args.val_fraction == recipe["val_fraction"]
    assert args.seed == recipe["seed"]
    assert args.jaccard_weight == 1.0 and "log(soft_jaccard)" in recipe["loss"]
    card = yaml.safe_load((ROOT / "zoo" / "ternaus-vgg11-carvana.yaml").read_text())
    assert card["training"]["script"] == "examples/carvana/train.py"
    with pytest.raises(SystemExit) as exit_info:
        train_script.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--encoder-weights {imagenet,none}" in text and "BCE - log(soft Jaccard)" in text
    with pytest.raises(SystemExit):
        predict_script.parse_args(["--help"])
    assert "submission" in capsys.readouterr().out


def test_train_then_predict_end_to_end(data, tmp_path):
    root, ckpt = data["root"], tmp_path / "ckpt"
    result = train_script.main(
        [
            "--data", str(root), "--out", str(ckpt), "--encoder-weights", "none",
            "--num-filters", "8", "--epochs", "1", "--steps-per-epoch", "2",
            "--batch-size", "2", "--crop-size", "32", "64", "--workers", "1", "--quiet",
        ]
    )  # fmt: skip
    assert (ckpt / "config.json").is_file() and (ckpt / "model.weights.h5").is_file()
    assert "ternaus-vgg11-carvana" in (ckpt / "README.md").read_text()
    assert {carvana.parse_image_id(i)[0] for i in result["train_ids"]}.isdisjoint(
        {carvana.parse_image_id(i)[0] for i in result["val_ids"]}
    )
    assert result["images"] == len(result["val_ids"]) == len(VIEWS)
    assert 0.0 <= result["dice"] <= 1.0 and 0.0 <= result["iou"] <= result["dice"] + 1e-9
    assert {"loss", "dice_coefficient", "val_dice_coefficient"} <= set(result["history"])

    model = kd.from_pretrained(ckpt)
    config = model.checkpoint_config
    assert config["preprocessing"] == "imagenet" and config["class_names"] == ["car"]
    assert config["input_size"] == [32, 64]

    # --evaluate (the card's metric command) scores the saved checkpoint the same way.
    scores = train_script.main(["--data", str(root), "--out", str(ckpt), "--evaluate", "--quiet"])
    assert scores["dice"] == pytest.approx(result["dice"], abs=1e-6)

    submission = tmp_path / "sub" / "submission.csv"
    assert (
        predict_script.main(
            ["--checkpoint", str(ckpt), "--data", str(root), "--out", str(submission), "--quiet"]
        )
        == submission.absolute()
    )
    with open(submission, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["img", "rle_mask"]
    assert [r[0] for r in rows[1:]] == [f"{i}.jpg" for i in sorted(data["test_ids"])]
    test = carvana.CarvanaFolder(root, "test")
    for (name, rle), image_id in zip(rows[1:], test.ids, strict=True):
        assert name == f"{image_id}.jpg"
        mask = carvana.rle_decode(rle, test.image_shape(image_id))
        assert mask.shape == SHAPE == test.image(image_id).shape[:2]
        expected = carvana.predict_mask(model, test.image(image_id))
        np.testing.assert_array_equal(mask, expected)
    assert not list(submission.parent.glob(".*.tmp"))  # the temporary file was renamed

    tiled = carvana.predict_mask(model, test.image(test.ids[0]), tile=32, overlap=8)
    assert tiled.shape == SHAPE and tiled.dtype == bool
