import json
import os

import keras
import numpy as np
import pytest
from mfas_reference import fusion_forward
from mfas_reference import probabilities

from mmfusion_keras.search import FusionArchitectureSearch
from mmfusion_keras.search import SearchSpace
from mmfusion_keras.search import SharedFusionWeights
from mmfusion_keras.search import build_feature_extractor
from mmfusion_keras.search import build_fusion_head
from mmfusion_keras.search import build_fusion_network
from mmfusion_keras.search import gaussian_temperature_at
from mmfusion_keras.search import sample_k
from mmfusion_keras.search import sampling_probabilities
from mmfusion_keras.search import temperature_at
from mmfusion_keras.search import train_fusion_head
from mmfusion_keras.search.fusion_architecture_search import PAPER_PROTOCOL
from mmfusion_keras.testing import assert_raises_with_message

ACTS = ("relu", "sigmoid")
X_WIDTHS = [4, 6, 8, 10, 12]  # M = 5, as the spectrogram net of the paper
Y_WIDTHS = [3, 5, 7]  # N = 3, as the image net


@pytest.mark.parametrize(
    "description, inputs, kernels",
    [
        ([(1, 1, 1)], ["x1", "y1"], [(4 + 3, 16)]),
        ([(5, 3, 2)], ["x5", "y3"], [(12 + 7, 16)]),
        (
            [(3, 3, 2), (5, 2, 1), (1, 3, 1), (1, 1, 2)],
            ["x1", "x3", "x5", "y1", "y2", "y3"],
            [(8 + 7, 16), (12 + 5 + 16, 16), (4 + 7 + 16, 16), (4 + 3 + 16, 16)],
        ),
        ([(2, 1, 1), (2, 1, 1)], ["x2", "y1"], [(6 + 3, 16), (6 + 3 + 16, 16)]),
    ],
)
def test_description_builds_expected_inputs_and_widths(description, inputs, kernels):
    head = build_fusion_head(description, X_WIDTHS, Y_WIDTHS, 10, units=16)
    assert sorted(head.input) == inputs
    for name in inputs:
        widths = X_WIDTHS if name[0] == "x" else Y_WIDTHS
        assert head.input[name].shape == (None, widths[int(name[1:]) - 1])
    for level, shape in enumerate(kernels, start=1):
        layer = head.get_layer(f"fusion_{level}")
        assert tuple(layer.kernel.shape) == shape
        assert layer.activation.__name__ == ACTS[description[level - 1][2] - 1]
    assert tuple(head.get_layer("classifier").kernel.shape) == (16, 10)
    assert len([lyr for lyr in head.layers if lyr.name.startswith("fusion_")]) == len(
        description
    )


def test_fusion_head_matches_numpy_reference():
    description = [(2, 1, 2), (1, 2, 1), (2, 2, 2)]
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(4, w)).astype("float32") for w in (3, 2)]
    ys = [rng.normal(size=(4, w)).astype("float32") for w in (2, 4)]
    head = build_fusion_head(description, [3, 2], [2, 4], 3, units=5)
    weights = []
    for name in ["fusion_1", "fusion_2", "fusion_3", "classifier"]:
        layer = head.get_layer(name)
        w = rng.normal(size=layer.kernel.shape).astype("float32")
        b = rng.normal(size=layer.bias.shape).astype("float32")
        layer.set_weights([w, b])
        weights.append((w, b))
    feed = {"x1": xs[0], "x2": xs[1], "y1": ys[0], "y2": ys[1]}
    got = keras.ops.convert_to_numpy(head(feed))
    want = fusion_forward(description, xs, ys, weights, ACTS)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_json_round_trip_and_errors():
    space = SearchSpace(5, 3, ACTS, max_layers=4)
    for d in ([(5, 3, 1)], [(3, 3, 2), (5, 2, 1), (1, 3, 1), (1, 1, 2)]):
        text = space.to_json(d)
        assert json.loads(text) == [list(t) for t in d]
        assert space.from_json(text) == tuple(tuple(t) for t in d)
    assert len(space.layer_choices()) == 30 and space.size(2) == 900
    assert_raises_with_message(
        lambda: space.validate([(6, 1, 1)]),
        r"triplet 0 .*1 <= m <= 5, 1 <= n <= 3, 1 <= p <= 2\. Received: \(6, 1, 1\)",
    )
    assert_raises_with_message(
        lambda: space.validate([(1, 1, 1)] * 5),
        r"1 to 4 triplets\. Received 5",
    )
    assert_raises_with_message(
        lambda: space.from_json("[[1, 1"), r"could not read a description from JSON"
    )
    assert_raises_with_message(
        lambda: SearchSpace(0, 3), r"`num_x_features` to be a positive integer.*=0"
    )
    assert_raises_with_message(
        lambda: build_fusion_head([(1, 1, 1)], [], [3], 2),
        r"build_fusion_head expected `x_widths`.*Received: x_widths=\(\)",
    )


