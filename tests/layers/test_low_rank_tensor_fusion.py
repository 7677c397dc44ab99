import keras
import numpy as np
import pytest
from keras import ops

from mmfusion_keras.layers import LowRankTensorFusion
from mmfusion_keras.layers import TensorFusion
from mmfusion_keras.testing import assert_raises_with_message
from mmfusion_keras.testing import fusion_input_error_cases
from mmfusion_keras.testing import run_layer_conformance

X1 = np.arange(6, dtype="float32").reshape(2, 3)


def _common_errors(make_layer):
    return fusion_input_error_cases(make_layer, "LowRankTensorFusion")


def lmf_reference(xs, factors, rank_weights, bias):
    """NumPy LMF: h = sum_k w_k prod_i([x_i; 1] W_i^(k)) + b, loops over k."""
    rank, units = factors[0].shape[0], factors[0].shape[-1]
    h = np.zeros((xs[0].shape[0], units))
    for k in range(rank):
        term = np.ones((xs[0].shape[0], units))
        for x, factor in zip(xs, factors):
            x1 = np.concatenate([x, np.ones((x.shape[0], 1))], axis=-1)
            term = term * (x1 @ factor[k])
        h += rank_weights[k] * term
    return h + bias


def full_weight_tensor(factors, rank_weights):
    """sum_k w_k W_1^(k) (x) ... (x) W_n^(k), flattened to (prod(d_i + 1), units)."""
    units = factors[0].shape[-1]
    total = 0.0
    for k in range(factors[0].shape[0]):
        outer = np.ones((1, units))
        for factor in factors:
            outer = np.einsum("au,bu->abu", outer, factor[k]).reshape(-1, units)
        total = total + rank_weights[k] * outer
    return total


def _random_params(widths, units, rank, rng):
    factors = [
        rng.standard_normal((rank, d + 1, units)).astype("float32") for d in widths
    ]
    rank_weights = rng.standard_normal(rank).astype("float32")
    bias = rng.standard_normal(units).astype("float32")
    return factors, rank_weights, bias


def _set_weights(layer, factors, rank_weights, bias):
    for var, value in zip(layer.factors, factors):
        var.assign(value)
    layer.rank_weights.assign(rank_weights)
    layer.bias.assign(bias)


def test_conformance():
    run_layer_conformance(
        LowRankTensorFusion,
        {"units": 4, "rank": 2},
        [(None, 3), (None, 2), (None, 4)],
        expected_output_shape=(None, 4),
        expected_num_trainable_weights=5,
        expected_num_non_trainable_weights=0,
        error_cases=_common_errors(LowRankTensorFusion)
        + [
            (
                "units=0",
                lambda: LowRankTensorFusion(units=0),
                r"invalid value for argument `units`, expected a positive "
                r"integer. Received: units=0",
            ),
            (
                "rank=0",
                lambda: LowRankTensorFusion(rank=0),
                r"invalid value for argument `rank`, expected a positive "
                r"integer. Received: rank=0",
            ),
            (
                "rank=None",
                lambda: LowRankTensorFusion(rank=None),
                r"argument `rank`.*Received: rank=None",
            ),
        ],
    )


@pytest.mark.parametrize("rank", [1, 3])
def test_matches_numpy_reference(rank):
    rng = np.random.default_rng(rank)
    widths, units = [3, 2, 4], 5
    xs = [rng.standard_normal((6, d)).astype("float32") for d in widths]
    params = _random_params(widths, units, rank, rng)
    layer = LowRankTensorFusion(units=units, rank=rank)
    layer.build([x.shape for x in xs])
    _set_weights(layer, *params)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(xs)),
        lmf_reference(xs, *params),
        rtol=1e-4,
        atol=1e-4,
    )


def test_equals_tensor_fusion_followed_by_dense_with_rank_r_kernel():
    # The identity LMF is built on: W . Z with W = sum_k w_k (x)_i W_i^(k).
    rng = np.random.default_rng(7)
    widths, units, rank = [3, 2, 2], 4, 3
    xs = [rng.standard_normal((5, d)).astype("float32") for d in widths]
    factors, rank_weights, bias = _random_params(widths, units, rank, rng)

    lmf = LowRankTensorFusion(units=units, rank=rank)
    lmf.build([x.shape for x in xs])
    _set_weights(lmf, factors, rank_weights, bias)

    inputs = [keras.Input((d,)) for d in widths]
    dense = keras.layers.Dense(units)
    full = keras.Model(inputs, dense(TensorFusion()(inputs)))
    kernel = full_weight_tensor(factors, rank_weights)
    assert kernel.shape == (int(np.prod([d + 1 for d in widths])), units)
    dense.kernel.assign(kernel.astype("float32"))
    dense.bias.assign(bias)

    np.testing.assert_allclose(
        ops.convert_to_numpy(lmf(xs)),
        ops.convert_to_numpy(full(xs)),
        rtol=1e-4,
        atol=1e-4,
    )


def test_rank_weights_and_bias_are_optional_parts_of_the_config():
    layer = LowRankTensorFusion(units=3, rank=2, use_bias=False)
    layer.build([(None, 2), (None, 2)])
    assert [w.name for w in layer.trainable_weights] == [
        "factor_0",
        "factor_1",
        "rank_weights",
    ]
    assert layer.factors[1].shape == (2, 3, 3)
    revived = LowRankTensorFusion.from_config(layer.get_config())
    assert revived.use_bias is False and revived.rank == 2


def test_invalid_units_message():
    assert_raises_with_message(
        lambda: LowRankTensorFusion(units=-1),
        r"^Received an invalid value for argument `units`, expected a positive "
        r"integer. Received: units=-1$",
    )
