"""Builds the speech+text corpus's "unseen" split: new sentences, new voices.

    python scripts/build_speech_text_unseen.py

Writes `mmfusion_keras/datasets/data/speech_text/unseen.flac` (16 kHz mono,
16-bit FLAC, every clip back to back) and `unseen.json` (per-clip columns
and metadata). `load_speech_text("unseen")` reads only these two files;
nothing is synthesized at run time.

What makes it "unseen" (a held-out check of generalization, not a
re-draw of the test split):

- **Sentences**: 12 per class, written for this split; none occurs in
  the bundled train / validation / test sentences (checked here and in
  the tests).
- **Voices**: eSpeak NG's Afrikaans, Welsh, Danish, German, Icelandic,
  Norwegian, Dutch and Swedish voices reading the English sentences
  (accented English), with no variant. Every bundled speaker is one of the
  eight English voices plus a variant, so no speaker, and no base voice,
  is shared with any bundled split.
- **Text and voice agree**: every utterance is spoken with the prosody of
  its sentence's emotion (label = text emotion = prosody emotion), the
  cells (e, e) of the bundled label rule. The prosody table, jitter,
  per-speaker loudness calibration and the corpus-wide gain are those of
  the bundled corpus (`scripts/build_datasets.py`), so only the words
  and the voices are new.

Each sentence is spoken by two different voices: 48 sentences, 96 clips,
each voice 12 clips (3 per class). Requires `espeak-ng` and `sox` (Debian
packages); deterministic for a given eSpeak NG + SoX version.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import build_datasets as bd  # noqa: E402

SEED = 20261202
VOICES = ("af", "cy", "da", "de", "is", "nb", "nl", "sv")
VOICE_NAMES = {
    "af": "Afrikaans",
    "cy": "Welsh",
    "da": "Danish",
    "de": "German",
    "is": "Icelandic",
    "nb": "Norwegian Bokmål",
    "nl": "Dutch",
    "sv": "Swedish",
}
SPEAKINGS_PER_SENTENCE = 2

SENTENCES = {
    "anger": (
        "Get your filthy hands off my desk.",
        "You lied to my face again.",
        "You scratched my car and drove off.",
        "Don't you dare raise your voice.",
        "You smashed my window and denied it.",
        "I'm so angry I could scream.",
        "Give me back my money now.",
        "You betrayed me in front of everyone.",
        "I'm fed up with your nonsense.",
        "You tore up my drawing out of spite.",
        "Stop wasting my time, you fool.",
        "That liar cheated me again.",
    ),
    "happiness": (
        "My sister had a healthy baby boy.",
        "We are going on holiday to Italy.",
        "I won first prize in the contest.",
        "What a perfect day for a picnic.",
        "I love my shiny new bicycle.",
        "Dad took us to the zoo today.",
        "What a lovely evening with old friends.",
        "All my paintings sold at the fair.",
        "Everything went right, I'm delighted.",
        "The kids are giggling with joy.",
        "We celebrated with cake and music.",
        "Yay, my best friend is visiting!",
    ),
    "neutral": (
        "The printer is next to the copier.",
        "The dentist appointment is on Friday.",
        "Add two spoons of flour.",
        "The lecture is in room three.",
        "The tram runs every fifteen minutes.",
        "My umbrella has a wooden handle.",
        "The post office is across the square.",
        "The shop opens later tomorrow.",
        "He usually walks to the station.",
        "The invoice number is at the top.",
        "These shelves hold old magazines.",
        "The recipe needs three eggs.",
    ),
    "sadness": (
        "My cat has been missing for weeks.",
        "Nobody remembered my name.",
        "I had to sell my father's watch.",
        "The hospital called with bad news.",
        "My grandmother no longer knows me.",
        "I never said goodbye to her.",
        "Our village school is closing forever.",
        "I feel lonely and so tired.",
        "He buried his best friend yesterday.",
        "My letters were never answered.",
        "The house is so quiet since he left.",
        "I broke down in tears at work.",
    ),
}


def plan(rng):
    """(voice, class, sentence) of every clip, in a shuffled order.

    Sentence `i` of class `k` is spoken by voices `(i + 3k) % 8` and
    `(i + 3k + 4) % 8`: two different voices, each voice 3 clips per class.
    """
    rows = []
    for k, emotion in enumerate(bd.ST_CLASSES):
        for i, text in enumerate(SENTENCES[emotion]):
            for shift in (0, 4):
                voice = VOICES[(i + 3 * k + shift) % len(VOICES)]
                rows.append((voice, emotion, text))
    return [rows[i] for i in rng.permutation(len(rows))]


def main():
    engine = bd.engine_info()
    bundled_dir = os.path.join(bd.DATA_DIR, "speech_text")
    with open(os.path.join(bundled_dir, "metadata.json"), encoding="utf-8") as f:
        bundled = json.load(f)
    known = {s for c in bundled["sentences"].values() for s in c}
    clash = sorted(known & {s for c in SENTENCES.values() for s in c})
    if clash:
        sys.exit(f"These sentences are already in the bundled corpus: {clash}")
    bundled_voices = {
        s.split("+")[0]
        for split in bundled["splits"].values()
        for s in split["speakers"]
    }
    if bundled_voices & set(VOICES):
        sys.exit(f"Voices used by the bundled corpus: {bundled_voices & set(VOICES)}")

    rng = np.random.default_rng(SEED)
    rows = []
    for voice, emotion, text in plan(rng):
        base = bd.ST_PROSODY[emotion]
        j = bd.ST_JITTER
        rate = base["rate"] * rng.uniform(1 - j["rate"], 1 + j["rate"])
        pitch = base["pitch"] + rng.uniform(-j["pitch"], j["pitch"])
        prange = base["range"] * rng.uniform(1 - j["range"], 1 + j["range"])
        amp = base["amplitude"] * rng.uniform(1 - j["amplitude"], 1 + j["amplitude"])
        rows.append(
            {
                "voice": voice,
                "text": text,
                "rate": int(round(rate)),
                "pitch": int(round(np.clip(pitch, 0, 99))),
                "amplitude": int(round(amp)),
                "pitch_range": int(round(prange)),
                "text_emotion": emotion,
                "prosody_emotion": emotion,
                "label": bd.ST_CLASSES.index(emotion),
            }
        )
    workers = os.cpu_count() or 1
    gains = dict(
        zip(
            VOICES,
            bd.parallel_map(
                bd._calibration_gain, [{"voice": v} for v in VOICES], workers
            ),
        )
    )
    keys = ("voice", "text", "rate", "pitch", "amplitude", "pitch_range")
    clips = bd.parallel_map(
        bd._st_clip, [{k: r[k] for k in keys} for r in rows], workers
    )
    corpus_gain = bundled["prosody"]["corpus_gain"]
    audio = [x * gains[r["voice"]] * corpus_gain for x, r in zip(clips, rows)]
    peak = max(float(np.max(np.abs(x))) for x in audio)
    if peak >= 1.0:
        sys.exit(f"The bundled corpus gain would clip these clips (peak {peak:.3f}).")
    clips16 = [bd.to_int16(x) for x in audio]
    offsets, lengths = bd.write_split_audio(bundled_dir, "unseen", clips16)
    seconds = np.asarray(lengths) / bd.SAMPLE_RATE
    columns = {key: [r[key] for r in rows] for key in rows[0] if key != "voice"}
    columns["speaker"] = [r["voice"] for r in rows]
    columns["offset"] = offsets
    columns["length"] = lengths
    out = {
        "name": "speech_text_unseen",
        "description": (
            "Held-out split of the synthetic speech+text corpus: sentences "
            "and voices that occur in no bundled split; text and prosody "
            "agree (label = text emotion = prosody emotion)."
        ),
        "engine": {"espeak_ng": engine["espeak_ng"], "sox": engine["sox"]},
        "builder": "scripts/build_speech_text_unseen.py",
        "seed": SEED,
        "voices": {v: VOICE_NAMES[v] for v in VOICES},
        "speaker_gain": {v: round(g, 4) for v, g in gains.items()},
        "corpus_gain": corpus_gain,
        "split_rule": (
            "speakers are eSpeak NG's af, cy, da, de, is, nb, nl and sv voices "
            "(no variant) reading English; every bundled speaker is an "
            "English voice + variant. Sentences occur in no bundled split. "
            "Each sentence is spoken by 2 different voices, each with the "
            "prosody of its own emotion (bundled prosody table and jitter)."
        ),
        "sentences": {c: list(SENTENCES[c]) for c in bd.ST_CLASSES},
        "num_examples": len(rows),
        "label_counts": {
            c: sum(r["label"] == i for r in rows) for i, c in enumerate(bd.ST_CLASSES)
        },
        "mean_clip_seconds": round(float(seconds.mean()), 4),
        "max_clip_seconds": round(float(seconds.max()), 4),
        "columns": columns,
    }
    bd.write_json(os.path.join(bundled_dir, "unseen.json"), out)
    size = os.path.getsize(os.path.join(bundled_dir, "unseen.flac"))
    print(
        f"unseen: {len(rows)} clips, {seconds.mean():.2f} s mean, "
        f"{seconds.max():.2f} s max, peak {peak:.3f}, unseen.flac {size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
