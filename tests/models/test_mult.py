import os
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

from mmfusion_keras.metrics import emotion_metrics
from mmfusion_keras.models import build_mult_model
from mmfusion_keras.models.mosei_heads import add_mosei_head
from mmfusion_keras.models.mosei_heads import emotion_targets
from mmfusion_keras.models.mosei_heads import mosei_loss
from mmfusion_keras.testing import assert_raises_with_message

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


def test_builds_saves_and_loads():
    model = _tiny("multilabel")
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


@pytest.mark.slow  # the compiled train step of nine transformers: minutes on JAX
@pytest.mark.parametrize("head", ["multilabel", "multiclass"])
def test_fit_one_step(head):
    model = _tiny(head)
    xs, masks = _data()
    model.compile(optimizer="adam", loss=mosei_loss(head))
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
    probs = ops.convert_to_numpy(model(xs, training=False))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    y, _ = emotion_targets(np.eye(6, dtype="float32")[[0, 2, 5, 1]], "multiclass")
    loss = float(ops.convert_to_numpy(mosei_loss("multiclass")(y, probs)))
    np.testing.assert_allclose(loss, -np.mean(np.log(probs[range(4), y])), rtol=1e-5)


def test_padding_does_not_change_the_prediction():
    model = _tiny("multilabel")
    xs, masks = _data()
    before = ops.convert_to_numpy(model(xs + masks, training=False))
    changed = [x.copy() for x in xs]
    for x, m in zip(changed, masks):
        x[~m] = 7.0  # garbage in padded steps
    after = ops.convert_to_numpy(model(changed + masks, training=False))
    np.testing.assert_allclose(after, before, atol=1e-4)
    changed[0][0, 0] += 1.0  # a real step changes it
    moved = ops.convert_to_numpy(model(changed + masks, training=False))
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
        + 3 * (memory_block + 2 * D)  # three self-attention transformers
        + 2 * (36 * d * d + 6 * d)  # proj1, proj2
        + 6 * d * 6
        + 6  # head
    )
    assert model.count_params() == expected


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
