import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from keras import ops
from mbaf_reference import mbaf_batch
from mbaf_reference import softmax

from mmfusion_keras.layers import MemoryBasedAttentiveFusion
from mmfusion_keras.layers.memory_based_attentive_fusion import batch_memory_write
from mmfusion_keras.testing import run_layer_conformance

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
rng = np.random.default_rng(0)
A = rng.standard_normal((5, 3)).astype("float32")
T = rng.standard_normal((5, 4)).astype("float32")


def _weights(layer, j=0):
    """The layer's weights of memory unit `j`, as the reference's dict."""

    def np_(v):
        return ops.convert_to_numpy(v).astype("float64")

    return {
        "read_kernel": np_(layer.read_projections[j].kernel),
        "read_bias": np_(layer.read_projections[j].bias),
        "composer_kernel": np_(layer.composers[j].kernel),
        "composer_bias": np_(layer.composers[j].bias),
        "attention_kernel": np_(layer.attentions[j].attentive_projection.kernel),
        "transform_kernel": np_(layer.transforms[j].kernel),
    }


def _memory(layer, j=0):
    return ops.convert_to_numpy(layer.memories[j]).astype("float64")


def _errors():
    return [
        (
            "one modality",
            lambda: MemoryBasedAttentiveFusion()([A]),
            r"MemoryBasedAttentiveFusion.*at least 2 modality tensors.*Received 1",
        ),
        (
            "wrong rank",
            lambda: MemoryBasedAttentiveFusion()([A, T[:, :, None]]),
            r"rank 2.*modality 1 with rank 3",
        ),
        (
            "mismatched batch",
            lambda: MemoryBasedAttentiveFusion()([A, T[:3]]),
            r"same batch size.*\[5, 3\]",
        ),
        (
            "integer modality",
            lambda: MemoryBasedAttentiveFusion()([A, T.astype("int32")]),
            r"floating-point.*dtype int32",
        ),
        (
            "memory_slots",
            lambda: MemoryBasedAttentiveFusion(memory_slots=0),
            r"argument `memory_slots`, expected a positive integer. "
            r"Received: memory_slots=0",
        ),
        (
            "read",
            lambda: MemoryBasedAttentiveFusion(read="both"),
            r"argument `read`, expected one of \('self', 'cross'\). "
            r"Received: read='both'",
        ),
        (
            "memory",
            lambda: MemoryBasedAttentiveFusion(memory="shared"),
            r"argument `memory`.*Received: memory='shared'",
        ),
        (
            "cross + per_modality",
            lambda: MemoryBasedAttentiveFusion(read="cross", memory="per_modality"),
            r"cannot be combined with `memory='per_modality'`",
        ),
    ]


@pytest.mark.parametrize(
    "kwargs,n_trainable,n_memories",
    [
        ({"memory_slots": 4, "seed": 1}, 6, 1),
        ({"memory_slots": 4, "read": "cross", "composition_units": 5}, 6, 1),
        ({"memory_slots": 3, "memory": "per_modality"}, 12, 2),
    ],
)
def test_conformance(kwargs, n_trainable, n_memories):
    run_layer_conformance(
        MemoryBasedAttentiveFusion,
        kwargs,
        [(None, 3), (None, 4)],
        expected_output_shape=(None, 7),
        expected_num_trainable_weights=n_trainable,
        expected_num_non_trainable_weights=n_memories,
        error_cases=_errors(),
    )


def test_three_modalities_conformance():
    run_layer_conformance(
        MemoryBasedAttentiveFusion,
        {"memory_slots": 2, "read": "cross"},
        [(None, 2), (None, 3), (None, 1)],
        expected_output_shape=(None, 6),
        expected_num_trainable_weights=6,
        expected_num_non_trainable_weights=1,
        run_mixed_precision=False,
    )


