"""Test configuration: TensorFlow unless KERAS_BACKEND says otherwise, quiet logs."""

import os
import shutil
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import pytest

_TEMP_ROOT = pytest.StashKey[tuple]()


@pytest.fixture(autouse=True)
def _seed():
    """Each test starts from a fixed seed (numpy, Python and the backend)."""
    keras.utils.set_random_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _clear_session():
    """Free the models a test module built (clear_session is too slow to run per test)."""
    yield
    keras.backend.clear_session()


def pytest_configure(config: pytest.Config) -> None:
    """Send every temp file of the run (doctests' ``tempfile.mkdtemp()``, subprocesses) to one
    folder that is deleted when the run ends, so repeated runs do not fill the disk."""
    # pytest's own tmp_path folders (kept for failed tests) stay where they were.
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
    root = tempfile.mkdtemp(prefix="keras-dynunet-tests-")
    config.stash[_TEMP_ROOT] = (root, tempfile.tempdir, os.environ.get("TMPDIR"))
    tempfile.tempdir = root
    os.environ["TMPDIR"] = root


def pytest_unconfigure(config: pytest.Config) -> None:
    """Delete the run's temp folder and restore the previous temp settings."""
    if _TEMP_ROOT not in config.stash:
        return
    root, previous, previous_env = config.stash[_TEMP_ROOT]
    tempfile.tempdir = previous
    if previous_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous_env
    shutil.rmtree(root, ignore_errors=True)
