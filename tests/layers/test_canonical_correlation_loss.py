import pathlib
import sys

import keras
import numpy as np
from keras import ops

from mmfusion_keras.layers import CanonicalCorrelationLoss
from mmfusion_keras.testing import run_layer_conformance

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "losses"))
from dcca_reference import total_canonical_correlation_np  # noqa: E402

rng = np.random.default_rng(0)
X = rng.standard_normal((6, 4, 3)).astype("float32")
Y = rng.standard_normal((6, 2)).astype("float32")
Z = rng.standard_normal((6, 5, 2)).astype("float32")


def _errors():
    layer = CanonicalCorrelationLoss
    return [
        (
            "one view",
            lambda: layer()([Y]),
            r"CanonicalCorrelationLoss.*2 or 3 view tensors.*Received 1 views",
        ),
        (
            "four views",
            lambda: layer()([Y, Y, Y, Y]),
            r"2 or 3 view tensors.*Received 4 views",
        ),
        (
            "single tensor",
            lambda: layer()(Y),
            r"Received a single tensor of shape \(6, 2\)",
        ),
        (
            "rank",
            lambda: layer()([Y, np.ones((6, 2, 2, 2), "float32")]),
            r"rank 2 \(batch, features\) or 3 \(batch, time, features\).*"
            r"view 1 with rank 4",
        ),
        (
            "mismatched batch",
            lambda: layer()([Y, X[:5]]),
            r"same batch size.*\[6, 5\]",
        ),
        (
            "integer view",
            lambda: layer()([Y, Y.astype("int32")]),
            r"floating-point views.*view 1 with dtype int32",
        ),
        (
            "mask count",
            lambda: layer()([X, Z], mask=[np.ones((6, 4), bool)]),
            r"one entry \(or None\) per view, 2 in all.*Received 1 masks",
        ),
        (
            "mask shape",
            lambda: layer()([X, Z], mask=[np.ones((6, 3), bool), None]),
            r"mask of view 0 to have shape \(batch, time\) = \(6, 4\).*"
            r"\(6, 3\)",
        ),
        (
            "top_k",
            lambda: layer(top_k=0),
            r"argument `top_k`, expected a positive integer or None. "
            r"Received: top_k=0",
        ),
        (
            "weight",
            lambda: layer(weight=-1),
            r"argument `weight`, expected a non-negative number. "
            r"Received: weight=-1",
        ),
    ]


def test_conformance():
    run_layer_conformance(
        CanonicalCorrelationLoss,
        {"top_k": 2, "ridge": 1e-3, "weight": 0.5},
        [(None, 4, 3), (None, 2), (None, 5, 2)],
        [(None, 4, 3), (None, 2), (None, 5, 2)],
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        error_cases=_errors(),
        batch_size=6,
    )


def test_value_pooling_and_masks():
    layer = CanonicalCorrelationLoss(top_k=2, ridge=1e-3)
    mask = np.ones((6, 4), bool)
    mask[:, 2:] = False
    mask[0, 2] = True
    got = float(layer.correlation([X, Y], mask=[mask, None]))
    m = mask[..., None].astype("float64")
    pooled = (X * m).sum(1) / m.sum(1)
    np.testing.assert_allclose(
        got, total_canonical_correlation_np(pooled, Y, top_k=2), atol=5e-4
    )
    # Three views: sum over the three pairs of mean-pooled views.
    got3 = float(CanonicalCorrelationLoss(top_k=1).correlation([X, Y, Z]))
    p = [X.mean(1), Y, Z.mean(1)]
    expected = sum(
        total_canonical_correlation_np(p[a], p[b], top_k=1)
        for a, b in [(0, 1), (0, 2), (1, 2)]
    )
    np.testing.assert_allclose(got3, expected, atol=5e-4)


def test_adds_loss_only_in_training_and_passes_inputs_through():
    layer = CanonicalCorrelationLoss(top_k=1, weight=2.0)
    outputs = layer([X, Y], training=False)
    assert not layer.losses
    np.testing.assert_array_equal(ops.convert_to_numpy(outputs[0]), X)
    layer([X, Y], training=True)
    expected = -2.0 * total_canonical_correlation_np(X.mean(1), Y, top_k=1)
    np.testing.assert_allclose(
        float(ops.convert_to_numpy(layer.losses[0])), expected, atol=1e-3
    )


def test_keras_masks_flow_through_functional_model():
    a = keras.Input((4,), dtype="int32")
    b = keras.Input((2,))
    emb = keras.layers.Embedding(10, 3, mask_zero=True)(a)
    emb_out, b_out = CanonicalCorrelationLoss(weight=1.0)([emb, b])
    pooled = keras.layers.GlobalAveragePooling1D()(emb_out)  # uses the mask
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([pooled, b_out]))
    model = keras.Model([a, b], out)
    model.compile(optimizer="adam", loss="mse")
    tokens = rng.integers(0, 10, (8, 4)).astype("int32")
    tokens[:, -1] = 0
    target = rng.standard_normal((8, 1)).astype("float32")
    views = [tokens, rng.standard_normal((8, 2)).astype("float32")]
    history = model.fit(views, target, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # evaluate adds no correlation term: its loss is the plain MSE.
    mse = float(np.mean((ops.convert_to_numpy(model(views)) - target) ** 2))
    np.testing.assert_allclose(model.evaluate(views, target, verbose=0), mse, rtol=1e-4)


def test_training_raises_correlation_of_encoders():
    z = rng.standard_normal((64, 1))
    xa = np.concatenate([z, rng.standard_normal((64, 3))], 1).astype("float32")
    xb = np.concatenate([rng.standard_normal((64, 3)), z], 1).astype("float32")
    ia, ib = keras.Input((4,)), keras.Input((4,))
    ea = keras.layers.Dense(1, name="enc_a")(ia)
    eb = keras.layers.Dense(1, name="enc_b")(ib)
    layer = CanonicalCorrelationLoss(top_k=1)
    ea, eb = layer([ea, eb])
    model = keras.Model([ia, ib], keras.layers.Concatenate()([ea, eb]))
    encoders = keras.Model([ia, ib], [ea, eb])
    before = float(layer.correlation(encoders([xa, xb])))
    # Zero task loss: only the correlation term trains the encoders.
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=lambda t, p: 0.0 * p,
        # XLA compilation alone takes longer than this test on TensorFlow.
        jit_compile=keras.config.backend() == "jax",
    )
    model.fit([xa, xb], np.zeros((64, 2)), batch_size=64, epochs=20, verbose=0)
    after = float(layer.correlation(encoders([xa, xb])))
    assert after > 0.8 and after > before + 0.2, (before, after)
