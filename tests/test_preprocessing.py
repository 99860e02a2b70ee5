"""Per-encoder input preprocessing."""

import numpy as np
import pytest
from keras import ops

from keras_dynunet import preprocess_input

pytestmark = pytest.mark.backends


def test_modes_against_hand_computed_values():
    x = np.array([[[[0.0, 127.0, 255.0]]]], "float32")
    np.testing.assert_allclose(ops.convert_to_numpy(preprocess_input(x, "none")), x)
    np.testing.assert_allclose(
        ops.convert_to_numpy(preprocess_input(x, "lite")), [[[[-127 / 128, 0.0, 1.0]]]], atol=1e-6
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(preprocess_input(x, "tf")),
        [[[[-1.0, 127 / 127.5 - 1, 1.0]]]],
        atol=1e-6,
    )
    imagenet = [(0 - 0.485) / 0.229, (127 / 255 - 0.456) / 0.224, (1 - 0.406) / 0.225]
    np.testing.assert_allclose(
        ops.convert_to_numpy(preprocess_input(x, "imagenet"))[0, 0, 0], imagenet, atol=1e-5
    )
    caffe = [255 - 103.939, 127 - 116.779, 0 - 123.68]  # BGR order
    np.testing.assert_allclose(
        ops.convert_to_numpy(preprocess_input(x, "caffe"))[0, 0, 0], caffe, atol=1e-4
    )


def test_encoder_name_selects_its_mode_and_errors():
    x = np.full((1, 2, 2, 3), 255.0, "float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(preprocess_input(x, "efficientnet-lite0")),
        ops.convert_to_numpy(preprocess_input(x, "lite")),
    )
    with pytest.raises(ValueError, match="needs 3 RGB channels"):
        preprocess_input(np.zeros((1, 2, 2, 1)), "imagenet")
    with pytest.raises(KeyError, match="Unknown encoder"):
        preprocess_input(x, "zscore")