def test_extend_and_random_descriptions():
    space = SearchSpace(2, 1, ("relu",), max_layers=2)
    extended = space.extend([[(1, 1, 1)], [(2, 1, 1), (1, 1, 1)]])
    assert extended == [((1, 1, 1), (1, 1, 1)), ((1, 1, 1), (2, 1, 1))]
    rng = np.random.default_rng(0)
    lengths = {len(space.random_description(rng)) for _ in range(50)}
    assert lengths == {1, 2}


def _layer(head, level):
    return head.get_layer(f"fusion_{level}")


def test_weight_sharing_copies_only_matching_keys(tmp_path):
    bank = SharedFusionWeights()
    keras.utils.set_random_seed(1)
    first = build_fusion_head([(1, 1, 1), (2, 2, 2)], X_WIDTHS, Y_WIDTHS, 10, units=8)
    keys = bank.store(first, [(1, 1, 1), (2, 2, 2)], ACTS)
    assert keys == [(1, 7, 8, "relu"), (2, 6 + 5 + 8, 8, "sigmoid")]
    kernel_1 = np.array(_layer(first, 1).kernel)
    kernel_2 = np.array(_layer(first, 2).kernel)

    keras.utils.set_random_seed(2)
    # Level 1 matches (same widths, same activation); level 2 has the same
    # shape but another activation; level 3 has no entry.
    second_d = [(1, 1, 1), (2, 2, 1), (2, 2, 2)]
    second = build_fusion_head(second_d, X_WIDTHS, Y_WIDTHS, 10, units=8)
    before_2 = np.array(_layer(second, 2).kernel)
    restored = bank.restore(second, second_d, ACTS)
    assert restored == [(1, 7, 8, "relu")]
    np.testing.assert_array_equal(np.array(_layer(second, 1).kernel), kernel_1)
    np.testing.assert_array_equal(np.array(_layer(second, 2).kernel), before_2)
    assert not np.array_equal(before_2, kernel_2)

    # Same activation but another input width (x3 instead of x1) at level 1;
    # the same triplet at another level does not match either.
    third_d = [(3, 1, 1), (1, 1, 1)]
    third = build_fusion_head(third_d, X_WIDTHS, Y_WIDTHS, 10, units=8)
    before = [np.array(_layer(third, i).kernel) for i in (1, 2)]
    assert bank.restore(third, third_d, ACTS) == []
    for i in (1, 2):
        np.testing.assert_array_equal(np.array(_layer(third, i).kernel), before[i - 1])

    bank.save(tmp_path / "bank.npz")
    loaded = SharedFusionWeights.load(tmp_path / "bank.npz")
    assert sorted(loaded.weights) == sorted(bank.weights)
    for key, values in bank.weights.items():
        for a, b in zip(values, loaded.weights[key]):
            np.testing.assert_array_equal(a, b)


def test_training_stores_and_restores_shared_weights():
    space = SearchSpace(2, 1, ("relu",), max_layers=2)
    rng = np.random.default_rng(0)
    feats = {"x1": rng.normal(size=(16, 3)), "x2": rng.normal(size=(16, 2))}
    feats["y1"] = rng.normal(size=(16, 2))
    data = (feats, rng.integers(0, 2, 16))
    bank = SharedFusionWeights()
    model, _, _, restored = train_fusion_head(
        [(1, 1, 1)],
        space,
        data,
        data,
        2,
        units=4,
        epochs=1,
        shared_weights=bank,
        run_eagerly=True,
    )
    assert restored == []
    stored = bank.weights[(1, 5, 4, "relu")][0]
    np.testing.assert_array_equal(np.array(model.get_layer("fusion_1").kernel), stored)
    _, _, _, restored = train_fusion_head(
        [(1, 1, 1), (2, 1, 1)],
        space,
        data,
        data,
        2,
        units=4,
        epochs=1,
        shared_weights=bank,
        run_eagerly=True,
    )
    assert restored == [(1, 5, 4, "relu")]
    assert (2, 2 + 2 + 4, 4, "relu") in bank.weights


