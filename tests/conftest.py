import os

# Tests compile many tiny XLA programs once each: skipping LLVM's expensive
# optimisations cuts JAX's compile time by about a quarter (measured on
# the hierarchical model's fit test) and computes the same up to rounding.
# Set before keras (and jax) is imported;
# appended, so flags a user or a test's subprocess sets still apply.
_FAST_COMPILE = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

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
