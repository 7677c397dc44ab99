import keras
import numpy as np
import pytest
from dual_memory_reference import dual_memory_forward
from dual_memory_reference import gumbel_read
from dual_memory_reference import mean_pairwise_cosine
from keras import ops

from mmfusion_keras.layers import DualMemoryFusion
from mmfusion_keras.layers.dual_memory_fusion import (
    mean_pairwise_cosine as layer_mean_pairwise_cosine,
)
from mmfusion_keras.testing import fusion_input_error_cases
from mmfusion_keras.testing import run_layer_conformance

rng = np.random.default_rng(0)
A = rng.standard_normal((5, 6)).astype("float32")
T = rng.standard_normal((5, 6)).astype("float32")
SMALL = {"memory_slots": 4, "output_dim": 16, "writer_heads": 2}


def np_(v):
    return ops.convert_to_numpy(v).astype("float64")


def _errors():
    common = [
        case
        for case in fusion_input_error_cases(
            lambda: DualMemoryFusion(**SMALL), "DualMemoryFusion"
        )
        if case[0] != "one modality"
    ]
    x = np.ones((2, 3), "float32")
    return common + [
        (
            "one modality",
            lambda: DualMemoryFusion(**SMALL)([x]),
            r"DualMemoryFusion.*exactly 2 modality tensors.*Received 1 modalities",
        ),
        (
            "three modalities",
            lambda: DualMemoryFusion(**SMALL)([x, x, x]),
            r"exactly 2 modality tensors.*Received 3 modalities",
        ),
        (
            "mismatched widths",
            lambda: DualMemoryFusion(**SMALL)([x, np.ones((2, 5), "float32")]),
            r"DualMemoryFusion.*same width. Received widths d_a=3 and d_t=5.*"
            r"`memory_dim`",
        ),
        (
            "memory_slots",
            lambda: DualMemoryFusion(memory_slots=0),
            r"argument `memory_slots`, expected a positive integer. "
            r"Received: memory_slots=0",
        ),
        (
            "memory_dim",
            lambda: DualMemoryFusion(memory_dim=-2),
            r"argument `memory_dim`, expected a positive integer or None. "
            r"Received: memory_dim=-2",
        ),
        (
            "temperature_max",
            lambda: DualMemoryFusion(temperature_max=0.0),
            r"argument `temperature_max`.*greater than.*1e-4.*"
            r"Received: temperature_max=0.0",
        ),
        (
            "similarity_loss_weight",
            lambda: DualMemoryFusion(similarity_loss_weight=-1),
            r"`similarity_loss_weight`, expected a non-negative number",
        ),
    ]


def test_conformance():
    # Trainable: 2 temperature Dense (kernel, bias), 2 composer attentions,
    # 2 batch norms (gamma, beta), and per writer 8 attention + 2 x 2 layer
    # norm + 2 x 2 feed-forward + 1 top-k kernel. Non-trainable: hashes and
    # signs of the pooling (4), moving statistics (4), the two memories.
    # The writer learns only from the Eq. 4 loss, which the conformance
    # gradient probe (output only) does not see: gradients are checked in
    # test_one_fit_step_trains_every_sub_module and
    # test_top_k_scorer_learns_from_similarity_loss.
    run_layer_conformance(
        DualMemoryFusion,
        {**SMALL, "seed": 1},
        [(None, 6), (None, 6)],
        expected_output_shape=(None, 16),
        expected_num_trainable_weights=4 + 2 + 4 + 2 * 17,
        expected_num_non_trainable_weights=4 + 4 + 2,
        expected_num_seed_generators=1,
        run_gradients=False,
        error_cases=_errors(),
    )


def _layer(**kwargs):
    layer = DualMemoryFusion(**{**SMALL, "seed": 3, **kwargs})
    layer.build([A.shape, T.shape])
    r = np.random.default_rng(1)
    for m in layer.memories:  # sharper than Xavier, so the reads differ
        m.assign(r.standard_normal(tuple(m.shape)).astype("float32"))
    return layer


