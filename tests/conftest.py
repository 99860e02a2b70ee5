"""Test configuration: TensorFlow unless KERAS_BACKEND says otherwise, quiet logs."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest


@pytest.fixture(autouse=True)
def _seed_and_clear():
    """Each test starts from a fixed seed and a clean Keras name scope."""
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()