def test_temperature_schedule_values():
    # Independent facts, not a restatement of the formula: end points
    # T_max and T_min, a constant ratio between steps (an exponential
    # decay, "inverse exponential" in the paper's section 4.2), monotone,
    # flat after the end.
    values = [temperature_at(s, 5, 10.0, 0.1) for s in range(7)]
    assert values[0] == pytest.approx(10.0) and values[4] == pytest.approx(0.1)
    ratios = [b / a for a, b in zip(values[:4], values[1:5])]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    np.testing.assert_allclose(values[:5], [10.0, 10**0.5, 1.0, 10**-0.5, 0.1])
    assert values[5] == values[6] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(values[:5], values[1:5]))
    assert temperature_at(0, 1, 3.0, 1.0) == 3.0
    assert_raises_with_message(
        lambda: temperature_at(0, 4, 1.0, 2.0),
        r"temperature_at expected t_min <= t_max\. Received: t_min=2\.0, t_max=1\.0",
    )
    assert_raises_with_message(
        lambda: temperature_at(-1, 4), r"`step` to be an integer >= 0.*step=-1"
    )


def test_public_code_gaussian_schedule():
    # The public code's T = (T0 - T1) exp(-(i + 1)^2 / decay^2) + T1,
    # values worked by hand for T0 = 10, T1 = 0.2, decay = 4:
    # i = 0: 9.8 exp(-1/16) + 0.2 = 9.40625; i = 3: 9.8 exp(-1) + 0.2 = 3.80522.
    assert gaussian_temperature_at(0, 10.0, 0.2, 4.0) == pytest.approx(
        9.40625, abs=1e-4
    )
    assert gaussian_temperature_at(3, 10.0, 0.2, 4.0) == pytest.approx(
        3.80522, abs=1e-4
    )
    values = [gaussian_temperature_at(s, 10.0, 0.2, 4.0) for s in range(12)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.2, abs=0.01) and values[-1] > 0.2
    assert_raises_with_message(
        lambda: gaussian_temperature_at(0, 10.0, 0.2, 0.0),
        r"gaussian_temperature_at expected `decay` to be a positive finite "
        r"number\. Received: decay=0\.0",
    )


def test_paper_protocol_visits_every_step_once(tmp_path, monkeypatch):
    # Algorithm 1 literally (level_one="all"): every search iteration
    # trains all of Gamma_1, then K per deeper level; E_search * L steps,
    # each visited exactly once, and the budget is 2 x (2 + 1) = 6. The
    # schedule is what is tested here: training and the surrogate are
    # replaced by cheap stand-ins (they are tested above).
    from mmfusion_keras.search import fusion_architecture_search as fas

    def fake_train(description, *args, **kwargs):
        return None, 0.1 * len(description) + 0.01 * description[-1][0], 0.0, []

    monkeypatch.setattr(fas, "train_fusion_head", fake_train)
    monkeypatch.setattr(fas.Surrogate, "fit", lambda self, *a, **k: 0.0)
    monkeypatch.setattr(
        fas.Surrogate, "predict", lambda self, c: np.linspace(0.2, 0.8, len(c))
    )
    search = _search(
        tmp_path / "paper",
        budget=6,
        num_samples=1,
        search_iterations=2,
        level_one="all",
        temperature_schedule="gaussian",
    )
    search.run()
    state = search.state()
    assert state["finished"] and len(state["history"]) == 6
    assert [s["step"] for s in state["steps"]] == [0, 1, 2, 3]
    assert [s["level"] for s in state["steps"]] == [1, 2, 1, 2]
    assert [e["step"] for e in state["history"]] == [0, 0, 1, 2, 2, 3]
    assert [len(e["description"]) for e in state["history"]] == [1, 1, 2, 1, 1, 2]
    temps = [s["temperature"] for s in state["steps"]]
    assert temps[0] is None and temps[2] is None
    assert temps[1] == pytest.approx(gaussian_temperature_at(1, 10.0, 0.2, 4.0))
    assert temps[3] == pytest.approx(gaussian_temperature_at(3, 10.0, 0.2, 4.0))
    # The paper's AV-MNIST numbers: 3 x (30 + 3 x 10) = 180 architectures.
    assert PAPER_PROTOCOL["budget"] == 3 * (30 + 3 * PAPER_PROTOCOL["num_samples"])
    assert_raises_with_message(
        lambda: _search(tmp_path / "bad", level_one="some"),
        r"expected `level_one` in \('sampled', 'all'\)\. Received: level_one='some'",
    )


