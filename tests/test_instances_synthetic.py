"""Tests for keras_dynunet.instances.synthetic."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from keras_dynunet.instances import (
    instance_borders,
    synthetic_dataset,
    synthetic_labels,
    synthetic_nuclei,
)


def test_shapes_dtypes_and_range() -> None:
    img, lab = synthetic_nuclei((80, 96), n_nuclei=(5, 10), radius=(5, 9), seed=0)
    assert img.shape == (80, 96, 3) and img.dtype == np.float32
    assert lab.shape == (80, 96) and lab.dtype == np.int32
    assert img.min() >= 0.0 and img.max() <= 1.0
    gray, lab2 = synthetic_nuclei((80, 96), n_nuclei=(5, 10), radius=(5, 9), seed=0, rgb=False)
    assert gray.shape == (80, 96)
    np.testing.assert_array_equal(lab, lab2)


def test_deterministic_given_seed() -> None:
    a = synthetic_nuclei((64, 64), seed=123)
    b = synthetic_nuclei((64, 64), seed=123)
    c = synthetic_nuclei((64, 64), seed=124)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_instance_count_ids_and_connectivity() -> None:
    lab = synthetic_labels((256, 256), n_nuclei=(20, 60), radius=(6, 16), seed=5)
    ids = np.unique(lab)[1:]
    assert 20 <= ids.size <= 60
    np.testing.assert_array_equal(ids, np.arange(1, ids.size + 1))  # sequential ids
    for idx, box in enumerate(ndi.find_objects(lab), start=1):
        assert ndi.label(lab[box] == idx)[1] == 1, f"instance {idx} is not connected"
    sizes = np.bincount(lab.ravel())[1:]
    assert sizes.max() <= np.pi * 16 * 16 + 4 * 16  # no bigger than the largest ellipse


def test_exact_count_touching_and_overlap_control() -> None:
    lab = synthetic_labels((256, 256), n_nuclei=40, radius=(6, 12), overlap=0.3, seed=1)
    assert lab.max() == 40
    assert instance_borders(lab, width=1).any()  # some nuclei touch
    separated = synthetic_labels((256, 256), n_nuclei=30, radius=(6, 12), overlap=0.0, seed=1)
    assert separated.max() > 0


def test_nuclei_brighter_than_background() -> None:
    img, lab = synthetic_nuclei((128, 128), n_nuclei=20, radius=(6, 12), seed=9, rgb=False)
    assert img[lab > 0].mean() > img[lab == 0].mean() + 0.15


def test_dataset_stacks_and_is_prefix_stable() -> None:
    x, y = synthetic_dataset(3, (48, 48), seed=7, n_nuclei=(3, 6), radius=(4, 7))
    assert x.shape == (3, 48, 48, 3) and x.dtype == np.float32
    assert y.shape == (3, 48, 48) and y.dtype == np.int32
    x2, y2 = synthetic_dataset(2, (48, 48), seed=7, n_nuclei=(3, 6), radius=(4, 7))
    np.testing.assert_array_equal(x[:2], x2)
    np.testing.assert_array_equal(y[:2], y2)
    assert not np.array_equal(y[0], y[1])
    xg, _ = synthetic_dataset(0, (48, 48), seed=7, rgb=False)
    assert xg.shape == (0, 48, 48)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (4, 64)}, "shape"),
        ({"shape": (64, 64, 3)}, "shape"),
        ({"radius": (10, 5)}, "radius"),
        ({"radius": (1, 5)}, "radius"),
        ({"n_nuclei": -1}, "n_nuclei"),
        ({"n_nuclei": (9, 3)}, "n_nuclei"),
        ({"overlap": 1.0}, "overlap"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic_nuclei(**kwargs)


def test_invalid_dataset_size() -> None:
    with pytest.raises(ValueError, match="non-negative int"):
        synthetic_dataset(-1)
