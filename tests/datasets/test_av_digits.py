import os
import subprocess

import numpy as np
import pytest

from mmfusion_keras.datasets import av_digits
from mmfusion_keras.datasets.av_digits import FEATURE_SHAPES
from mmfusion_keras.datasets.av_digits import SPLITS
from mmfusion_keras.datasets.av_digits import add_white_noise
from mmfusion_keras.datasets.av_digits import load_av_digits
from mmfusion_keras.datasets.av_digits import snr_ratio_to_db
from mmfusion_keras.testing.conformance import assert_raises_with_message


def _snr_db(clean, noisy, axis=None):
    signal = np.mean(np.square(clean, dtype=np.float64), axis=axis)
    noise = np.mean(np.square(noisy - clean, dtype=np.float64), axis=axis)
    return 10 * np.log10(signal / noise)


@pytest.fixture(scope="module")
def splits():
    return {s: load_av_digits(s) for s in SPLITS}


def test_loader_needs_no_synthesizer(monkeypatch, tmp_path):
    """Only the committed files are read: no eSpeak / SoX process starts."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"the loader started a process: {args}")

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    av_digits._read_json.cache_clear()
    av_digits._read_split_audio.cache_clear()
    ds = load_av_digits("validation", audio_snr_db=0.0, max_examples=5)
    assert len(ds) == 5


def test_shapes_dtypes_and_labels(splits):
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts = {"train": 1439, "validation": 179, "test": 179}
    for split, ds in splits.items():
        image, audio = ds.inputs["image"], ds.inputs["audio"]
        assert len(ds) == counts[split]
        assert image.shape == (len(ds), 8, 8, 1) and image.dtype == np.float32
        assert audio.shape == (len(ds), 16000) and audio.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert ds.labels.dtype == np.int32
        assert set(np.unique(ds.labels)) == set(range(10))
        # Labels are the sklearn digit of the image, images are digits / 16.
        idx = ds.metadata["image_index"]
        np.testing.assert_array_equal(ds.labels, digits.target[idx])
        np.testing.assert_allclose(image[..., 0], digits.images[idx] / 16.0)
        # Clips are front-padded into the 1 s window and not silent.
        lengths = ds.metadata["audio_length"]
        assert lengths.max() <= 16000 and lengths.min() > 1600
        short = np.flatnonzero(lengths < 15000)[:20]
        for i in short:
            assert not np.any(audio[i, : 16000 - lengths[i]])
            assert np.abs(audio[i, 16000 - lengths[i] :]).max() > 0.5
    assert splits["test"].class_names[7] == "seven"
    assert splits["test"].info["engine"]["espeak_ng"] == "1.51"


def test_splits_are_speaker_and_image_disjoint(splits):
    info = splits["train"].info["speakers"]
    assert [len(info[s]) for s in SPLITS] == [80, 10, 10]
    seen_speakers, seen_variants, seen_images = set(), set(), set()
    for split, ds in splits.items():
        speakers = set(ds.metadata["speaker"])
        assert speakers == set(info[split])
        variants = {s.split("+", 1)[1] for s in speakers}
        images = set(ds.metadata["image_index"].tolist())
        assert len(images) == len(ds)  # each image once
        assert not speakers & seen_speakers
        assert not variants & seen_variants
        assert not images & seen_images
        seen_speakers |= speakers
        seen_variants |= variants
        seen_images |= images
    assert len(seen_images) == 1797  # every sklearn digit is used


def test_every_clip_is_used_and_every_speaker_says_every_digit(splits):
    for ds in splits.values():
        clips = ds.metadata["clip"]
        assert set(clips.tolist()) == set(
            range(10 * len(ds.info["speakers"][ds.info["split"]]))
        )
        digits = {}
        for speaker, label in zip(ds.metadata["speaker"], ds.labels):
            digits.setdefault(speaker, set()).add(int(label))
        assert all(d == set(range(10)) for d in digits.values())
        # Clips are reused evenly: use counts differ by at most one per digit.
        for digit in range(10):
            _, uses = np.unique(clips[ds.labels == digit], return_counts=True)
            assert uses.max() - uses.min() <= 1


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 6.0, 20.0])
def test_white_noise_snr_on_long_signals(snr_db):
    rng = np.random.default_rng(1)
    t = np.arange(400_000)
    clean = (0.3 * np.sin(0.01 * t) + 0.1 * np.sin(0.37 * t)).astype(np.float32)
    noisy = add_white_noise(clean, snr_db, np.random.default_rng(2))
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert abs(_snr_db(clean, noisy) - snr_db) < 0.05
    # Per-example power: rows of very different loudness get the same SNR.
    batch = rng.normal(size=(3, 200_000)) * np.array([[0.01], [1.0], [30.0]])
    noisy = add_white_noise(batch, snr_db, rng, axis=1)
    assert noisy.dtype == np.float64
    np.testing.assert_allclose(_snr_db(batch, noisy, axis=1), snr_db, atol=0.05)


def test_white_noise_options_and_errors():
    x = np.ones(100_000, np.float32)
    np.testing.assert_array_equal(add_white_noise(x, float("inf"), 0), x)
    # signal_power overrides the measured power; int seeds are accepted.
    a = add_white_noise(x, 0.0, 5, signal_power=4.0)
    b = add_white_noise(x, 0.0, np.random.default_rng(5), signal_power=4.0)
    np.testing.assert_array_equal(a, b)
    assert abs(np.var(a - x) - 4.0) < 0.1
    for bad in (None, float("nan"), float("-inf"), "3", True):
        assert_raises_with_message(
            lambda bad=bad: add_white_noise(x, bad, 0),
            r"add_white_noise expected `snr_db` to be a real number.*Received: snr_db=",
        )
    assert_raises_with_message(
        lambda: add_white_noise(x, 0.0, rng="seed"),
        r"add_white_noise expected `rng` to be a numpy.random.Generator.*"
        r"Received: rng='seed'",
    )


def test_loader_noise_levels_and_reproducibility(splits):
    clean = splits["test"]
    n = len(clean)
    ds = load_av_digits("test", audio_snr_db=-3.0, image_snr_db=-6.0, seed=3)
    # Image SNR per image, against the image's own power.
    image_noise = ds.inputs["image"] - clean.inputs["image"]
    ratio = np.mean(image_noise**2, axis=(1, 2, 3)) / np.mean(
        clean.inputs["image"] ** 2, axis=(1, 2, 3)
    )
    assert abs(10 * np.log10(np.mean(ratio)) - 6.0) < 0.5
    # Audio, the paper's order: noise on the clip, then zero padding. The
    # padding is exactly zero and every clip's SNR is the requested one.
    audio_noise = ds.inputs["audio"] - clean.inputs["audio"]
    lengths = clean.metadata["audio_length"]
    for i in range(n):
        pad = 16000 - lengths[i]
        assert np.all(ds.inputs["audio"][i, :pad] == 0.0)
        clip_power = np.mean(clean.inputs["audio"][i, pad:].astype("float64") ** 2)
        noise_power = np.mean(audio_noise[i, pad:].astype("float64") ** 2)
        assert abs(10 * np.log10(clip_power / noise_power) - (-3.0)) < 0.1
    assert ds.info["noise_order"] == "before_padding"
    # The earlier order: noise over the whole window, SNR in expectation.
    late = load_av_digits(
        "test", audio_snr_db=-3.0, seed=3, noise_order="after_padding"
    )
    late_noise = late.inputs["audio"] - clean.inputs["audio"]
    assert np.all(np.abs(late_noise[:, :100]) > 0)  # also over the padding
    clip_power = np.array(
        [np.mean(clean.inputs["audio"][i, 16000 - lengths[i] :] ** 2) for i in range(n)]
    )
    snr = 10 * np.log10(clip_power / np.mean(late_noise**2, axis=1))
    np.testing.assert_allclose(snr, -3.0, atol=0.15)
    # Same seed: same noise, also for a prefix; other seed: other noise.
    again = load_av_digits(
        "test", audio_snr_db=-3.0, image_snr_db=-6.0, seed=3, max_examples=7
    )
    np.testing.assert_array_equal(again.inputs["audio"], ds.inputs["audio"][:7])
    np.testing.assert_array_equal(again.inputs["image"], ds.inputs["image"][:7])
    other = load_av_digits("test", audio_snr_db=-3.0, seed=4, max_examples=7)
    assert not np.allclose(other.inputs["audio"], again.inputs["audio"])
    np.testing.assert_array_equal(other.inputs["image"], clean.inputs["image"][:7])


@pytest.mark.parametrize("features", ["mel", "stft"])
def test_spectrogram_features(features):
    ds = load_av_digits("validation", features=features, max_examples=4)
    audio = ds.inputs["audio"]
    assert audio.shape == (4, *FEATURE_SHAPES[features])
    assert audio.dtype == np.float32 and np.all(np.isfinite(audio))
    assert ds.info["feature_shape"] == FEATURE_SHAPES[features]
    # The front padding is silence: the first frames are far below the last.
    assert audio[:, :3].mean() < audio[:, -20:].mean() - 1.0


def test_invalid_arguments():
    assert_raises_with_message(
        lambda: load_av_digits("dev"),
        r"load_av_digits received an unknown split\. Expected one of "
        r"\('train', 'validation', 'test'\)\. Received: split='dev'",
    )
    assert_raises_with_message(
        lambda: load_av_digits("test", features="mfcc"),
        r"load_av_digits received an unknown `features` value\. Expected one "
        r"of \('waveform', 'mel', 'stft'\)\. Received: features='mfcc'",
    )
    assert_raises_with_message(
        lambda: load_av_digits("test", audio_snr_db="low"),
        r"load_av_digits expected `audio_snr_db` to be None \(no noise\) or an "
        r"SNR in decibels.*Received: audio_snr_db='low'",
    )
    assert_raises_with_message(
        lambda: load_av_digits("test", audio_snr_db=0.0, noise_order="first"),
        r"load_av_digits received an unknown `noise_order`\. Expected one of "
        r"\('before_padding', 'after_padding'\)\. Received: noise_order='first'",
    )
    assert_raises_with_message(
        lambda: load_av_digits("test", max_examples=0),
        r"load_av_digits expected `max_examples` to be None or a positive "
        r"integer\. Received: max_examples=0",
    )


def test_changed_sklearn_digits_are_detected(monkeypatch):
    images, targets = av_digits._digits_images()
    changed = images.copy()
    changed[0, 0, 0] += 1
    monkeypatch.setattr(av_digits, "_digits_images", lambda: (changed, targets))
    assert_raises_with_message(
        lambda: load_av_digits("test", max_examples=2),
        r"load_av_digits: sklearn\.datasets\.load_digits\(\) returned different "
        r"images.*build_datasets\.py av_digits",
        error=RuntimeError,
    )


def test_bundled_data_fits_the_budget():
    total = 0
    for root, _, files in os.walk(av_digits.DATA_DIR):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    assert total < 25 * 2**20


def test_snr_ratio_to_db_conventions():
    assert snr_ratio_to_db(1.0) == 0.0
    assert abs(snr_ratio_to_db(0.5) - (-3.0103)) < 1e-4
    assert abs(snr_ratio_to_db(0.5, "amplitude") - (-6.0206)) < 1e-4
    assert abs(snr_ratio_to_db(100.0, "amplitude") - 40.0) < 1e-9
    assert_raises_with_message(
        lambda: snr_ratio_to_db(0.5, "energy"),
        r"unknown `convention`\. Expected one of \('power', 'amplitude'\)\. "
        r"Received: convention='energy'",
    )
    assert_raises_with_message(
        lambda: snr_ratio_to_db(-1),
        r"expected `ratio` to be a positive finite number .* Received: ratio=-1",
    )
