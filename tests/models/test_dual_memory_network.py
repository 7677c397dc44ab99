import os

import keras
import numpy as np
import pytest
from keras import ops

from mmfusion_keras.layers import DualMemoryFusion
from mmfusion_keras.models import build_dual_memory_network
from mmfusion_keras.models import build_wav2vec2_style_encoder
from mmfusion_keras.models.dual_memory_network import build_small_bert_backbone
from mmfusion_keras.optimizers import memory_module_optimizer
from mmfusion_keras.testing import assert_raises_with_message

SAMPLES, LENGTH = 1600, 8


def np_(v):
    return ops.convert_to_numpy(v)


def _data(n=4):
    r = np.random.default_rng(0)
    x = {
        "audio": r.standard_normal((n, SAMPLES)).astype("float32"),
        "token_ids": r.integers(1, 50, (n, LENGTH)).astype("int32"),
        "segment_ids": np.zeros((n, LENGTH), "int32"),
        "padding_mask": np.ones((n, LENGTH), "int32"),
    }
    return x, np.arange(n) % 4


def _network(fusion="dual_memory", audio_width=16):
    text = build_small_bert_backbone(
        vocabulary_size=50,
        num_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        sequence_length=LENGTH,
    )
    audio = build_wav2vec2_style_encoder(
        SAMPLES, hidden_dim=audio_width, num_layers=1, intermediate_dim=32
    )
    return build_dual_memory_network(
        fusion=fusion,
        text_backbone=text,
        audio_backbone=audio,
        audio_samples=SAMPLES,
        sequence_length=LENGTH,
        head_units=(16, 8),
        fusion_kwargs={"memory_slots": 4, "output_dim": 16, "writer_heads": 2},
    )


def test_fit_two_learning_rates_and_keras_round_trip(tmp_path):
    model = _network()
    fusion = model.get_layer("fusion")
    assert isinstance(fusion, DualMemoryFusion)
    optimizer = memory_module_optimizer(model)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    x, y = _data()
    extractor = model.get_layer("audio_encoder").get_layer("feature_extractor")
    frozen = [np_(v) for v in extractor.weights]
    token_embedding = np_(model.get_layer("text_encoder").token_embedding.embeddings)
    memories = [np_(m) for m in fusion.memories]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    # Frozen as in the paper: Wav2Vec2's feature extractor, BERT's embeddings.
    for v, before in zip(extractor.weights, frozen):
        np.testing.assert_array_equal(np_(v), before)
    np.testing.assert_array_equal(
        np_(model.get_layer("text_encoder").token_embedding.embeddings),
        token_embedding,
    )
    for m, before in zip(fusion.memories, memories):
        assert not np.allclose(np_(m), before)
    # The memory module's variables go to the 0.001 SGD, the rest to 0.01.
    routed = {
        v.path: optimizer._optimizer_map(v).name for v in model.trainable_variables
    }
    assert routed["fusion/audio_memory_temperature/kernel"] == "memory_sgd"
    assert all(
        (name == "memory_sgd") == path.startswith("fusion/")
        for path, name in routed.items()
    )
    path = os.path.join(tmp_path, "network.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    restored_fusion = restored.get_layer("fusion")
    for a, b in zip(fusion.memories, restored_fusion.memories):
        np.testing.assert_array_equal(np_(b), np_(a))
    rates = sorted(
        round(float(o.learning_rate), 6) for o in restored.optimizer.optimizers
    )
    assert isinstance(restored.optimizer, keras.optimizers.MultiOptimizer)
    assert rates == [0.001, 0.01]
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )
    restored.fit(x, y, batch_size=4, epochs=1, verbose=0)  # continues training
    assert not np.allclose(np_(restored_fusion.memories[0]), np_(fusion.memories[0]))


def test_naive_twin_and_width_projection():
    twin = _network(fusion="concat")
    assert twin.get_layer("fusion").__class__.__name__ == "Concatenate"
    assert tuple(twin.get_layer("fusion").output.shape) == (None, 32)
    # A user's audio backbone of another width: the layer projects both.
    model = _network(audio_width=8)
    assert model.get_layer("fusion").memory_dim == 16
    x, _ = _data(2)
    assert model.predict(x, verbose=0).shape == (2, 4)


@pytest.mark.parametrize(
    "call,pattern",
    [
        (
            lambda: build_dual_memory_network(fusion="mbaf"),
            r"argument `fusion`, expected 'dual_memory' or 'concat'. "
            r"Received: fusion='mbaf'",
        ),
        (
            lambda: memory_module_optimizer(
                keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
            ),
            r"has no memory fusion layer.*`layer_names`",
        ),
    ],
)
def test_errors(call, pattern):
    assert_raises_with_message(call, pattern)
