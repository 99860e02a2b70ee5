"""Tests for keras_dynunet.instances.dsb_data (the DSB 2018 example shipped by stardist)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from keras_dynunet.instances import dsb_data, dsb_split, load_dsb_example

needs_stardist = pytest.mark.skipif(
    importlib.util.find_spec("stardist") is None,
    reason="needs `pip install --no-deps stardist==0.9.2 tifffile`",
)


@pytest.fixture(scope="module")
def example() -> tuple[np.ndarray, np.ndarray]:
    return load_dsb_example()


@needs_stardist
def test_example_loads(example: tuple[np.ndarray, np.ndarray]) -> None:
    image, labels = example
    assert image.shape == (512, 512) and image.dtype == np.uint16
    assert labels.shape == (512, 512) and labels.dtype == np.int32
    assert len(np.unique(labels)) - 1 == 125
    assert labels.max() == 183  # ids are not contiguous
    assert image[labels > 0].mean() > 2 * image[labels == 0].mean()


@needs_stardist
def test_split_is_deterministic_and_documented(example: tuple[np.ndarray, np.ndarray]) -> None:
    image, labels = example
    (xi, yi), (xh, yh) = dsb_split(image, labels, relabel=False)
    assert xi.shape == yi.shape == (512, 384) and xh.shape == yh.shape == (512, 128)
    np.testing.assert_array_equal(yi, labels[:, :384])
    np.testing.assert_array_equal(yh, labels[:, 384:])
    np.testing.assert_array_equal(np.concatenate([xi, xh], axis=1), image)
    left, right = set(np.unique(yi)) - {0}, set(np.unique(yh)) - {0}
    cut = left & right
    # cut instances are exactly those with pixels in both column 383 and the held-out side
    assert cut == (set(np.unique(labels[:, 383])) - {0}) & right
    assert len(left | right) == 125
    (_, yi2), (_, yh2) = dsb_split(image, labels)
    assert yi2.max() == len(left) and yh2.max() == len(right)


def test_split_small_and_errors() -> None:
    labels = np.array([[1, 1, 2, 2, 3, 3, 0, 4]])
    image = np.arange(8).reshape(1, 8, 1)
    (xi, yi), (xh, yh) = dsb_split(image, labels, holdout=0.25, relabel=False)
    np.testing.assert_array_equal(yi, [[1, 1, 2, 2, 3, 3]])
    np.testing.assert_array_equal(yh, [[0, 4]])
    assert xi.shape == (1, 6, 1) and xh.shape == (1, 2, 1)
    with pytest.raises(ValueError, match="holdout"):
        dsb_split(image, labels, holdout=0.01)
    with pytest.raises(ValueError, match="holdout"):
        dsb_split(image, labels, holdout=1.0)
    with pytest.raises(ValueError, match="image shape"):
        dsb_split(image[:, :4], labels)


def test_missing_stardist_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dsb_data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps stardist tifffile"):
        load_dsb_example()
