import os
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

from mmfusion_keras.layers import CrossModalTransformerBlock
from mmfusion_keras.metrics import emotion_metrics
from mmfusion_keras.models import build_mult_model
from mmfusion_keras.models.mosei_heads import add_mosei_head
from mmfusion_keras.models.mosei_heads import emotion_targets
from mmfusion_keras.models.mosei_heads import mosei_loss
from mmfusion_keras.testing import assert_raises_with_message
from mmfusion_keras.testing import infer

SHAPES = [(6, 5), (4, 3), (5, 2)]  # unaligned: own lengths and widths
rng = np.random.default_rng(0)


def _data(n=4):
    xs = [rng.standard_normal((n,) + s).astype("float32") for s in SHAPES]
    lengths = [[6, 3, 1, 6], [4, 4, 2, 1], [5, 1, 5, 3]]
    masks = [
        np.arange(s[0])[None, :] < np.array(le)[:, None]
        for s, le in zip(SHAPES, lengths)
    ]
    return xs, masks


def _tiny(head, **kw):
    return build_mult_model(SHAPES, width=4, num_heads=2, num_layers=1, head=head, **kw)


def _targets(head):
    intensities = np.abs(rng.standard_normal((4, 6))).astype("float32")
    intensities[0] = 0.0
    return emotion_targets(intensities, head)[0]


def test_builds_saves_and_loads(default_mult):
    model = default_mult
    xs, masks = _data()
    # predict runs one compiled forward pass: faster than eager on JAX.
    probs = model.predict(xs + masks, verbose=0)
    assert probs.shape == (4, 6) and np.all((probs > 0) & (probs < 1))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mult.keras")
        model.save(path)
        restored = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(
        restored.predict(xs + masks, verbose=0), probs, atol=1e-5
    )


# One eager train step takes seconds on PyTorch; on JAX and TensorFlow the
# step of nine transformers costs minutes (JAX: XLA compile, or op-by-op
# dispatch when run eagerly; measured 289 s eager on JAX), so there it is
# `slow` (run with `-m slow`).
def slow_unless_torch(test):
    return test if keras.config.backend() == "torch" else pytest.mark.slow(test)


