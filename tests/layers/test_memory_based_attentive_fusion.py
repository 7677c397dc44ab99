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
from mbaf_reference import key_batch_stats
from mbaf_reference import mbaf_batch
from mbaf_reference import softmax
from mbaf_reference import write_one

from mmfusion_keras.inspection import memory_health
from mmfusion_keras.inspection import memory_is_collapsed
from mmfusion_keras.inspection import model_memory_health
from mmfusion_keras.layers import MemoryBasedAttentiveFusion
from mmfusion_keras.layers.memory_based_attentive_fusion import safe_memory_write
from mmfusion_keras.testing import run_layer_conformance
from mmfusion_keras.testing import trainable_gradients

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
READINGS = ["softmax_features", "literal", "rescaled", "vector"]
SIMILARITIES = [
    "dot",
    "scaled",
    "cosine",
    "centered_dot",
    "centered_scaled",
    "centered_cosine",
]
OLD = {
    "write": "soft",
    "composition_attention": "softmax_features",
    "read_similarity": "dot",
}
rng = np.random.default_rng(0)
A = rng.standard_normal((5, 3)).astype("float32")
T = rng.standard_normal((5, 4)).astype("float32")


def _weights(layer, j=0):
    """The layer's weights of memory unit `j`, as the reference's dict."""

    def np_(v):
        return ops.convert_to_numpy(v).astype("float64")

    weights = {
        "read_kernel": np_(layer.read_projections[j].kernel),
        # Centered readings: f_r has no bias (it would cancel), i.e. zero.
        "read_bias": (
            np.zeros(layer.read_projections[j].units)
            if layer.read_projections[j].bias is None
            else np_(layer.read_projections[j].bias)
        ),
        "composer_kernel": np_(layer.composers[j].kernel),
        "composer_bias": np_(layer.composers[j].bias),
    }
    reading = layer.composition_attention
    if reading == "vector":
        weights["attentive_vector"] = np_(layer.attentions[j].attentive_vector)
        weights["transform_vector"] = np_(layer.transforms[j])
    else:
        weights["transform_kernel"] = np_(layer.transforms[j].kernel)
    if reading in ("softmax_features", "rescaled"):
        weights["attention_kernel"] = np_(
            layer.attentions[j].attentive_projection.kernel
        )
    if layer.read_sharpness:
        weights["read_sharpness"] = np_(layer.read_sharpness[j])
    return weights


def _reference(layer, x, xc, memory, training, j=0):
    """`mbaf_batch` with the layer's readings and weights; the key
    statistics of the "centered_" similarities are the batch's in training,
    the layer's moving ones otherwise."""
    w = _weights(layer, j)
    stats = None
    if layer.read_similarity.startswith("centered"):
        if training:
            stats = key_batch_stats(x, w)
        else:
            norm = layer.key_normalizations[j]
            stats = (
                ops.convert_to_numpy(norm.moving_mean).astype("float64"),
                ops.convert_to_numpy(norm.moving_variance).astype("float64"),
            )
    return mbaf_batch(
        x,
        xc,
        memory,
        w,
        layer.composition_attention,
        layer.write,
        layer.read_similarity,
        stats,
    )


