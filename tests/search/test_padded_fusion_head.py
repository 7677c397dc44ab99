import keras
import numpy as np
from mfas_reference import fusion_forward

from mmfusion_keras.search import SearchSpace
from mmfusion_keras.search import SharedFusionWeights
from mmfusion_keras.search import Surrogate
from mmfusion_keras.search import build_fusion_head
from mmfusion_keras.search.padded_fusion_head import PaddedFusionTrainer

ACTS = ("relu", "sigmoid")


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    feats = {
        "x1": rng.normal(size=(n, 3)),
        "x2": rng.normal(size=(n, 2)),
        "y1": rng.normal(size=(n, 2)),
        "y2": rng.normal(size=(n, 4)),
    }
    feats = {k: v.astype("float32") for k, v in feats.items()}
    return feats, rng.integers(0, 3, n)


def test_one_padded_model_trains_exactly_the_descriptions_network():
    space = SearchSpace(2, 2, ACTS, max_layers=3)
    feats, labels = _data()
    trainer = PaddedFusionTrainer(
        space,
        [3, 2],
        [2, 4],
        3,
        units=4,
        batch_size=8,
        learning_rate=0.05,
        run_eagerly=True,
    )
    description = ((2, 1, 2), (1, 2, 1))  # 2 of 3 levels, both activations
    w0 = trainer.initial_weights(description, seed=1)
    assert [w[0].shape for w in w0] == [(4, 4), (3 + 4 + 4, 4), (4, 3)]
    # Forward pass of the padded, masked Keras model = Eq. 1-2 (NumPy).
    xs = [feats["x1"], feats["x2"]]
    ys = [feats["y1"], feats["y2"]]
    expected = fusion_forward(description, xs, ys, w0, ACTS)
    trainer._set(description, w0)
    padded = trainer.padded_inputs(description, feats)
    assert np.all(padded[:, 0, 2:3] == 0) and np.all(padded[:, 2] == 0)
    got = trainer.model.predict(padded, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(
        trainer.forward(description, w0, feats), expected, atol=1e-6
    )

    # Another architecture first: its Adam state must not leak into the next.
    trainer.train([(1, 1, 1)], (feats, labels), (feats, labels), epochs=1, seed=0)
    bank = SharedFusionWeights()
    trainer_acc, _, restored, trained = trainer.train(
        description,
        (feats, labels),
        (feats, labels),
        epochs=1,
        seed=1,
        shared_weights=bank,
        shuffle=False,
    )
    assert restored == []
    assert sorted(bank.weights) == [(1, 4, 4, "sigmoid"), (2, 11, 4, "relu")]
    np.testing.assert_array_equal(bank.weights[(2, 11, 4, "relu")][0], trained[1][0])

    # The same network built on its own, same start, same batches.
    head = build_fusion_head(description, [3, 2], [2, 4], 3, units=4)
    for name, w in zip(["fusion_1", "fusion_2", "classifier"], w0):
        head.get_layer(name).set_weights(w)
    head.compile(
        optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy"
    )
    head.fit(
        {k: feats[k] for k in head.input},
        labels,
        epochs=1,
        batch_size=8,
        shuffle=False,
        verbose=0,
    )
    for name, w in zip(["fusion_1", "fusion_2", "classifier"], trained):
        for a, b in zip(head.get_layer(name).get_weights(), w):
            np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(trained[1][0], w0[1][0])  # it did train
    p = head.predict({k: feats[k] for k in head.input}, verbose=0)
    assert trainer_acc == np.mean(np.argmax(p, -1) == labels)

    # A later description with the same level-1 key starts from the bank.
    _, _, restored, _ = trainer.train(
        [(2, 1, 2)], (feats, labels), (feats, labels), epochs=1, shared_weights=bank
    )
    assert restored == [(1, 4, 4, "sigmoid")]


def test_surrogate_refit_equals_a_fresh_surrogate():
    space = SearchSpace(2, 2, ACTS, max_layers=2)
    rng = np.random.default_rng(0)
    descriptions = [space.random_description(rng) for _ in range(12)]
    accuracies = rng.uniform(0.2, 0.9, 12).tolist()
    candidates = [space.random_description(rng) for _ in range(300)]
    kwargs = {"epochs": 3, "embedding_dim": 4, "hidden_units": 4, "batch_size": 4}
    reused = Surrogate(space, **kwargs)
    reused.fit(descriptions, accuracies, seed=0)
    first = reused.predict(candidates)
    reused.fit(descriptions[:5], accuracies[:5], seed=4)  # moves the weights
    assert not np.allclose(reused.predict(candidates), first)
    reused.fit(descriptions, accuracies, seed=0)
    fresh = Surrogate(space, **kwargs)
    fresh.fit(descriptions, accuracies, seed=0)
    assert first.shape == (300,)
    np.testing.assert_allclose(reused.predict(candidates), first, atol=1e-6)
    np.testing.assert_allclose(fresh.predict(candidates), first, atol=1e-6)