def test_sampler_probabilities():
    scores = [0.5, 0.7, 0.9, 0.2]
    for t in (10.0, 1.0, 0.25):
        np.testing.assert_allclose(
            sampling_probabilities(scores, t), probabilities(scores, t), rtol=1e-10
        )
    # High temperature: near uniform; low temperature: near argmax.
    assert np.ptp(sampling_probabilities(scores, 100.0)) < 0.01
    assert sampling_probabilities(scores, 0.01)[2] > 0.999
    assert_raises_with_message(
        lambda: sampling_probabilities(scores, 0.0),
        r"`temperature` to be a positive finite number.*temperature=0\.0",
    )

    # Empirical frequencies of the first draw follow the probabilities.
    rng = np.random.default_rng(0)
    p = sampling_probabilities(scores, 0.5)
    counts = np.zeros(4)
    for _ in range(4000):
        counts[scores.index(sample_k(rng, scores, scores, 1, 0.5)[0])] += 1
    np.testing.assert_allclose(counts / 4000, p, atol=0.03)
    drawn = sample_k(rng, ["a", "b", "c"], [0.1, 0.2, 0.3], 5, 1.0)
    assert sorted(drawn) == ["a", "b", "c"]  # without replacement, capped


def _conv_net(shape, filters, name):
    x = keras.Input(shape, name=name)
    h = x
    for i, w in enumerate(filters, start=1):
        h = keras.layers.Conv1D(
            w, 2, padding="same", activation="relu", name=f"{name}_c{i}"
        )(h)
    out = keras.layers.Dense(3, activation="softmax", name=f"{name}_out")(
        keras.layers.GlobalAveragePooling1D()(h)
    )
    return keras.Model(x, out, name=f"{name}_net")


def test_fusion_network_from_unimodal_models():
    f = _conv_net((6, 2), (3, 4), "a")
    g = _conv_net((5, 1), (2,), "b")
    description = [(2, 1, 1), (1, 1, 2)]
    model = build_fusion_network(
        description,
        f,
        g,
        ["a_c1", "a_c2"],
        ["b_c1"],
        num_classes=3,
        units=4,
        multitask=True,
    )
    rng = np.random.default_rng(0)
    xa = rng.normal(size=(2, 6, 2)).astype("float32")
    xb = rng.normal(size=(2, 5, 1)).astype("float32")

    def run(m, x):  # eager calls: no per-model compilation
        out = m(x)
        if isinstance(out, dict):
            return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}
        if isinstance(out, (list, tuple)):
            return [keras.ops.convert_to_numpy(v) for v in out]
        return keras.ops.convert_to_numpy(out)

    out = run(model, {"a": xa, "b": xb})
    assert out["fusion"].shape == (2, 3)
    np.testing.assert_allclose(out["x"], run(f, xa), rtol=1e-5)
    # The fused output equals the head applied to the pooled features.
    feats = run(build_feature_extractor(f, ["a_c1", "a_c2"]), xa)
    conv = run(keras.Model(f.input, f.get_layer("a_c2").output), xa)
    np.testing.assert_allclose(feats[1], conv.mean(axis=1), rtol=1e-5, atol=1e-6)
    head = model.get_layer("fusion_head")
    y1 = run(build_feature_extractor(g, ["b_c1"]), xb)
    want = run(head, {"x1": feats[0], "x2": feats[1], "y1": y1})
    np.testing.assert_allclose(out["fusion"], want, rtol=1e-5, atol=1e-6)
    # With feature_stats the pooled features are standardised first.
    stats = {"x2": (np.full(4, 0.5), np.full(4, 4.0)), "y1": (np.ones(2), np.ones(2))}
    standardised = build_fusion_network(
        description, f, g, ["a_c1", "a_c2"], ["b_c1"], 3, head=head, feature_stats=stats
    )
    want = run(head, {"x1": feats[0], "x2": (feats[1] - 0.5) / 2.0, "y1": y1 - 1.0})
    np.testing.assert_allclose(
        run(standardised, {"a": xa, "b": xb}), want, rtol=1e-5, atol=1e-6
    )
    assert_raises_with_message(
        lambda: build_feature_extractor(f, ["nope"]), r"has no layer 'nope'"
    )


