import numpy as np
import pytest

from mmfusion_keras.inspection import describe_memory_health
from mmfusion_keras.inspection import memory_health
from mmfusion_keras.inspection import memory_is_collapsed
from mmfusion_keras.testing import assert_raises_with_message


def test_all_identical_slots():
    memory = np.tile(np.array([[1.0, -2.0, 0.5]]), (6, 1))
    health = memory_health(memory, read_weights=np.full((3, 6), 1 / 6))
    assert health["slots"] == 6
    assert health["distinct_slots"] == 0
    assert health["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    assert health["read_entropy"] == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(health["slot_norms"], np.sqrt(5.25))
    assert memory_is_collapsed(health)
    assert "0 of 6 slots distinct (6 identical" in describe_memory_health(health)
    assert describe_memory_health(health).endswith(": COLLAPSED")


def test_orthogonal_slots_and_one_hot_reads():
    memory = 3.0 * np.eye(5, 7)
    reads = np.eye(5)
    health = memory_health(memory, reads)
    assert health["distinct_slots"] == 5
    assert health["distinct_fraction"] == 1.0
    assert health["effective_rank"] == pytest.approx(5.0, rel=1e-6)
    assert health["read_entropy"] == pytest.approx(0.0, abs=1e-9)
    assert health["slots_read"] == 5 and health["top_slot_share"] == 0.2
    assert health["norm_min"] == health["norm_max"] == pytest.approx(3.0)
    assert not memory_is_collapsed(health)
    assert describe_memory_health(health).endswith(
        "5 slots read (top slot: 20% of inputs)"
    )


def test_sharp_reads_of_one_slot_are_flagged():
    # Distinct slots, one-hot reads, but every input reads slot 2.
    reads = np.zeros((10, 5))
    reads[:, 2] = 1.0
    health = memory_health(np.eye(5), reads)
    assert health["read_entropy"] == pytest.approx(0.0, abs=1e-9)
    assert health["slots_read"] == 1 and health["top_slot_share"] == 1.0
    assert not memory_is_collapsed(health)
    assert describe_memory_health(health).endswith(": READS ONE SLOT")


def test_half_duplicated_slots_count_as_partial_collapse():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 16))
    # Slots 0-3 distinct; slots 4-7 are scaled copies of 0-3 (cosine 1),
    # so 0-3 are duplicated too: 0 distinct. Add 4 fresh slots: 4 distinct.
    memory = np.concatenate([base, 2.0 * base, rng.normal(size=(4, 16))])
    health = memory_health(memory)
    assert health["distinct_slots"] == 4
    assert health["read_entropy"] is None
    assert memory_is_collapsed(health)  # 4 of 12 < 80%
    assert "PARTLY COLLAPSED" in describe_memory_health(health)
    # Near-duplicates below the threshold are distinct.
    noisy = np.concatenate([base, base + 0.5 * rng.normal(size=base.shape)])
    assert memory_health(noisy, threshold=0.99)["distinct_slots"] == 8


def test_non_finite_and_zero_slots():
    memory = np.eye(3)
    memory[1] = np.nan
    health = memory_health(memory)
    assert not health["finite"]
    assert "NOT FINITE" in describe_memory_health(health)
    zero = memory_health(np.zeros((3, 4)))
    assert zero["distinct_slots"] == 3  # a zero slot is not "the same" as another
    assert zero["effective_rank"] == 0.0


def test_errors():
    assert_raises_with_message(
        lambda: memory_health(np.ones(3)),
        r"expects one memory of shape \(slots, width\)\. Received: shape=\(3,\)",
    )
    assert_raises_with_message(
        lambda: memory_health(np.ones((3, 2)), np.ones((2, 4)) / 4),
        r"read weights of shape \(batch, 3\) .* Received: shape=\(2, 4\)",
    )
    assert_raises_with_message(
        lambda: memory_health(np.ones((3, 2)), threshold=0),
        r"expected a number in \(0, 1\]\. Received: threshold=0",
    )


def keras_memory(model):
    from keras import ops

    return ops.convert_to_numpy(model.get_layer("fusion").memories[0])