def _randomize(layer, seed=0):
    """Non-trivial values for the vector reading's zero/one initial weights."""
    r = np.random.default_rng(seed)
    for unit in range(len(layer.memories)):
        bias = layer.read_projections[unit].bias
        if bias is not None:
            bias.assign(r.uniform(-0.5, 0.5, bias.shape).astype("float32"))
        if layer.composition_attention == "vector":
            v = layer.attentions[unit].attentive_vector
            v.assign(r.uniform(-1.0, 1.0, v.shape).astype("float32"))
            w = layer.transforms[unit]
            w.assign(r.uniform(0.5, 1.5, w.shape).astype("float32"))


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
        (
            "write",
            lambda: MemoryBasedAttentiveFusion(write="hard"),
            r"argument `write`, expected one of \('selected', 'soft'\). "
            r"Received: write='hard'",
        ),
        (
            "composition_attention",
            lambda: MemoryBasedAttentiveFusion(composition_attention="dot"),
            r"argument `composition_attention`, expected one of "
            r"\('softmax_features', 'literal', 'rescaled', 'vector'\). "
            r"Received: composition_attention='dot'",
        ),
        (
            "read_similarity",
            lambda: MemoryBasedAttentiveFusion(read_similarity="euclidean"),
            r"argument `read_similarity`, expected one of \('dot', 'scaled', "
            r"'cosine', 'centered_dot', 'centered_scaled', 'centered_cosine'\). "
            r"Received: read_similarity='euclidean'",
        ),
        (
            "read_projection_bias",
            lambda: MemoryBasedAttentiveFusion(read_projection_bias="yes"),
            r"argument `read_projection_bias`, expected True, False or None "
            r".*Received: read_projection_bias='yes'",
        ),
        (
            "vector + composition_units",
            lambda: MemoryBasedAttentiveFusion(
                composition_attention="vector", composition_units=5
            ),
            r"expected composition_units=None. Received: composition_units=5",
        ),
        (
            "zero-size training batch",
            lambda: MemoryBasedAttentiveFusion(memory_slots=2)(
                [A[:0], T[:0]], training=True
            ),
            r"cannot write a zero-size batch.*at least 1 sample. "
            r"Received inputs of shapes \[\(0, 3\), \(0, 4\)\]",
        ),
    ]


@pytest.mark.parametrize(
    "kwargs,n_trainable,n_non_trainable",
    [
        # Defaults: selected write, literal Eq. 5-6 (no attention weights),
        # centered keys (moving mean and variance) + memory + skipped_writes;
        # f_r without bias (it cancels in the centering).
        ({"memory_slots": 4, "seed": 1}, 4, 4),
        ({"memory_slots": 4, "read": "cross", "composition_units": 5, **OLD}, 6, 2),
        (
            {"memory_slots": 3, "memory": "per_modality"}
            | {"composition_attention": "vector", "read_similarity": "cosine"},
            14,  # + one sharpness per memory
            3,
        ),
    ],
)
def test_conformance(kwargs, n_trainable, n_non_trainable):
    run_layer_conformance(
        MemoryBasedAttentiveFusion,
        kwargs,
        [(None, 3), (None, 4)],
        expected_output_shape=(None, 7),
        expected_num_trainable_weights=n_trainable,
        expected_num_non_trainable_weights=n_non_trainable,
        error_cases=_errors(),
    )


def test_three_modalities_conformance():
    run_layer_conformance(
        MemoryBasedAttentiveFusion,
        {"memory_slots": 2, "read": "cross", "composition_attention": "rescaled"},
        [(None, 2), (None, 3), (None, 1)],
        expected_output_shape=(None, 6),
        expected_num_trainable_weights=5,
        expected_num_non_trainable_weights=4,
        run_mixed_precision=False,
    )


def _check_against_reference(layer, read="self"):
    layer.build([A.shape, T.shape])
    _randomize(layer)
    x = np.concatenate([A, T], axis=-1).astype("float64")
    xc = np.concatenate([T, A], axis=-1).astype("float64") if read == "cross" else x
    memory = _memory(layer)
    ref_out, ref_memory, ref_z, ref_alpha, _ = _reference(layer, x, xc, memory, False)
    out = ops.convert_to_numpy(layer([A, T], training=False))
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    # Inference leaves the memory alone; training writes Eq. 8.
    np.testing.assert_array_equal(_memory(layer), memory)
    report = layer.inspect([A, T])
    np.testing.assert_allclose(report["read_weights"], ref_z, atol=1e-5)
    np.testing.assert_allclose(report["attention"], ref_alpha, atol=1e-5)
    np.testing.assert_allclose(report["memory_after_write"], ref_memory, atol=1e-5)
    np.testing.assert_array_equal(_memory(layer), memory)  # inspect is read-only
    train_out, train_memory, _, _, _ = _reference(layer, x, xc, memory, True)
    out_train = ops.convert_to_numpy(layer([A, T], training=True))
    np.testing.assert_allclose(out_train, train_out, atol=1e-5)
    np.testing.assert_allclose(_memory(layer), train_memory, atol=1e-5)
    assert not np.allclose(_memory(layer), memory)
    return ref_z