def _tiny_data(seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 24)
    feats = {
        "x1": rng.normal(size=(24, 3)).astype("float32") + labels[:, None],
        "x2": rng.normal(size=(24, 2)).astype("float32"),
        "y1": rng.normal(size=(24, 2)).astype("float32"),
    }
    return feats, labels


def _search(directory, method="mfas", budget=4, num_samples=2, **kwargs):
    data = _tiny_data()
    return FusionArchitectureSearch(
        SearchSpace(2, 1, ("relu",), max_layers=2),
        data,
        data,
        2,
        str(directory),
        method=method,
        budget=budget,
        num_samples=num_samples,
        **kwargs,
        epochs=1,
        units=4,
        batch_size=8,
        surrogate_kwargs={
            "epochs": 3,
            "embedding_dim": 4,
            "hidden_units": 4,
            # Compiled is faster on JAX, eager on TensorFlow and PyTorch.
            "run_eagerly": keras.config.backend() != "jax",
        },
        run_eagerly=True,
        seed=3,
    )


def _trace(search):
    state = search.state()
    return [(e["description"], e["accuracy"]) for e in state["history"]], state


def test_tiny_search_resumes_like_an_uninterrupted_run(tmp_path):
    full = _search(tmp_path / "full")
    top = full.run()
    trace, state = _trace(full)
    assert len(trace) == 4 and state["finished"]
    # Step 0 trains Gamma_1 (2 one-layer descriptions); step 1 extends them
    # by one triplet (level 2), scored by the surrogate, sampled at T_max.
    assert [e["step"] for e in state["history"]] == [0, 0, 1, 1]
    assert [len(d) for d, _ in trace] == [1, 1, 2, 2]
    assert state["steps"][1]["temperature"] == pytest.approx(10.0)
    assert state["steps"][1]["num_candidates"] == 4
    # Level-1 weights are shared into both level-2 samples.
    assert [e["shared_layers"] for e in state["history"]] == [0, 0, 1, 1]
    assert top[0][1] == max(a for _, a in trace)

    part = _search(tmp_path / "part")
    part.run(max_trained=3)  # interrupted in the middle of step 1
    trace_part, state_part = _trace(part)
    assert len(trace_part) == 3 and not state_part["finished"]
    assert state_part["pending"]["done"] == 1
    files = os.listdir(tmp_path / "part")
    assert "state.json" in files and any(f.endswith(".weights.h5") for f in files)
    resumed = _search(tmp_path / "part")  # a new object, as after a restart
    top_resumed = resumed.run()
    trace_resumed, _ = _trace(resumed)
    assert [d for d, _ in trace_resumed] == [d for d, _ in trace]
    np.testing.assert_allclose(
        [a for _, a in trace_resumed], [a for _, a in trace], atol=1e-6
    )
    assert [d for d, _ in top_resumed] == [d for d, _ in top]


def test_random_search_and_resume_guard(tmp_path):
    search = _search(tmp_path / "random", method="random")
    top = search.run()
    trace, _ = _trace(search)
    assert len(trace) == 4
    assert len({json.dumps(d) for d, _ in trace}) == 4  # distinct
    assert all(1 <= len(d) <= 2 for d, _ in trace)
    assert len(top) == 4
    other = FusionArchitectureSearch(
        SearchSpace(2, 1, ("relu",), max_layers=2),
        _tiny_data(),
        _tiny_data(),
        2,
        str(tmp_path / "random"),
        method="random",
        budget=6,
    )
    assert_raises_with_message(
        other.run,
        r"cannot resume from .*state\.json: it was started with other settings",
    )
