"""AV-Digits: an offline AV-MNIST-style audio-visual digit task.

Each example pairs a handwritten digit image with a spoken word of the same
digit, the task of the early-fusion study of Barnum et al. (2020) and of
MFAS (Perez-Rua et al., 2019), built here from parts that need no download:

- images: the 1797 8x8 digits of `sklearn.datasets.load_digits()` (bundled
  with scikit-learn, loaded at run time), scaled to [0, 1];
- speech: the words "zero" ... "nine" synthesized by eSpeak NG (stored as
  16 kHz 16-bit FLAC in `mmfusion_keras/datasets/data/av_digits/`). A
  speaker is an eSpeak voice + variant (e.g. `"en-us+f3"`); 100 speakers
  each say every digit once, at a random rate (130-230 words per minute)
  and pitch (-p 20-80), trimmed, peak-normalised to -3 dBFS, at most 1 s.

Splits are speaker-independent: every voice variant, hence every speaker,
belongs to exactly one split (80 / 10 / 10 speakers, 800 / 100 / 100
clips). Every image belongs to exactly one split (8:1:1 per class) and is
paired with a clip of its digit from the same split; the clips of a digit
are used equally often (+-1) in the pairing. `scripts/build_datasets.py` regenerates the audio; the
eSpeak NG version is in `info["engine"]`.

White noise at a chosen signal-to-noise ratio per modality is added on the
fly (`add_white_noise`), so one dataset serves a whole SNR grid as in
Barnum et al. (Appendix A.3). The speech is synthetic: fine for testing
fusion code and for relative comparisons, not for claims about human
speech recognition.
"""

import functools
import hashlib
import json
import numbers
import os
import warnings

import numpy as np

from mmfusion_keras.datasets.multimodal_dataset import MultimodalDataset

SPLITS = ("train", "validation", "test")
FEATURES = ("waveform", "mel", "stft")
SAMPLE_RATE = 16000
NUM_SAMPLES = 16000  # the 1 s window every clip is placed in
# log-mel: 25 ms windows, 10 ms hop, 512-point FFT, 40 mel bands (dB).
MEL_CONFIG = {
    "sampling_rate": SAMPLE_RATE,
    "fft_length": 512,
    "sequence_length": 400,
    "sequence_stride": 160,
    "num_mel_bins": 40,
}
# STFT: Barnum et al.'s spectrogram (A.3): 400-sample windows, stride 200,
# 201 frequency bins; keras's log magnitude, "valid" framing.
STFT_CONFIG = {
    "mode": "log",
    "frame_length": 400,
    "frame_step": 200,
    "fft_length": 400,
    "padding": "valid",
}
FEATURE_SHAPES = {"waveform": (16000,), "mel": (101, 40), "stft": (79, 201)}
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def add_white_noise(x, snr_db, rng, axis=None, signal_power=None):
    """Adds white Gaussian noise at a chosen signal-to-noise ratio.

    The SNR is a ratio of powers: the noise is drawn i.i.d. from
    `N(0, P / 10 ** (snr_db / 10))` where `P` is the signal power, the mean
    of `x ** 2` over `axis` (the whole array if `None`). Barnum et al.
    quote linear ratios (audio SNR 0.5, visual SNR 0.25, ...) without
    saying whether they are power or amplitude ratios; here they are read
    as power ratios, so their 0.5 is `snr_db = 10 * log10(0.5) = -3.01`.

    Args:
        x: NumPy array (float), the clean signal(s).
        snr_db: SNR in decibels, a real number; `float("inf")` adds nothing.
        rng: a `numpy.random.Generator` (or an int seed for one).
        axis: axes over which the signal power is averaged: `None` for one
            power for the whole array, e.g. `(1, 2, 3)` for one per image
            of an `(N, H, W, C)` batch.
        signal_power: optional array of powers to use instead of measuring
            `x` (broadcastable to the mean over `axis` with kept dims),
            e.g. the power of the speech part of a zero-padded clip.

    Returns:
        `x + noise`, same shape, float32 for float32 input (else float64).
        Values are not clipped (clipping would change the SNR).

    Example:

    >>> import numpy as np
    >>> x = np.sin(np.linspace(0, 2000, 200_000)).astype("float32")
    >>> y = add_white_noise(x, snr_db=6.0, rng=np.random.default_rng(0))
    >>> noise_power = np.mean((y - x) ** 2)
    >>> round(float(10 * np.log10(np.mean(x**2) / noise_power)), 1)
    6.0
    """
    if (
        isinstance(snr_db, bool)
        or not isinstance(snr_db, numbers.Real)
        or np.isnan(snr_db)
        or snr_db == float("-inf")
    ):
        raise ValueError(
            "add_white_noise expected `snr_db` to be a real number in "
            f"decibels (or float('inf') for no noise). Received: snr_db={snr_db!r}"
        )
    if isinstance(rng, numbers.Integral):
        rng = np.random.default_rng(rng)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            "add_white_noise expected `rng` to be a numpy.random.Generator "
            f"or an int seed. Received: rng={rng!r}"
        )
    x = np.asarray(x)
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    if snr_db == float("inf"):
        return x.astype(dtype, copy=True)
    if signal_power is None:
        signal_power = np.mean(np.square(x, dtype=np.float64), axis=axis, keepdims=True)
    noise_std = np.sqrt(np.asarray(signal_power, np.float64) / 10.0 ** (snr_db / 10))
    noise = rng.standard_normal(x.shape) * noise_std
    return (x + noise).astype(dtype)


