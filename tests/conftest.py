import os

import keras
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.config.backend()}"


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts with a fresh global state and float32 policy."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    keras.config.set_dtype_policy("float32")
