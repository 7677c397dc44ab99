import keras
import numpy as np
import pytest
from clstm_reference import conv_lstm
from keras import ops

from mmfusion_keras.layers import ConvLSTM
from mmfusion_keras.testing import run_layer_conformance

rng = np.random.default_rng(0)
FRAMES = rng.standard_normal((2, 4, 5, 5, 2)).astype("float32")


def _set_random_weights(layer, seed=1):
    """Fixed random weights (scaled so the gates are not saturated)."""
    r = np.random.default_rng(seed)
    weights = {}
    for name in ("kernel", "recurrent_kernel", "bias"):
        var = getattr(layer.cell, name)
        value = 0.4 * r.standard_normal(tuple(var.shape)).astype("float32")
        var.assign(value)
        weights[name] = value.astype("float64")
    return weights


def _errors():
    name = "ConvLSTM"
    return [
        (
            "rank 4",
            lambda: ConvLSTM(2)(FRAMES[:, 0]),
            rf"{name}.*frames of rank 5 \(batch, frames, height, width, "
            r"channels\).*Received shape \(2, 5, 5, 2\)",
        ),
        (
            "list",
            lambda: ConvLSTM(2)([FRAMES, FRAMES]),
            rf"{name}.*one tensor of frames.*Received a list of 2 tensors",
        ),
        (
            "integer frames",
            lambda: ConvLSTM(2)(FRAMES.astype("int32")),
            rf"{name}.*floating-point frames. Received dtype int32",
        ),
        (
            "filters",
            lambda: ConvLSTM(0),
            r"ConvLSTMCell.*`filters`, expected a positive integer. "
            r"Received: filters=0",
        ),
        (
            "padding",
            lambda: ConvLSTM(2, padding="causal"),
            r"`padding`, expected one of \('same', 'valid'\). "
            r"Received: padding='causal'",
        ),
        (
            "frame smaller than kernel",
            lambda: ConvLSTM(2, kernel_size=7, padding="valid")(FRAMES),
            r"frame of 5x5 is smaller than the kernel 7x7 with padding='valid'",
        ),
    ]


def test_conformance():
    run_layer_conformance(
        ConvLSTM,
        {"filters": 2, "return_sequences": True},
        (None, 3, 5, 5, 2),
        expected_output_shape=(None, 3, 5, 5, 2),
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=0,
        error_cases=_errors(),
        save_atol=1e-5,
    )


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_sequence_and_states_match_numpy_reference(padding):
    layer = ConvLSTM(2, padding=padding, return_sequences=True, return_state=True)
    layer.build(FRAMES.shape)
    w = _set_random_weights(layer)
    seq, h, c = layer(FRAMES)
    ref_seq, ref_c = conv_lstm(FRAMES.astype("float64"), w, padding)
    np.testing.assert_allclose(ops.convert_to_numpy(seq), ref_seq, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(h), ref_seq[:, -1], atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(c), ref_c, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"padding": "same", "return_sequences": True},
        {"padding": "valid", "go_backwards": True},
    ],
)
def test_equals_keras_conv_lstm_2d_with_the_same_weights(kwargs):
    layer = ConvLSTM(3, **kwargs)
    layer.build(FRAMES.shape)
    _set_random_weights(layer)
    reference = keras.layers.ConvLSTM2D(3, 3, **kwargs)
    reference.build(FRAMES.shape)
    # Same weights in the same order: an old model's weights load as they are.
    assert [tuple(w.shape) for w in reference.weights] == [
        tuple(w.shape) for w in layer.weights
    ]
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(FRAMES)),
        ops.convert_to_numpy(reference(FRAMES)),
        atol=1e-5,
    )


def test_mask_skips_frames():
    layer = ConvLSTM(2, return_state=True)
    layer.build(FRAMES.shape)
    w = _set_random_weights(layer)
    # Example 0 has 2 padding frames in front, example 1 none.
    padded = np.concatenate([np.zeros_like(FRAMES[:, :2]), FRAMES], axis=1)
    padded[1, :2] = rng.standard_normal(padded[1, :2].shape)
    mask = np.ones((2, 6), bool)
    mask[0, :2] = False
    out, _, c = layer(padded, mask=mask)
    out = ops.convert_to_numpy(out)
    unpadded, _, _ = layer(FRAMES[:1])
    np.testing.assert_allclose(out[:1], ops.convert_to_numpy(unpadded), atol=1e-5)
    ref_seq, ref_c = conv_lstm(padded.astype("float64"), w, mask=mask)
    np.testing.assert_allclose(out, ref_seq[:, -1], atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(c), ref_c, atol=1e-5)
