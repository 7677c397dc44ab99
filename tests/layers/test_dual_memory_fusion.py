import keras
import numpy as np
import pytest
from dual_memory_reference import destandardize
from dual_memory_reference import dual_memory_forward
from dual_memory_reference import gumbel_read
from dual_memory_reference import mean_pairwise_cosine
from dual_memory_reference import standardize
from dual_memory_reference import writer as reference_writer
from keras import ops

from mmfusion_keras.layers import DualMemoryFusion
from mmfusion_keras.layers.dual_memory_fusion import LEGACY_WRITER
from mmfusion_keras.layers.dual_memory_fusion import (
    mean_pairwise_cosine as layer_mean_pairwise_cosine,
)
from mmfusion_keras.testing import assert_raises_with_message
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
        (
            "writer_selection",
            lambda: DualMemoryFusion(writer_selection="top"),
            r"argument `writer_selection`, expected one of \['soft', 'hard', "
            r"'straight_through'\]. Received: writer_selection='top'",
        ),
        (
            "writer_block",
            lambda: DualMemoryFusion(writer_block="pre_norm"),
            r"argument `writer_block`, expected one of \['post_norm', 'rezero'\]. "
            r"Received: writer_block='pre_norm'",
        ),
        (
            "gumbel_scale",
            lambda: DualMemoryFusion(gumbel_scale="half"),
            r"argument `gumbel_scale`, expected one of \('similarity_spread', "
            r"'unit'\). Received: gumbel_scale='half'",
        ),
        (
            "embedding_norm",
            lambda: DualMemoryFusion(embedding_norm="layer"),
            r"argument `embedding_norm`, expected one of \('memory', "
            r"'standardize', 'none'\). Received: embedding_norm='layer'",
        ),
        (
            "variance_floor",
            lambda: DualMemoryFusion(variance_floor=-0.1),
            r"argument `variance_floor`, expected a number >= 0. "
            r"Received: variance_floor=-0.1",
        ),
        (
            "similarity_loss",
            lambda: DualMemoryFusion(similarity_loss="cos"),
            r"argument `similarity_loss`, expected one of \('squared_cosine', "
            r"'cosine'\). Received: similarity_loss='cos'",
        ),
        (
            "similarity_gradient",
            lambda: DualMemoryFusion(similarity_gradient="all"),
            r"argument `similarity_gradient`, expected one of \('writer', "
            r"'network'\). Received: similarity_gradient='all'",
        ),
        (
            "norm_momentum",
            lambda: DualMemoryFusion(norm_momentum=1.5),
            r"argument `norm_momentum`, expected a number between 0 and 1 "
            r"\(exclusive\). Received: norm_momentum=1.5",
        ),
        (
            "writer_temperature",
            lambda: DualMemoryFusion(writer_temperature=0),
            r"argument `writer_temperature`, expected a positive finite number.*"
            r"Received: writer_temperature=0",
        ),
        (
            "empty batch",
            lambda: DualMemoryFusion(**SMALL)([x[:0], x[:0]], training=True),
            r"DualMemoryFusion.*received an empty batch \(0 examples\).*"
            r"Received input shapes \[\(0, 3\), \(0, 3\)\]",
        ),
    ]