@pytest.mark.parametrize("write", ["soft", "selected"])
@pytest.mark.parametrize("reading", READINGS)
@pytest.mark.parametrize("read", ["self", "cross"])
def test_matches_numpy_reference(read, reading, write):
    if read == "cross" and (reading, write) != ("literal", "selected"):
        pytest.skip("cross read: one combination is enough")
    layer = MemoryBasedAttentiveFusion(
        memory_slots=6, read=read, seed=3, write=write, composition_attention=reading
    )
    _check_against_reference(layer, read)


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_read_similarities_match_numpy_reference(similarity):
    layer = MemoryBasedAttentiveFusion(
        memory_slots=6, seed=3, read_similarity=similarity
    )
    z = _check_against_reference(layer)
    assert not np.allclose(z[0], z[1])  # the read depends on the input


@pytest.mark.parametrize("reading,write", [("literal", "selected"), ("vector", "soft")])
def test_per_modality_matches_reference(reading, write):
    # Same seed, same initial memories; `untouched` is never written.
    kwargs = {"write": write, "composition_attention": reading}
    untouched = MemoryBasedAttentiveFusion(
        memory_slots=4, memory="per_modality", seed=2, **kwargs
    )
    untouched.build([A.shape, T.shape])
    layer = MemoryBasedAttentiveFusion(
        memory_slots=4, memory="per_modality", seed=2, **kwargs
    )
    layer.build([A.shape, T.shape])
    _randomize(layer)
    out = ops.convert_to_numpy(layer([A, T], training=True))
    outs = []
    for j, x in enumerate([A, T]):  # Eq. 13: x = x_i, one memory each
        x = x.astype("float64")
        ref_out, ref_memory, _, _, _ = _reference(
            layer, x, x, _memory(untouched, j), True, j
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
    write=st.sampled_from(["soft", "selected"]),
)
def test_batch_write_equals_sequential_loop(batch, slots, sharp, seed, write):
    r = np.random.default_rng(seed)
    memory = r.standard_normal((slots, 3)).astype("float32")
    z = softmax(sharp * r.standard_normal((batch, slots))).astype("float32")
    h = r.standard_normal((batch, 3)).astype("float32")
    expected = memory.astype("float64")
    for s in range(batch):  # Eq. 8, sample by sample
        expected, _ = write_one(expected, z[s].astype("float64"), h[s], write)
    got, skipped = safe_memory_write(
        ops.convert_to_tensor(memory),
        ops.convert_to_tensor(z),
        ops.convert_to_tensor(h),
        write,
    )
    if write == "selected":  # a copy of rows: exact
        np.testing.assert_array_equal(ops.convert_to_numpy(got), expected)
    np.testing.assert_allclose(ops.convert_to_numpy(got), expected, atol=1e-5)
    assert float(ops.convert_to_numpy(skipped)) == 0.0


def test_selected_write_later_sample_overwrites_earlier():
    memory = np.zeros((3, 2), "float32")
    z = np.array([[0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.1, 0.7, 0.2]], "float32")
    h = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], "float32")
    got, _ = safe_memory_write(memory, z, h, "selected")
    # Slot 1 is selected by samples 0 and 2: the later one stays; slot 0 is
    # never selected and keeps its value.
    np.testing.assert_array_equal(
        ops.convert_to_numpy(got), [[0.0, 0.0], [3.0, 3.0], [2.0, 2.0]]
    )


@pytest.mark.parametrize("write", ["soft", "selected"])
def test_non_finite_sample_skips_its_write(write):
    layer = MemoryBasedAttentiveFusion(memory_slots=4, seed=5, write=write)
    layer.build([A.shape, T.shape])
    before = _memory(layer)
    bad = A.copy()
    bad[2, 1] = np.nan
    bad[4, 0] = np.inf
    layer([bad, T], training=True)
    after = _memory(layer)
    assert np.isfinite(after).all()
    # Equal to writing the finite samples only (the reference skips the others).
    x = np.concatenate([bad, T], axis=-1).astype("float64")
    _, ref_memory, _, _, skipped = _reference(layer, x, x, before, True)
    assert skipped == 2
    np.testing.assert_allclose(after, ref_memory, atol=1e-5)
    assert float(ops.convert_to_numpy(layer.skipped_writes)) == 2.0
    # A batch made of one non-finite sample leaves the memory as it was.
    layer([bad[2:3], T[2:3]], training=True)
    np.testing.assert_array_equal(_memory(layer), after)
    assert float(ops.convert_to_numpy(layer.skipped_writes)) == 3.0