NOISE_ORDERS = ("before_padding", "after_padding")
SNR_CONVENTIONS = ("power", "amplitude")


def snr_ratio_to_db(ratio, convention="power"):
    """Converts a linear SNR (as Barnum et al. quote them) to decibels.

    Barnum et al. give SNRs as plain ratios (audio 0.5, visual 0.25, ...)
    and do not say of what. Read as a ratio of **powers** (the default,
    `convention="power"`), 0.5 is `10 * log10(0.5) = -3.01` dB; read as a
    ratio of **amplitudes** (RMS values, `convention="amplitude"`), it is
    `20 * log10(0.5) = -6.02` dB. In decibels the two agree: every
    `*_snr_db` argument of this module is `10 * log10(P_signal / P_noise)`.

    Args:
        ratio: the linear SNR, a positive number.
        convention: `"power"` or `"amplitude"`.

    Returns:
        The SNR in dB, a float.

    Example:

    >>> round(snr_ratio_to_db(0.5), 2), round(snr_ratio_to_db(0.5, "amplitude"), 2)
    (-3.01, -6.02)
    """
    if convention not in SNR_CONVENTIONS:
        raise ValueError(
            "snr_ratio_to_db received an unknown `convention`. Expected one of "
            f"{SNR_CONVENTIONS}. Received: convention={convention!r}"
        )
    if (
        isinstance(ratio, bool)
        or not isinstance(ratio, numbers.Real)
        or not np.isfinite(ratio)
        or ratio <= 0
    ):
        raise ValueError(
            "snr_ratio_to_db expected `ratio` to be a positive finite number "
            f"(a linear SNR such as 0.5). Received: ratio={ratio!r}"
        )
    return (10.0 if convention == "power" else 20.0) * float(np.log10(ratio))


