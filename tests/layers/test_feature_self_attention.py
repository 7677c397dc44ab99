import numpy as np
from keras import ops
from mbaf_reference import softmax

from mmfusion_keras.layers import FeatureSelfAttention
from mmfusion_keras.testing import run_layer_conformance


def test_conformance():
    run_layer_conformance(
        FeatureSelfAttention,
        {},
        (None, 5),
        expected_output_shape=(None, 5),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
        error_cases=[
            (
                "rank 1",
                lambda: FeatureSelfAttention()(np.ones((5,), "float32")),
                r"FeatureSelfAttention.*rank >= 2.*Received shape \(5,\)",
            )
        ],
    )


def test_matches_numpy_reference():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    layer = FeatureSelfAttention(use_bias=True)
    c, alpha = layer(x, return_attention_scores=True)
    kernel = ops.convert_to_numpy(layer.attentive_projection.kernel)
    bias = ops.convert_to_numpy(layer.attentive_projection.bias)
    ref_alpha = softmax(x * (x @ kernel + bias))  # Eq. 5
    np.testing.assert_allclose(ops.convert_to_numpy(alpha), ref_alpha, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(c), ref_alpha * x, atol=1e-5)


def test_uniform_attention_averages():
    layer = FeatureSelfAttention(kernel_initializer="zeros")
    x = np.random.default_rng(1).standard_normal((2, 6)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), x / 6, atol=1e-6)


def test_vector_projection_and_rescale_match_reference():
    x = np.random.default_rng(2).standard_normal((3, 4)).astype("float32")
    layer = FeatureSelfAttention(projection="vector", rescale=True)
    layer.build(x.shape)
    assert [w.name for w in layer.trainable_weights] == ["attentive_vector"]
    # Starts at zero: uniform attention, and the rescale makes it the identity.
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), x, atol=1e-6)
    b_hat = np.array([0.5, -1.0, 2.0, 0.0], "float32")
    layer.attentive_vector.assign(b_hat)
    c, alpha = layer(x, return_attention_scores=True)
    ref_alpha = softmax(x * b_hat)  # Eq. 5 with a vector b_hat
    np.testing.assert_allclose(ops.convert_to_numpy(alpha), ref_alpha, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(c), 4 * ref_alpha * x, atol=1e-5)


def test_vector_projection_conformance_and_errors():
    run_layer_conformance(
        FeatureSelfAttention,
        {"projection": "vector", "rescale": True},
        (None, 5),
        expected_output_shape=(None, 5),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
        error_cases=[
            (
                "projection",
                lambda: FeatureSelfAttention(projection="diag"),
                r"argument `projection`, expected one of \('matrix', 'vector'\). "
                r"Received: projection='diag'",
            ),
            (
                "rescale",
                lambda: FeatureSelfAttention(rescale="yes"),
                r"argument `rescale`, expected a bool. Received: rescale='yes'",
            ),
        ],
    )
