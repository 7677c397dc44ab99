"""`mmfusion_keras.attention_maps` against NumPy references of the layers."""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "layers"))

from cross_modal_reference import cross_modal_attention_np  # noqa: E402
from cross_modal_reference import layer_norm  # noqa: E402
from delta_attention_reference import delta_self_attention  # noqa: E402

from mmfusion_keras.attention_maps import attention_maps  # noqa: E402
from mmfusion_keras.attention_maps import find_attention_layers  # noqa: E402
from mmfusion_keras.layers import CrossModalAttention  # noqa: E402
from mmfusion_keras.layers import CrossModalTransformerBlock  # noqa: E402
from mmfusion_keras.layers import DeltaSelfAttention  # noqa: E402


def _np(v):
    return np.asarray(keras.ops.convert_to_numpy(v), "float64")


def _model():
    """Words attend to audio frames (masked), delta self-attention on frames."""
    words = keras.Input((4, 6), name="words")
    frames = keras.Input((5, 3), name="frames")
    frames_mask = keras.Input((5,), dtype="bool", name="frames_mask")
    cross = CrossModalAttention(num_heads=2, key_dim=3, name="words_to_audio")
    y = cross([words, frames], mask=[None, frames_mask])
    delta = DeltaSelfAttention(
        num_heads=2, filters=4, kernel_size=3, delta_window=2, name="audio_delta"
    )
    z = delta(frames, mask=frames_mask)
    block = CrossModalTransformerBlock(num_heads=2, name="block")
    b = block([words, frames])
    pooled = keras.layers.Concatenate()(
        [
            keras.layers.GlobalAveragePooling1D()(y),
            keras.layers.GlobalAveragePooling1D()(z),
            keras.layers.GlobalAveragePooling1D()(b),
        ]
    )
    out = keras.layers.Dense(2, activation="softmax")(pooled)
    model = keras.Model([words, frames, frames_mask], out)
    rng = np.random.default_rng(0)
    for layer in (cross, delta, block):
        for v in layer.weights:
            v.assign(0.5 * rng.standard_normal(tuple(v.shape)).astype("float32"))
    return model, cross, delta, block


def test_attention_maps_match_numpy_references():
    model, cross, delta, block = _model()
    rng = np.random.default_rng(1)
    words = rng.standard_normal((2, 4, 6)).astype("float32")
    frames = rng.standard_normal((2, 5, 3)).astype("float32")
    mask = np.array([[True] * 5, [True] * 3 + [False] * 2])
    assert [name for name, _, _ in find_attention_layers(model)] == [
        "words_to_audio",
        "audio_delta",
        "block/" + block.attention.name,
    ]
    maps = attention_maps(model, [words, frames, mask])
    w = {v.path.split("/")[-1]: _np(v) for v in cross.weights}
    _, expected = cross_modal_attention_np(words, frames, w, source_mask=mask)
    np.testing.assert_allclose(maps["words_to_audio"], expected, atol=1e-5)
    assert np.all(maps["words_to_audio"][1, :, :, 3:] == 0.0)

    dw = {
        "conv_kernel": _np(delta.conv.kernel),
        "conv_bias": _np(delta.conv.bias),
        "o_kernel": _np(delta.output_dense.kernel),
        "o_bias": _np(delta.output_dense.bias),
        "relative_kernel": _np(delta.relative_kernel),
    }
    for key, dense in (
        ("q", delta.query_dense),
        ("k", delta.key_dense),
        ("v", delta.value_dense),
    ):
        dw[f"{key}_kernel"], dw[f"{key}_bias"] = _np(dense.kernel), _np(dense.bias)
    for b in range(2):
        _, weights, _ = delta_self_attention(
            frames[b].astype("float64"),
            dw,
            2,
            window=2,
            mask=mask[b],
            max_length=dw["relative_kernel"].shape[-1],
        )
        np.testing.assert_allclose(maps["audio_delta"][b], weights, atol=1e-5)

    # Inside the block: the attention reads the layer-normalized sequences.
    a = block.attention
    w = {v.path.split("/")[-1]: _np(v) for v in a.weights}
    target = layer_norm(
        words, _np(block.target_norm.gamma), _np(block.target_norm.beta)
    )
    source = layer_norm(
        frames, _np(block.source_norm.gamma), _np(block.source_norm.beta)
    )
    _, expected = cross_modal_attention_np(target, source, w)
    np.testing.assert_allclose(maps["block/" + a.name], expected, atol=1e-4)


def test_a_model_without_attention_and_a_non_functional_model():
    x = keras.Input((3,))
    model = keras.Model(x, keras.layers.Dense(2)(x))
    assert attention_maps(model, [np.ones((1, 3), "float32")]) == {}

    class Plain(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match=r"expects a functional Keras model"):
        attention_maps(Plain(), [np.ones((1, 3))])