def test_fit_with_a_nan_sample_keeps_memory_finite():
    model = _model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    layer = model.get_layer("fusion")
    bad = A.copy()
    bad[1, 0] = np.nan
    before = _memory(layer)
    # First batch: samples 0-1 (one NaN), then the NaN loss makes every
    # weight NaN, so every later write is skipped too.
    model.fit([bad, T], np.array([0, 1, 0, 1, 1]), batch_size=2, epochs=2, verbose=0)
    after = _memory(layer)
    assert np.isfinite(after).all()
    assert not np.allclose(after, before)  # sample 0 of the first batch wrote
    assert float(ops.convert_to_numpy(layer.skipped_writes)) >= 1.0


def _model(**kwargs):
    a, t = keras.Input((3,), name="a"), keras.Input((4,), name="t")
    fused = MemoryBasedAttentiveFusion(memory_slots=5, seed=0, name="fusion", **kwargs)(
        [a, t]
    )
    return keras.Model([a, t], keras.layers.Dense(2, activation="softmax")(fused))


# `jit_compile=False` tests TensorFlow's graph mode (tf.function without XLA)
# and PyTorch; on JAX it runs the same stateless train step as "auto", op by
# op without `jax.jit` (every op compiled on its own: 8.8 s of CPU here).
JIT_MODES = [
    pytest.param(
        False,
        marks=pytest.mark.skipif(
            keras.config.backend() == "jax",
            reason="on JAX jit_compile=False is the 'auto' train step run op by op",
        ),
    ),
    "auto",
]


@pytest.mark.parametrize("jit_compile", JIT_MODES)
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


# Each backend's run saves a file for the next backend in this cycle, so
# over the suite's three runs every backend saves once and loads once (a
# subprocess of another backend costs 6-14 s; all six ordered pairs took
# about a minute). Same-backend round trips: the conformance check.
NEXT_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}


def test_saved_under_one_backend_loads_under_another(tmp_path):
    other = NEXT_BACKEND[keras.config.backend()]
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


# Table 3 of the paper: (NF parameters, MBAF parameters, fused width l, batch
# size q of that experiment, section 4).
TABLE_3 = {
    "F-II": (63_314_818, 204_452_098, 6848, 64),
    "F-III": (43_654_018, 184_791_298, 6848, 64),
    "F-IV-VI": (11_448_323, 14_628_867, 1024, 32),
}


def test_vector_reading_matches_table_3_parameter_counts():
    # MBAF - NF in Table 3 is exactly 3 l^2 + (q + 2) l for every row with a
    # known batch size (F-I, not listed, gives 3 l^2 + 70 l). 3 l^2 is
    # exactly f_r (l x l) and f_c (2l x l): a u x u attention matrix W_a and
    # an l x l transform w would add 2 l^2 more, so b_hat and w are vectors.
    for nf, mbaf, width, batch in TABLE_3.values():
        assert mbaf - nf == 3 * width**2 + (batch + 2) * width
    # Our readings, for a small l: the vector reading has 3 l^2 + O(l)
    # weights, the matrix readings 5 l^2 + O(l) (default centered keys:
    # f_r without bias).
    width, k = 7, 4
    counts = {}
    for reading in READINGS:
        layer = MemoryBasedAttentiveFusion(
            memory_slots=k, composition_attention=reading
        )
        layer.build([(None, 3), (None, 4)])
        counts[reading] = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    # f_r: l^2; f_c: 2 l^2 + l; b_hat: l; w: l.
    assert counts["vector"] == 3 * width**2 + 3 * width
    # The literal reading has no attention weights: f_r, f_c and an l x l w.
    assert counts["literal"] == 4 * width**2 + width
    matrix = 5 * width**2 + width
    assert counts["softmax_features"] == counts["rescaled"] == matrix


def test_file_saved_before_the_readings_loads_with_the_old_readings():
    # Saved (JAX) with the layer as it was before `write` and
    # `composition_attention` existed: soft write, c = alpha * b.
    data = np.load(os.path.join(DATA, "mbaf_saved_before_readings.npz"))
    model = keras.saving.load_model(
        os.path.join(DATA, "mbaf_saved_before_readings.keras"), compile=False
    )
    layer = model.get_layer("fusion")
    assert (layer.write, layer.composition_attention) == ("soft", "softmax_features")
    np.testing.assert_array_equal(_memory(layer), data["memory"])
    assert float(ops.convert_to_numpy(layer.skipped_writes)) == 0.0
    out = model.predict([data["a"], data["t"]], verbose=0)
    np.testing.assert_allclose(out, data["expected"], atol=1e-6)


