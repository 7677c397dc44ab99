import keras
import numpy as np
from keras import ops

from mmfusion_keras.layers import TensorFusion
from mmfusion_keras.testing import assert_raises_with_message
from mmfusion_keras.testing import fusion_input_error_cases
from mmfusion_keras.testing import run_layer_conformance

X1 = np.arange(6, dtype="float32").reshape(2, 3)


def _common_errors(make_layer):
    return fusion_input_error_cases(make_layer, "TensorFusion")


def tensor_fusion_reference(xs):
    """NumPy TFN: outer product of [x_i; 1], flattened row-major per sample."""
    out = np.ones((xs[0].shape[0], 1), dtype="float64")
    for x in xs:
        x1 = np.concatenate([x, np.ones((x.shape[0], 1))], axis=-1)
        out = np.einsum("bi,bj->bij", out, x1).reshape(x.shape[0], -1)
    return out


def test_conformance():
    run_layer_conformance(
        TensorFusion,
        {},
        [(None, 2), (None, 3), (None, 1)],
        expected_output_shape=(None, 24),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        error_cases=_common_errors(TensorFusion)
        + [
            (
                "output too wide",
                lambda: TensorFusion(max_output_dim=10)([X1, X1]),
                r"TensorFusion.*prod\(d_i \+ 1\) = 16.*widths \[3, 3\].*"
                r"`max_output_dim=10`",
            ),
            (
                "output too wide (symbolic)",
                lambda: TensorFusion(max_output_dim=99)(
                    [keras.Input((9,)), keras.Input((9,))]
                ),
                r"prod\(d_i \+ 1\) = 100 features.*`max_output_dim=99`",
            ),
            (
                "max_output_dim=0",
                lambda: TensorFusion(max_output_dim=0),
                r"invalid value for argument `max_output_dim`, expected a "
                r"positive integer. Received: max_output_dim=0",
            ),
        ],
    )


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((4, d)).astype("float32") for d in (2, 3, 4)]
    out = ops.convert_to_numpy(TensorFusion()(xs))
    assert out.shape == (4, 3 * 4 * 5)
    np.testing.assert_allclose(out, tensor_fusion_reference(xs), rtol=1e-5, atol=1e-6)


def test_holds_unimodal_and_bimodal_terms():
    x = np.array([[2.0, 3.0]], "float32")
    y = np.array([[5.0, 7.0, 11.0]], "float32")
    z = ops.convert_to_numpy(TensorFusion()([x, y])).reshape(3, 4)
    np.testing.assert_allclose(z[:2, :3], np.outer(x[0], y[0]))  # bimodal
    np.testing.assert_allclose(z[:2, 3], x[0])  # unimodal x
    np.testing.assert_allclose(z[2, :3], y[0])  # unimodal y
    assert z[2, 3] == 1.0


def test_width_limit_is_inclusive():
    # prod(d_i + 1) == max_output_dim is allowed.
    out = TensorFusion(max_output_dim=16)([X1, X1])
    assert tuple(out.shape) == (2, 16)
    assert_raises_with_message(
        lambda: TensorFusion(max_output_dim=15)([X1, X1]),
        r"= 16 features.*more than `max_output_dim=15`",
    )
