import os
import tempfile

import keras
import numpy as np
import pytest

from mmfusion_keras.datasets import load_delta_sequences
from mmfusion_keras.models import build_hierarchical_delta_attention_model
from mmfusion_keras.models import fit_hierarchical_stagewise
from mmfusion_keras.testing.conformance import assert_raises_with_message

MODALITIES = ("text", "vision", "audio")
DS = load_delta_sequences(
    "train", num_examples=16, max_lengths=(6, 8, 5), dims=(3, 4, 2), seed=1
)
SHAPES = {m: DS.inputs[m].shape[1:] for m in MODALITIES}
TINY = {
    "num_heads": 1,
    "filters": 4,
    "output_dim": 4,
    "reduced_dim": 2,
    "fused_dim": 4,
}


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def test_end_to_end_fit_save_and_load():
    model = build_hierarchical_delta_attention_model(
        SHAPES, 4, delta_window=2, cca_weight=0.5, **TINY
    )
    assert model.output.shape == (None, 4)
    before = _weights(model)
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(DS.inputs, DS.labels, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = _weights(model)
    assert all(not np.allclose(a, b) for a, b in zip(before, after) if a.size > 1)
    probs = keras.ops.convert_to_numpy(model(DS.inputs))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(DS.inputs)), probs, atol=1e-5
    )
    # Padded steps do not matter, whatever their values.
    noisy = {k: v.copy() for k, v in DS.inputs.items()}
    for m in MODALITIES:
        noisy[m][~noisy[f"{m}_mask"]] = 50.0
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(noisy)), probs, atol=1e-5
    )


def test_stagewise_trains_each_module_then_restores_flags():
    model = build_hierarchical_delta_attention_model(SHAPES, 4, **TINY)
    names = ["text_delta_attention", "text_encoder_2", "fused_attention", "head"]
    before = {n: _weights(model.get_layer(n)) for n in names}
    histories = fit_hierarchical_stagewise(
        model,
        DS.inputs,
        DS.labels,
        epochs=(1, 1, 1),
        batch_size=8,
        compile_kwargs={"run_eagerly": True},
    )
    assert sorted(histories) == ["audio", "dcca", "fusion", "text", "vision"]
    assert "accuracy" in histories["text"] and "loss" in histories["dcca"]
    for n in names:  # every module was trained in its stage
        changed = [
            not np.allclose(a, b)
            for a, b in zip(before[n], _weights(model.get_layer(n)))
        ]
        assert any(changed), n
    assert all(layer.trainable for layer in model.layers)


def test_multilabel_head_and_errors():
    model = build_hierarchical_delta_attention_model(
        SHAPES, 6, head="multilabel", use_delta=False, **TINY
    )
    assert model.get_layer("head").activation.__name__ == "sigmoid"
    assert_raises_with_message(
        lambda: build_hierarchical_delta_attention_model({"text": (5, 3)}, 2),
        r"`input_shapes` to be a dict of at least two.*Received: input_shapes=",
    )
    assert_raises_with_message(
        lambda: build_hierarchical_delta_attention_model(
            {"text": (5, 3), "audio": (7,)}, 2
        ),
        r"\(steps, features\) with a known feature width. Received: 'audio': \(7,\)",
    )
    assert_raises_with_message(
        lambda: build_hierarchical_delta_attention_model(SHAPES, 2, head="ordinal"),
        r"`head` in \('multiclass', 'multilabel'\). Received: head='ordinal'",
    )
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert_raises_with_message(
        lambda: fit_hierarchical_stagewise(plain, {}, None),
        r"expected a model built by build_hierarchical_delta_attention_model",
    )
    assert_raises_with_message(
        lambda: fit_hierarchical_stagewise(model, {}, None, epochs=(1, 1)),
        r"3 `epochs` and 3 `learning_rates`.*epochs=\(1, 1\)",
    )


def test_mismatched_mask_is_rejected():
    model = build_hierarchical_delta_attention_model(SHAPES, 4, **TINY)
    x = dict(DS.inputs)
    x["text_mask"] = x["text_mask"][:, :5]
    with pytest.raises(ValueError, match=r"mask|shape"):
        model(x)