def test_old_config_without_the_new_keys_means_the_old_readings():
    config = MemoryBasedAttentiveFusion(memory_slots=3).get_config()
    del config["write"], config["composition_attention"], config["read_similarity"]
    old = MemoryBasedAttentiveFusion.from_config(config)
    assert (old.write, old.composition_attention, old.read_similarity) == (
        "soft",
        "softmax_features",
        "dot",
    )
    # Saved between the readings and `read_similarity`: the dot product.
    config = MemoryBasedAttentiveFusion(memory_slots=3).get_config()
    del config["read_similarity"]
    middle = MemoryBasedAttentiveFusion.from_config(config)
    assert (middle.write, middle.read_similarity) == ("selected", "dot")
    new = MemoryBasedAttentiveFusion.from_config(
        MemoryBasedAttentiveFusion(memory_slots=3).get_config()
    )
    assert (new.write, new.composition_attention, new.read_similarity) == (
        "selected",
        "literal",
        "centered_dot",
    )
    assert new.read_projection_bias is False
    # Saved with centered keys before `read_projection_bias` existed: f_r
    # had a bias, which the file holds.
    config = MemoryBasedAttentiveFusion(memory_slots=3).get_config()
    del config["read_projection_bias"]
    centered_with_bias = MemoryBasedAttentiveFusion.from_config(config)
    assert centered_with_bias.read_similarity == "centered_dot"
    assert centered_with_bias.read_projection_bias is True


def _clustered(n, seed):
    """Two views of 8 well-separated classes (the task of issue #13)."""
    r = np.random.default_rng(seed)
    centers = np.random.default_rng(99).standard_normal((8, 12)) * 3.0
    y = r.integers(0, 8, n)
    views = centers[y] + 0.5 * r.standard_normal((n, 12))
    return [views[:, :6].astype("float32"), views[:, 6:].astype("float32")], y


def test_default_layer_keeps_its_memory_alive_on_a_clustered_task():
    keras.utils.set_random_seed(0)
    a, t = keras.Input((6,)), keras.Input((6,))
    encoded = [keras.layers.Dense(16, activation="relu")(v) for v in (a, t)]
    fused = MemoryBasedAttentiveFusion(memory_slots=10, seed=0, name="fusion")(encoded)
    model = keras.Model([a, t], keras.layers.Dense(8, activation="softmax")(fused))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _clustered(320, 0)
    model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    x_test, y_test = _clustered(96, 1)
    (health,) = model_memory_health(model, x_test)
    assert not memory_is_collapsed(health), health
    assert model.evaluate(x_test, y_test, verbose=0)[1] > 0.5


def test_centered_keys_spread_reads_that_the_dot_product_gives_one_slot():
    # Trained-model-like conditions measured on the shipped avdigits model:
    # non-negative encodings (ReLU) with a shared component, so the keys
    # f_r(x) point in nearly one direction, and slots that hold written
    # ReLU vectors of norm ~20. Eq. 2's dot product then reads few slots,
    # chosen by the mean key rather than by the input; centered keys (standardized with the statistics of the
    # keys, here set as after training) read the slot that matches the
    # input's own deviation from the mean key.
    keras.utils.set_random_seed(0)
    r = np.random.default_rng(0)
    x = np.maximum(r.standard_normal((64, 12)) + 5.0, 0.0).astype("float32")
    inputs = [x[:, :5], x[:, 5:]]
    memory = np.maximum(r.standard_normal((10, 12)) + 0.5, 0.0)
    memory = 20.0 * memory / np.linalg.norm(memory, axis=1, keepdims=True)
    reads = {}
    for similarity in ("dot", "centered_dot"):
        layer = MemoryBasedAttentiveFusion(
            memory_slots=10, seed=0, read_similarity=similarity
        )
        layer.build([(None, 5), (None, 7)])
        layer.memories[0].assign(memory.astype("float32"))
        if similarity == "centered_dot":
            keys = ops.convert_to_numpy(layer.read_projections[0](x))
            layer.key_normalizations[0].moving_mean.assign(keys.mean(axis=0))
            layer.key_normalizations[0].moving_variance.assign(keys.var(axis=0))
        reads[similarity] = layer.inspect(inputs)["read_weights"]
    dot = memory_health(memory, reads["dot"])
    centered = memory_health(memory, reads["centered_dot"])
    assert dot["top_slot_share"] >= 2 * centered["top_slot_share"], (dot, centered)
    assert centered["slots_read"] >= 5, centered
    assert centered["top_slot_share"] <= 0.5, centered
    # Two different samples give different read weights.
    z = reads["centered_dot"]
    assert np.abs(z[0] - z[1]).max() > 0.1


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_read_projection_bias_only_where_it_does_not_cancel(similarity):
    layer = MemoryBasedAttentiveFusion(memory_slots=4, read_similarity=similarity)
    layer.build([A.shape, T.shape])
    has_bias = layer.read_projections[0].bias is not None
    assert has_bias == (not similarity.startswith("centered"))
    assert layer.get_config()["read_projection_bias"] is has_bias


