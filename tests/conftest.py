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

# Under pytest-xdist (`scripts/test.sh` runs two workers on two cores) each
# worker gets one math thread: two workers with a pool of two threads each
# oversubscribe the cores, and PyTorch's OpenMP pool then waits for a
# descheduled thread on every op (tests/layers on PyTorch, two workers:
# 77 s -> 44 s; TensorFlow 257 s -> 222 s; measured with another job on
# the machine). JAX is left alone (no faster with one thread). Set before
# the backends are imported; values set by the user are kept.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in (
        "OMP_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
    ):
        os.environ.setdefault(_name, "1")

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