@slow_unless_torch
@pytest.mark.parametrize("head", ["multilabel", "multiclass"])
def test_fit_one_step(head):
    model = _tiny(head)
    xs, masks = _data()
    model.compile(
        optimizer="adam",
        loss=mosei_loss(head),
        run_eagerly=keras.config.backend() == "torch",
    )
    before = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    history = model.fit(xs + masks, _targets(head), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # Every weight moves except the key biases, which add a constant per
    # query to the logits (softmax-invariant: zero gradient in exact math).
    for v, b in zip(model.trainable_variables, before):
        if not v.path.endswith("key_bias"):
            assert not np.array_equal(ops.convert_to_numpy(v), b), v.path


def test_multiclass_head_and_loss():
    model = _tiny("multiclass", use_masks=False)
    xs, _ = _data()
    probs = infer(model, xs)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    y, _ = emotion_targets(np.eye(6, dtype="float32")[[0, 2, 5, 1]], "multiclass")
    loss = float(ops.convert_to_numpy(mosei_loss("multiclass")(y, probs)))
    np.testing.assert_allclose(loss, -np.mean(np.log(probs[range(4), y])), rtol=1e-5)


def test_padding_does_not_change_the_prediction():
    model = _tiny("multilabel")
    xs, masks = _data()
    before = infer(model, xs + masks)
    changed = [x.copy() for x in xs]
    for x, m in zip(changed, masks):
        x[~m] = 7.0  # garbage in padded steps
    after = infer(model, changed + masks)
    np.testing.assert_allclose(after, before, atol=1e-4)
    changed[0][0, 0] += 1.0  # a real step changes it
    moved = infer(model, changed + masks)
    assert not np.allclose(moved[0], before[0], atol=1e-5)


def test_parameter_count_and_no_masks():
    model = build_mult_model(
        SHAPES, width=4, num_heads=2, num_layers=1, use_masks=False
    )
    assert len(model.inputs) == 3
    # Per transformer block at width d (target and source width d): attention
    # 4 d^2 + 4 d (heads * key_dim = d), three norms 6 d, FF 8 d^2 + 5 d.
    d = 4
    cross_block = 12 * d * d + 15 * d
    D = 2 * d
    memory_block = 12 * D * D + 15 * D
    projections = d * (5 + 3 + 2)
    expected = (
        projections
        + 6 * (cross_block + 2 * d)  # six cross-modal transformers + final LN
        + 3 * (3 * memory_block + 2 * D)  # 3 self-attention x max(1, 3) blocks
        + 2 * (36 * d * d + 6 * d)  # proj1, proj2
        + 6 * d * 6
        + 6  # head
    )
    assert model.count_params() == expected


@pytest.fixture(scope="module")
def default_mult():
    return _tiny("multilabel")


def _blocks(model, prefix):
    return [
        layer
        for layer in model.layers
        if layer.name.startswith(prefix)
        and isinstance(layer, CrossModalTransformerBlock)
    ]


def test_dropouts_are_keyed_by_source_as_in_the_reference():
    # MulT's get_network: `la` (L <- A) uses attn_dropout_a, `al` uses
    # attn_dropout (language), every memory transformer attn_dropout.
    model = build_mult_model(
        SHAPES,
        width=4,
        num_heads=2,
        num_layers=1,
        attention_dropout=(0.1, 0.2, 0.3),
        use_masks=False,
    )
    rates = {"language": 0.1, "vision": 0.2, "acoustic": 0.3}
    for source, rate in rates.items():
        for target in rates:
            if target == source:
                continue
            for block in _blocks(model, f"{source}_to_{target}_layer"):
                assert block.attention_dropout == rate, block.name
                assert block.attention.dropout == rate, block.name
    memory = [b for t in rates for b in _blocks(model, f"{t}_memory_layer")]
    assert len(memory) == 9
    assert {b.attention.dropout for b in memory} == {0.1}
    custom = build_mult_model(
        SHAPES,
        width=4,
        num_heads=2,
        num_layers=1,
        memory_attention_dropout=0.05,
        memory_num_layers=2,
        use_causal_mask=False,
        input_dropout=0.0,
        use_masks=False,
    )
    memory = [b for t in rates for b in _blocks(custom, f"{t}_memory_layer")]
    assert len(memory) == 6 and {b.attention.dropout for b in memory} == {0.05}
    blocks = [b for b in custom.layers if isinstance(b, CrossModalTransformerBlock)]
    assert not any(b.attention.use_causal_mask for b in blocks)
    assert not any(
        isinstance(layer, keras.layers.Dropout) and "input" in layer.name
        for layer in custom.layers
    )


def test_memory_depth_causal_mask_and_language_dropout_defaults(default_mult):
    model = default_mult
    for target in ("language", "vision", "acoustic"):
        # num_layers=1: cross-modal transformers 1 block, memory max(1, 3).
        assert len(_blocks(model, f"{target}_memory_layer")) == 3
    assert len(_blocks(model, "vision_to_language_layer")) == 1
    blocks = [b for b in model.layers if isinstance(b, CrossModalTransformerBlock)]
    assert len(blocks) == 6 + 9
    assert all(b.use_causal_mask and b.attention.use_causal_mask for b in blocks)
    # MulT: F.dropout(x_l, p=embed_dropout) on the raw language input only.
    dropout = model.get_layer("language_input_dropout")
    assert dropout.rate == 0.25
    assert dropout.input is model.get_layer("language").output
    assert model.get_layer("language_projection").input is dropout.output
    assert not any(
        layer.name in ("vision_input_dropout", "acoustic_input_dropout")
        for layer in model.layers
    )


def test_errors():
    assert_raises_with_message(
        lambda: build_mult_model(SHAPES[:2]),
        r"three modalities.*input_shapes=\[\(6, 5\), \(4, 3\)\]",
    )
    assert_raises_with_message(
        lambda: build_mult_model(SHAPES, width=30, num_heads=4),
        r"`num_heads` to divide `width`. Received width=30, num_heads=4",
    )
    assert_raises_with_message(
        lambda: build_mult_model([(6,), (4, 3), (5, 2)]),
        r"\(time, features\).*Received \(6,\)",
    )
    assert_raises_with_message(
        lambda: build_mult_model(SHAPES, attention_dropout=(0.1, 0.2)),
        r"`attention_dropout` to be one rate or three rates.*"
        r"Received: attention_dropout=\(0.1, 0.2\)",
    )
    assert_raises_with_message(
        lambda: build_mult_model(SHAPES, memory_num_layers=0),
        r"`memory_num_layers` to be a positive integer. "
        r"Received: memory_num_layers=0",
    )
    assert_raises_with_message(
        lambda: add_mosei_head(keras.Input((3,)), head="binary"),
        r"argument `head`, expected one of \('multilabel', 'multiclass'\). "
        r"Received: head='binary'",
    )


def test_emotion_metrics():
    y = np.array(
        [
            [1, 0, 0, 0, 0, 0],
            [0, 2, 1, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 3],
        ],
        "float32",
    )
    s = np.array(
        [
            [0.9, 0.1, 0.2, 0, 0, 0],
            [0.2, 0.3, 0.8, 0, 0, 0],
            [0.6, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0.7],
        ]
    )
    m = emotion_metrics(y, s)
    # Samples 0, 1, 3 have an emotion; argmax right for 0 and 3.
    assert m["num_samples_6"] == 3
    assert m["acc_6"] == pytest.approx(2 / 3)
    # happy: true [1,0,0,0], predicted [1,0,1,0] -> 3/4.
    assert m["per_class"]["happy"]["acc_2"] == pytest.approx(0.75)
    assert m["per_class"]["sad"]["acc_2"] == pytest.approx(0.75)
    from sklearn.metrics import f1_score

    assert m["per_class"]["happy"]["f1"] == pytest.approx(
        f1_score([1, 0, 0, 0], [1, 0, 1, 0], average="weighted")
    )
    assert_raises_with_message(
        lambda: emotion_metrics(y, s[:, :5]),
        r"same shape. Received shapes \(4, 6\) and \(4, 5\)",
    )
    targets, has = emotion_targets(y, "multiclass")
    assert targets.tolist() == [0, 1, 0, 5] and has.tolist() == [
        True,
        True,
        False,
        True,
    ]