def _weights(layer):
    def dense(d):
        return np_(d.kernel), np_(d.bias)

    def bn(b):
        return tuple(
            np_(v) for v in (b.gamma, b.beta, b.moving_mean, b.moving_variance)
        )

    return {
        "temperature_a": dense(layer.temperatures[0]),
        "temperature_t": dense(layer.temperatures[1]),
        "hashes": [ops.convert_to_numpy(h) for h in layer.pooling.hashes],
        "signs": [np_(s) for s in layer.pooling.signs],
        "dim": layer.output_dim,
        "attention_1": np_(layer.attentions[0].attentive_projection.kernel),
        "attention_2": np_(layer.attentions[1].attentive_projection.kernel),
        "bn_1": bn(layer.norms[0]),
        "bn_2": bn(layer.norms[1]),
    }


def test_inference_matches_numpy_reference():
    layer = _layer()
    memories = [np_(m) for m in layer.memories]
    out = np_(layer([A, T], training=False))
    ref, (z_a, z_t), (tau_a, tau_t) = dual_memory_forward(
        A.astype("float64"), T.astype("float64"), *memories, _weights(layer)
    )
    # The signed square root is ill-conditioned at 0: float32 FFT noise of
    # 1e-10 becomes 1e-5 (times D = 16 after the rescale).
    np.testing.assert_allclose(out, ref, atol=1e-3)
    report = layer.inspect([A, T])
    np.testing.assert_allclose(report["read_weights"][0], z_a, atol=1e-5)
    np.testing.assert_allclose(report["read_weights"][1], z_t, atol=1e-5)
    np.testing.assert_allclose(report["temperature"][0], tau_a, atol=1e-5)
    np.testing.assert_allclose(report["temperature"][1], tau_t, atol=1e-5)
    # The reads are not trivial: not uniform, not identical across samples.
    assert z_a.max(axis=-1).mean() > 1.5 / layer.memory_slots
    assert not np.allclose(z_a[0], z_a[1])
    # Nothing was written by inference or inspect.
    for m, before in zip(layer.memories, memories):
        np.testing.assert_array_equal(np_(m), before)


def test_training_reader_with_fixed_gumbel_noise_matches_reference():
    layer = _layer()
    r = np.random.default_rng(7)
    noises = [r.gumbel(size=(5, 4)).astype("float32") for _ in range(2)]
    pending = list(noises)
    layer._gumbel_noise = lambda shape: ops.convert_to_tensor(pending.pop(0))
    memories = [np_(m) for m in layer.memories]
    result = layer._forward(
        [ops.convert_to_tensor(A), ops.convert_to_tensor(T)], training=True
    )
    w = _weights(layer)
    # x_{t,a}: the text query reads M_a (noise 0); x_{a,t}: audio reads M_t.
    read_a, z_a, tau_a = gumbel_read(T, memories[0], *w["temperature_a"], noises[0])
    read_t, z_t, tau_t = gumbel_read(A, memories[1], *w["temperature_t"], noises[1])
    np.testing.assert_allclose(np_(result["read_weights"][0]), z_a, atol=1e-5)
    np.testing.assert_allclose(np_(result["read_weights"][1]), z_t, atol=1e-5)
    np.testing.assert_allclose(np_(result["reads"][0]), read_a, atol=1e-5)
    np.testing.assert_allclose(np_(result["reads"][1]), read_t, atol=1e-5)
    # The noise matters: the noiseless read differs.
    _, z_clean, _ = gumbel_read(T, memories[0], *w["temperature_a"])
    assert not np.allclose(z_clean, z_a, atol=1e-3)


def test_similarity_loss_matches_reference():
    m = np.random.default_rng(2).standard_normal((5, 3)).astype("float32")
    got = float(ops.convert_to_numpy(layer_mean_pairwise_cosine(m)))
    np.testing.assert_allclose(got, mean_pairwise_cosine(m.astype("float64")), 1e-5)
    one = float(ops.convert_to_numpy(layer_mean_pairwise_cosine(m[:1])))
    assert one == 0.0
    # The layer adds Eq. 4 on the memories it writes, only in training.
    layer = _layer(similarity_loss_weight=0.5)
    layer([A, T], training=False)
    assert len(layer.losses) == 0
    layer([A, T], training=True)
    expected = 0.5 * sum(mean_pairwise_cosine(np_(v)) for v in layer.memories)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(np_(layer.losses[0]), expected, atol=1e-5)


