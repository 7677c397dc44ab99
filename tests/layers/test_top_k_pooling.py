import numpy as np
import pytest
from dual_memory_reference import top_k_pooling
from keras import ops

from mmfusion_keras.layers import TopKPooling
from mmfusion_keras.testing import assert_raises_with_message
from mmfusion_keras.testing import run_layer_conformance


def _errors():
    x = np.ones((2, 3, 4), "float32")
    return [
        (
            "k",
            lambda: TopKPooling(k=0),
            r"argument `k`, expected a positive integer. Received: k=0",
        ),
        (
            "temperature",
            lambda: TopKPooling(k=2, temperature=-1.0),
            r"argument `temperature`, expected a non-negative finite number.*"
            r"Received: temperature=-1.0",
        ),
        (
            "rank",
            lambda: TopKPooling(k=2)(np.ones((2, 4), "float32")),
            r"TopKPooling.*\(batch, N, d\).*Received shape \(2, 4\)",
        ),
        (
            "k > N",
            lambda: TopKPooling(k=4)(x),
            r"TopKPooling.*k=4.*at least k vectors.*Received N=3",
        ),
    ]


def test_conformance():
    run_layer_conformance(
        TopKPooling,
        {"k": 2},
        (None, 5, 3),
        expected_output_shape=(None, 2, 3),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
        error_cases=_errors(),
    )


@pytest.mark.parametrize("temperature", [0.0, 0.5, 1.0])
def test_matches_numpy_reference(temperature):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 7, 4)).astype("float32")
    layer = TopKPooling(k=3, temperature=temperature)
    layer.build(x.shape)
    p = rng.standard_normal(4).astype("float32")
    layer.kernel.assign(p)
    out, scores, indices = layer(x, return_scores=True)
    for b in range(3):
        ref_out, ref_scores = top_k_pooling(
            x[b].astype("float64"), p.astype("float64"), 3, temperature
        )
        np.testing.assert_allclose(ops.convert_to_numpy(out)[b], ref_out, atol=1e-5)
        np.testing.assert_allclose(
            ops.convert_to_numpy(scores)[b], ref_scores, atol=1e-5
        )
        np.testing.assert_array_equal(
            ops.convert_to_numpy(indices)[b], np.argsort(-ref_scores)[:3]
        )


def test_small_temperature_tends_to_hard_selection():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 4)).astype("float32")
    p = rng.standard_normal(4).astype("float32")
    outs = {}
    for temperature in (0.0, 1e-3, 1.0):
        layer = TopKPooling(k=3, temperature=temperature)
        layer.build(x.shape)
        layer.kernel.assign(p)
        outs[temperature] = ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(outs[1e-3], outs[0.0], atol=1e-5)
    assert not np.allclose(outs[1.0], outs[0.0], atol=1e-3)


def test_temperature_in_config():
    layer = TopKPooling(k=2, temperature=0.25)
    config = layer.get_config()
    assert config["temperature"] == 0.25
    assert TopKPooling.from_config(config).temperature == 0.25
    assert TopKPooling(k=2).temperature == 1.0


def test_invalid_k_type_message():
    assert_raises_with_message(lambda: TopKPooling(k=2.5), r"Received: k=2.5")


def test_straight_through_forward_is_the_hard_selection():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 7, 4)).astype("float32")
    p = rng.standard_normal(4).astype("float32")
    layer = TopKPooling(k=3, temperature=1.0, straight_through=True)
    layer.build(x.shape)
    layer.kernel.assign(p)
    out = ops.convert_to_numpy(layer(x))
    for b in range(2):
        ref, _ = top_k_pooling(x[b].astype("float64"), p.astype("float64"), 3, 0.0)
        np.testing.assert_allclose(out[b], ref, atol=1e-5)
        soft, _ = top_k_pooling(x[b].astype("float64"), p.astype("float64"), 3, 1.0)
        assert not np.allclose(out[b], soft, atol=1e-3)


def test_straight_through_in_config_and_errors():
    layer = TopKPooling(k=2, temperature=0.5, straight_through=True)
    config = layer.get_config()
    assert config["straight_through"] is True
    restored = TopKPooling.from_config(config)
    assert restored.straight_through and restored.temperature == 0.5
    # Configs saved before the option existed load with the soft selection.
    config.pop("straight_through")
    assert TopKPooling.from_config(config).straight_through is False
    assert_raises_with_message(
        lambda: TopKPooling(k=2, temperature=0.0, straight_through=True),
        r"`straight_through=True`.*needs a positive `temperature`. "
        r"Received: temperature=0",
    )
    assert_raises_with_message(
        lambda: TopKPooling(k=2, straight_through="yes"),
        r"argument `straight_through`, expected a bool. "
        r"Received: straight_through='yes'",
    )