def test_conformance():
    # Trainable: 2 temperature Dense (kernel, bias), 2 composer attentions,
    # 2 batch norms (gamma, beta), and per writer 8 attention + 2 x 2 layer
    # norm + 2 x 2 feed-forward + 1 top-k kernel + the ReZero scales.
    # Non-trainable: hashes and signs of the pooling (4), moving statistics
    # of the composer (4) and of the embeddings' standardization (4), the
    # two memories and the count of skipped (non-finite) writes.
    # The writer learns only from the Eq. 4 loss, which the conformance
    # gradient probe (output only) does not see: gradients are checked in
    # test_one_fit_step_trains_every_sub_module and
    # test_top_k_scorer_learns_from_similarity_loss.
    run_layer_conformance(
        DualMemoryFusion,
        {**SMALL, "seed": 1},
        [(None, 6), (None, 6)],
        expected_output_shape=(None, 16),
        expected_num_trainable_weights=4 + 2 + 4 + 2 * 18,
        expected_num_non_trainable_weights=4 + 4 + 4 + 2 + 1,
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
    for norm in layer.embedding_norms or []:  # moving statistics off 0 / 1
        norm.moving_mean.assign(r.normal(0.0, 0.5, (6,)).astype("float32"))
        norm.moving_variance.assign(r.uniform(0.5, 2.0, (6,)).astype("float32"))
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
        "norm_epsilon": layer.norm_epsilon,
        "embedding_norm": layer.embedding_norm,
        "variance_floor": layer.variance_floor,
        "temperature_max": layer.temperature_max,
        "embedding_stats": None
        if layer.embedding_norms is None
        else [
            (np_(n.moving_mean).astype("float64"), np_(n.moving_variance))
            for n in layer.embedding_norms
        ],
    }


def _standardized(layer, x):
    """The embeddings as a training step sees them (batch statistics)."""
    x = x.astype("float64")
    if layer.embedding_norms is None:
        return x
    return standardize(x, layer.norm_epsilon, floor=layer.variance_floor)


@pytest.mark.parametrize(
    "embedding_norm,floor",
    [("none", 0.0), ("standardize", 0.0), ("memory", 0.0), ("memory", 0.8)],
)
def test_inference_matches_numpy_reference(embedding_norm, floor):
    # floor 0.8: the moving variances are drawn from [0.5, 2], so some
    # features are floored and some are not.
    layer = _layer(embedding_norm=embedding_norm, variance_floor=floor)
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


@pytest.mark.parametrize(
    "gumbel_scale,embedding_norm,floor",
    [
        ("similarity_spread", "none", 0.0),
        ("unit", "none", 0.0),
        ("unit", "standardize", 0.0),
        ("similarity_spread", "memory", 0.0),
        ("similarity_spread", "memory", 0.8),
    ],
)
def test_training_reader_with_fixed_gumbel_noise_matches_reference(
    gumbel_scale, embedding_norm, floor
):
    layer = _layer(
        gumbel_scale=gumbel_scale, embedding_norm=embedding_norm, variance_floor=floor
    )
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
    scale = {"gumbel_scale": gumbel_scale, "tau_max": layer.temperature_max}
    a, t = _standardized(layer, A), _standardized(layer, T)
    read_a, z_a, tau_a = gumbel_read(
        t, memories[0], *w["temperature_a"], noises[0], **scale
    )
    read_t, z_t, tau_t = gumbel_read(
        a, memories[1], *w["temperature_t"], noises[1], **scale
    )
    if embedding_norm == "memory":  # reads back in the embeddings' space
        eps = layer.norm_epsilon
        a64, t64 = A.astype("float64"), T.astype("float64")
        stats_a, stats_t = ((x.mean(axis=0), x.var(axis=0)) for x in (a64, t64))
        read_a = destandardize(read_a, eps, stats_a, floor)
        read_t = destandardize(read_t, eps, stats_t, floor)
    if floor:  # the floor is active for some features of each modality
        for x in (A, T):
            assert x.var(axis=0).min() < floor * x.var(axis=0).mean()
    np.testing.assert_allclose(np_(result["read_weights"][0]), z_a, atol=1e-5)
    np.testing.assert_allclose(np_(result["read_weights"][1]), z_t, atol=1e-5)
    np.testing.assert_allclose(np_(result["reads"][0]), read_a, atol=1e-5)
    np.testing.assert_allclose(np_(result["reads"][1]), read_t, atol=1e-5)
    # The noise matters: the noiseless read differs.
    _, z_clean, _ = gumbel_read(
        t, memories[0], *w["temperature_a"], tau_max=layer.temperature_max
    )
    assert not np.allclose(z_clean, z_a, atol=1e-3)


