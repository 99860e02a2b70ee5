"""Augmentations move image, targets and weight map together; the PyDataset feeds model.fit."""

import numpy as np
import pytest
import skimage.io
import tifffile

import keras_dynunet as kd
from keras_dynunet.augment import Augmentation, adjust_intensity, elastic, random_crop
from keras_dynunet.dataset import SegmentationDataset, make_targets, normalize_image
from keras_dynunet.instances import synthetic_dataset, unet_weight_map


def _coordinate_pair(h=12, w=12):
    yy, xx = np.mgrid[:h, :w].astype("float32")
    code = (yy * w + xx) / (h * w)  # a unique value per pixel
    return np.stack([code] * 3, -1), np.stack([code, 1 - code], -1)


@pytest.mark.parametrize("seed", range(8))
def test_geometric_augmentation_is_identical_for_image_and_targets(seed):
    image, targets = _coordinate_pair()
    aug = Augmentation(brightness=0, contrast=0, gamma=0)
    out_img, out_tgt = aug(np.random.default_rng(seed), image, targets)
    np.testing.assert_array_equal(out_img[..., 0], out_tgt[..., 0])
    np.testing.assert_allclose(out_tgt[..., 1], 1 - out_tgt[..., 0])
    assert sorted(out_tgt[..., 0].ravel()) == sorted(targets[..., 0].ravel())  # a permutation


def test_all_eight_dihedral_transforms_occur():
    image, targets = _coordinate_pair(4, 4)
    seen = {
        Augmentation()(np.random.default_rng(s), image, targets)[1][..., 0].tobytes()
        for s in range(64)
    }
    assert len(seen) == 8


def test_non_square_arrays_keep_their_shape():
    image, targets = _coordinate_pair(6, 10)
    for s in range(10):
        out_img, out_tgt = Augmentation()(np.random.default_rng(s), image, targets)
        assert out_img.shape == (6, 10, 3) and out_tgt.shape == (6, 10, 2)


def test_intensity_changes_the_image_only_and_stays_in_range():
    image, targets = _coordinate_pair()
    rng = np.random.default_rng(0)
    out = adjust_intensity(rng, image, brightness=0.3, contrast=0.5, gamma=0.5, noise=0.1)
    assert out.min() >= 0 and out.max() <= 1 and not np.allclose(out, image)
    aug = Augmentation(flips=False, rot90=False, noise=0.1)
    _, out_tgt = aug(np.random.default_rng(1), image, targets)
    np.testing.assert_array_equal(out_tgt, targets)


def test_elastic_keeps_targets_crisp_and_crop_pads():
    _, labels = synthetic_dataset(1, (48, 48), seed=3)
    targets = make_targets(labels[0], "sigmoid")
    image = np.repeat(targets[..., :1], 3, -1)
    _, out_tgt = elastic(np.random.default_rng(0), image, targets, alpha=6, sigma=4)
    assert set(np.unique(out_tgt)) <= {0.0, 1.0}  # nearest neighbour: no blended labels
    assert not np.array_equal(out_tgt, targets)
    small_img, small_tgt = random_crop(
        np.random.default_rng(0), image[:20, :30], targets[:20, :30], (32, 32)
    )
    assert small_img.shape == (32, 32, 3) and small_tgt.shape == (32, 32, 2)


def test_targets_and_weight_map_channel():
    _, labels = synthetic_dataset(1, (40, 40), seed=1)
    y = make_targets(labels[0], "sigmoid", weight_map=True)
    assert y.shape == (40, 40, 3)
    np.testing.assert_allclose(y[..., 2], unet_weight_map(labels[0]), rtol=1e-6)
    assert make_targets(labels[0], "softmax").sum(-1).min() == 1.0
    with pytest.raises(ValueError, match="Unknown target kind"):
        make_targets(labels[0], "edges")


def test_normalize_image_inputs():
    assert normalize_image(np.array([[0, 1000], [500, 250]], np.uint16)).max() == 1.0
    assert normalize_image(np.zeros((4, 4, 4), np.uint8)).shape == (4, 4, 3)
    with pytest.raises(ValueError, match="NaN or inf"):
        normalize_image(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="non-empty"):
        normalize_image(np.zeros((0, 3)))


def test_dataset_is_deterministic_per_epoch_and_index():
    images, labels = synthetic_dataset(6, (64, 64), seed=0)
    kwargs = {"batch_size": 3, "crop_size": (48, 48), "augment": Augmentation(), "weight_map": True}
    a = SegmentationDataset(list(images), list(labels), **kwargs)
    b = SegmentationDataset(list(images), list(labels), **kwargs)
    assert len(a) == 2
    x1, y1 = a[1]
    np.testing.assert_array_equal(x1, b[1][0])
    assert y1.shape == (3, 48, 48, 3)
    a.on_epoch_end()
    assert not np.array_equal(a[1][0], x1)
    with pytest.raises(IndexError):
        a[2]


def test_dataset_errors():
    images, labels = synthetic_dataset(2, (32, 32), seed=0)
    with pytest.raises(ValueError, match="same non-zero number"):
        SegmentationDataset(list(images), list(labels[:1]))
    with pytest.raises(ValueError, match="labels"):
        SegmentationDataset([images[0][:16]], [labels[0]], crop_size=(8, 8))
    with pytest.raises(ValueError, match="crop_size"):
        SegmentationDataset(
            [images[0], images[1][:16]], [labels[0], labels[1][:16]], crop_size=None
        )


def test_from_folders_and_fit(tmp_path):
    images, labels = synthetic_dataset(4, (64, 64), seed=2)
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        skimage.io.imsave(tmp_path / "img" / f"s{i}.png", (img * 255).astype(np.uint8))
        tifffile.imwrite(tmp_path / "lab" / f"s{i}_mask.tif", lab)
    data = SegmentationDataset.from_folders(
        tmp_path / "img", tmp_path / "lab", batch_size=2, crop_size=(32, 32),
        weight_map=True, preprocessing="resnet18", augment=Augmentation(),
    )  # fmt: skip
    np.testing.assert_array_equal(data.targets[3][..., :2], make_targets(labels[3], "sigmoid"))
    from keras_dynunet.losses import WeightedBinaryCrossentropy

    model = kd.build_unet("resnet18", classes=2, activation="sigmoid")
    model.compile(optimizer="adam", loss=WeightedBinaryCrossentropy())
    history = model.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    (tmp_path / "lab" / "s0_mask.tif").unlink()
    with pytest.raises(FileNotFoundError, match="No label file"):
        SegmentationDataset.from_folders(tmp_path / "img", tmp_path / "lab")


def test_boolean_images_are_masks_in_unit_range():
    image = normalize_image(np.array([[True, False]]))
    assert image.shape == (1, 2, 3) and image.max() == 1.0 and image.min() == 0.0
