import os

import keras
import numpy as np
import pytest
from delta_attention_reference import delta_self_attention
from keras import ops

from mmfusion_keras.layers import DeltaSelfAttention
from mmfusion_keras.testing import run_layer_conformance
from mmfusion_keras.testing.conformance import assert_raises_with_message

rng = np.random.default_rng(0)
X = rng.standard_normal((3, 6, 4)).astype("float32")
DATA = os.path.join(os.path.dirname(__file__), "data")
MASK = np.arange(6)[None, :] < np.array([[6], [4], [2]])


def _np(v):
    return ops.convert_to_numpy(v).astype("float64")


def _weights(layer):
    w = {
        "conv_kernel": _np(layer.conv.kernel),
        "conv_bias": _np(layer.conv.bias),
        "o_kernel": _np(layer.output_dense.kernel),
        "o_bias": _np(layer.output_dense.bias),
    }
    for key, dense in (
        ("q", layer.query_dense),
        ("k", layer.key_dense),
        ("v", layer.value_dense),
    ):
        w[f"{key}_kernel"] = _np(dense.kernel)
        w[f"{key}_bias"] = _np(dense.bias)
    if hasattr(layer, "relative_kernel"):
        w["relative_kernel"] = _np(layer.relative_kernel)
    if hasattr(layer, "delta_kernel"):
        w["delta_kernel"] = _np(layer.delta_kernel)
    return w


def _randomize(layer, seed=1):
    """Non-zero biases, so the reference checks them too."""
    r = np.random.default_rng(seed)
    for v in layer.weights:
        v.assign(0.5 * r.standard_normal(tuple(v.shape)).astype("float32"))


def _errors():
    x = X
    return [
        (
            "rank 2 input",
            lambda: DeltaSelfAttention(2, 4)(x[:, 0]),
            r"DeltaSelfAttention expected a sequence of shape \(batch, time, "
            r"features\).*Received: input shape \(3, 4\)",
        ),
        (
            "integer input",
            lambda: DeltaSelfAttention(2, 4)(x.astype("int32")),
            r"DeltaSelfAttention expected a floating-point input.*int32",
        ),
        (
            "mask length",
            lambda: DeltaSelfAttention(2, 4)(x, mask=MASK[:, :5]),
            r"DeltaSelfAttention expected a padding mask of shape \(batch, time\) "
            r"= \(3, 6\).*Received: mask of shape \(3, 5\)",
        ),
        (
            "num_heads",
            lambda: DeltaSelfAttention(0, 4),
            r"argument `num_heads`, expected a positive integer. Received: "
            r"num_heads=0",
        ),
        (
            "delta_window",
            lambda: DeltaSelfAttention(2, 4, delta_window=-1),
            r"`delta_window`, expected a non-negative integer or None. "
            r"Received: delta_window=-1",
        ),
        (
            "delta",
            lambda: DeltaSelfAttention(2, 4, delta="sum"),
            r"`delta`, expected one of \('relative', 'per_key_bias', 'absolute'\). "
            r"Received: delta='sum'",
        ),
        (
            "old delta name",
            lambda: DeltaSelfAttention(2, 4, delta="difference"),
            r"no longer accepts delta='difference'.*delta='per_key_bias' \(the "
            r"old behaviour\). Received: delta='difference'",
        ),
        (
            "longer than max_length",
            lambda: DeltaSelfAttention(2, 4, max_length=5, long_sequences="error")(x),
            r"expected at most max_length=5 time steps.*Received: 6 steps",
        ),
        (
            "unknown length",
            lambda: DeltaSelfAttention(2, 4).build((None, None, 4)),
            r"needs the number of columns of W_RelPos.*Received: input shape "
            r"\(None, None, 4\), max_length=None",
        ),
    ]


