"""Test configuration: TensorFlow unless KERAS_BACKEND says otherwise, quiet logs."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest


@pytest.fixture(autouse=True)
def _seed():
    """Each test starts from a fixed seed (numpy, Python and the backend)."""
    keras.utils.set_random_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _clear_session():
    """Free the models a test module built (clear_session is too slow to run per test)."""
    yield
    keras.backend.clear_session()
