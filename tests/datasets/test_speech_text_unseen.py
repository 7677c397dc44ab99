"""The held-out "unseen" split: new sentences, new voices, agreeing cues."""

import numpy as np
import pytest

from mmfusion_keras.datasets.speech_text import CLASS_NAMES
from mmfusion_keras.datasets.speech_text import load_speech_text


@pytest.fixture(scope="module")
def unseen():
    return load_speech_text("unseen")


def test_unseen_shapes_labels_and_agreement(unseen):
    n = 96
    assert len(unseen) == n
    assert unseen.inputs["audio"].shape == (n, 48000)
    assert unseen.inputs["audio"].dtype == np.float32
    assert np.all(np.bincount(unseen.labels, minlength=4) == n // 4)
    names = np.asarray(CLASS_NAMES)[unseen.labels]
    # Text and voice agree: label = text emotion = prosody emotion.
    np.testing.assert_array_equal(unseen.metadata["text_emotion"], names)
    np.testing.assert_array_equal(unseen.metadata["prosody_emotion"], names)
    lengths = unseen.metadata["audio_length"]
    np.testing.assert_array_equal(unseen.inputs["audio_mask"].sum(axis=1), lengths)
    # Nothing is cut by the models' 3 s window; clips are audible, not clipped.
    assert unseen.info["num_cut"] == 0
    assert np.all(np.abs(unseen.inputs["audio"]).max(axis=1) > 0.05)
    assert np.abs(unseen.inputs["audio"]).max() < 1.0
    # Every sentence is spoken twice, by two different voices.
    by_text = {}
    for text, speaker in zip(unseen.inputs["text"], unseen.metadata["speaker"]):
        by_text.setdefault(text, []).append(speaker)
    assert len(by_text) == 48
    assert all(len(v) == 2 and v[0] != v[1] for v in by_text.values())


def test_unseen_shares_no_sentence_and_no_voice_with_bundled_splits(unseen):
    info = unseen.info
    speakers = set(unseen.metadata["speaker"])
    assert speakers == set(info["speakers"]["unseen"])
    bundled_sentences = {s for c in info["sentences"].values() for s in c}
    unseen_texts = set(unseen.inputs["text"])
    assert not unseen_texts & bundled_sentences
    for split in ("train", "validation", "test"):
        ds = load_speech_text(split, max_examples=500)
        assert not unseen_texts & set(ds.inputs["text"])
        bundled = set(ds.metadata["speaker"])
        assert not speakers & bundled
        # Not even the base voice (the part before "+variant") is shared.
        assert not speakers & {s.split("+")[0] for s in bundled}
