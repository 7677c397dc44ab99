import os
import tempfile

import keras
import numpy as np
import pytest

from mmfusion_keras.datasets import load_delta_sequences
from mmfusion_keras.models import build_hierarchical_delta_attention_model
from mmfusion_keras.models import fit_hierarchical_stagewise
from mmfusion_keras.models.hierarchical_delta_attention import load_table1_recipe
from mmfusion_keras.testing import infer
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


# Five stages, each a freshly compiled sub-model: eager steps are cheaper than
# tracing on TensorFlow, while JAX's compiled steps cost half its eager ones
# (measured CPU time of the freeze test: 27 s compiled vs 55 s eager).
STAGE_COMPILE = {"run_eagerly": keras.config.backend() != "jax"}


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def test_end_to_end_fit_save_and_load():
    model = build_hierarchical_delta_attention_model(
        SHAPES, 4, delta_window=2, cca_weight=0.5, reconstruction_weight=0.5, **TINY
    )
    # Eq. 17 reads Z_Fused alone; the projection feeds the fused attention.
    assert model.get_layer("head").input.shape == (None, 4)
    assert model.get_layer("text_skip").output.shape == (None, 6, 2 + 4)
    assert model.output.shape == (None, 4)
    before = _weights(model)
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(DS.inputs, DS.labels, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = _weights(model)
    assert all(not np.allclose(a, b) for a, b in zip(before, after) if a.size > 1)
    probs = infer(model, DS.inputs)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    np.testing.assert_allclose(infer(restored, DS.inputs), probs, atol=1e-5)
    # Padded steps do not matter, whatever their values.
    noisy = {k: v.copy() for k, v in DS.inputs.items()}
    for m in MODALITIES:
        noisy[m][~noisy[f"{m}_mask"]] = 50.0
    np.testing.assert_allclose(infer(model, noisy), probs, atol=1e-5)


STAGE_LAYERS = {
    "text": ["text_delta_attention"],
    "vision": ["vision_delta_attention"],
    "audio": ["audio_delta_attention"],
    "dcca": ["canonical_projection"]
    + [f"{m}_{p}" for m in MODALITIES for p in ("encoder_1", "encoder_2")]
    + [f"{m}_{p}" for m in MODALITIES for p in ("decoder_1", "decoder_2")],
    "fusion": ["fused_sequence", "fused_attention", "head"],
}


def test_stagewise_freezes_each_module_after_its_stage():
    """Weight snapshots after every stage: the stage's own modules changed,
    every other module is exactly as after the previous stage (so a module
    left trainable in a later stage fails here)."""
    model = build_hierarchical_delta_attention_model(
        SHAPES, 4, reconstruction_weight=0.5, **TINY
    )

    def snapshot(m):
        return {n: _weights(m.get_layer(n)) for ns in STAGE_LAYERS.values() for n in ns}

    snapshots = [("initial", snapshot(model))]
    histories = fit_hierarchical_stagewise(
        model,
        DS.inputs,
        DS.labels,
        epochs=(1, 1, 1),
        batch_size=8,
        compile_kwargs=STAGE_COMPILE,
        on_stage_end=lambda stage, m: snapshots.append((stage, snapshot(m))),
    )
    assert sorted(histories) == ["audio", "dcca", "fusion", "text", "vision"]
    assert "accuracy" in histories["text"] and "loss" in histories["dcca"]
    assert [s for s, _ in snapshots[1:]] == [
        "text",
        "vision",
        "audio",
        "dcca",
        "fusion",
    ]
    for (_, before), (stage, after) in zip(snapshots, snapshots[1:]):
        for owner, layer_names in STAGE_LAYERS.items():
            for n in layer_names:
                same = all(np.array_equal(a, b) for a, b in zip(before[n], after[n]))
                if owner == stage:
                    assert not same, f"{n} did not train in stage {stage}"
                else:
                    assert same, f"{n} changed in stage {stage}"
    assert all(layer.trainable for layer in model.layers)


def test_recipe_is_table_1_and_overrides_apply():
    recipe = load_table1_recipe()
    assert recipe["self_attention"]["text"] == {
        "epochs": 10,
        "learning_rate": 1e-6,
        "batch_size": 32,
        "weight_decay": 1e-4,
    }
    assert recipe["dcca"]["batch_size"] == 4 and recipe["fusion"]["epochs"] == 5
    model = build_hierarchical_delta_attention_model(SHAPES, 4, **TINY)
    seen = []
    histories = fit_hierarchical_stagewise(
        model,
        DS.inputs,
        DS.labels,
        recipe={
            "self_attention": {m: {"epochs": 1} for m in MODALITIES},
            "dcca": {"epochs": 2, "batch_size": 8},
            "fusion": {"epochs": 1},
        },
        validation_data=(DS.inputs, DS.labels),
        retrain_on_validation=True,
        compile_kwargs=STAGE_COMPILE,
        on_stage_end=lambda stage, m: seen.append(stage),
    )
    assert sorted(histories) == ["final", "selection"]
    assert len(histories["selection"]["dcca"]["loss"]) == 2
    assert "val_accuracy" in histories["selection"]["fusion"]
    assert "val_accuracy" not in histories["final"]["fusion"]  # merged data
    assert seen == ["text", "vision", "audio", "dcca", "fusion"] * 2
    assert_raises_with_message(
        lambda: fit_hierarchical_stagewise(
            model, DS.inputs, DS.labels, retrain_on_validation=True
        ),
        r"retrain_on_validation=True\) needs `validation_data`.*"
        r"Received: validation_data=None",
    )
    odd = build_hierarchical_delta_attention_model(
        {"speech": (5, 2), "text": (6, 3)}, 4, **TINY
    )
    assert_raises_with_message(
        lambda: fit_hierarchical_stagewise(odd, {}, None),
        r"no self-attention settings for modality 'speech' in the recipe",
    )


def test_multilabel_head_and_errors():
    model = build_hierarchical_delta_attention_model(
        SHAPES, 6, head="multilabel", use_delta=False, **TINY
    )
    assert model.get_layer("head").activation.__name__ == "sigmoid"
    maxvar = build_hierarchical_delta_attention_model(
        SHAPES, 4, multiview="maxvar", skip_connections=False, **TINY
    )
    assert maxvar.get_layer("canonical_correlation").multiview == "maxvar"
    assert "text_skip" not in [layer.name for layer in maxvar.layers]
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