def audio_features(waveforms, features, batch_size=256):
    """Turns `(N, samples)` float32 waveforms into the requested features.

    Uses `keras.layers.MelSpectrogram` / `keras.layers.STFTSpectrogram`
    (non-trainable) on the active backend and returns NumPy arrays.

    Args:
        waveforms: float array `(N, samples)` at 16 kHz.
        features: `"waveform"` (returned as is), `"mel"` (log-mel in dB,
            `(N, frames, 40)`, 10 ms hop) or `"stft"` (log magnitude,
            `(N, frames, 201)`, 200-sample hop).
        batch_size: examples per layer call.

    Returns:
        float32 NumPy array. For 1 s inputs the shapes are
        `FEATURE_SHAPES[features]` with the batch axis in front.
    """
    if features not in FEATURES:
        raise ValueError(
            f"audio_features received an unknown `features` value. Expected "
            f"one of {FEATURES}. Received: features={features!r}"
        )
    waveforms = np.asarray(waveforms, np.float32)
    if features == "waveform":
        return waveforms
    import keras

    num_samples = waveforms.shape[1]
    if features == "mel":
        # MelSpectrogram returns (batch, bins, frames): make time the 2nd axis.
        layers = [
            keras.layers.MelSpectrogram(**MEL_CONFIG),
            keras.layers.Permute((2, 1)),
        ]
    else:
        with warnings.catch_warnings():  # fft_length 400 is not a power of 2
            warnings.simplefilter("ignore", UserWarning)
            layers = [
                keras.layers.Reshape((num_samples, 1)),
                keras.layers.STFTSpectrogram(**STFT_CONFIG, trainable=False),
            ]
    # A model's predict() compiles the computation once (eager calls on
    # JAX are several times slower).
    model = keras.Sequential([keras.Input((num_samples,)), *layers])
    if len(waveforms) == 0:
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    out = model.predict(waveforms, batch_size=batch_size, verbose=0)
    return np.asarray(out, np.float32)


def _data_path(name, filename):
    path = os.path.join(DATA_DIR, name, filename)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"The bundled {name} data file {path} is missing. Reinstall "
            "mmfusion-keras or rebuild it with `python scripts/build_datasets.py "
            f"{name}` (needs espeak-ng and sox)."
        )
    return path


@functools.lru_cache(maxsize=4)
def _read_json(name, filename):
    with open(_data_path(name, filename), encoding="utf-8") as f:
        return json.load(f)


@functools.lru_cache(maxsize=6)
def _read_split_audio(name, split):
    """All clips of a split, back to back, as read-only int16."""
    import soundfile as sf

    path = _data_path(name, f"{split}.flac")
    audio, rate = sf.read(path, dtype="int16", always_2d=False)
    if rate != SAMPLE_RATE:
        raise RuntimeError(f"{path} has sample rate {rate}, expected {SAMPLE_RATE}")
    audio.setflags(write=False)
    return audio


def _check_split(split, fn):
    if split not in SPLITS:
        raise ValueError(
            f"{fn} received an unknown split. Expected one of {SPLITS}. "
            f"Received: split={split!r}"
        )


def _check_snr(value, name, fn):
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or np.isnan(value)
        or value == float("-inf")
    ):
        raise ValueError(
            f"{fn} expected `{name}` to be None (no noise) or an SNR in "
            f"decibels (a real number). Received: {name}={value!r}"
        )


def _check_max_examples(value, fn):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"{fn} expected `max_examples` to be None or a positive integer. "
            f"Received: max_examples={value!r}"
        )


@functools.lru_cache(maxsize=1)
def _digits_images():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)
    return images, digits.target.astype(np.int32)


