import collections
import subprocess

import numpy as np
import pytest

from mmfusion_keras.datasets import av_digits
from mmfusion_keras.datasets.speech_text import CLASS_NAMES
from mmfusion_keras.datasets.speech_text import load_speech_text
from mmfusion_keras.testing.conformance import assert_raises_with_message

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def splits():
    return {s: load_speech_text(s) for s in SPLITS}


def test_loader_needs_no_synthesizer(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError(f"the loader started a process: {args}")

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    av_digits._read_json.cache_clear()
    av_digits._read_split_audio.cache_clear()
    ds = load_speech_text("test", audio_snr_db=10.0, max_examples=4)
    assert len(ds) == 4


def test_shapes_dtypes_and_labels(splits):
    counts = {"train": 324, "validation": 108, "test": 108}
    for split, ds in splits.items():
        audio, mask, text = (ds.inputs[k] for k in ("audio", "audio_mask", "text"))
        n = counts[split]
        assert len(ds) == n
        assert audio.shape == (n, 48000) and audio.dtype == np.float32
        assert mask.shape == (n, 48000) and mask.dtype == bool
        assert text.shape == (n,) and all(isinstance(t, str) and t for t in text)
        assert ds.labels.dtype == np.int32
        assert ds.class_names == CLASS_NAMES
        # Balanced classes.
        assert np.all(np.bincount(ds.labels, minlength=4) == n // 4)
        # The mask marks the utterance, which starts at 0; after it, zeros.
        lengths = ds.metadata["audio_length"]
        np.testing.assert_array_equal(mask.sum(axis=1), lengths)
        assert np.all(mask[:, 0])
        assert not np.any(audio[~mask])
        assert np.all(np.abs(audio).max(axis=1) > 0.05)
        assert np.abs(audio).max() < 1.0
        assert ds.info["synthetic"] is True
        assert ds.info["engine"]["espeak_ng"] == "1.51"


def test_label_rule_and_that_no_single_modality_suffices(splits):
    for ds in splits.values():
        text_emotion = ds.metadata["text_emotion"]
        prosody = ds.metadata["prosody_emotion"]
        names = np.asarray(CLASS_NAMES)[ds.labels]
        expected = np.where(text_emotion != "neutral", text_emotion, prosody)
        np.testing.assert_array_equal(names, expected)
        # Best possible rule on one modality: predict from it, "neutral" when
        # it is neutral. Both reach exactly 75% on the balanced design.
        text_only = np.mean(text_emotion == names)
        prosody_only = np.mean(prosody == names)
        assert text_only == pytest.approx(0.75)
        assert prosody_only == pytest.approx(0.75)
        # Emotional text with neutral prosody and neutral text with emotional
        # prosody both occur for every emotion.
        for e in ("anger", "happiness", "sadness"):
            assert np.any((text_emotion == e) & (prosody == "neutral"))
            assert np.any((text_emotion == "neutral") & (prosody == e))


def test_training_sentences_do_not_reveal_prosody(splits):
    """Each neutral training sentence: 3x neutral prosody, 1x each emotion."""
    ds = splits["train"]
    neutral = ds.metadata["text_emotion"] == "neutral"
    by_sentence = collections.defaultdict(collections.Counter)
    for text, prosody in zip(
        ds.inputs["text"][neutral], ds.metadata["prosody_emotion"][neutral]
    ):
        by_sentence[text][prosody] += 1
    assert len(by_sentence) == 27
    for counts in by_sentence.values():
        assert counts == {"neutral": 3, "anger": 1, "happiness": 1, "sadness": 1}


def test_splits_are_speaker_disjoint(splits):
    info = splits["test"].info["speakers"]
    assert [len(info[s]) for s in SPLITS] == [54, 18, 18]
    seen, seen_variants = set(), set()
    for split, ds in splits.items():
        speakers = set(ds.metadata["speaker"])
        assert speakers == set(info[split])
        variants = {s.split("+", 1)[1] for s in speakers}
        assert not speakers & seen and not variants & seen_variants
        seen |= speakers
        seen_variants |= variants


def test_prosody_follows_the_table(splits):
    """The synthesis settings move in Murray & Arnott's directions."""
    ds = splits["train"]
    mean = {
        e: {
            k: ds.metadata[k][ds.metadata["prosody_emotion"] == e].mean()
            for k in ("rate", "pitch", "pitch_range", "amplitude")
        }
        for e in CLASS_NAMES
    }
    n = mean["neutral"]
    assert mean["anger"]["rate"] > n["rate"] > mean["sadness"]["rate"]
    for e in ("anger", "happiness"):
        assert mean[e]["pitch"] > n["pitch"] + 15
        assert mean[e]["pitch_range"] > 1.5 * n["pitch_range"]
        assert mean[e]["amplitude"] > n["amplitude"]
    assert mean["sadness"]["pitch"] < n["pitch"]
    assert mean["sadness"]["pitch_range"] < n["pitch_range"]
    assert mean["sadness"]["amplitude"] < n["amplitude"]
    # And the loudness difference survives in the audio (speaker gains only
    # remove the differences between voices).
    rms = np.sqrt(np.sum(ds.inputs["audio"] ** 2, axis=1) / ds.metadata["audio_length"])
    loud = rms[np.isin(ds.metadata["prosody_emotion"], ["anger", "happiness"])]
    quiet = rms[ds.metadata["prosody_emotion"] == "sadness"]
    assert np.median(loud) > 1.5 * np.median(quiet)


def test_max_seconds_cuts_and_noise():
    ds = load_speech_text("validation", max_seconds=1.0, max_examples=20)
    assert ds.inputs["audio"].shape == (20, 16000)
    cut = ds.metadata["audio_length"] > 16000
    assert ds.info["num_cut"] == int(cut.sum()) > 0
    assert np.all(ds.inputs["audio_mask"][cut])
    clean = load_speech_text("validation", max_examples=20)
    noisy = load_speech_text("validation", audio_snr_db=5.0, seed=1, max_examples=20)
    noise = noisy.inputs["audio"] - clean.inputs["audio"]
    lengths = clean.metadata["audio_length"]
    power = np.sum(clean.inputs["audio"] ** 2, axis=1) / lengths
    snr = 10 * np.log10(power / np.mean(noise**2, axis=1))
    np.testing.assert_allclose(snr, 5.0, atol=0.1)
    np.testing.assert_array_equal(noisy.inputs["text"], clean.inputs["text"])


def test_invalid_arguments():
    assert_raises_with_message(
        lambda: load_speech_text("valid"),
        r"load_speech_text received an unknown split\. Expected one of "
        r"\('train', 'validation', 'test', 'unseen'\)\. Received: split='valid'",
    )
    for bad in (0, -1.0, float("nan"), "2"):
        assert_raises_with_message(
            lambda bad=bad: load_speech_text("test", max_seconds=bad),
            r"load_speech_text expected `max_seconds` to be a positive number "
            r"of seconds\. Received: max_seconds=",
        )
    assert_raises_with_message(
        lambda: load_speech_text("test", audio_snr_db=[3]),
        r"load_speech_text expected `audio_snr_db` to be None \(no noise\) or "
        r"an SNR in decibels.*Received: audio_snr_db=\[3\]",
    )