def test_similarity_loss_matches_reference():
    m = np.random.default_rng(2).standard_normal((5, 3)).astype("float32")
    got = float(ops.convert_to_numpy(layer_mean_pairwise_cosine(m)))
    np.testing.assert_allclose(got, mean_pairwise_cosine(m.astype("float64")), 1e-5)
    one = float(ops.convert_to_numpy(layer_mean_pairwise_cosine(m[:1])))
    assert one == 0.0
    squared = float(ops.convert_to_numpy(layer_mean_pairwise_cosine(m, squared=True)))
    np.testing.assert_allclose(
        squared, mean_pairwise_cosine(m.astype("float64"), squared=True), 1e-5
    )
    # The layer adds Eq. 4 on the memories it writes, only in training
    # (default: squared cosines; "cosine": Eq. 4 as printed).
    for name, is_squared in (("squared_cosine", True), ("cosine", False)):
        layer = _layer(similarity_loss_weight=0.5, similarity_loss=name)
        layer([A, T], training=False)
        assert len(layer.losses) == 0
        layer([A, T], training=True)
        expected = 0.5 * sum(
            mean_pairwise_cosine(np_(v), squared=is_squared) for v in layer.memories
        )
        assert len(layer.losses) == 1
        np.testing.assert_allclose(np_(layer.losses[0]), expected, atol=1e-5)


