"""Speech+text emotion demo corpus: synthetic, offline, four IEMOCAP-like classes.

**This corpus is synthetic.** The sentences were written for it and spoken
by the eSpeak NG formant synthesizer with rule-based "emotional" prosody.
It exists so that speech+text fusion code (MBAF, dual-memory fusion, the
baselines) can be run, demonstrated and tested without downloading
IEMOCAP. Accuracies on it say nothing about human emotion or about
performance on recorded speech.

Classes: anger, happiness, neutral, sadness (IEMOCAP's usual 4-class
protocol). Each utterance has two emotions:

- the text emotion: the sentence's wording is angry, happy, sad or neutral
  (27 sentences per class, written for this corpus, in
  `info["sentences"]`; sentences are shared by all splits, as IEMOCAP's
  scripts are read by every session's actors);
- the prosody emotion: how it is spoken, after the summary table of
  Murray & Arnott (1993): anger = faster, very much higher pitch, much
  wider pitch range, louder; happiness = (here) slower, much higher pitch,
  much wider range, louder; sadness = slightly slower, slightly lower
  pitch, slightly narrower range, quieter; neutral = eSpeak's defaults.
  Rate (`-s`), pitch (`-p`), amplitude (`-a`) and pitch range (SSML
  `<prosody range>`, which eSpeak NG 1.51 honours) get per-utterance
  jitter; the table is in `info["prosody"]`.

**Label rule** (neither modality alone suffices): label = the text's
emotion if the text is emotional, else the prosody's emotion. The twelve
equally likely (text, prosody) cells are (neutral, neutral) x3 and, for
each emotion e, (neutral, e), (e, e) and (e, neutral). Every class has 3
cells; text alone can be right on at most 9 of 12 cells (75%), prosody
alone too, both together on all 12.

In the training split every neutral sentence is spoken exactly 3 times
with neutral prosody and once with each emotional prosody (and every
emotional sentence once with its own prosody, once neutral), so the words
of a sentence say nothing about how it was spoken and a text model cannot
memorise sentence -> label pairs.

Speakers are eSpeak voice + variant pairs; the 90 variants that can carry
pitch prosody (not whispered, not monotone) are split 54 / 18 / 18 between
train / validation / test, so no validation or test speaker is heard in
training. Each speaker says 6 utterances: 324 / 108 / 108 in total, the
classes balanced in every split. Each speaker's loudness is calibrated to
a common level (so loudness differences between emotions remain and those
between variants do not). Audio is 16 kHz mono, 0.7-2.6 s per utterance.
The builder is `scripts/build_datasets.py`; the eSpeak NG version is in
`info["engine"]`.
"""

import numbers

import numpy as np

from mmfusion_keras.datasets.av_digits import SAMPLE_RATE
from mmfusion_keras.datasets.av_digits import SPLITS as BUNDLED_SPLITS
from mmfusion_keras.datasets.av_digits import _check_max_examples
from mmfusion_keras.datasets.av_digits import _check_snr
from mmfusion_keras.datasets.av_digits import _read_json
from mmfusion_keras.datasets.av_digits import _read_split_audio
from mmfusion_keras.datasets.av_digits import add_white_noise
from mmfusion_keras.datasets.multimodal_dataset import MultimodalDataset

CLASS_NAMES = ("anger", "happiness", "neutral", "sadness")
# "unseen": new sentences spoken by new voices, text and prosody agreeing
# (`scripts/build_speech_text_unseen.py`); the others share sentences.
SPLITS = BUNDLED_SPLITS + ("unseen",)


def _check_split(split, fn):
    if split not in SPLITS:
        raise ValueError(
            f"{fn} received an unknown split. Expected one of {SPLITS}. "
            f"Received: split={split!r}"
        )


def _split_tables(split):
    """`(columns, split metadata or None)` of a split from the bundled JSON."""
    if split == "unseen":
        unseen = _read_json("speech_text", "unseen.json")
        return unseen["columns"], unseen
    return _read_json("speech_text", "index.json")[split], None