def load_av_digits(
    split="train",
    audio_snr_db=None,
    image_snr_db=None,
    features="waveform",
    seed=0,
    max_examples=None,
    noise_order="before_padding",
):
    """Loads one split of AV-Digits, optionally with white noise.

    Audio: each clip is placed at the end of a 1 s window (front padding
    with zeros, as Barnum et al. front-pad their audio). With
    `audio_snr_db`, by default (`noise_order="before_padding"`, the
    paper's order, Appendix A.3: "We then augmented the data by adding
    white noise ... We then front padded each audio input") the noise is
    added to the clip, scaled so that the clip's SNR is exactly
    `audio_snr_db` (`10 * log10(P_clip / P_noise)` over the clip's own
    samples), and the clip is then front-padded with exact zeros. With
    `noise_order="after_padding"` (this loader's earlier behaviour) noise
    is drawn i.i.d. over the whole 1 s window with the clip's power as the
    reference, so the padded frames are noise too and the SNR holds in
    expectation. Noise is always added to the waveform before the
    spectrogram, as in the paper. To pass the paper's linear SNRs (0.5,
    0.25, ...) convert them with `snr_ratio_to_db` and say which
    convention you chose (power ratios by default).

    Images: `digits.images / 16` in [0, 1] when `image_snr_db` is None;
    with noise the values leave [0, 1] (not clipped). The SNR uses each
    image's own power (mean of squared pixels).

    Noise is drawn from `numpy.random.default_rng([seed, split, modality])`:
    the same `seed` gives the same noise pattern at every SNR (only its
    scale changes), image and audio noise are independent, and the first
    `max_examples` examples get the same noise as in the full split.

    Args:
        split: `"train"` (1439 examples), `"validation"` (179) or `"test"`
            (179).
        audio_snr_db: SNR of the audio in dB, or `None` for clean audio.
        image_snr_db: SNR of the images in dB, or `None` for clean images.
        features: `"waveform"` (float32 `(N, 16000)`), `"mel"` (log-mel dB,
            `(N, 101, 40)`, 25 ms windows with a 10 ms hop, frames centred)
            or `"stft"` (log magnitude, `(N, 79, 201)`: Barnum et al.'s 400
            samples, stride 200, 201 bins). Spectrograms are computed with
            Keras layers on the active backend.
        seed: seed of the noise.
        max_examples: keep only the first `max_examples` examples (the
            stored order is shuffled), e.g. for quick tests.
        noise_order: `"before_padding"` (default, the paper's order) or
            `"after_padding"` (noise over the whole padded window).

    Returns:
        A `MultimodalDataset` with `inputs = {"image": (N, 8, 8, 1) float32,
        "audio": features}`, int32 `labels` (the digit), `class_names`
        `("zero", ..., "nine")`, per-example `metadata` (`image_index` into
        `load_digits()`, `clip`, `speaker`, `audio_length` in samples,
        `rate`, `pitch`) and `info` (speakers of every split, engine
        version, sample rate, SNRs, feature settings).

    Example:

    >>> from mmfusion_keras.datasets.av_digits import load_av_digits
    >>> ds = load_av_digits("test", audio_snr_db=-3.0, image_snr_db=-6.0,
    ...                     max_examples=4)
    >>> ds.inputs["image"].shape, ds.inputs["audio"].shape, ds.labels.dtype
    ((4, 8, 8, 1), (4, 16000), dtype('int32'))
    >>> ds.info["engine"]["espeak_ng"]
    '1.51'

    Reference:
        Barnum, Talukder, Yue, "On the Benefits of Early Fusion in
        Multimodal Representation Learning", NeurIPS 2020 workshop,
        Appendix A.3 (pairing, white noise at chosen SNRs, front padding,
        400 / 200 / 201 spectrogram). Perez-Rua et al., "MFAS: Multimodal
        Fusion Architecture Search", CVPR 2019 (AV-MNIST).
    """
    fn = "load_av_digits"
    _check_split(split, fn)
    if features not in FEATURES:
        raise ValueError(
            f"{fn} received an unknown `features` value. Expected one of "
            f"{FEATURES}. Received: features={features!r}"
        )
    _check_snr(audio_snr_db, "audio_snr_db", fn)
    _check_snr(image_snr_db, "image_snr_db", fn)
    _check_max_examples(max_examples, fn)
    if noise_order not in NOISE_ORDERS:
        raise ValueError(
            f"{fn} received an unknown `noise_order`. Expected one of "
            f"{NOISE_ORDERS}. Received: noise_order={noise_order!r}"
        )

    metadata = _read_json("av_digits", "metadata.json")
    index = _read_json("av_digits", "index.json")
    images, targets = _digits_images()
    expected = metadata["image_source"]["sha256_uint8_images"]
    if hashlib.sha256(images.tobytes()).hexdigest() != expected:
        raise RuntimeError(
            f"{fn}: sklearn.datasets.load_digits() returned different images "
            "than the ones AV-Digits was paired with (scikit-learn "
            f"{metadata['image_source']['scikit_learn_version']}). The "
            "pairing in index.json would be wrong; rebuild it with "
            "`python scripts/build_datasets.py av_digits`."
        )

    clips = index["clips"][split]
    examples = index["examples"][split]
    n = len(examples["clip"])
    if max_examples is not None:
        n = min(n, max_examples)
    clip_of = np.asarray(examples["clip"][:n], np.int64)
    image_index = np.asarray(examples["image_index"][:n], np.int64)
    offsets = np.asarray(clips["offset"], np.int64)
    lengths = np.asarray(clips["length"], np.int64)
    clip_digit = np.asarray(clips["digit"], np.int32)
    labels = targets[image_index]
    if not np.array_equal(labels, clip_digit[clip_of]):
        raise RuntimeError(f"{fn}: index.json pairs images with other digits")

    # Images, (N, 8, 8, 1) in [0, 1].
    image = (images[image_index].astype(np.float32) / 16.0)[..., None]
    if image_snr_db is not None:
        rng = np.random.default_rng([seed, SPLITS.index(split), 0])
        image = add_white_noise(image, image_snr_db, rng, axis=(1, 2, 3))

    # Audio: each clip front-padded into a 1 s window.
    audio_all = _read_split_audio("av_digits", split)
    wave = np.zeros((n, NUM_SAMPLES), np.float32)
    power = np.zeros((n, 1), np.float64)
    noisy_clips = audio_snr_db is not None and noise_order == "before_padding"
    if audio_snr_db is not None:
        rng = np.random.default_rng([seed, SPLITS.index(split), 1])
    for i, c in enumerate(clip_of):
        clip = audio_all[offsets[c] : offsets[c] + lengths[c]].astype(np.float64)
        clip /= 32768.0
        power[i] = np.mean(np.square(clip))
        if noisy_clips and np.isfinite(audio_snr_db):
            # A.3: noise on the clip (exact SNR over its samples), then padding.
            noise = rng.standard_normal(len(clip))
            target = power[i, 0] / 10.0 ** (audio_snr_db / 10)
            clip = clip + noise * np.sqrt(target / np.mean(np.square(noise)))
        wave[i, NUM_SAMPLES - len(clip) :] = clip
    if audio_snr_db is not None and not noisy_clips:
        wave = add_white_noise(wave, audio_snr_db, rng, signal_power=power)
    audio = audio_features(wave, features)

    speakers = np.asarray(clips["speaker"])
    info = {
        "name": "av_digits",
        "split": split,
        "description": metadata["description"],
        "engine": dict(metadata["engine"]),
        "sample_rate": SAMPLE_RATE,
        "features": features,
        "feature_shape": FEATURE_SHAPES[features],
        "feature_config": {"mel": MEL_CONFIG, "stft": STFT_CONFIG}.get(features),
        "audio_padding": "front",
        "noise_order": noise_order,
        "snr_definition": "10 * log10(P_signal / P_noise), signal power of "
        "the clip (audio) or image",
        "audio_snr_db": audio_snr_db,
        "image_snr_db": image_snr_db,
        "seed": seed,
        "speakers": {s: list(metadata["splits"][s]["speakers"]) for s in SPLITS},
        "split_rule": metadata["split_rule"],
        "image_source": dict(metadata["image_source"]),
    }
    return MultimodalDataset(
        inputs={"image": image, "audio": audio},
        labels=labels.astype(np.int32),
        class_names=tuple(metadata["class_names"]),
        metadata={
            "image_index": image_index,
            "clip": clip_of,
            "speaker": speakers[clip_of],
            "audio_length": lengths[clip_of],
            "rate": np.asarray(clips["rate"], np.int32)[clip_of],
            "pitch": np.asarray(clips["pitch"], np.int32)[clip_of],
        },
        info=info,
    )
