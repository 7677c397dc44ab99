import keras
import numpy as np
import pytest
from clstm_reference import cell_step
from clstm_reference import multimodal_conv_lstm
from keras import ops

from mmfusion_keras.layers import MultimodalConvLSTM
from mmfusion_keras.layers.multimodal_conv_lstm_cell import MultimodalConvLSTMCell
from mmfusion_keras.testing import assert_raises_with_message
from mmfusion_keras.testing import run_layer_conformance

rng = np.random.default_rng(0)
IMAGE = rng.standard_normal((2, 5, 5, 2)).astype("float32")
AUDIO = rng.standard_normal((2, 4, 3)).astype("float32")


def _set_random_weights(cell, seed=1):
    """Fixed random weights (scaled so the gates are not saturated)."""
    r = np.random.default_rng(seed)
    weights = {}
    for name in ("image_kernel", "recurrent_kernel", "audio_kernel", "bias"):
        var = getattr(cell, name)
        value = 0.4 * r.standard_normal(tuple(var.shape)).astype("float32")
        var.assign(value)
        weights[name] = value.astype("float64")
    return weights


def _errors():
    image, audio = IMAGE, AUDIO
    name = "MultimodalConvLSTM"
    return [
        (
            "single tensor",
            lambda: MultimodalConvLSTM(3)(audio),
            rf"{name}.*list of exactly 2 tensors \[image, audio\].*Received a "
            r"single tensor of shape \(2, 4, 3\)",
        ),
        (
            "three tensors",
            lambda: MultimodalConvLSTM(3)([image, audio, audio]),
            rf"{name}.*exactly 2 tensors.*Received a list of 3 tensors",
        ),
        (
            "image rank",
            lambda: MultimodalConvLSTM(3)([image[..., 0], audio]),
            rf"{name}.*image \(first input\) to have rank 4.*Received image "
            r"shape \(2, 5, 5\)",
        ),
        (
            "audio rank",
            lambda: MultimodalConvLSTM(3)([image, audio[:, 0]]),
            rf"{name}.*audio \(second input\) to have rank 3.*Received audio "
            r"shape \(2, 3\)",
        ),
        (
            "batch mismatch",
            lambda: MultimodalConvLSTM(3)([image, audio[:1]]),
            rf"{name}.*same batch size.*image shape \(2, 5, 5, 2\) and audio "
            r"shape \(1, 4, 3\)",
        ),
        (
            "integer audio",
            lambda: MultimodalConvLSTM(3)([image, audio.astype("int32")]),
            rf"{name}.*floating-point.*audio with dtype int32",
        ),
        (
            "filters",
            lambda: MultimodalConvLSTM(0),
            r"MultimodalConvLSTMCell.*`filters`, expected a positive integer. "
            r"Received: filters=0",
        ),
        (
            "padding",
            lambda: MultimodalConvLSTM(2, padding="causal"),
            r"`padding`, expected one of \('same', 'valid'\). "
            r"Received: padding='causal'",
        ),
        (
            "kernel_size",
            lambda: MultimodalConvLSTM(2, kernel_size=(3, 0)),
            r"`kernel_size`.*Received: kernel_size=\(3, 0\)",
        ),
        (
            "image smaller than kernel",
            lambda: MultimodalConvLSTM(2, kernel_size=7, padding="valid")(
                [image, audio]
            ),
            r"image of 5x5 is smaller than the kernel 7x7 with padding='valid'",
        ),
    ]


@pytest.mark.parametrize(
    "kwargs,output_shape",
    [
        ({"filters": 3}, (None, 5, 5, 3)),
        (
            {"filters": 2, "padding": "valid", "return_sequences": True},
            (None, 4, 3, 3, 2),
        ),
    ],
)
def test_conformance(kwargs, output_shape):
    run_layer_conformance(
        MultimodalConvLSTM,
        kwargs,
        [(None, 5, 5, 2), (None, 4, 3)],
        expected_output_shape=output_shape,
        expected_num_trainable_weights=4,
        expected_num_non_trainable_weights=0,
        error_cases=_errors() if kwargs["filters"] == 3 else (),
        run_mixed_precision=kwargs["filters"] == 3,
        save_atol=1e-5,
    )