def test_callback_logs_health_into_history():
    from mmfusion_keras.callbacks import MemoryHealthCallback
    from mmfusion_keras.models import build_fusion_classifier

    model = build_fusion_classifier(
        {"a": 4, "b": 3},
        2,
        "mbaf",
        fusion_kwargs={"memory_slots": 5, "seed": 0},
        encoder_units=(4,),
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(8, 4)), "b": rng.normal(size=(8, 3))}
    callback = MemoryHealthCallback(inputs=x)
    history = model.fit(x, np.arange(8) % 2, epochs=2, verbose=0, callbacks=[callback])
    distinct = history.history["memory/fusion_distinct_slots"]
    assert len(distinct) == 2 and all(0 <= d <= 5 for d in distinct)
    assert len(history.history["memory/fusion_slots_read"]) == 2
    entropy = history.history["memory/fusion_read_entropy"]
    assert all(0.0 <= e <= 1.0 for e in entropy)
    assert callback.last[0]["slots"] == 5
    assert history.history["memory/fusion_skipped_writes"] == [0.0, 0.0]
    # NaN policy: a non-finite sample's write is skipped and counted (the
    # NaN goes straight into the fusion layer: TensorFlow's ReLU maps NaN
    # to 0, so an encoder could hide it).
    import keras

    from mmfusion_keras.layers import MemoryBasedAttentiveFusion

    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    fused = MemoryBasedAttentiveFusion(memory_slots=5, seed=0, name="fusion")([a, b])
    direct = keras.Model([a, b], keras.layers.Dense(2, activation="softmax")(fused))
    direct.compile("sgd", "sparse_categorical_crossentropy")
    x["a"][3, 1] = np.nan
    history = direct.fit(
        x,
        np.arange(8) % 2,
        epochs=1,
        batch_size=8,
        verbose=0,
        callbacks=[MemoryHealthCallback()],
    )
    assert history.history["memory/fusion_skipped_writes"] == [1.0]
    assert np.all(np.isfinite(keras_memory(direct)))


def test_callback_needs_a_memory_layer():
    from mmfusion_keras.callbacks import MemoryHealthCallback
    from mmfusion_keras.models import build_fusion_classifier

    model = build_fusion_classifier({"a": 4, "b": 3}, 2, "concat")
    model.compile("adam", "sparse_categorical_crossentropy")
    x = {"a": np.ones((4, 4)), "b": np.ones((4, 3))}
    assert_raises_with_message(
        lambda: model.fit(
            x, np.zeros(4), epochs=1, verbose=0, callbacks=[MemoryHealthCallback()]
        ),
        r"MemoryHealthCallback needs a model with a memory layer",
    )


def test_summary_is_json_serializable():
    import json

    from mmfusion_keras.inspection import memory_health_summary

    memory = np.eye(3, 4)
    memory[2] = np.inf
    health = memory_health(memory, np.full((2, 3), 1 / 3))
    health["name"] = "fusion"
    summary = memory_health_summary(health)
    assert "slot_norms" not in summary
    assert summary["finite"] is False and summary["name"] == "fusion"
    assert summary["distinct_slots"] == 2 and summary["read_entropy"] == 1.0
    assert json.loads(json.dumps(summary)) == summary
    nan = memory_health_summary(memory_health(np.full((2, 3), np.nan)))
    assert nan["norm_mean"] is None


def test_model_memory_health_per_modality_memories():
    from mmfusion_keras.inspection import model_memory_health
    from mmfusion_keras.models import build_fusion_classifier

    model = build_fusion_classifier(
        {"a": 4, "b": 3},
        2,
        "mbaf",
        fusion_kwargs={"memory_slots": 5, "memory": "per_modality", "seed": 0},
        encoder_units=(4,),
    )
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(6, 4)), "b": rng.normal(size=(6, 3))}
    encoders = {}
    reports = model_memory_health(model, x, encoders=encoders)
    assert [r["name"] for r in reports] == ["fusion/0", "fusion/1"]
    assert [r["slot_norms"].shape for r in reports] == [(5,), (5,)]
    assert all(0.0 <= r["read_entropy"] <= 1.0 for r in reports)
    assert list(encoders) == ["fusion"]
    # The cached encoder is reused, not rebuilt.
    first = encoders["fusion"]
    model_memory_health(model, x, encoders=encoders)
    assert encoders["fusion"] is first
