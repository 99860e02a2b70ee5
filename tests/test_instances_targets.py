"""Tests for keras_dynunet.instances.targets."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_dynunet.instances import (
    BACKGROUND,
    BORDER,
    INTERIOR,
    binary_mask,
    instance_borders,
    sigmoid_targets,
    softmax_class_ids,
    softmax_targets,
    validate_labels,
)

small_labels = hnp.arrays(
    dtype=np.int32,
    shape=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    elements=st.integers(0, 4),
)


def brute_force_borders(labels: np.ndarray, width: int) -> np.ndarray:
    """Literal definition: a different instance within Euclidean distance <= width."""
    out = np.zeros(labels.shape, dtype=bool)
    coords = list(itertools.product(range(labels.shape[0]), range(labels.shape[1])))
    for p in coords:
        a = labels[p]
        if a == 0:
            continue
        for q in coords:
            b = labels[q]
            if b not in (0, a) and np.hypot(p[0] - q[0], p[1] - q[1]) <= width:
                out[p] = True
                break
    return out


def test_binary_mask() -> None:
    labels = np.array([[0, 3, 3], [7, 0, 0]], dtype=np.uint16)
    np.testing.assert_array_equal(binary_mask(labels), [[0, 1, 1], [1, 0, 0]])
    assert binary_mask(labels).dtype == bool


def test_borders_two_touching_squares_width_1() -> None:
    labels = np.zeros((4, 6), dtype=np.int32)
    labels[:, 0:3] = 5
    labels[:, 3:6] = 9
    labels[0, :] = 0
    expected = np.zeros((4, 6), dtype=bool)
    expected[1:, 2:4] = True  # one column on each side of the contact line
    np.testing.assert_array_equal(instance_borders(labels, width=1), expected)


def test_borders_two_touching_squares_width_2() -> None:
    labels = np.zeros((3, 8), dtype=np.int32)
    labels[:, 0:4] = 1
    labels[:, 4:8] = 2
    expected = np.zeros((3, 8), dtype=bool)
    expected[:, 2:6] = True  # two columns on each side
    np.testing.assert_array_equal(instance_borders(labels, width=2), expected)


def test_outer_boundary_to_background_is_not_border() -> None:
    labels = np.zeros((7, 7), dtype=np.int32)
    labels[2:5, 2:5] = 4
    assert not instance_borders(labels, width=3).any()


def test_gap_and_diagonal_contacts() -> None:
    gap = np.array([[1, 0, 2]])  # distance 2 between the two instances
    assert not instance_borders(gap, width=1).any()
    np.testing.assert_array_equal(instance_borders(gap, width=2), [[1, 0, 1]])
    diagonal = np.array([[1, 0], [0, 2]])  # distance sqrt(2)
    assert not instance_borders(diagonal, width=1).any()
    np.testing.assert_array_equal(instance_borders(diagonal, width=2), [[1, 0], [0, 1]])


def test_width_zero_and_largest_id() -> None:
    labels = np.array([[1, 2**31 - 1]], dtype=np.int64)
    assert not instance_borders(labels, width=0).any()
    np.testing.assert_array_equal(instance_borders(labels, width=1), [[1, 1]])


def test_targets_hand_made() -> None:
    labels = np.array([[1, 1, 1, 2, 2, 0]])
    sig = sigmoid_targets(labels, border_width=1)
    assert sig.shape == (1, 6, 2) and sig.dtype == np.float32
    np.testing.assert_array_equal(sig[0, :, 0], [1, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(sig[0, :, 1], [0, 0, 1, 1, 0, 0])
    ids = softmax_class_ids(labels, border_width=1)
    expected_ids = [INTERIOR, INTERIOR, BORDER, BORDER, INTERIOR, BACKGROUND]
    np.testing.assert_array_equal(ids[0], expected_ids)
    assert ids.dtype == np.int32
    one_hot = softmax_targets(labels, border_width=1)
    assert one_hot.shape == (1, 6, 3) and one_hot.dtype == np.float32
    np.testing.assert_array_equal(one_hot.argmax(-1), ids)


@settings(max_examples=60, deadline=None, database=None)
@given(labels=small_labels, width=st.integers(0, 3))
def test_borders_match_brute_force(labels: np.ndarray, width: int) -> None:
    expected = brute_force_borders(labels, width)
    np.testing.assert_array_equal(instance_borders(labels, width), expected)


@settings(max_examples=60, deadline=None, database=None)
@given(labels=small_labels, width=st.integers(0, 3), data=st.data())
def test_target_properties(labels: np.ndarray, width: int, data: st.DataObject) -> None:
    mask = binary_mask(labels)
    border = instance_borders(labels, width)
    assert not (border & ~mask).any()  # border is a subset of the mask
    sig = sigmoid_targets(labels, width)
    assert (sig.sum(-1) <= 1).all()
    np.testing.assert_array_equal(sig.sum(-1), mask)
    np.testing.assert_array_equal(sig[..., 1].astype(bool), border)
    soft = softmax_targets(labels, width)
    np.testing.assert_array_equal(soft.sum(-1), 1.0)
    np.testing.assert_array_equal(soft[..., :2], sig)
    # Targets do not depend on which ids are used, only on which pixels share an id.
    new_ids = data.draw(st.lists(st.integers(1, 2**31 - 1), min_size=4, max_size=4, unique=True))
    lut = np.array([0, *new_ids], dtype=np.int64)
    np.testing.assert_array_equal(instance_borders(lut[labels], width), border)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int64, np.uint64])
def test_accepted_integer_dtypes(dtype: type) -> None:
    labels = np.array([[1, 2], [0, 0]], dtype=dtype)
    assert validate_labels(labels).dtype == np.int32
    np.testing.assert_array_equal(instance_borders(labels, 1), [[1, 1], [0, 0]])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros((2, 2, 1), dtype=np.int32), "2-D"),
        (np.zeros((4,), dtype=np.int32), "2-D"),
        (np.zeros((0, 3), dtype=np.int32), "empty"),
        (np.zeros((2, 2), dtype=np.float32), "integer dtype"),
        (np.zeros((2, 2), dtype=bool), "integer dtype"),
        (np.array([[0, -1]]), "negative"),
        (np.array([[0, 2**31]], dtype=np.int64), "relabel_sequential"),
    ],
)
def test_invalid_labels(labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sigmoid_targets(labels)


@pytest.mark.parametrize("width", [-1, 1.5, True])
def test_invalid_width(width: object) -> None:
    with pytest.raises(ValueError, match="width"):
        instance_borders(np.zeros((3, 3), dtype=np.int32), width)  # type: ignore[arg-type]


def test_instances_package_does_not_import_keras() -> None:
    package = Path(__file__).resolve().parents[1] / "keras_dynunet" / "instances"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"keras", "tensorflow", "torch", "jax"}, path
