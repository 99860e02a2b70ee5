"""Tiled inference: grid, blending, TTA, small/odd images, errors. Runs on every backend.

Measured tolerances (max |tiled - whole image|, 96x80 image, TF/JAX/torch CPU):

* pointwise model (1x1 convs), any blend/TTA: <= 5e-7 (float rounding only);
* 3 x 3x3 convs (receptive-field radius 3), ``blend="crop"``, overlap >= 6: 0.0;
  overlap 4: 0.19-0.27 (so the exactness test is sensitive);
* same model, ``blend="gaussian"``, tile 32: overlap 8 -> 1.8e-2..2.0e-2,
  overlap 16 -> 0.9e-3..1.2e-3; ``blend="mean"`` overlap 8: 0.28-0.48;
* small U-Net (custom stride-8 encoder, sigmoid), tile 64 / overlap 32:
  ``"gaussian"`` 2.5e-3..8.7e-3 (mean abs <= 3e-4), ``"crop"`` 0.0 (tile offsets
  are multiples of the encoder stride, so the U-Net is translation-equivariant
  on this grid).
"""

import keras
import numpy as np
import pytest

import keras_dynunet as kd
from keras_dynunet.inference import blend_window, predict_tiled, tile_starts

pytestmark = pytest.mark.backends


def _image(shape=(96, 80, 3), seed=0):
    return np.random.default_rng(seed).uniform(size=shape).astype("float32")


def _convnet(kernel=3, depth=3, classes=2, input_shape=(None, None, 3)):
    """Fully convolutional toy of ``depth`` same-padded convs: radius ``depth * (kernel // 2)``."""
    inputs = keras.Input(input_shape)
    x = inputs
    for _ in range(depth):
        x = keras.layers.Conv2D(8, kernel, padding="same", activation="tanh")(x)
    return keras.Model(inputs, keras.layers.Conv2D(classes, 1)(x))


def _small_unet():
    inputs = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="d1")(inputs)
    h = keras.layers.BatchNormalization(name="d1_bn")(h)
    h = keras.layers.Conv2D(16, 3, strides=4, padding="same", name="d2")(h)
    encoder = keras.Model(inputs, h, name="tiny_encoder")
    return kd.build_unet(encoder, classes=2, activation="sigmoid")


def _whole(model, image):
    return model.predict_on_batch(image[None])[0]


def _max_err(a, b):
    return float(np.abs(np.asarray(a, "float64") - b).max())


def _record_calls(model, monkeypatch):
    shapes = []
    original = model.predict_on_batch

    def recording(batch):
        shapes.append(batch.shape)
        return original(batch)

    monkeypatch.setattr(model, "predict_on_batch", recording)
    return shapes


