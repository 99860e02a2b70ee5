"""Hostile inputs give clear errors (the message names the problem) and leave files intact."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

import keras_dynunet as kd
from keras_dynunet.checkpoint import CheckpointError, ChecksumMismatchError, file_sha256
from keras_dynunet.instances import sigmoid_targets, softmax_targets, validate_labels
from keras_dynunet.predict import predict_files
from keras_dynunet.segment import predict_probabilities


def _tiny(base_filters: int = 2, depth: int = 2) -> kd.VanillaUNet:
    return kd.VanillaUNet(
        input_shape=(None, None, 3), padding="same", base_filters=base_filters, depth=depth
    )


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file below ``folder``."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kd.save_pretrained(_tiny(), tmp_path_factory.mktemp("ck") / "ck")


@pytest.fixture(scope="module")
def model() -> kd.VanillaUNet:
    return _tiny()


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ck"
    shutil.copytree(checkpoint, target)
    return target


def _edit_config(path: Path, **changes: object) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def _use_weights(path: Path, weights: Path) -> None:
    """Put another weights file in a checkpoint, with a matching SHA-256."""
    shutil.copy(weights, path / "model.weights.h5")
    _edit_config(path, weights_sha256=file_sha256(path / "model.weights.h5"))


# === Checkpoints ===


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda p: (p / "config.json").write_text("{bad json"), CheckpointError, "not valid JSON"),
        (lambda p: (p / "config.json").write_text("[1, 2]"), CheckpointError, "JSON object"),
        (
            lambda p: (p / "config.json").write_bytes(b"\xff\xfe\x00"),
            CheckpointError,
            "not UTF-8",
        ),
        (
            lambda p: _edit_config(p, format_version="1"),
            CheckpointError,
            "format_version must be a positive integer",
        ),
        (
            lambda p: _edit_config(p, model_config=[1]),
            CheckpointError,
            "model_config must be a JSON object",
        ),
        (
            lambda p: _edit_config(p, weights_file="../../etc/passwd"),
            CheckpointError,
            "plain file name",
        ),
        (
            lambda p: (p / "model.weights.h5").write_bytes(
                (p / "model.weights.h5").read_bytes()[:1000]
            ),
            ChecksumMismatchError,
            "truncated or corrupt",
        ),
    ],
)
def test_malformed_checkpoint(
    checkpoint: Path, tmp_path: Path, edit: object, error: type, message: str
) -> None:
    path = _copy(checkpoint, tmp_path)
    edit(path)
    before = _snapshot(path)
    with pytest.raises(error, match=message):
        kd.load_pretrained(path)
    assert _snapshot(path) == before


def test_truncated_weights_with_matching_hash(checkpoint: Path, tmp_path: Path) -> None:
    path = _copy(checkpoint, tmp_path)
    data = (path / "model.weights.h5").read_bytes()[:1000]
    (path / "model.weights.h5").write_bytes(data)
    _edit_config(path, weights_sha256=hashlib.sha256(data).hexdigest())
    before = _snapshot(path)
    with pytest.raises(CheckpointError, match=r"does not fit the model .*truncated file"):
        kd.load_pretrained(path)
    assert _snapshot(path) == before


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (lambda: _tiny(depth=3), "could not be loaded"),  # another architecture
        (lambda: _tiny(base_filters=4), "could not be loaded"),  # same layers, other shapes
    ],
)
def test_weights_of_another_model(checkpoint: Path, tmp_path: Path, other, message: str) -> None:
    weights = tmp_path / "other.weights.h5"
    other().save_weights(str(weights))
    path = _copy(checkpoint, tmp_path)
    _use_weights(path, weights)
    before = _snapshot(path)
    with pytest.raises(CheckpointError, match=f"does not fit the model.*{message}"):
        kd.load_pretrained(path)
    assert _snapshot(path) == before


def test_encoder_weights_file_errors(tmp_path: Path) -> None:

    small = kd.get_encoder("resnet18", (None, None, 3))
    good = tmp_path / "resnet18.weights.h5"
    small.save_weights(str(good))
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(good.read_bytes()[:2000])
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not an hdf5 file")
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"into 'resnet34_encoder'.*could not be loaded"):
        kd.get_encoder("resnet34", (None, None, 3), weights=str(good))
    with pytest.raises(ValueError, match="truncated"):
        kd.get_encoder("resnet18", (None, None, 3), weights=str(truncated))
    with pytest.raises(ValueError, match="file signature not found"):
        kd.get_encoder("resnet18", (None, None, 3), weights=str(junk))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        kd.get_encoder("resnet18", (None, None, 3), weights=str(tmp_path / "no.weights.h5"))
    assert _snapshot(tmp_path) == before


# === Images ===

BAD_IMAGES = {
    "two channels": (np.zeros((32, 32, 2), np.uint8), "got 2"),
    "five channels": (np.zeros((32, 32, 5), np.uint8), "got 5"),
    "nan": (np.full((32, 32, 3), np.nan, np.float32), "NaN or inf"),
    "inf": (np.full((32, 32, 3), np.inf, np.float32), "NaN or inf"),
    "zero size": (np.zeros((0, 32, 3), np.uint8), "non-empty"),
    "zero size 2-D": (np.zeros((0, 0), np.uint8), "non-empty"),
    "rank 4": (np.zeros((1, 8, 8, 3), np.uint8), "non-empty .H, W. or .H, W, C. array"),
    "object": (np.empty((32, 32, 3), object), "real numeric array .* got dtype object"),
    "str": (np.full((32, 32, 3), "a"), "real numeric array .* got dtype <U1"),
    "complex": (np.ones((32, 32, 3), complex), "real numeric array .* got dtype complex128"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_images_predict_probabilities(model, case: str) -> None:
    image, message = BAD_IMAGES[case]
    copy = image.copy()
    with pytest.raises(ValueError, match=message):
        predict_probabilities(model, image)
    np.testing.assert_array_equal(image, copy)


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_images_dataset(case: str) -> None:
    image, message = BAD_IMAGES[case]
    labels = np.zeros(image.shape[:2], np.int32) if image.ndim in (2, 3) else np.zeros((8, 8))
    with pytest.raises(ValueError, match=message):
        kd.SegmentationDataset([image], [labels], batch_size=1, crop_size=None)


TILED = {
    "object": (np.empty((32, 32, 3), object), "real numeric array, got dtype object"),
    "str": (np.full((32, 32, 3), "a"), "real numeric array, got dtype <U1"),
    "complex": (np.ones((32, 32, 3), complex), "real numeric array, got dtype complex128"),
    "two channels": (np.zeros((32, 32, 2), np.uint8), "has 2 channels but the model takes 3"),
    "five channels": (np.zeros((32, 32, 5), np.uint8), "has 5 channels but the model takes 3"),
    "nan": (np.full((32, 32, 3), np.nan, np.float32), "NaN or inf"),
    "inf": (np.full((32, 32, 3), -np.inf, np.float32), "NaN or inf"),
    "zero size": (np.zeros((0, 32, 3), np.float32), "image is empty"),
    "no channel axis": (np.zeros((32, 32), np.float32), "Add a channel axis"),
}


@pytest.mark.parametrize("case", sorted(TILED))
def test_bad_images_predict_tiled(model, case: str) -> None:
    image, message = TILED[case]
    with pytest.raises(ValueError, match=message):
        kd.predict_tiled(model, image, tile=32, overlap=8)


FILES = {
    "two channels": (np.zeros((32, 32, 2), np.uint8), "got 2"),
    "five channels": (np.zeros((32, 32, 5), np.uint8), "got 5"),
    "nan": (np.full((32, 32, 3), np.nan, np.float32), "NaN or inf"),
    "inf": (np.full((32, 32, 3), np.inf, np.float32), "NaN or inf"),
    "zero size": (np.zeros((0, 32, 3), np.uint8), "non-empty"),
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_bad_image_files(checkpoint: Path, tmp_path: Path, case: str) -> None:
    image, message = FILES[case]
    path = tmp_path / "in" / "image.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, image)
    before = _snapshot(path.parent)
    with pytest.raises(ValueError, match=message):
        predict_files(kd.load_pretrained(checkpoint), [path], tmp_path / "out", progress=False)
    assert _snapshot(path.parent) == before


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n truncated"])
def test_unreadable_image_files(checkpoint: Path, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(content)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"Could not read image '.*image\.png'"):
        predict_files(kd.load_pretrained(checkpoint), [path], tmp_path / "out", progress=False)
    assert _snapshot(tmp_path) == before
    with pytest.raises(FileNotFoundError, match="does not exist"):
        predict_files(kd.load_pretrained(checkpoint), [tmp_path / "x.png"], tmp_path / "o")


# === Labels ===

BAD_LABELS = {
    "negative": (np.array([[0, -1], [1, 2]]), "negative ids"),
    "huge int64": (np.array([[0, 2**40], [1, 2]], np.int64), "above the supported maximum"),
    "huge uint64": (np.array([[0, 2**63]], np.uint64), "above the supported maximum"),
    "float": (np.array([[0, 1.5], [1, 2]]), "integer dtype, got float64"),
    "object": (np.array([[0, 1]], object), "integer dtype, got object"),
    "3-D": (np.zeros((2, 2, 2), int), "2-D"),
    "empty": (np.zeros((0, 3), int), "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
@pytest.mark.parametrize("function", [validate_labels, sigmoid_targets, softmax_targets])
def test_bad_labels(function, case: str) -> None:
    labels, message = BAD_LABELS[case]
    copy = labels.copy()
    with pytest.raises(ValueError, match=message):
        function(labels)
    np.testing.assert_array_equal(labels, copy)


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_bad_labels_dataset(case: str) -> None:
    labels, message = BAD_LABELS[case]
    image = np.zeros((2, 2), np.uint8)
    with pytest.raises(ValueError, match=message):
        kd.SegmentationDataset([image], [labels], batch_size=1, crop_size=None)
