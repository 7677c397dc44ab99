"""`mmfusion train --distribute data-parallel` on 2 virtual CPU devices.

Each check runs in a subprocess (the device count is fixed when the backend
starts), on the backend of the current test run only.
"""

import os
import subprocess
import sys
import textwrap

import keras
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, backend, extra_env=None):
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **(extra_env or {}),
    }
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


# Builds the digits-views MBAF model (memory layer inside), one train step
# on a global batch of 8; prints its weights' checksum and the memory.
_STEP = """
import keras, numpy as np
from mmfusion_keras.tasks import get_task

def one_step():
    # keras.backend.clear_session() is called before entering the scope
    # (on TensorFlow it resets the graph holding the strategy's scope).
    keras.utils.set_random_seed(0)
    task = get_task("digits-views")
    x, y = task.load("train", seed=0)
    x, y = {k: v[:8] for k, v in x.items()}, y[:8]
    model = task.build_model("mbaf", seed=0)
    # SGD, not Adam: with MBAF's standardized-key read the read projection's
    # bias has a zero gradient in exact arithmetic, and Adam would scale its
    # rounding noise (which differs between one and two devices) up to 1e-5.
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    # The memory before the step (to check that the step wrote it).
    model.before = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
    model.train_on_batch(x, y)
    return model
"""


@pytest.mark.skipif(keras.config.backend() != "jax", reason="JAX only")
def test_jax_data_parallel_equals_one_device_and_keeps_memory_replicated():
    script = (
        _STEP
        + """
import jax
from mmfusion_keras import cli
assert len(jax.devices()) == 2, jax.devices()
single = [keras.ops.convert_to_numpy(w) for w in one_step().weights]
keras.backend.clear_session()
with cli._distribution_scope("data-parallel", 8):
    model = one_step()
parallel = [keras.ops.convert_to_numpy(w) for w in model.weights]
for a, b in zip(single, parallel):
    np.testing.assert_allclose(a, b, atol=1e-5)
memories = [w for w in model.weights if "memory" in w.path]
assert memories, [w.path for w in model.weights]
for w in memories:
    # The step did write (the comparison above is not of unchanged state).
    assert np.abs(keras.ops.convert_to_numpy(w) - model.before[w.path]).max() > 1e-3
    shards = [np.asarray(s.data) for s in w.value.addressable_shards]
    assert len(shards) == 2
    np.testing.assert_array_equal(shards[0], shards[1])
# Not a multiple of the device count: a one-line error.
assert cli.main(["train", "--task", "digits-views", "--batch-size", "3",
                 "--distribute", "data-parallel"]) == 2
print("OK", len(single), len(memories))
"""
    )
    # Appended to the flags tests/conftest.py sets (XLA's fast compile).
    flags = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    )
    out = _run(script, "jax", {"XLA_FLAGS": flags.strip()})
    assert "OK" in out


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TF only")
def test_tensorflow_mirrored_strategy_keeps_memory_consistent():
    script = (
        """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
        + _STEP
        + """
from mmfusion_keras import cli
with cli._distribution_scope("data-parallel", 8):
    model = one_step()
    model.train_on_batch(*(lambda t: ({k: v[8:16] for k, v in t[0].items()}, t[1][8:16]))(
        get_task("digits-views").load("train", seed=0)))
memories = [w for w in model.weights if "memory" in w.path]
assert memories, [w.path for w in model.weights]
for w in memories:
    replicas = [r.numpy() for r in w.value.values]
    assert len(replicas) == 2, replicas
    np.testing.assert_array_equal(replicas[0], replicas[1])
print("OK", len(memories))
"""
    )
    assert "OK" in _run(script, "tensorflow")


@pytest.mark.skipif(keras.config.backend() != "torch", reason="PyTorch only")
def test_torch_data_parallel_is_a_one_line_error(capsys):
    from mmfusion_keras import cli

    code = cli.main(
        ["train", "--task", "digits-views", "--distribute", "data-parallel"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "--distribute data-parallel is not supported on the PyTorch backend" in err