def test_squared_cosine_loss_is_minimal_only_for_orthogonal_slots():
    # A memory collapsed to one vector and its negative (the avdigits
    # collapse) is a global minimum of Eq. 4 as printed: its mean cosine is
    # -1 / (n - 1), the least any n vectors can have. The squared reading
    # gives it the largest loss, 1; orthogonal slots score 0 in both.
    n = 6
    v = np.random.default_rng(3).standard_normal((1, 8)).astype("float32")
    antipodal = np.concatenate([v, -v] * (n // 2))
    orthogonal = np.eye(n, 8, dtype="float32") * 3.0
    loss = lambda m, sq: float(  # noqa: E731
        ops.convert_to_numpy(layer_mean_pairwise_cosine(m, squared=sq))
    )
    np.testing.assert_allclose(loss(antipodal, False), -1 / (n - 1), atol=1e-6)
    np.testing.assert_allclose(loss(antipodal, True), 1.0, atol=1e-6)
    assert abs(loss(orthogonal, False)) < 1e-7 and abs(loss(orthogonal, True)) < 1e-7
    # A random memory: below the antipodal one for the squared loss, above
    # it for the printed one.
    r = np.random.default_rng(4).standard_normal((n, 8)).astype("float32")
    assert loss(r, True) < loss(antipodal, True)
    assert loss(r, False) > loss(antipodal, False)


@pytest.mark.parametrize(
    "scale,options,bound",
    [(1e4, {}, 2.0), (1e4, {"temperature_max": 10.0}, 10.0), (0.0, {}, 1e-4)],
)
def test_temperature_stays_in_bounds(scale, options, bound):
    layer = _layer(**options)  # default tau_max 2 (the paper's: 10)
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


@pytest.mark.parametrize("legacy", [False, True])
def test_fit_steps_train_every_sub_module(legacy):
    model, fusion = _model(**(LEGACY_WRITER if legacy else {}))
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    before = {v.path: np_(v) for v in model.trainable_variables}
    labels = np.arange(5) % 3
    # Two steps: the ReZero scales start at 0, so the writer's attention
    # and feed-forward get their first gradient in the second step.
    model.fit([A, T], labels, batch_size=5, epochs=2, verbose=0)
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


@pytest.mark.parametrize(
    "weight,selection",
    [
        (0.0, "straight_through"),
        (1.0, "straight_through"),
        (1.0, "soft"),
        (1.0, "hard"),
    ],
)
def test_top_k_scorer_learns_from_similarity_loss(weight, selection):
    # The writer's output reaches the step's loss only through Eq. 4 (the
    # memory is assigned without gradient), so the scorer kernels move in a
    # fit step exactly when the Eq. 4 loss is on and the selection passes a
    # gradient (SoftSort, or its straight-through use); the hard selection
    # passes none (Eq. 4 is blind to the sigmoid gates).
    model, fusion = _model(similarity_loss_weight=weight, writer_selection=selection)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    scorers = [writer[-1].kernel for writer in fusion.writers]
    before = [np_(k) for k in scorers]
    model.fit([A, T], np.arange(5) % 3, batch_size=5, epochs=1, verbose=0)
    for kernel, b in zip(scorers, before):
        moved = np.abs(np_(kernel) - b).max()
        if weight and selection != "hard":
            assert moved > 1e-6, kernel.path
        elif weight:  # only through the gates: zero up to rounding
            assert moved < 1e-7, kernel.path
        else:
            assert moved == 0.0, kernel.path


@pytest.mark.parametrize("gradient", ["writer", "network"])
def test_similarity_gradient_reaches_the_encoders_only_with_network(gradient):
    # The head is frozen at zero, so the task loss sends no gradient back:
    # the encoders move only if Eq. 4 reaches them through the embeddings
    # the writer stores ("network"); with "writer" (default) Eq. 4 trains
    # the writer alone.
    a, t = keras.Input((6,)), keras.Input((6,))
    encoders = [keras.layers.Dense(6, name=f"encoder_{m}") for m in "at"]
    fusion = DualMemoryFusion(**SMALL, seed=0, similarity_gradient=gradient)
    fused = fusion([encoders[0](a), encoders[1](t)])
    head = keras.layers.Dense(3, kernel_initializer="zeros", trainable=False)
    model = keras.Model([a, t], head(fused))
    model.compile(
        keras.optimizers.SGD(0.1),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = [np_(e.kernel) for e in encoders]
    scorers = [np_(writer[-1].kernel) for writer in fusion.writers]
    model.fit([A, T], np.arange(5) % 3, batch_size=5, epochs=1, verbose=0)
    moved = [np.abs(np_(e.kernel) - b).max() for e, b in zip(encoders, before)]
    if gradient == "writer":
        assert moved == [0.0, 0.0]
    else:
        assert min(moved) > 1e-6, moved
    # The writer learns from Eq. 4 either way.
    for writer, b in zip(fusion.writers, scorers):
        assert np.abs(np_(writer[-1].kernel) - b).max() > 1e-6


# `jit_compile=False` tests TensorFlow's graph mode (tf.function without XLA)
# and PyTorch; on JAX it runs the same stateless train step as "auto", op by
# op without `jax.jit` (every op compiled on its own: 22-30 s of CPU here).
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


def _writer_weights(layer, j):
    attention, norm_1, hidden, out, norm_2, top_k = layer.writers[j]

    def pair(d):
        return np_(d.kernel), np_(d.bias)

    w = {
        name: pair(getattr(attention, f"_{name}_dense"))
        for name in ("query", "key", "value", "output")
    }
    w["norm_1"] = (np_(norm_1.gamma), np_(norm_1.beta))
    w["norm_2"] = (np_(norm_2.gamma), np_(norm_2.beta))
    w["hidden"], w["out"] = pair(hidden), pair(out)
    w["top_k"] = np_(top_k.kernel)
    if layer.writer_scales:
        w["scales"] = np_(layer.writer_scales[j])
    return w


@pytest.mark.parametrize(
    "selection,block",
    [
        ("soft", "post_norm"),
        ("hard", "post_norm"),
        ("straight_through", "rezero"),
        ("soft", "rezero"),
        ("straight_through", "standardize"),
        ("straight_through", "memory"),
    ],
)
def test_batch_write_matches_numpy_writer(selection, block):
    # "standardize", "memory": the rezero block on standardized embeddings.
    norm = block if block in ("standardize", "memory") else "none"
    block = "rezero" if block in ("standardize", "memory") else block
    layer = _layer(writer_selection=selection, writer_block=block, embedding_norm=norm)
    for scales in layer.writer_scales:  # off zero, so the branches count
        scales.assign(np.array([0.7, -0.4], "float32"))
    before = [np_(m) for m in layer.memories]
    weights = [_writer_weights(layer, j) for j in (0, 1)]
    layer([A, T], training=True)
    for j, x in enumerate((A, T)):
        expected = reference_writer(
            before[j],
            _standardized(layer, x),
            weights[j],
            selection=selection,
            temperature=layer.writer_temperature,
            block=block,
        )
        np.testing.assert_allclose(np_(layer.memories[j]), expected, atol=2e-4)
    # The selected slots of the hard forward pass are rows of the
    # transformed [M; x], not blends: no two slots are the same vector.
    if selection != "soft":
        memory = np_(layer.memories[0])
        unit = memory / np.linalg.norm(memory, axis=1, keepdims=True)
        cosine = unit @ unit.T - 2 * np.eye(len(unit))
        assert cosine.max() < 0.99


def test_scaled_gumbel_noise_does_not_swamp_small_similarities():
    # A query 1000 times smaller (the shrunken text encoding measured on
    # speech-text) gives similarities 1000 times smaller. With noise scaled
    # to their spread the sampled slot (argmax of the training read) is the
    # same as at full scale; with unit Gumbel noise it is the noise's argmax.
    r = np.random.default_rng(3)
    noise = r.gumbel(size=(200, 4)).astype("float32")
    query = r.standard_normal((200, 6)).astype("float32")
    picks = {}
    for gumbel_scale in ("similarity_spread", "unit"):
        layer = DualMemoryFusion(**SMALL, seed=3, gumbel_scale=gumbel_scale)
        layer.build([(None, 6), (None, 6)])
        layer._gumbel_noise = lambda shape: ops.convert_to_tensor(noise)
        memory = layer.memories[0]
        for factor in (1.0, 1e-3):
            _, z, _ = layer._read(query * factor, memory, layer.temperatures[0], True)
            picks[gumbel_scale, factor] = np_(z).argmax(axis=-1)
    np.testing.assert_array_equal(
        picks["similarity_spread", 1.0], picks["similarity_spread", 1e-3]
    )
    np.testing.assert_array_equal(picks["unit", 1e-3], noise.argmax(axis=-1))
    assert np.mean(picks["unit", 1.0] != noise.argmax(axis=-1)) > 0.2


def test_gumbel_noise_statistics():
    # Standard Gumbel: mean = Euler's gamma 0.5772, variance pi^2 / 6. With
    # 100000 draws the standard error is 0.004 on the mean, about 0.015 on
    # the variance; zeros, a flipped sign or a uniform draw all fail.
    layer = DualMemoryFusion(**SMALL, seed=11)
    g = np_(layer._gumbel_noise((200, 500))).ravel()
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g.mean(), 0.5772, atol=0.02)
    np.testing.assert_allclose(g.var(), np.pi**2 / 6, atol=0.08)
    # Skewed to the right like a Gumbel (skewness 1.14), not symmetric.
    skew = np.mean((g - g.mean()) ** 3) / g.std() ** 3
    np.testing.assert_allclose(skew, 1.14, atol=0.2)


def test_training_reads_are_random_inference_reads_are_not():
    layer = _layer()
    inputs = [ops.convert_to_tensor(A), ops.convert_to_tensor(T)]
    train_1 = layer._forward(inputs, training=True)["read_weights"]
    train_2 = layer._forward(inputs, training=True)["read_weights"]
    infer_1 = layer._forward(inputs, training=False)["read_weights"]
    infer_2 = layer._forward(inputs, training=False)["read_weights"]
    for j in (0, 1):
        assert not np.allclose(np_(train_1[j]), np_(train_2[j]), atol=1e-3)
        np.testing.assert_array_equal(np_(infer_1[j]), np_(infer_2[j]))
        assert not np.allclose(np_(train_1[j]), np_(infer_1[j]), atol=1e-3)


def test_non_finite_write_is_skipped_and_counted():
    layer = _layer()
    before = [np_(m) for m in layer.memories]
    bad = A.copy()
    bad[2, 1] = np.nan
    layer([bad, T], training=True)
    # The audio memory's write saw the NaN: skipped. The text one did not.
    np.testing.assert_array_equal(np_(layer.memories[0]), before[0])
    assert not np.allclose(np_(layer.memories[1]), before[1])
    assert float(np_(layer.skipped_writes)) == 1.0
    inf = T.copy()
    inf[0, 0] = np.inf
    layer([A, inf], training=True)
    assert all(np.all(np.isfinite(np_(m))) for m in layer.memories)
    assert float(np_(layer.skipped_writes)) == 2.0


def test_fit_with_one_nan_sample_keeps_both_memories():
    model, fusion = _model()
    model.compile("adam", "sparse_categorical_crossentropy")
    before = [np_(m) for m in fusion.memories]
    a, t = A.copy(), T.copy()
    a[3, 0] = np.nan
    t[3, 2] = np.nan
    model.fit([a, t], np.arange(5) % 3, batch_size=5, epochs=1, verbose=0)
    for m, b in zip(fusion.memories, before):
        np.testing.assert_array_equal(np_(m), b)
    assert float(np_(fusion.skipped_writes)) == 2.0


def test_configs_without_writer_keys_load_the_legacy_writer():
    config = DualMemoryFusion(**SMALL, seed=0).get_config()
    assert config["writer_selection"] == "straight_through"
    assert config["writer_block"] == "rezero"
    assert config["gumbel_scale"] == "similarity_spread"
    for key in ("writer_selection", "writer_temperature", "writer_block"):
        config.pop(key)
    config.pop("gumbel_scale")
    assert (config.pop("norm_momentum"), config.pop("norm_epsilon")) == (0.9, 1e-5)
    assert config.pop("embedding_norm") == "memory"
    assert config.pop("variance_floor") == 0.03
    assert config.pop("similarity_loss") == "squared_cosine"
    assert config.pop("similarity_gradient") == "writer"
    old = DualMemoryFusion.from_config(config)
    assert old.similarity_loss == "cosine"  # Eq. 4 as printed
    assert old.similarity_gradient == "network"
    assert (old.writer_selection, old.writer_temperature, old.writer_block) == (
        "soft",
        1.0,
        "post_norm",
    )
    assert old.gumbel_scale == "unit"
    # Keras's BatchNormalization defaults, which the composer had before.
    assert (old.norm_momentum, old.norm_epsilon) == (0.99, 1e-3)
    old.build([A.shape, T.shape])
    assert (old.norms[0].momentum, old.norms[0].epsilon) == (0.99, 1e-3)
    assert old.embedding_norm == "none" and old.embedding_norms is None
    assert old.variance_floor == 0.0
    old = DualMemoryFusion.from_config(config)
    # Weights saved before `skipped_writes` existed (two own variables,
    # the memories) load, and the count starts at 0.
    old.build([A.shape, T.shape])
    memories = [np.full((4, 6), v, "float32") for v in (1.0, 2.0)]
    old.load_own_variables({"0": memories[0], "1": memories[1]})
    for m, expected in zip(old.memories, memories):
        np.testing.assert_array_equal(np_(m), expected)
    assert float(np_(old.skipped_writes)) == 0.0


def test_empty_batch_error_in_inspect():
    layer = _layer()
    assert_raises_with_message(
        lambda: layer.inspect([A[:0], T[:0]]),
        r"received an empty batch \(0 examples\)",
    )


@pytest.mark.parametrize("reading", ["default", "raw_embeddings", "legacy"])
def test_short_fit_keeps_the_default_memories_alive(reading):
    # 8 clusters in two 32-d views that share one direction (mean pairwise
    # cosine 0.99, as the ReLU audio encodings of speech-text: 0.97), 30
    # slots, one epoch of 16 writes. The default (the memory operations on
    # standardized embeddings) keeps at least 80% of the slots distinct in
    # both memories; on the embeddings as they come (`embedding_norm=
    # "none"`) the slots are near-copies (16-17 of 30 distinct, JAX); the
    # first version's SoftSort blend collapses them too.
    from mmfusion_keras.inspection import memory_health

    keras.utils.set_random_seed(0)
    r = np.random.default_rng(0)
    centers = r.standard_normal((2, 8, 32))
    direction = 12.0 * np.abs(r.standard_normal((2, 32)))
    y = r.integers(0, 8, 512)
    a, t = (
        (direction[j] + centers[j][y] + 0.5 * r.standard_normal((512, 32)))
        for j in (0, 1)
    )
    kwargs = {
        "default": {},
        # The embeddings as they come, with Eq. 4 as printed (the squared
        # loss alone keeps more slots apart: 24+ of 30 on TensorFlow).
        "raw_embeddings": {
            "embedding_norm": "none",
            "similarity_loss": "cosine",
            "similarity_gradient": "network",
        },
        "legacy": LEGACY_WRITER,
    }[reading]
    inputs = [keras.Input((32,)), keras.Input((32,))]
    fusion = DualMemoryFusion(
        memory_slots=30, output_dim=32, writer_heads=4, seed=0, **kwargs
    )
    outputs = keras.layers.Dense(8, activation="softmax")(fusion(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit([a.astype("float32"), t.astype("float32")], y, batch_size=32, verbose=0)
    distinct = [memory_health(np_(m))["distinct_slots"] for m in fusion.memories]
    if reading == "default":
        assert min(distinct) >= 0.8 * 30, distinct
    else:
        assert min(distinct) < 0.8 * 30, distinct


def test_file_without_skipped_writes_loads_the_other_variables():
    # Files saved before the NaN-safe write hold every own variable but
    # `skipped_writes`: those load in order and the count starts at 0.
    layer = DualMemoryFusion(memory_slots=4, output_dim=8, writer_heads=2, seed=0)
    layer.build([(None, 6), (None, 6)])
    layer.skipped_writes.assign(5.0)
    own = layer._trainable_variables + layer._non_trainable_variables
    others = [v for v in own if v is not layer.skipped_writes]
    store = {str(i): np_(v) + 0.5 for i, v in enumerate(others)}
    layer.load_own_variables(store)
    for i, v in enumerate(others):
        np.testing.assert_allclose(np_(v), store[str(i)])
    assert float(np_(layer.skipped_writes)) == 0.0


def test_composer_norm_statistics_follow_training_within_three_epochs():
    # Aligned embeddings (mean cosine ~0.97, as the speech-text audio
    # branch's) and the number of steps of three speech-text epochs. With
    # PyTorch's BatchNorm1d defaults (the default: momentum 0.9 in Keras's
    # convention, epsilon 1e-5) the moving statistics have followed the
    # batches; with Keras's (0.99, 1e-3) the moving variance is still mostly
    # its initial 1, far above the batch variance, so inference outputs
    # shrink towards a constant (what kept the speech-text model at chance).
    spread, variance = {}, {}
    for name, kwargs in (
        ("default", {}),
        ("keras", {"norm_momentum": 0.99, "norm_epsilon": 1e-3}),
    ):
        layer = DualMemoryFusion(**SMALL, seed=0, **kwargs)
        r = np.random.default_rng(0)
        x = [(1.0 + 0.2 * r.standard_normal((32, 6))).astype("float32")] * 2
        for _ in range(30):
            layer(x, training=True)
        spread[name] = np_(layer(x, training=False)).std(axis=0).mean()
        variance[name] = np_(layer.norms[0].moving_variance).mean()
    assert variance["default"] < 0.2 < 0.5 < variance["keras"], variance
    assert spread["default"] > 2 * spread["keras"], spread
