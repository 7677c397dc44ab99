import keras
import numpy as np
import pytest
from cross_modal_reference import block_np
from cross_modal_reference import cross_modal_attention_np
from keras import ops

from mmfusion_keras.layers import CrossModalAttention
from mmfusion_keras.layers import CrossModalTransformerBlock
from mmfusion_keras.layers import SinusoidalPositionEmbedding
from mmfusion_keras.testing import run_layer_conformance

rng = np.random.default_rng(0)
TARGET = rng.standard_normal((3, 4, 6)).astype("float32")
SOURCE = rng.standard_normal((3, 5, 3)).astype("float32")
SOURCE_MASK = np.array(
    [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=bool
)  # full, padded, entirely padded


def _np(v):
    return ops.convert_to_numpy(v).astype("float64")


def _attention_weights(layer):
    names = ["query", "key", "value", "output"]
    w = {f"{n}_kernel": _np(getattr(layer, f"{n}_kernel")) for n in names}
    w.update({f"{n}_bias": _np(getattr(layer, f"{n}_bias")) for n in names})
    return w


def _randomize(layer):
    for v in layer.weights:
        v.assign(rng.standard_normal(v.shape).astype("float32") * 0.5)


def _pair_errors(cls, **kw):
    name = cls.__name__
    t, s = TARGET, SOURCE
    return [
        (
            "single tensor",
            lambda: cls(**kw)(t),
            rf"{name}.*exactly 2 sequences \[target, source\].*single tensor "
            r"of shape \(3, 4, 6\)",
        ),
        (
            "three tensors",
            lambda: cls(**kw)([t, s, s]),
            r"exactly 2 sequences.*Received 3 tensors",
        ),
        (
            "rank",
            lambda: cls(**kw)([t, s[:, 0]]),
            r"source to have rank 3 \(batch, time, features\).*rank 2 and "
            r"shape \(3, 3\)",
        ),
        (
            "batch",
            lambda: cls(**kw)([t, s[:2]]),
            r"same batch size.*target shape \(3, 4, 6\) and source shape "
            r"\(2, 5, 3\)",
        ),
        (
            "dtype",
            lambda: cls(**kw)([t, s.astype("int32")]),
            r"floating-point sequences.*source with dtype int32",
        ),
        (
            "mask count",
            lambda: cls(**kw)([t, s], mask=[SOURCE_MASK]),
            r"`mask` to be a list \[target_mask, source_mask\].*Received 1 masks",
        ),
        (
            "mask shape",
            lambda: cls(**kw)([t, s], mask=[None, SOURCE_MASK[:, :4]]),
            r"source mask to have shape \(batch, time\) = \(3, 5\).*"
            r"Received a mask of shape \(3, 4\)",
        ),
        (
            "num_heads",
            lambda: cls(num_heads=0),
            r"argument `num_heads`, expected a positive integer. "
            r"Received: num_heads=0",
        ),
    ]


def test_attention_matches_numpy_reference_with_masks():
    layer = CrossModalAttention(num_heads=2, key_dim=3, value_dim=2, output_dim=5)
    layer.build([TARGET.shape, SOURCE.shape])
    _randomize(layer)
    out, scores = layer(
        [TARGET, SOURCE], mask=[None, SOURCE_MASK], return_attention_scores=True
    )
    ref_out, ref_scores = cross_modal_attention_np(
        TARGET, SOURCE, _attention_weights(layer), SOURCE_MASK
    )
    np.testing.assert_allclose(_np(scores), ref_scores, atol=1e-5)
    np.testing.assert_allclose(_np(out), ref_out, atol=1e-4)
    scores = _np(scores)
    assert np.all(scores[1, :, :, 2:] == 0.0)  # padded steps: zero weight
    assert np.all(scores[2] == 0.0)  # fully padded source: attends to nothing
    np.testing.assert_allclose(scores[:2].sum(-1), 1.0, atol=1e-5)
    # Unmasked call equals the reference without a mask.
    ref_plain, _ = cross_modal_attention_np(TARGET, SOURCE, _attention_weights(layer))
    np.testing.assert_allclose(_np(layer([TARGET, SOURCE])), ref_plain, atol=1e-4)


@pytest.mark.parametrize("source_steps", [5, 4, 2])
def test_causal_mask_matches_mults_future_mask(source_steps):
    # MulT's buffered_future_mask: query i sees j <= i + |T_s - T_t|.
    source, mask = SOURCE[:, :source_steps], SOURCE_MASK[:, :source_steps]
    layer = CrossModalAttention(num_heads=2, use_causal_mask=True)
    layer.build([TARGET.shape, source.shape])
    _randomize(layer)
    out, scores = layer(
        [TARGET, source], mask=[None, mask], return_attention_scores=True
    )
    ref_out, ref_scores = cross_modal_attention_np(
        TARGET, source, _attention_weights(layer), mask, causal=True
    )
    np.testing.assert_allclose(_np(scores), ref_scores, atol=1e-5)
    np.testing.assert_allclose(_np(out), ref_out, atol=1e-4)
    offset = abs(source_steps - TARGET.shape[1])
    for i in range(TARGET.shape[1]):
        assert np.all(_np(scores)[0, :, i, i + offset + 1 :] == 0.0)
    # Unmasked-by-padding call: a later source step cannot reach query 0.
    changed = source.copy()
    changed[:, offset + 1 :] += 10.0
    a = _np(layer([TARGET, source]))[:, 0]
    b = _np(layer([TARGET, changed]))[:, 0]
    if offset + 1 < source_steps:
        np.testing.assert_allclose(a, b, atol=1e-5)
    off = CrossModalAttention.from_config(
        {**layer.get_config(), "use_causal_mask": False}
    )
    off.build([TARGET.shape, source.shape])
    off.set_weights(layer.get_weights())
    ref_plain, _ = cross_modal_attention_np(TARGET, source, _attention_weights(off))
    np.testing.assert_allclose(_np(off([TARGET, source])), ref_plain, atol=1e-4)


def test_padded_source_values_do_not_matter():
    layer = CrossModalAttention(num_heads=2)
    changed = SOURCE.copy()
    changed[1, 2:] = 100.0
    a = _np(layer([TARGET, SOURCE], mask=[None, SOURCE_MASK]))
    b = _np(layer([TARGET, changed], mask=[None, SOURCE_MASK]))
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("residual_from_normalized", [False, True])
def test_block_matches_numpy_reference(residual_from_normalized):
    block = CrossModalTransformerBlock(
        num_heads=2,
        feedforward_dim=7,
        residual_from_normalized=residual_from_normalized,
    )
    block.build([TARGET.shape, SOURCE.shape])
    _randomize(block)
    w = {
        "attention": _attention_weights(block.attention),
        "w1": _np(block.feedforward_hidden.kernel),
        "b1": _np(block.feedforward_hidden.bias),
        "w2": _np(block.feedforward_output.kernel),
        "b2": _np(block.feedforward_output.bias),
    }
    for name in ("target_norm", "source_norm", "feedforward_norm"):
        norm = getattr(block, name)
        w[name] = (_np(norm.gamma), _np(norm.beta))
    got = block([TARGET, SOURCE], mask=[None, SOURCE_MASK], training=False)
    ref = block_np(TARGET, SOURCE, w, SOURCE_MASK, residual_from_normalized)
    np.testing.assert_allclose(_np(got), ref, atol=1e-4)
    # Dropout is active in training.
    trained = block([TARGET, SOURCE], mask=[None, SOURCE_MASK], training=True)
    assert not np.allclose(_np(trained), ref, atol=1e-3)


def test_keras_masks_propagate_through_a_functional_model():
    tokens = keras.Input((4,), dtype="int32")
    audio = keras.Input((5, 3))
    emb = keras.layers.Embedding(9, 6, mask_zero=True)
    out = CrossModalTransformerBlock(num_heads=2)([audio, emb(tokens)])
    model = keras.Model([tokens, audio], out)
    ids = np.array([[1, 2, 0, 0], [3, 4, 5, 6], [7, 0, 0, 0]], "int32")
    before = _np(model([ids, SOURCE]))
    # Changing the embedding of the padding id must not change the output.
    table = _np(emb.embeddings)
    table[0] = 50.0
    emb.embeddings.assign(table.astype("float32"))
    np.testing.assert_allclose(_np(model([ids, SOURCE])), before, atol=1e-4)
    table[1] = 50.0  # a real token: the output changes
    emb.embeddings.assign(table.astype("float32"))
    assert not np.allclose(_np(model([ids, SOURCE])), before, atol=1e-3)


def test_position_embedding_values():
    pe = _np(SinusoidalPositionEmbedding(max_wavelength=100.0)(TARGET))
    t = np.arange(4)[:, None]
    i = np.arange(6)[None, :] // 2
    angles = t / 100.0 ** (2 * i / 6)
    ref = np.where(np.arange(6) % 2 == 0, np.sin(angles), np.cos(angles))
    np.testing.assert_allclose(pe, np.broadcast_to(ref, (3, 4, 6)), atol=1e-5)


def test_conformance_cross_modal_attention():
    run_layer_conformance(
        CrossModalAttention,
        {"num_heads": 2, "dropout": 0.1, "seed": 1},
        [(None, 4, 6), (None, 5, 3)],
        (None, 4, 6),
        expected_num_trainable_weights=8,
        expected_num_non_trainable_weights=0,
        expected_num_seed_generators=1,
        error_cases=_pair_errors(CrossModalAttention, num_heads=2)
        + [
            (
                "dropout",
                lambda: CrossModalAttention(num_heads=2, dropout=1.0),
                r"argument `dropout`, expected a number in \[0, 1\). "
                r"Received: dropout=1.0",
            )
        ],
        batch_size=3,
    )


def test_conformance_cross_modal_transformer_block():
    run_layer_conformance(
        CrossModalTransformerBlock,
        {"num_heads": 2, "feedforward_dim": 8, "use_causal_mask": True, "seed": 2},
        [(None, 4, 6), (None, 5, 3)],
        (None, 4, 6),
        # attention 8 + 3 norms x 2 + 2 dense x 2
        expected_num_trainable_weights=18,
        expected_num_non_trainable_weights=0,
        expected_num_seed_generators=4,
        error_cases=_pair_errors(CrossModalTransformerBlock, num_heads=2)
        + [
            (
                "feedforward_dim",
                lambda: CrossModalTransformerBlock(num_heads=2, feedforward_dim=0),
                r"argument `feedforward_dim`, expected a positive integer or "
                r"None. Received: feedforward_dim=0",
            )
        ],
        batch_size=3,
    )


def test_conformance_sinusoidal_position_embedding():
    run_layer_conformance(
        SinusoidalPositionEmbedding,
        {"max_wavelength": 50.0},
        (None, 4, 6),
        (None, 4, 6),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        error_cases=[
            (
                "rank",
                lambda: SinusoidalPositionEmbedding()(TARGET[:, 0]),
                r"SinusoidalPositionEmbedding.*\(batch, time, features\).*"
                r"Received shape \(3, 6\)",
            ),
            (
                "max_wavelength",
                lambda: SinusoidalPositionEmbedding(max_wavelength=0),
                r"argument `max_wavelength`, expected a positive number. "
                r"Received: max_wavelength=0",
            ),
        ],
        batch_size=3,
    )