# === Grid and window ===


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(96, 32, 8), (97, 32, 12), (80, 64, 32), (10, 32, 8), (33, 32, 0)],
)
def test_tile_starts_cover_with_stride_and_border_aligned_last_tile(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    assert starts[-1] == max(length - tile, 0)
    steps = np.diff(starts)
    assert (steps > 0).all() and (steps <= tile - overlap).all()
    assert (steps[:-1] == tile - overlap).all()
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()


def test_gaussian_window_is_nnunet_like_and_never_zero():
    w = blend_window(65)
    assert w.dtype == np.float32 and w.shape == (65, 65)
    assert w[32, 32] == 1.0 and w.min() > 0
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    sigma = 65 / 8
    np.testing.assert_allclose(w[32, 33], np.exp(-0.5 / sigma**2), rtol=1e-6)
    wide = blend_window((16, 1024))
    assert wide.min() > 0 and wide.shape == (16, 1024)
    np.testing.assert_array_equal(blend_window((3, 5), "linear"), np.ones((3, 5), np.float32))


# === Exactness of the tiling and blending math ===


@pytest.mark.parametrize("blend", ["gaussian", "mean", "linear", "crop"])
@pytest.mark.parametrize(("tile", "overlap"), [(32, 8), ((40, 24), (10, 6))])
def test_pointwise_model_tiles_exactly(blend, tile, overlap):
    model = _convnet(kernel=1)
    image = _image()
    pred = predict_tiled(model, image, tile=tile, overlap=overlap, blend=blend, batch_size=3)
    assert pred.shape == (96, 80, 2) and pred.dtype == np.float32
    assert _max_err(pred, _whole(model, image)) <= 1e-5


@pytest.mark.parametrize("overlap", [6, 8, 12])
def test_crop_blend_is_exact_when_overlap_covers_the_receptive_field(overlap):
    model = _convnet(kernel=3, depth=3)  # receptive-field radius 3: needs overlap // 2 >= 3
    image = _image((97, 61, 3))  # non-square, not a multiple of the stride
    pred = predict_tiled(model, image, tile=32, overlap=overlap, blend="crop")
    assert _max_err(pred, _whole(model, image)) <= 1e-5


def test_crop_blend_detects_too_small_overlap():
    model = _convnet(kernel=3, depth=3)
    image = _image()
    pred = predict_tiled(model, image, tile=32, overlap=4, blend="crop")
    assert _max_err(pred, _whole(model, image)) > 1e-2


def test_gaussian_blend_error_is_small_and_shrinks_with_overlap():
    model = _convnet(kernel=3, depth=3)
    image = _image()
    whole = _whole(model, image)
    err = {
        (blend, overlap): _max_err(
            predict_tiled(model, image, tile=32, overlap=overlap, blend=blend), whole
        )
        for blend in ("gaussian", "mean")
        for overlap in (8, 16)
    }
    assert err["gaussian", 8] <= 5e-2  # measured 1.8e-2..2.0e-2
    assert err["gaussian", 16] <= 5e-3  # measured 0.9e-3..1.2e-3
    assert err["gaussian", 8] < err["mean", 8] / 5
    assert err["gaussian", 16] < err["gaussian", 8] / 5


def test_unet_tiled_matches_whole_image():
    model = _small_unet()
    image = _image()
    whole = _whole(model, image)
    gauss = predict_tiled(model, image, tile=64, overlap=32)
    diff = np.abs(gauss - whole)
    assert diff.max() <= 2e-2 and diff.mean() <= 1e-3  # measured max 2.5e-3..8.7e-3
    crop = predict_tiled(model, image, tile=64, overlap=32, blend="crop")
    assert _max_err(crop, whole) <= 1e-5  # offsets 0/32 and 0/16: multiples of stride 8


# === TTA ===


@pytest.mark.parametrize("tile", [32, (48, 24)])
def test_tta_equals_no_tta_for_an_equivariant_model(tile):
    model = _convnet(kernel=1)  # pointwise: commutes with flips and rotations
    image = _image((70, 100, 3))
    plain = predict_tiled(model, image, tile=tile, overlap=8)
    tta = predict_tiled(model, image, tile=tile, overlap=8, tta=True)
    assert _max_err(tta, plain) <= 1e-5


def test_tta_averages_the_eight_inverted_dihedral_predictions():
    model = _convnet(kernel=3, depth=2)
    image = _image((30, 20, 3))  # one tile: the result is the plain TTA average
    expected = np.zeros((30, 20, 2))
    for flip in (False, True):
        for k in range(4):
            moved = np.rot90(image[:, ::-1] if flip else image, k)
            back = np.rot90(_whole(model, np.ascontiguousarray(moved)), -k)
            expected += back[:, ::-1] if flip else back
    expected /= 8
    tta = predict_tiled(model, image, tile=32, overlap=8, tta=True)
    assert _max_err(tta, expected) <= 1e-5
    assert _max_err(tta, predict_tiled(model, image, tile=32, overlap=8)) > 1e-3


# === Sizes, batches, memory ===


def test_image_smaller_than_the_tile_runs_one_tile_of_its_own_size(monkeypatch):
    model = _small_unet()
    image = _image((40, 56, 3))
    shapes = _record_calls(model, monkeypatch)
    pred = predict_tiled(model, image, tile=64, overlap=16)
    assert shapes == [(1, 40, 56, 3)]
    assert _max_err(pred, _whole(model, image)) <= 1e-5


def test_fixed_size_model_reflect_pads_a_small_image():
    model = _convnet(kernel=3, depth=2, input_shape=(32, 32, 3))
    image = _image((20, 28, 3))
    pred = predict_tiled(model, image, tile=32, overlap=8)
    padded = np.pad(image, ((0, 12), (0, 4), (0, 0)), mode="reflect")
    assert pred.shape == (20, 28, 2)
    assert _max_err(pred, _whole(model, padded)[:20, :28]) <= 1e-5
    with pytest.raises(ValueError, match="fixed input size"):
        predict_tiled(model, image, tile=64, overlap=8)


def test_batches_of_tiles_are_bounded_and_keep_one_shape(monkeypatch):
    model = _convnet(kernel=3, depth=3)
    image = _image((97, 61, 3))
    shapes = _record_calls(model, monkeypatch)
    predict_tiled(model, image, tile=32, overlap=12, batch_size=4)
    # rows 0,20,40,60,65 x cols 0,20,29 = 15 tiles -> 4 batches, the last padded to 4
    assert shapes == [(4, 32, 32, 3)] * 4


def test_batch_of_images_and_integer_dtype():
    model = _convnet(kernel=3, depth=2)
    images = np.random.default_rng(1).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    batch = predict_tiled(model, images, tile=32, overlap=8)
    assert batch.shape == (2, 50, 70, 2) and batch.dtype == np.float32
    for image, pred in zip(images, batch, strict=True):
        single = predict_tiled(model, image.astype("float32"), tile=32, overlap=8)
        np.testing.assert_allclose(pred, single, atol=1e-6)


def test_progress_bar_counts_tiles(capsys):
    model = _convnet(kernel=1)
    predict_tiled(model, _image((64, 64, 3)), tile=32, overlap=8, progress=True)
    assert "9/9" in capsys.readouterr().err


# === Errors ===


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((8, 8)), {}, "channel axis"),
        (np.zeros((1, 1, 8, 8, 3)), {}, "got shape"),
        (np.zeros((0, 8, 3)), {}, "empty"),
        (np.zeros((8, 8, 4)), {}, "4 channels but the model takes 3"),
        (np.zeros((8, 8, 3)), {"tile": 16, "overlap": 16}, "larger than overlap"),
        (np.zeros((8, 8, 3)), {"tile": 16, "overlap": -1}, "overlap >= 0"),
        (np.zeros((8, 8, 3)), {"blend": "cosine"}, "blend must be one of"),
        (np.zeros((8, 8, 3)), {"batch_size": 0}, "batch_size"),
        (np.full((8, 8, 3), np.nan), {}, "NaN or inf"),
        (np.zeros((8, 8, 3), "U1"), {}, "numeric"),
    ],
)
def test_clear_errors(image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        predict_tiled(_convnet(kernel=1), image, **kwargs)


def test_inf_location_is_reported():
    image = _image((300, 40, 3))
    image[270, 5, 1] = np.inf
    with pytest.raises(ValueError, match="row 270, column 5"):
        predict_tiled(_convnet(kernel=1), image)


def test_model_must_keep_the_spatial_size():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 2, strides=2)(inputs))
    with pytest.raises(ValueError, match="spatial size"):
        predict_tiled(model, _image((16, 16, 3)), tile=16, overlap=4)