@pytest.mark.parametrize("read", ["self", "cross"])
def test_matches_numpy_reference(read):
    layer = MemoryBasedAttentiveFusion(memory_slots=6, read=read, seed=3)
    out = ops.convert_to_numpy(layer([A, T], training=False))
    x = np.concatenate([A, T], axis=-1).astype("float64")
    xc = np.concatenate([T, A], axis=-1).astype("float64") if read == "cross" else x
    memory = _memory(layer)
    ref_out, ref_memory, ref_z, ref_alpha = mbaf_batch(x, xc, memory, _weights(layer))
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    # Inference leaves the memory alone; training writes Eq. 8.
    np.testing.assert_array_equal(_memory(layer), memory)
    report = layer.inspect([A, T])
    np.testing.assert_allclose(report["read_weights"], ref_z, atol=1e-5)
    np.testing.assert_allclose(report["attention"], ref_alpha, atol=1e-5)
    np.testing.assert_allclose(report["memory_after_write"], ref_memory, atol=1e-5)
    np.testing.assert_array_equal(_memory(layer), memory)  # inspect is read-only
    out_train = ops.convert_to_numpy(layer([A, T], training=True))
    np.testing.assert_allclose(out_train, ref_out, atol=1e-5)
    np.testing.assert_allclose(_memory(layer), ref_memory, atol=1e-5)
    assert not np.allclose(_memory(layer), memory)


def test_per_modality_matches_reference():
    # Same seed, same initial memories; `untouched` is never written.
    untouched = MemoryBasedAttentiveFusion(
        memory_slots=4, memory="per_modality", seed=2
    )
    untouched.build([A.shape, T.shape])
    layer = MemoryBasedAttentiveFusion(memory_slots=4, memory="per_modality", seed=2)
    out = ops.convert_to_numpy(layer([A, T], training=True))
    outs = []
    for j, x in enumerate([A, T]):  # Eq. 13: x = x_i, one memory each
        x = x.astype("float64")
        ref_out, ref_memory, _, _ = mbaf_batch(
            x, x, _memory(untouched, j), _weights(layer, j)
        )
        outs.append(ref_out)
        np.testing.assert_allclose(_memory(layer, j), ref_memory, atol=1e-5)
        assert not np.allclose(_memory(layer, j), _memory(untouched, j))
    np.testing.assert_allclose(out, np.concatenate(outs, axis=-1), atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(min_value=1, max_value=9),
    slots=st.integers(min_value=1, max_value=5),
    sharp=st.floats(min_value=0.1, max_value=20.0),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_batch_write_equals_sequential_loop(batch, slots, sharp, seed):
    r = np.random.default_rng(seed)
    memory = r.standard_normal((slots, 3))
    z = softmax(sharp * r.standard_normal((batch, slots)))
    h = r.standard_normal((batch, 3))
    expected = memory.copy()
    for s in range(batch):  # Eq. 8, sample by sample
        expected = expected * (1.0 - z[s])[:, None] + np.outer(z[s], h[s])
    got = batch_memory_write(
        ops.convert_to_tensor(memory.astype("float32")),
        ops.convert_to_tensor(z.astype("float32")),
        ops.convert_to_tensor(h.astype("float32")),
    )
    np.testing.assert_allclose(ops.convert_to_numpy(got), expected, atol=1e-5)


def _model(**kwargs):
    a, t = keras.Input((3,), name="a"), keras.Input((4,), name="t")
    fused = MemoryBasedAttentiveFusion(memory_slots=5, seed=0, name="fusion", **kwargs)(
        [a, t]
    )
    return keras.Model([a, t], keras.layers.Dense(2, activation="softmax")(fused))


@pytest.mark.parametrize("jit_compile", [False, "auto"])
def test_memory_changes_in_fit_only(jit_compile):
    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=jit_compile)
    y = np.array([0, 1, 0, 1, 1])
    memory = _memory(model.get_layer("fusion"))
    model.predict([A, T], verbose=0)
    model.evaluate([A, T], y, verbose=0)
    np.testing.assert_array_equal(_memory(model.get_layer("fusion")), memory)
    model.fit([A, T], y, epochs=1, batch_size=5, verbose=0)
    trained = _memory(model.get_layer("fusion"))
    assert np.abs(trained - memory).max() > 1e-3
    model.predict([A, T], verbose=0)
    model.evaluate([A, T], y, verbose=0)
    np.testing.assert_array_equal(_memory(model.get_layer("fusion")), trained)


def test_frozen_layer_keeps_memory():
    model = _model()
    model.get_layer("fusion").trainable = False
    model.compile("adam", "sparse_categorical_crossentropy")
    memory = _memory(model.get_layer("fusion"))
    model.fit([A, T], np.array([0, 1, 0, 1, 1]), epochs=1, verbose=0)
    np.testing.assert_array_equal(_memory(model.get_layer("fusion")), memory)


