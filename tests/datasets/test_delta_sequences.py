import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mmfusion_keras.datasets import MultimodalDataset
from mmfusion_keras.datasets import load_delta_sequences
from mmfusion_keras.testing.conformance import assert_raises_with_message

MODALITIES = ("text", "vision", "audio")


def _level_and_delta_features(ds):
    level, delta = [], []
    for m in MODALITIES:
        x, mask = ds.inputs[m], ds.inputs[f"{m}_mask"]
        lengths = mask.sum(1)
        level.append(x.sum(1) / lengths[:, None])
        last = np.stack([x[i, n - 3 : n].mean(0) for i, n in enumerate(lengths)])
        delta.append(last - x[:, :3].mean(1))
    return np.concatenate(level, 1), np.concatenate(delta, 1)


def test_shapes_masks_and_labels_unaligned():
    ds = load_delta_sequences("train", num_examples=64, seed=3)
    assert isinstance(ds, MultimodalDataset) and len(ds) == 64
    for m, t, d in zip(MODALITIES, (20, 30, 16), (8, 6, 5)):
        x, mask = ds.inputs[m], ds.inputs[f"{m}_mask"]
        assert x.shape == (64, t, d) and x.dtype == np.float32
        assert mask.shape == (64, t) and mask.dtype == bool
        lengths = ds.metadata[f"length_{m}"]
        np.testing.assert_array_equal(mask.sum(1), lengths)
        assert lengths.min() >= int(np.ceil(0.6 * t)) and lengths.max() <= t
        assert np.all(x[~mask] == 0.0)  # zero padding after the real steps
        assert np.all(np.diff(mask.astype(int), axis=1) <= 0)  # padding at the end
    assert np.bincount(ds.labels, minlength=4).tolist() == [16, 16, 16, 16]
    np.testing.assert_array_equal(
        ds.labels, 2 * (ds.metadata["sign_a"] > 0) + (ds.metadata["sign_b"] > 0)
    )
    # Unaligned: lengths differ between modalities.
    assert not np.array_equal(ds.metadata["length_text"], ds.metadata["length_audio"])


def test_aligned_shares_length_and_mask():
    ds = load_delta_sequences("test", aligned=True, num_examples=32)
    shapes = {m: ds.inputs[m].shape[:2] for m in MODALITIES}
    assert set(shapes.values()) == {(32, 20)}
    np.testing.assert_array_equal(ds.inputs["text_mask"], ds.inputs["vision_mask"])
    np.testing.assert_array_equal(ds.inputs["text_mask"], ds.inputs["audio_mask"])


def test_deterministic_per_seed_and_split():
    a = load_delta_sequences("validation", num_examples=16, seed=5)
    b = load_delta_sequences("validation", num_examples=16, seed=5)
    c = load_delta_sequences("test", num_examples=16, seed=5)
    d = load_delta_sequences("validation", num_examples=16, seed=6)
    for m in MODALITIES:
        np.testing.assert_array_equal(a.inputs[m], b.inputs[m])
        assert not np.allclose(a.inputs[m], c.inputs[m])
        assert not np.allclose(a.inputs[m], d.inputs[m])


def test_change_predicts_the_class_level_does_not():
    train = load_delta_sequences("train", num_examples=512)
    test = load_delta_sequences("test", num_examples=256)
    (level_tr, delta_tr), (level_te, delta_te) = map(
        _level_and_delta_features, (train, test)
    )
    level_acc = LogisticRegression(max_iter=1000).fit(level_tr, train.labels)
    delta_acc = LogisticRegression(max_iter=1000).fit(delta_tr, train.labels)
    assert level_acc.score(level_te, test.labels) < 0.45  # chance is 0.25
    assert delta_acc.score(delta_te, test.labels) > 0.8


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (
            {"split": "dev"},
            r"`split` in \('train', 'validation', 'test'\).*split='dev'",
        ),
        ({"max_lengths": (20, 30)}, r"`max_lengths` to be 3 positive integers"),
        ({"dims": (8, 0, 5)}, r"`dims` to be 3 positive integers.*dims=\(8, 0, 5\)"),
        ({"max_lengths": (3, 30, 16)}, r"at least 4 steps.*\(3, 30, 16\)"),
        ({"num_examples": 0}, r"positive integer `num_examples`.*num_examples=0"),
        ({"noise": -1.0}, r"non-negative `baseline_scale` and `noise`.*noise=-1.0"),
    ],
)
def test_errors(kwargs, pattern):
    assert_raises_with_message(lambda: load_delta_sequences(**kwargs), pattern)
