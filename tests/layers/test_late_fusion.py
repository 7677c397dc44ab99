import keras
import numpy as np
from keras import ops

from mmfusion_keras.layers import LateFusion
from mmfusion_keras.testing import assert_raises_with_message
from mmfusion_keras.testing import fusion_input_error_cases
from mmfusion_keras.testing import run_layer_conformance
from mmfusion_keras.testing import trainable_gradients

X1 = np.arange(6, dtype="float32").reshape(2, 3)


def _common_errors(make_layer):
    return fusion_input_error_cases(make_layer, "LateFusion") + [
        (
            "mismatched number of classes",
            lambda: make_layer()([X1, np.ones((2, 4), "float32")]),
            r"LateFusion.*same number of classes. Received widths \[3, 4\]",
        ),
    ]


def late_fusion_reference(scores, weights):
    weights = np.asarray(weights, dtype="float64")
    weights = weights / weights.sum()
    return sum(w * s for w, s in zip(weights, scores))


_CONSTRUCTOR_ERRORS = [
    (
        "negative weight",
        lambda: LateFusion(weights=[1.0, -0.5]),
        r"invalid value for argument `weights`, expected finite non-negative "
        r"numbers with a positive sum. Received: weights=\[1.0, -0.5\]",
    ),
    (
        "all-zero weights",
        lambda: LateFusion(weights=[0, 0]),
        r"argument `weights`.*positive sum. Received: weights=\[0.0, 0.0\]",
    ),
    (
        "weights not a list",
        lambda: LateFusion(weights="uniform"),
        r"argument `weights`, expected None or a list of numbers.*"
        r"Received: weights=uniform",
    ),
    (
        "zero weight when learnable",
        lambda: LateFusion(weights=[1, 0], learnable=True),
        r"argument `weights`, expected strictly positive numbers when "
        r"`learnable=True`.*Received: weights=\[1.0, 0.0\]",
    ),
]


def test_conformance_fixed():
    run_layer_conformance(
        LateFusion,
        {"weights": [1, 2, 1]},
        [(None, 3), (None, 3), (None, 3)],
        expected_output_shape=(None, 3),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        error_cases=_common_errors(LateFusion)
        + _CONSTRUCTOR_ERRORS
        + [
            (
                "wrong number of weights",
                lambda: LateFusion(weights=[1, 2, 3])([X1, X1]),
                r"LateFusion.*has 3 weights \(\[1.0, 2.0, 3.0\]\) but received "
                r"2 modalities",
            )
        ],
    )


def test_conformance_learnable():
    run_layer_conformance(
        LateFusion,
        {"learnable": True},
        [(None, 4), (None, 4)],
        expected_output_shape=(None, 4),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
        error_cases=_common_errors(lambda: LateFusion(learnable=True)),
    )


def test_values_uniform_and_weighted():
    rng = np.random.default_rng(0)
    scores = [rng.random((5, 4)).astype("float32") for _ in range(3)]
    np.testing.assert_allclose(
        ops.convert_to_numpy(LateFusion()(scores)), np.mean(scores, 0), atol=1e-6
    )
    out = LateFusion(weights=[2, 1, 1])(scores)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out),
        late_fusion_reference(scores, [0.5, 0.25, 0.25]),
        atol=1e-6,
    )
    # A zero weight drops a modality (allowed for fixed weights).
    out = LateFusion(weights=[0, 1, 0])(scores)
    np.testing.assert_allclose(ops.convert_to_numpy(out), scores[1], atol=1e-6)


def test_learnable_starts_from_the_given_weights_and_learns():
    rng = np.random.default_rng(1)
    scores = [rng.random((5, 3)).astype("float32") for _ in range(2)]
    layer = LateFusion(weights=[3, 1], learnable=True)
    out = layer(scores)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out), late_fusion_reference(scores, [3, 1]), atol=1e-6
    )
    softmax = np.exp(ops.convert_to_numpy(layer.logits))
    np.testing.assert_allclose(softmax / softmax.sum(), [0.75, 0.25], atol=1e-6)
    # The gradient of sum(output) w.r.t. the logits is non-zero as soon as
    # the modalities' scores differ: the weights can be learned.
    inputs = [keras.Input((3,)), keras.Input((3,))]
    model = keras.Model(inputs, layer(inputs))
    (grad,) = trainable_gradients(model, scores, np.ones((5, 3), "float32"))
    s0, s1 = scores[0].sum(), scores[1].sum()
    # d/dv softmax(v) . (s0, s1) with softmax = (0.75, 0.25).
    expected = 0.75 * 0.25 * np.array([s0 - s1, s1 - s0])
    np.testing.assert_allclose(grad, expected, rtol=1e-4)


def test_config_keeps_the_given_weights():
    layer = LateFusion(weights=[1, 3], learnable=True)
    config = layer.get_config()
    assert config["weights"] == [1.0, 3.0] and config["learnable"] is True
    revived = LateFusion.from_config(config)
    assert revived.modality_weights == [1.0, 3.0]


def test_invalid_weights_message():
    assert_raises_with_message(
        lambda: LateFusion(weights=[-1, 2]),
        r"^Received an invalid value for argument `weights`, expected finite "
        r"non-negative numbers with a positive sum. Received: weights=\[-1.0, 2.0\]$",
    )