def test_checkpoint_restores_memory(tmp_path):
    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy")
    y = np.array([0, 1, 0, 1, 1])
    path = str(tmp_path / "ckpt.weights.h5")
    model.fit(
        [A, T],
        y,
        epochs=1,
        verbose=0,
        callbacks=[keras.callbacks.ModelCheckpoint(path, save_weights_only=True)],
    )
    trained = _memory(model.get_layer("fusion"))
    model.fit([A, T], y, epochs=1, verbose=0)
    assert not np.allclose(_memory(model.get_layer("fusion")), trained)
    model.load_weights(path)
    np.testing.assert_array_equal(_memory(model.get_layer("fusion")), trained)


def test_backup_and_restore_keeps_memory(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.memory = _memory(self.model.get_layer("fusion"))
                raise RuntimeError("interrupted")

    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy")
    y = np.array([0, 1, 0, 1, 1])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    interrupt = Interrupt()
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit([A, T], y, epochs=2, verbose=0, callbacks=[backup, interrupt])
    resumed = _model()
    resumed.compile("adam", "sparse_categorical_crossentropy")

    class Capture(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.memory = _memory(self.model.get_layer("fusion"))

    capture = Capture()
    # BackupAndRestore loads the backup in on_train_begin, before Capture.
    resumed.fit([A, T], y, epochs=2, verbose=0, callbacks=[backup, capture])
    np.testing.assert_array_equal(capture.memory, interrupt.memory)


@pytest.mark.parametrize("other", ["tensorflow", "jax", "torch"])
def test_saved_under_one_backend_loads_under_another(other, tmp_path):
    if other == keras.config.backend():
        pytest.skip("same backend: covered by the conformance check")
    model = _model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit([A, T], np.array([0, 1, 0, 1, 1]), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "inputs_a.npy", A)
    np.save(tmp_path / "inputs_t.npy", T)
    np.save(tmp_path / "expected.npy", model.predict([A, T], verbose=0))
    np.save(tmp_path / "memory.npy", _memory(model.get_layer("fusion")))
    script = textwrap.dedent(
        f"""
        import keras, numpy as np
        import mmfusion_keras
        d = {str(tmp_path)!r}
        m = keras.saving.load_model(d + "/model.keras", compile=False)
        out = m.predict([np.load(d + "/inputs_a.npy"), np.load(d + "/inputs_t.npy")], verbose=0)
        np.testing.assert_allclose(out, np.load(d + "/expected.npy"), atol=1e-5)
        mem = keras.ops.convert_to_numpy(m.get_layer("fusion").memories[0])
        np.testing.assert_array_equal(mem, np.load(d + "/memory.npy"))
        print("OK", keras.config.backend())
        """
    )
    env = {**os.environ, "KERAS_BACKEND": other, "PYTHONPATH": REPO}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"OK {other}" in result.stdout


def test_jax_data_parallel_memory_matches_single_device(tmp_path):
    if keras.config.backend() != "jax":
        pytest.skip("keras.distribution.DataParallel is tested on JAX")
    script = textwrap.dedent(
        """
        import keras, numpy as np, jax
        from mmfusion_keras.layers import MemoryBasedAttentiveFusion
        assert len(jax.devices()) == 2, jax.devices()

        def build():
            a, t = keras.Input((3,)), keras.Input((4,))
            f = MemoryBasedAttentiveFusion(memory_slots=4, seed=0, name="fusion")([a, t])
            m = keras.Model([a, t], keras.layers.Dense(2)(f))
            m.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return m

        r = np.random.default_rng(0)
        a, t = r.standard_normal((8, 3), "float32"), r.standard_normal((8, 4), "float32")
        y = r.integers(0, 2, 8)
        keras.utils.set_random_seed(1)
        single = build()
        w = single.get_weights()
        m0 = np.asarray(single.get_layer("fusion").memories[0].value)
        single.fit([a, t], y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        keras.utils.set_random_seed(1)
        parallel = build()
        parallel.set_weights(w)
        parallel.fit([a, t], y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        m1 = np.asarray(single.get_layer("fusion").memories[0].value)
        m2 = np.asarray(parallel.get_layer("fusion").memories[0].value)
        np.testing.assert_allclose(m2, m1, atol=1e-5)
        assert np.abs(m1 - m0).max() > 1e-3  # the step did write
        print("OK", len(jax.devices()))
        """
    )
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "PYTHONPATH": REPO,
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK 2" in result.stdout