def _relative_gradients(layer, seed=0):
    """max |gradient| of every trainable weight of `layer` (in a model),
    divided by the largest over all weights, for one training-mode loss."""
    keras.utils.set_random_seed(seed)
    a, t = keras.Input((3,)), keras.Input((4,))
    model = keras.Model([a, t], keras.layers.Dense(2)(layer([a, t])))
    _randomize(layer)
    x = [rng.standard_normal((8, 3)), rng.standard_normal((8, 4))]
    x = [v.astype("float32") for v in x]
    grads = trainable_gradients(model, x)
    size = {
        v.path: float(np.abs(g).max()) for v, g in zip(model.trainable_variables, grads)
    }
    top = max(size.values())
    return {path: value / top for path, value in size.items()}


def test_every_weight_of_the_centered_read_gets_a_real_gradient():
    # Default: every trainable weight gets a gradient well above float
    # rounding (the conformance check only asks for a non-zero one).
    relative = _relative_gradients(MemoryBasedAttentiveFusion(memory_slots=4, seed=0))
    assert min(relative.values()) > 1e-4, relative
    # With the bias kept (files saved before the option), the bias of f_r
    # gets only rounding: the dead weight that the default drops.
    legacy = _relative_gradients(
        MemoryBasedAttentiveFusion(memory_slots=4, seed=0, read_projection_bias=True)
    )
    (bias,) = [p for p in legacy if "read_projection" in p and p.endswith("bias")]
    assert legacy[bias] < 1e-5, legacy
    assert min(v for p, v in legacy.items() if p != bias) > 1e-4, legacy


def test_shipped_avdigits_mbaf_predicts_as_before_the_bias_option():
    # saved_models/avdigits_mbaf was saved with centered keys and f_r's bias
    # (before `read_projection_bias` existed). Expected outputs: computed
    # with the code before the option, per backend, on fixed inputs.
    path = os.path.join(REPO, "saved_models", "avdigits_mbaf", "model.keras")
    expected = np.load(os.path.join(DATA, "avdigits_mbaf_outputs_before_read_bias.npz"))
    model = keras.saving.load_model(path, compile=False)
    fusion = model.get_layer("fusion")
    assert fusion.read_similarity == "centered_dot"
    assert fusion.read_projection_bias is True
    assert np.abs(ops.convert_to_numpy(fusion.read_projections[0].bias)).max() > 0
    r = np.random.default_rng(0)
    image = r.uniform(0, 1, (6, 8, 8, 1)).astype("float32")
    audio = (0.1 * r.standard_normal((6, 16000))).astype("float32")
    backend = keras.config.backend()
    predictions = model.predict([image, audio], verbose=0)
    np.testing.assert_allclose(
        predictions, expected[f"{backend}_predictions"], rtol=0, atol=1e-6
    )
    encoder = keras.Model(model.inputs, fusion.input)
    z = fusion.inspect(encoder.predict([image, audio], verbose=0))["read_weights"]
    # Sharp softmaxes (scores spanning ~100) amplify float rounding.
    np.testing.assert_allclose(z, expected[f"{backend}_read_weights"], atol=2e-5)