def test_one_cell_step_matches_numpy_reference():
    cell = MultimodalConvLSTMCell(3)
    cell.build(IMAGE.shape, (None, 3))
    w = _set_random_weights(cell)
    r = np.random.default_rng(2)
    h0 = r.standard_normal((2, 5, 5, 3)).astype("float32")
    c0 = r.standard_normal((2, 5, 5, 3)).astype("float32")
    _, _, image_gates = cell.get_initial_state(IMAGE)
    h, (h_state, c, carried) = cell(AUDIO[:, 1], [h0, c0, image_gates])
    ref_h, ref_c = cell_step(
        IMAGE.astype("float64"), AUDIO[:, 1].astype("float64"), h0, c0, w
    )
    np.testing.assert_allclose(ops.convert_to_numpy(h), ref_h, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(h_state), ref_h, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(c), ref_c, atol=1e-5)
    # The image's share of the gates is carried through unchanged.
    np.testing.assert_array_equal(
        ops.convert_to_numpy(carried), ops.convert_to_numpy(image_gates)
    )


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_sequence_and_states_match_numpy_reference(padding):
    layer = MultimodalConvLSTM(
        2, padding=padding, return_sequences=True, return_state=True
    )
    layer.build([IMAGE.shape, AUDIO.shape])
    w = _set_random_weights(layer.cell)
    seq, h, c = layer([IMAGE, AUDIO])
    ref_seq, ref_c = multimodal_conv_lstm(
        IMAGE.astype("float64"), AUDIO.astype("float64"), w, padding
    )
    np.testing.assert_allclose(ops.convert_to_numpy(seq), ref_seq, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(h), ref_seq[:, -1], atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(c), ref_c, atol=1e-5)


def test_zero_audio_is_a_conv_lstm_on_the_constant_image():
    layer = MultimodalConvLSTM(3, return_sequences=True)
    layer.build([IMAGE.shape, AUDIO.shape])
    _set_random_weights(layer.cell)
    out = layer([IMAGE, np.zeros_like(AUDIO)])

    reference = keras.layers.ConvLSTM2D(3, 3, padding="same", return_sequences=True)
    repeated = np.repeat(IMAGE[:, None], AUDIO.shape[1], axis=1)  # (B, T, H, W, C)
    reference.build(repeated.shape)
    reference.cell.kernel.assign(layer.cell.image_kernel)
    reference.cell.recurrent_kernel.assign(layer.cell.recurrent_kernel)
    reference.cell.bias.assign(layer.cell.bias)
    expected = ops.convert_to_numpy(reference(repeated))
    np.testing.assert_allclose(ops.convert_to_numpy(out), expected, atol=1e-5)
    # ... and the audio does change the output when it is not zero.
    moved = ops.convert_to_numpy(layer([IMAGE, AUDIO]))
    assert np.max(np.abs(moved - expected)) > 1e-2


def test_mask_skips_front_padding():
    layer = MultimodalConvLSTM(2, return_state=True)
    layer.build([IMAGE.shape, (None, 6, 3)])
    w = _set_random_weights(layer.cell)
    # Example 0 has 2 padding frames in front, example 1 none.
    padded = np.concatenate([np.zeros((2, 2, 3), "float32"), AUDIO], axis=1)
    padded[1, :2] = rng.standard_normal((2, 3))
    mask = np.ones((2, 6), bool)
    mask[0, :2] = False
    out, h, c = layer([IMAGE, padded], mask=mask)
    out = ops.convert_to_numpy(out)
    # The masked example equals a run on its unpadded frames.
    unpadded, _, _ = layer([IMAGE[:1], AUDIO[:1]])
    np.testing.assert_allclose(out[:1], ops.convert_to_numpy(unpadded), atol=1e-5)
    ref_seq, ref_c = multimodal_conv_lstm(
        IMAGE.astype("float64"), padded.astype("float64"), w, mask=mask
    )
    np.testing.assert_allclose(out, ref_seq[:, -1], atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(c), ref_c, atol=1e-5)
    # The mask of a keras.layers.Masking layer reaches the loop as well.
    image_in = keras.Input((5, 5, 2))
    audio_in = keras.Input((6, 3))
    masked = keras.layers.Masking(0.0)(audio_in)
    model = keras.Model([image_in, audio_in], layer([image_in, masked])[0])
    np.testing.assert_allclose(
        ops.convert_to_numpy(model([IMAGE, padded])), out, atol=1e-5
    )


def test_cell_needs_the_image_for_its_initial_state():
    cell = MultimodalConvLSTMCell(2)
    assert_raises_with_message(
        lambda: cell.get_initial_state(batch_size=2),
        r"MultimodalConvLSTMCell.get_initial_state needs the image",
    )
