import numpy as np
import pytest
from keras import ops

from mmfusion_keras.layers import ConcatenateFusion
from mmfusion_keras.layers import ProductFusion
from mmfusion_keras.layers import SumFusion
from mmfusion_keras.testing import assert_raises_with_message
from mmfusion_keras.testing import fusion_input_error_cases
from mmfusion_keras.testing import run_layer_conformance

X1 = np.arange(6, dtype="float32").reshape(2, 3)
X2 = np.ones((2, 3), dtype="float32") * 2


def _common_errors(make_layer):
    return fusion_input_error_cases(make_layer, make_layer().__class__.__name__)


def test_concatenate_conformance():
    run_layer_conformance(
        ConcatenateFusion,
        {},
        [(None, 3), (None, 5)],
        expected_output_shape=(None, 8),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        error_cases=_common_errors(ConcatenateFusion),
    )


@pytest.mark.parametrize("cls", [SumFusion, ProductFusion])
def test_elementwise_conformance_with_projection(cls):
    run_layer_conformance(
        cls,
        {"projection_units": 4, "projection_activation": "tanh"},
        [(None, 3), (None, 5), (None, 2)],
        expected_output_shape=(None, 4),
        expected_num_trainable_weights=6,
        expected_num_non_trainable_weights=0,
        error_cases=_common_errors(lambda: cls(projection_units=4)),
    )


@pytest.mark.parametrize("cls", [SumFusion, ProductFusion])
def test_elementwise_conformance_without_projection(cls):
    run_layer_conformance(
        cls,
        {},
        [(None, 3), (None, 3)],
        expected_output_shape=(None, 3),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        error_cases=[
            (
                "unequal widths",
                lambda: cls()([X1, np.ones((2, 4), "float32")]),
                r"widths must be equal.*Received widths \[3, 4\].*projection_units",
            )
        ],
    )


# Three inputs with distinct, non-trivial values: no pairwise sum equals a
# product (unlike x = y = 2), so sum, product and mixes of them differ.
_rng = np.random.default_rng(3)
A, B, C = (_rng.uniform(-2.0, 2.0, (2, 3)).astype("float32") for _ in range(3))


def test_naive_fusion_values():
    np.testing.assert_allclose(
        ops.convert_to_numpy(ConcatenateFusion()([X1, X2])),
        np.concatenate([X1, X2], axis=-1),
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(ConcatenateFusion()([A, B, C])),
        np.concatenate([A, B, C], axis=-1),
    )
    total, product = A + B + C, A * B * C
    # The inputs do separate the two (and partial mixes of them).
    assert np.abs(total - product).min() > 1e-2
    assert np.abs(product - A * (B + C)).min() > 1e-3
    np.testing.assert_allclose(
        ops.convert_to_numpy(SumFusion()([A, B, C])), total, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(ProductFusion()([A, B, C])),
        product,
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "cls, combine", [(SumFusion, np.add), (ProductFusion, np.multiply)]
)
def test_projected_fusion_values(cls, combine):
    # Each modality through its own Dense(u) + activation, then combined.
    inputs = [A, B[:, :2], C[:, :1]]
    layer = cls(projection_units=4, projection_activation="tanh")
    out = ops.convert_to_numpy(layer(inputs))
    projected = [
        np.tanh(x @ ops.convert_to_numpy(p.kernel) + ops.convert_to_numpy(p.bias))
        for p, x in zip(layer.projections, inputs)
    ]
    expected = combine(combine(projected[0], projected[1]), projected[2])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_invalid_projection_units():
    assert_raises_with_message(
        lambda: SumFusion(projection_units=0),
        r"argument `projection_units`.*Received: projection_units=0",
    )
