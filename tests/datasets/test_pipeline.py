import keras
import numpy as np

from mmfusion_keras.datasets.multimodal_dataset import MultimodalDataset
from mmfusion_keras.datasets.pipeline import MultimodalBatches
from mmfusion_keras.datasets.splits import leave_one_group_out
from mmfusion_keras.testing.conformance import assert_raises_with_message


def _data(n=10):
    rng = np.random.default_rng(0)
    return {
        "audio": rng.standard_normal((n, 5)).astype("float32"),
        "image": rng.standard_normal((n, 2, 2, 1)).astype("float32"),
        "text": np.array([f"text {i}" for i in range(n)], dtype=object),
    }, (np.arange(n) % 2).astype("int32")


def test_batches_cover_every_example_once_per_epoch():
    inputs, labels = _data()
    inputs["audio"][:, 0] = np.arange(10)  # row id
    batches = MultimodalBatches(
        inputs, labels, batch_size=4, seed=7, keys=["audio", "image"]
    )
    assert len(batches) == 3
    seen = []
    for i in range(len(batches)):
        x, y = batches[i]
        assert sorted(x) == ["audio", "image"]
        rows = x["audio"][:, 0].astype(int)
        np.testing.assert_array_equal(y, labels[rows])
        np.testing.assert_array_equal(x["image"], inputs["image"][rows])
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(10)) and seen != list(range(10))
    first = batches.order
    batches.on_epoch_end()
    second = batches.order
    assert not np.array_equal(first, second) and sorted(second) == list(range(10))
    # The same seed replays the same orders; another seed differs.
    again = MultimodalBatches(inputs, labels, batch_size=4, seed=7, keys=["audio"])
    np.testing.assert_array_equal(again.order, first)
    again.on_epoch_end()
    np.testing.assert_array_equal(again.order, second)
    other = MultimodalBatches(inputs, labels, batch_size=4, seed=8, keys=["audio"])
    assert not np.array_equal(other.order, first)

    fixed = MultimodalBatches(
        inputs, labels, batch_size=4, shuffle=False, keys=["audio"]
    )
    assert fixed[2][0]["audio"][:, 0].tolist() == [8, 9]
    dropped = MultimodalBatches(
        inputs, batch_size=4, drop_remainder=True, keys=["audio"]
    )
    assert len(dropped) == 2 and isinstance(dropped[0], dict)


def test_fit_evaluate_predict_with_dict_inputs():
    inputs, labels = _data(12)
    ds = MultimodalDataset(inputs=inputs, labels=labels, class_names=("a", "b"))
    audio = keras.Input((5,), name="audio")
    image = keras.Input((2, 2, 1), name="image")
    merged = keras.layers.Concatenate()([audio, keras.layers.Flatten()(image)])
    outputs = keras.layers.Dense(2, activation="softmax")(merged)
    model = keras.Model({"audio": audio, "image": image}, outputs)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    train = MultimodalBatches(ds, batch_size=5, seed=0, keys=["audio", "image"])
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(train, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.all(np.isfinite(history.history["loss"]))
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    assert train.epoch >= 1  # Keras advanced the shuffling epoch
    loss = model.evaluate(
        MultimodalBatches(ds, batch_size=5, shuffle=False, keys=["audio", "image"]),
        verbose=0,
    )
    assert np.isfinite(loss)
    predict_batches = MultimodalBatches(
        inputs, batch_size=5, shuffle=False, keys=["audio", "image"]
    )
    predictions = model.predict(predict_batches, verbose=0)
    assert predictions.shape == (12, 2)
    np.testing.assert_allclose(
        predictions,
        model.predict({k: inputs[k] for k in ("audio", "image")}, verbose=0),
        atol=1e-5,
    )


def test_errors():
    inputs, labels = _data()
    assert_raises_with_message(
        lambda: MultimodalBatches(inputs, labels),
        r"input 'text' has dtype object.*leave it out with `keys=`",
    )
    assert_raises_with_message(
        lambda: MultimodalBatches(inputs, labels, keys=["audio", "video"]),
        r"keys \['video'\] are not inputs",
    )
    assert_raises_with_message(
        lambda: MultimodalBatches({"a": np.zeros((3, 1)), "b": np.zeros((4, 1))}),
        r"same number of examples. Received sizes: \{'a': 3, 'b': 4\}",
    )
    assert_raises_with_message(
        lambda: MultimodalBatches({"a": np.zeros((3, 1))}, np.zeros(2)),
        r"2 labels for 3 examples",
    )
    assert_raises_with_message(
        lambda: MultimodalBatches({"a": np.zeros((3, 1))}, batch_size=0),
        r"positive integer `batch_size`.*batch_size=0",
    )
    assert_raises_with_message(
        lambda: MultimodalBatches([np.zeros(3)]), r"non-empty dict.*Received: list"
    )
    batches = MultimodalBatches({"a": np.zeros((3, 1))}, batch_size=2)
    assert_raises_with_message(
        lambda: batches[2], r"has 2 batches. Received: index=2", IndexError
    )


def test_dataset_container_and_groups():
    inputs, labels = _data(4)
    ds = MultimodalDataset(
        inputs=inputs,
        labels=labels,
        class_names=["x", "y"],
        metadata={"session": np.array([1, 1, 2, 3])},
    )
    part = ds.subset([3, 1])
    assert len(part) == 2 and part.inputs["text"].tolist() == ["text 3", "text 1"]
    assert part.class_names == ("x", "y")
    assert_raises_with_message(
        lambda: MultimodalDataset(inputs={"a": np.zeros((3, 1))}, labels=np.zeros(4)),
        r"4 rows \(one per label\). Received: inputs\['a'\] with shape \(3, 1\)",
    )
    folds = leave_one_group_out(ds.metadata["session"], order=[3, 1, 2])
    assert [f["held_out"] for f in folds] == [3, 1, 2]
    assert folds[1]["test"].tolist() == [0, 1] and folds[1]["train"].tolist() == [2, 3]
    assert_raises_with_message(
        lambda: leave_one_group_out([1, 1]), r"at least two groups.*\[1\]"
    )
    assert_raises_with_message(
        lambda: leave_one_group_out([1, 2], order=[1, 5]), r"group 5 has no examples"
    )