@pytest.mark.parametrize("scale,bound", [(1e4, 10.0), (0.0, 1e-4)])
def test_temperature_stays_in_bounds(scale, bound):
    layer = _layer()
    for dense in layer.temperatures:
        dense.kernel.assign(np.full(tuple(dense.kernel.shape), scale, "float32"))
        dense.bias.assign(np.zeros(tuple(dense.bias.shape), "float32"))
    report = layer.inspect([A * 10, T * 10])
    for tau in report["temperature"]:
        np.testing.assert_allclose(tau, bound, rtol=1e-6)
    out = np_(layer([A * 10, T * 10], training=True))
    assert np.all(np.isfinite(out))


def _model(**kwargs):
    a, t = keras.Input((6,), name="a"), keras.Input((6,), name="t")
    fusion = DualMemoryFusion(**{**SMALL, "seed": 0, "name": "fusion", **kwargs})
    fused = fusion([a, t])
    outputs = keras.layers.Dense(3, activation="softmax")(fused)
    return keras.Model([a, t], outputs), fusion


def test_one_fit_step_trains_every_sub_module():
    model, fusion = _model()
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    before = {v.path: np_(v) for v in model.trainable_variables}
    labels = np.arange(5) % 3
    model.fit([A, T], labels, batch_size=5, epochs=1, verbose=0)
    changed = {
        path: not np.allclose(np_(v), before[path], atol=1e-7)
        for path, v in ((v.path, v) for v in model.trainable_variables)
    }
    for sub in (
        "audio_memory_temperature",
        "text_memory_temperature",
        "composer_attention_1",
        "composer_norm_2",
        "audio_writer_attention",
        "text_writer_hidden",
        "text_writer_norm_2",
    ):
        assert any(sub in p and c for p, c in changed.items()), sub
    # Every weight moves, the top-k scorers included (their SoftSort
    # selection is differentiable); an attention key bias never gets a
    # gradient (the softmax ignores a constant per query).
    for p, c in changed.items():
        if "key/bias" not in p:
            assert c, f"{p} did not change"


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_top_k_scorer_learns_from_similarity_loss(weight):
    # The writer's output reaches the step's loss only through Eq. 4 (the
    # memory is assigned without gradient), so the scorer kernels move in a
    # fit step exactly when the Eq. 4 loss is on.
    model, fusion = _model(similarity_loss_weight=weight)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    scorers = [writer[-1].kernel for writer in fusion.writers]
    before = [np_(k) for k in scorers]
    model.fit([A, T], np.arange(5) % 3, batch_size=5, epochs=1, verbose=0)
    for kernel, b in zip(scorers, before):
        moved = np.abs(np_(kernel) - b).max()
        if weight:
            assert moved > 1e-6, kernel.path
        else:
            assert moved == 0.0, kernel.path


@pytest.mark.parametrize("jit_compile", [False, "auto"])
def test_memories_change_in_fit_only(jit_compile):
    model, fusion = _model()
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=jit_compile)
    labels = np.arange(5) % 3
    before = [np_(m) for m in fusion.memories]
    model.predict([A, T], verbose=0)
    model.evaluate([A, T], labels, verbose=0)
    for m, b in zip(fusion.memories, before):
        np.testing.assert_array_equal(np_(m), b)
    model.fit([A, T], labels, batch_size=5, epochs=1, verbose=0)
    for m, b in zip(fusion.memories, before):
        assert not np.allclose(np_(m), b)
    # A frozen layer keeps its memories.
    fusion.trainable = False
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=jit_compile)
    after = [np_(m) for m in fusion.memories]
    model.fit([A, T], labels, batch_size=5, epochs=1, verbose=0)
    for m, b in zip(fusion.memories, after):
        np.testing.assert_array_equal(np_(m), b)


def test_memory_dim_projects_different_widths():
    layer = DualMemoryFusion(**SMALL, memory_dim=8, seed=0)
    out = layer([A, T[:, :4]], training=True)
    assert tuple(out.shape) == (5, 16)
    assert [tuple(m.shape) for m in layer.memories] == [(4, 8), (4, 8)]
    assert layer.get_config()["memory_dim"] == 8