@pytest.mark.parametrize(
    "kwargs,n_trainable,n_seed",
    [({"num_heads": 2, "filters": 4, "output_dim": 5, "delta_window": 1}, 11, 0)],
)
def test_conformance(kwargs, n_trainable, n_seed):
    run_layer_conformance(
        DeltaSelfAttention,
        kwargs,
        (None, 6, 4),
        expected_output_shape=(None, 6, kwargs.get("output_dim", 4)),
        expected_num_trainable_weights=n_trainable,
        expected_num_non_trainable_weights=0,
        expected_num_seed_generators=n_seed,
        error_cases=_errors() if kwargs["num_heads"] == 2 else (),
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # the defaults: relative, shared table, forward keys, no window
        {"delta_window": 2, "share_across_heads": False, "key_dim": 3},
        {"key_range": "both", "delta_window": 3, "max_length": 3},  # clipped
        {"delta": "per_key_bias", "key_range": "both", "delta_window": 1},
        {"delta": "absolute", "delta_window": 1},
        {"use_delta": False, "delta_window": 2},
    ],
)
def test_matches_numpy_reference(kwargs):
    layer = DeltaSelfAttention(num_heads=2, filters=4, output_dim=5, **kwargs)
    layer.build(X.shape)
    _randomize(layer)
    w = _weights(layer)
    out, weights = layer(X, mask=MASK, return_attention_scores=True)
    logits = _np(layer.attention_logits(X, mask=MASK))
    out, weights = _np(out), _np(weights)
    for b in range(len(X)):
        ref_logits, ref_weights, ref_out = delta_self_attention(
            X[b].astype("float64"),
            w,
            num_heads=2,
            delta=kwargs.get("delta", "relative"),
            window=kwargs.get("delta_window"),
            mask=MASK[b],
            use_delta=kwargs.get("use_delta", True),
            key_range=kwargs.get("key_range", "forward"),
            max_length=kwargs.get("max_length", X.shape[1]),
        )
        np.testing.assert_allclose(logits[b], ref_logits, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(weights[b], ref_weights, atol=1e-5)
        np.testing.assert_allclose(out[b], ref_out, atol=1e-4, rtol=1e-4)


def _zero_query_key(layer):
    for dense in (layer.query_dense, layer.key_dense):
        for v in dense.weights:
            v.assign(np.zeros(tuple(v.shape), "float32"))


def test_relative_term_alone_shapes_rows_per_key_bias_does_not():
    """Acceptance (issue 14): with the default arguments and the query and
    key projections zeroed, the relative term alone gives different queries
    different attention rows. Compared on keys both queries may attend
    (default keys are j >= i), as log-ratios, so the mask alone cannot make
    rows differ; the per-key-bias reading is the negative control."""
    x = X[:1]
    ratios = {}
    for delta in ("relative", "per_key_bias"):
        layer = DeltaSelfAttention(num_heads=1, filters=4, delta=delta)
        layer.build(x.shape)
        _randomize(layer, seed=5)
        _zero_query_key(layer)
        _, weights = layer(x, return_attention_scores=True)
        log_w = np.log(_np(weights)[0, 0, :2, 2:])  # queries 0, 1; keys 2..5
        ratios[delta] = log_w - log_w[:, :1]  # log(w_ij / w_i2)
    gap = np.abs(ratios["relative"][0] - ratios["relative"][1]).max()
    assert gap > 1e-2, gap
    np.testing.assert_allclose(
        ratios["per_key_bias"][0], ratios["per_key_bias"][1], atol=1e-5
    )
    # With keys on both sides, whole rows differ too.
    layer = DeltaSelfAttention(num_heads=1, filters=4, key_range="both")
    layer.build(x.shape)
    _randomize(layer, seed=5)
    _zero_query_key(layer)
    _, weights = layer(x, return_attention_scores=True)
    rows = _np(weights)[0, 0]
    assert np.abs(rows[0] - rows[1]).max() > 1e-2


def test_old_keras_file_loads_with_old_behaviour():
    """Saved by the previous version (delta='difference', no max_length key)."""
    path = os.path.join(DATA, "delta_self_attention_legacy.keras")
    expected = np.load(os.path.join(DATA, "delta_self_attention_legacy.npz"))
    model = keras.saving.load_model(path)
    layer = model.get_layer("delta")
    assert layer.delta == "per_key_bias" and layer.key_range == "both"
    np.testing.assert_allclose(
        _np(model(expected["x"])), expected["y"], atol=1e-5, rtol=1e-5
    )


def test_band_and_padding_masks_give_exactly_zero_weight():
    forward = DeltaSelfAttention(num_heads=2, filters=4, delta_window=2)
    _, weights = forward(X, mask=MASK, return_attention_scores=True)
    weights = ops.convert_to_numpy(weights)
    idx = np.arange(6)
    offset = idx[None, :] - idx[:, None]  # j - i
    assert np.all(weights[:, :, (offset < 0) | (offset > 2)] == 0.0)
    assert np.all(weights[:, :, (offset >= 0) & (offset <= 2)][0] > 0.0)
    layer = DeltaSelfAttention(num_heads=2, filters=4, delta_window=1, key_range="both")
    _, weights = layer(X, mask=MASK, return_attention_scores=True)
    weights = ops.convert_to_numpy(weights)
    outside_band = np.abs(idx[:, None] - idx[None, :]) > 1
    assert np.all(weights[:, :, outside_band] == 0.0)
    for b, length in enumerate([6, 4, 2]):
        assert np.all(weights[b, :, :, length:] == 0.0)  # padded keys
        np.testing.assert_allclose(weights[b, :, :length].sum(-1), 1.0, atol=1e-5)
    # Query 4 of example 2 (2 real steps) has no real key in its band.
    assert np.all(weights[2, :, 4] == 0.0)


def test_padding_does_not_change_real_steps_and_keras_mask_is_used():
    layer = DeltaSelfAttention(num_heads=2, filters=4, kernel_size=3)
    short = layer(X[1:2, :4])
    garbage = X[1:2].copy()
    garbage[:, 4:] = 100.0
    masked = layer(garbage, mask=MASK[1:2])
    np.testing.assert_allclose(_np(masked)[:, :4], _np(short), atol=1e-5)
    assert np.all(_np(masked)[:, 4:] == 0.0)
    # The same through Keras masking: zero steps are padding, mask propagates.
    inputs = keras.Input((6, 4))
    masked_inputs = keras.layers.Masking(0.0)(inputs)
    outputs = layer(masked_inputs)
    assert outputs._keras_mask is not None
    model = keras.Model(inputs, outputs)
    zeros = X[1:2].copy()
    zeros[:, 4:] = 0.0
    np.testing.assert_allclose(_np(model(zeros))[:, :4], _np(short), atol=1e-5)


def test_per_key_bias_reading_is_a_per_key_bias():
    """With one vector per head (`per_key_bias`), the linear difference only
    shifts each row of logits by a key bias: the weights are those of plain
    attention plus `X̂_j · w` (the reading of earlier versions)."""
    for delta, should_change in (("per_key_bias", False), ("absolute", True)):
        layer = DeltaSelfAttention(
            num_heads=1, filters=4, delta=delta, key_range="both"
        )
        layer.build(X.shape)
        _randomize(layer, seed=3)
        _, w1 = layer(X, return_attention_scores=True)
        plain = DeltaSelfAttention(
            num_heads=1, filters=4, use_delta=False, key_range="both"
        )
        plain.build(X.shape)
        for name in ("conv", "query_dense", "key_dense", "value_dense", "output_dense"):
            for v_plain, v in zip(
                getattr(plain, name).weights, getattr(layer, name).weights
            ):
                v_plain.assign(v)
        _, w0 = plain(X, return_attention_scores=True)
        changed = not np.allclose(_np(w1), _np(w0), atol=1e-5)
        assert changed  # the delta term does act on the weights
        if not should_change:
            # ... but only as a per-key bias: rebuild it from s_j = X̂_j · w.
            projected = _np(layer.conv(X))
            s = projected @ _np(layer.delta_kernel)[:, 0]  # (B, T)
            base = _np(plain.attention_logits(X))[:, 0]
            biased = base + s[:, None, :] / np.sqrt(4)
            e = np.exp(biased - biased.max(-1, keepdims=True))
            np.testing.assert_allclose(
                _np(w1)[:, 0], e / e.sum(-1, keepdims=True), atol=1e-5
            )


def test_rejects_mask_of_wrong_rank():
    layer = DeltaSelfAttention(num_heads=1, filters=2)
    assert_raises_with_message(
        lambda: layer(X, mask=MASK[:, :, None]),
        r"padding mask of shape \(batch, time\).*Received: mask of shape \(3, 6, 1\)",
    )


def test_dropout_only_in_training():
    layer = DeltaSelfAttention(num_heads=1, filters=4, dropout=0.5, seed=3)
    inference = _np(layer(X, training=False))
    np.testing.assert_allclose(_np(layer(X)), inference, atol=1e-6)
    assert not np.allclose(_np(layer(X, training=True)), inference, atol=1e-3)