def load_speech_text(
    split="train", max_seconds=3.0, audio_snr_db=None, seed=0, max_examples=None
):
    """Loads one split of the synthetic speech+text emotion corpus.

    Each waveform starts at index 0 and is zero-padded at the end (or cut)
    to `max_seconds`; `inputs["audio_mask"]` marks the real samples. With
    `audio_snr_db`, white noise (`add_white_noise`) fills the whole padded
    window, at the SNR measured on the utterance itself, drawn from
    `numpy.random.default_rng([seed, split])`.

    Args:
        split: `"train"` (324 utterances), `"validation"` (108), `"test"`
            (108) or `"unseen"` (96: 48 sentences that occur in no other
            split, each spoken by two of 8 voices that speak in no other
            split, with the prosody of the sentence's own emotion; see
            `docs/speech_text.md`).
        max_seconds: length of the returned waveforms in seconds (positive).
            The longest utterance lasts 2.56 s, so the default 3.0 cuts
            nothing; shorter values cut utterances at the end.
        audio_snr_db: SNR of the audio in dB, or `None` for clean audio.
        seed: seed of the noise.
        max_examples: keep only the first `max_examples` utterances (the
            stored order is shuffled), e.g. for quick tests.

    Returns:
        A `MultimodalDataset` with `inputs = {"audio": float32 (N, T),
        "audio_mask": bool (N, T), "text": object array of str (N,)}`,
        `T = round(max_seconds * 16000)`; int32 `labels` indexing
        `class_names = ("anger", "happiness", "neutral", "sadness")`;
        per-example `metadata` (`speaker`, `text_emotion`,
        `prosody_emotion`, `audio_length` in samples before cutting,
        `rate`, `pitch`, `pitch_range`, `amplitude`) and `info` (label
        rule, prosody table, sentences, speakers of every split, engine
        version, number of cut utterances).

    Example:

    >>> from mmfusion_keras.datasets.speech_text import load_speech_text
    >>> ds = load_speech_text("test", max_seconds=2.0, max_examples=3)
    >>> ds.inputs["audio"].shape, ds.inputs["text"].shape, ds.class_names[0]
    ((3, 32000), (3,), 'anger')

    Reference:
        I. R. Murray and J. L. Arnott, "Toward the simulation of emotion in
        synthetic speech: a review of the literature on human vocal
        emotion", J. Acoust. Soc. Am. 93(2), 1993 (summary table of vocal
        effects: directions of rate, pitch, range and intensity changes;
        the magnitudes here are our choice).
    """
    fn = "load_speech_text"
    _check_split(split, fn)
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, numbers.Real)
        or not np.isfinite(max_seconds)
        or round(max_seconds * SAMPLE_RATE) < 1
    ):
        raise ValueError(
            f"{fn} expected `max_seconds` to be a positive number of seconds. "
            f"Received: max_seconds={max_seconds!r}"
        )
    _check_snr(audio_snr_db, "audio_snr_db", fn)
    _check_max_examples(max_examples, fn)

    metadata = _read_json("speech_text", "metadata.json")
    columns, unseen = _split_tables(split)
    n = len(columns["label"])
    if max_examples is not None:
        n = min(n, max_examples)
    num_samples = int(round(max_seconds * SAMPLE_RATE))
    offsets = np.asarray(columns["offset"][:n], np.int64)
    lengths = np.asarray(columns["length"][:n], np.int64)

    audio_all = _read_split_audio("speech_text", split)
    audio = np.zeros((n, num_samples), np.float32)
    mask = np.zeros((n, num_samples), bool)
    power = np.zeros((n, 1), np.float64)
    for i in range(n):
        clip = audio_all[offsets[i] : offsets[i] + lengths[i]].astype(np.float32)
        clip /= 32768.0
        power[i] = np.mean(np.square(clip, dtype=np.float64))
        kept = min(len(clip), num_samples)
        audio[i, :kept] = clip[:kept]
        mask[i, :kept] = True
    if audio_snr_db is not None:
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        audio = add_white_noise(audio, audio_snr_db, rng, signal_power=power)

    text = np.empty(n, dtype=object)
    text[:] = columns["text"][:n]

    def column(key, dtype=None):
        return np.asarray(columns[key][:n], dtype)

    info = {
        "name": "speech_text",
        "split": split,
        "description": metadata["description"],
        "synthetic": True,
        "engine": dict(metadata["engine"]),
        "sample_rate": SAMPLE_RATE,
        "max_seconds": max_seconds,
        "num_cut": int(np.sum(lengths > num_samples)),
        "audio_snr_db": audio_snr_db,
        "seed": seed,
        "label_rule": metadata["label_rule"],
        "cells": [tuple(c) for c in metadata["cells"]],
        "prosody": metadata["prosody"],
        "sentences": metadata["sentences"],
        "speakers": {
            s: list(metadata["splits"][s]["speakers"]) for s in BUNDLED_SPLITS
        },
        "split_rule": metadata["split_rule"],
    }
    if unseen is not None:
        info["speakers"]["unseen"] = sorted(unseen["voices"])
        info["unseen_split_rule"] = unseen["split_rule"]
        info["unseen_sentences"] = unseen["sentences"]
    return MultimodalDataset(
        inputs={"audio": audio, "audio_mask": mask, "text": text},
        labels=column("label", np.int32),
        class_names=tuple(metadata["class_names"]),
        metadata={
            "speaker": column("speaker"),
            "text_emotion": column("text_emotion"),
            "prosody_emotion": column("prosody_emotion"),
            "audio_length": lengths,
            "rate": column("rate", np.int32),
            "pitch": column("pitch", np.int32),
            "pitch_range": column("pitch_range", np.int32),
            "amplitude": column("amplitude", np.int32),
        },
        info=info,
    )
