"""Regenerates the two bundled offline datasets from eSpeak NG.

    python scripts/build_datasets.py            # both datasets
    python scripts/build_datasets.py av_digits  # one of them

Writes `mmfusion_keras/datasets/data/<name>/{train,validation,test}.flac`
(16 kHz mono, 16-bit FLAC: every clip of the split, back to back),
`index.json` (per clip and per example tables, one column per field) and
`metadata.json` (engine version, voices per split, synthesis settings,
label rule, counts). The loaders in `mmfusion_keras.datasets.av_digits` and
`mmfusion_keras.datasets.speech_text` read only these files.

Requires the Debian packages `espeak-ng` (synthesis) and `sox` (resampling
from eSpeak's 22.05 kHz to 16 kHz); the loaders need neither. The output is
deterministic for a given eSpeak NG + SoX version: every random draw comes
from a fixed seed, in a fixed order, before any synthesis starts; voices and
variants are sorted; SoX runs without dither (`-D`); each utterance is a
fresh eSpeak process.
"""

import argparse
import concurrent.futures
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
SPLITS = ("train", "validation", "test")
DATA_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "mmfusion_keras",
    "datasets",
    "data",
)

# eSpeak NG 1.51's eight English voices with their own rules (the mbrola
# voices `--voices=en` also lists need extra packages and are left out).
BASE_VOICES = (
    "en-029",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-gb-x-rp",
    "en-us",
    "en-us-nyc",
)
# `fast` is a speed test file that sounds exactly like the base voice.
EXCLUDED_VARIANTS = ("fast",)

TRIM_THRESHOLD_DB = -40.0  # silence = below this, relative to the clip peak
TRIM_MARGIN_SECONDS = 0.02  # kept on both sides of the trimmed speech

# ----------------------------------------------------------------------------
# AV-Digits
AV_SEED = 20240611
AV_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
AV_SPLIT_VARIANTS = {"train": 80, "validation": 10, "test": 10}
AV_IMAGE_FRACTIONS = (0.8, 0.1, 0.1)
AV_RATE_RANGE = (130, 230)  # espeak-ng -s, words per minute
AV_PITCH_RANGE = (20, 80)  # espeak-ng -p, 0..99
AV_AMPLITUDE = 25  # espeak-ng -a; loud variants clip eSpeak's 16 bits above ~35
AV_PEAK_DBFS = -3.0  # each clip is then peak-normalised to this level
AV_MAX_SECONDS = 1.0

# ----------------------------------------------------------------------------
# Speech+text emotion corpus
ST_SEED = 20240612
ST_CLASSES = ("anger", "happiness", "neutral", "sadness")
ST_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # of the usable variants
ST_UTTERANCES_PER_SPEAKER = 6
ST_MAX_SECONDS = 4.0
ST_PEAK_DBFS = -1.0  # ONE gain for the whole corpus: loudness is a cue
# Prosody per emotion after Murray & Arnott (1993), Table I (the direction of
# every change); the sizes are ours. rate: espeak-ng -s (words per minute);
# pitch: -p (0..99, 50 = the voice's default); range: SSML
# <prosody range="N%"> (100% = the voice's default); amplitude: -a (eSpeak's
# default is 100; some variants are 15x louder than others and clip above
# about -a 35, so the table is scaled down and each speaker is then brought
# to the same neutral loudness by a digital gain, see ST_TARGET_RMS).
ST_PROSODY = {
    "neutral": {"rate": 175, "pitch": 50, "range": 100, "amplitude": 16},
    # slightly faster, very much higher pitch, much wider range, higher
    # intensity (+4 dB)
    "anger": {"rate": 215, "pitch": 82, "range": 190, "amplitude": 25},
    # "faster or slower": slower is chosen, which keeps it apart from anger;
    # much higher pitch, much wider range, higher intensity (+3 dB)
    "happiness": {"rate": 155, "pitch": 72, "range": 240, "amplitude": 23},
    # slightly slower, slightly lower pitch, slightly narrower range, lower
    # intensity (-3 dB)
    "sadness": {"rate": 145, "pitch": 38, "range": 70, "amplitude": 11},
}
# Speaker gain: each speaker's CALIBRATION_TEXT with neutral prosody (no
# jitter) is scaled to this RMS; the same gain then applies to all of that
# speaker's utterances, which keeps the intensity differences between
# emotions and removes the loudness differences between variants.
ST_TARGET_RMS = 0.05
CALIBRATION_TEXT = "The weather report comes on after the news."
# Per-utterance jitter: rate and range multiplied by U(1 - j, 1 + j), pitch
# shifted by U(-j, j) points, amplitude multiplied by U(1 - j, 1 + j).
ST_JITTER = {"rate": 0.06, "pitch": 5, "range": 0.12, "amplitude": 0.08}
# The 12 equally likely (text emotion, prosody emotion) cells. Label rule:
# the text's emotion if the text is emotional, else the prosody's emotion.
# Each class gets 3 of the 12 cells; text alone and prosody alone each
# decide at most 9 of 12 (75%).
ST_CELLS = (
    ("neutral", "neutral"),
    ("neutral", "neutral"),
    ("neutral", "neutral"),
    ("neutral", "anger"),
    ("neutral", "happiness"),
    ("neutral", "sadness"),
    ("anger", "anger"),
    ("happiness", "happiness"),
    ("sadness", "sadness"),
    ("anger", "neutral"),
    ("happiness", "neutral"),
    ("sadness", "neutral"),
)
ST_LABEL_RULE = (
    "label = the emotion of the text if the text is emotional (anger, "
    "happiness or sadness); if the text is neutral, label = the emotion of "
    "the prosody. Equally likely (text, prosody) cells: (neutral, neutral) x3, "
    "(neutral, e) and (e, e) and (e, neutral) once for each emotion e."
)

SENTENCES = {
    "anger": (
        "I am sick of your constant lies.",
        "Get out of my office right now.",
        "You ruined everything I worked for.",
        "How dare you talk to me like that.",
        "Stop touching my things without asking.",
        "I told you never to call here again.",
        "You broke my phone and laughed about it.",
        "I'm furious that you sold my car.",
        "Don't you ever shout at my kids.",
        "You wasted my whole day for nothing.",
        "I will not put up with this anymore.",
        "Who gave you the right to read my mail?",
        "Shut the door and leave me alone.",
        "You promised, and you broke it again.",
        "That was a cheap and nasty trick.",
        "I'm done cleaning up your mess.",
        "You stole my idea and took the credit.",
        "Why do you keep ignoring my messages?",
        "This stupid printer jammed again.",
        "They cheated us out of our money.",
        "I hate it when you slam the door.",
        "Enough excuses, just fix it now.",
        "Keep your hands off my bike.",
        "Quit interrupting me when I speak.",
        "You lost my keys on purpose.",
        "Leave my family out of this.",
        "Nobody insults my mother like that.",
    ),
    "happiness": (
        "We won the match last night.",
        "I passed my driving test today.",
        "What a wonderful surprise party.",
        "I'm so glad you could come.",
        "She said yes to my proposal.",
        "This is the best cake ever.",
        "We're going to the beach tomorrow.",
        "I got the job I wanted.",
        "Our baby took her first steps.",
        "Thank you, this gift is lovely.",
        "I love sunny mornings like this.",
        "My grandmother is finally coming home.",
        "We finished the project early.",
        "You made my day with that joke.",
        "I can't wait to see the fireworks.",
        "The puppy is adorable and playful.",
        "Hooray, school is out for summer.",
        "My brother got into university.",
        "That was the funniest film all year.",
        "We laughed until our sides hurt.",
        "I feel fantastic after that swim.",
        "The concert was absolutely brilliant.",
        "I finally beat my best time.",
        "Everyone loved the dinner you cooked.",
        "It's great to have you back.",
        "We found the perfect little house.",
        "Good news, the tickets arrived.",
    ),
    "sadness": (
        "My old dog died this morning.",
        "I miss my father every day.",
        "Nobody came to my birthday.",
        "We lost the house in the flood.",
        "She moved away and never wrote.",
        "I failed the exam again.",
        "The garden feels empty without her.",
        "I have no one to talk to.",
        "Our little shop closed for good.",
        "He forgot about me completely.",
        "I cried all night long.",
        "The doctor said there is no cure.",
        "My best friend stopped calling.",
        "I feel so alone in this city.",
        "We said goodbye at the station.",
        "Grandpa passed away last winter.",
        "I lost my job today.",
        "Everything reminds me of him.",
        "The kitten was never found.",
        "I wish I could turn back time.",
        "Nothing seems worth doing anymore.",
        "She didn't even say goodbye.",
        "My sister is very ill again.",
        "I spent the holidays by myself.",
        "The silence at home is unbearable.",
        "I gave up on my dream.",
        "He left without a word.",
    ),
    "neutral": (
        "The meeting starts at ten.",
        "Please put the cups on the shelf.",
        "The train leaves from platform four.",
        "I bought bread and some milk.",
        "The library closes at six.",
        "Turn left after the bridge.",
        "The report has twelve pages.",
        "We usually eat dinner at seven.",
        "The bus stop is near the bank.",
        "My sister works in an office.",
        "The window faces the street.",
        "He reads the paper every morning.",
        "The box is on the table.",
        "Water boils at one hundred degrees.",
        "The shop sells pens and paper.",
        "Our flat is on the second floor.",
        "The keys are in the drawer.",
        "I need to charge my phone.",
        "The film lasts about two hours.",
        "She takes the bus to work.",
        "The parcel arrived on Tuesday.",
        "The car is parked outside.",
        "Please send me the file.",
        "The museum opens at nine.",
        "The coffee is in the kitchen.",
        "He painted the fence white.",
        "The forecast says light rain.",
    ),
}


# ----------------------------------------------------------------------------
# Engine


def _run(cmd, stdin=None):
    result = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"Command failed ({result.returncode}): {' '.join(cmd)}\n"
            + result.stderr.decode(errors="replace")
        )
    return result.stdout


def engine_info():
    """Versions of eSpeak NG and SoX, and eSpeak's data directory."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(
                f"build_datasets.py needs `{tool}` on PATH. Install it with "
                "`apt-get install -y espeak-ng sox` (Debian / Ubuntu)."
            )
    text = _run(["espeak-ng", "--version"]).decode().strip()
    match = re.match(r"eSpeak NG text-to-speech: (\S+)\s+Data at: (.+)$", text)
    if match is None:
        sys.exit(f"Could not parse `espeak-ng --version`: {text!r}")
    sox = _run(["sox", "--version"]).decode().strip()
    sox_version = sox.split("SoX v")[-1]
    return {
        "espeak_ng": match.group(1),
        "sox": sox_version,
        "data_dir": match.group(2).strip(),
    }


def list_variants(data_dir):
    """Sorted eSpeak NG voice variants (the files in `voices/!v`)."""
    names = sorted(os.listdir(os.path.join(data_dir, "voices", "!v")))
    return [n for n in names if n not in EXCLUDED_VARIANTS]


def variant_settings(data_dir, variant):
    """The `pitch`, `voicing` and `intonation` lines of a variant file."""
    path = os.path.join(data_dir, "voices", "!v", variant)
    settings = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split("//")[0].split()
            if len(parts) >= 2 and parts[0] in ("pitch", "voicing", "intonation"):
                settings.setdefault(parts[0], [int(p) for p in parts[1:3]])
    return settings


def prosody_capable(settings):
    """Whether a variant can carry pitch-range prosody (see metadata)."""
    pitch = settings.get("pitch")
    if pitch is not None and pitch[1] - pitch[0] < 20:
        return False  # (near) monotone or inverted range
    if settings.get("voicing", [100])[0] < 25:
        return False  # whispered, no pitch
    if settings.get("intonation", [1])[0] <= 0:
        return False  # intonation switched off
    return True


def synthesize(voice, text, rate, pitch, amplitude=100, pitch_range=None):
    """One utterance as float64 at 16 kHz (trimmed, not normalised)."""
    cmd = [
        "espeak-ng",
        "-v",
        voice,
        "-s",
        str(int(rate)),
        "-p",
        str(int(pitch)),
        "-a",
        str(int(amplitude)),
        "--stdout",
    ]
    if pitch_range is not None:
        text = f'<speak><prosody range="{int(pitch_range)}%">{escape(text)}</prosody></speak>'
        cmd.append("-m")
    wav = _run(cmd + [text])
    pcm, _ = sf.read(io.BytesIO(wav), dtype="int16")
    if np.max(np.abs(pcm.astype("int32"))) >= 32767:
        raise RuntimeError(
            f"eSpeak NG clipped {voice} -a {amplitude} {text!r}: lower the amplitudes"
        )
    raw = _run(
        [
            "sox",
            "-D",
            "-t",
            "wav",
            "-",
            "-t",
            "raw",
            "-e",
            "floating-point",
            "-b",
            "32",
            "-c",
            "1",
            "-",
            "rate",
            "-h",
            str(SAMPLE_RATE),
        ],
        stdin=wav,
    )
    x = np.frombuffer(raw, dtype="<f4").astype("float64")
    return trim(x)


def trim(x):
    """Cuts leading and trailing silence (below TRIM_THRESHOLD_DB of peak)."""
    peak = np.max(np.abs(x))
    if peak == 0:
        raise RuntimeError("eSpeak NG produced a silent utterance")
    loud = np.flatnonzero(np.abs(x) > peak * 10 ** (TRIM_THRESHOLD_DB / 20))
    margin = int(TRIM_MARGIN_SECONDS * SAMPLE_RATE)
    return x[max(loud[0] - margin, 0) : min(loud[-1] + 1 + margin, len(x))]


def to_int16(x):
    if np.max(np.abs(x)) * 32767 > 32767.5:
        raise RuntimeError("clip would saturate 16-bit PCM")
    return np.round(x * 32767).astype("int16")


def parallel_map(fn, jobs, workers):
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: fn(**job), jobs))


def write_split_audio(out_dir, split, clips):
    """Writes the clips back to back; returns (offsets, lengths)."""
    lengths = [len(c) for c in clips]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    audio = np.concatenate(clips) if clips else np.zeros(0, "int16")
    sf.write(
        os.path.join(out_dir, f"{split}.flac"),
        audio,
        SAMPLE_RATE,
        subtype="PCM_16",
        format="FLAC",
        compression_level=1.0,
    )
    return offsets.tolist(), lengths


def write_json(path, obj, compact=False):
    with open(path, "w", encoding="utf-8") as f:
        if compact:
            json.dump(obj, f, separators=(",", ":"), sort_keys=True)
        else:
            json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def split_variants(variants, counts_or_fractions, rng):
    """Shuffles the variants and cuts them into train / validation / test."""
    order = [variants[i] for i in rng.permutation(len(variants))]
    if isinstance(counts_or_fractions, dict):
        counts = [counts_or_fractions[s] for s in SPLITS]
    else:
        n_val = round(counts_or_fractions[1] * len(order))
        n_test = round(counts_or_fractions[2] * len(order))
        counts = [len(order) - n_val - n_test, n_val, n_test]
    if sum(counts) > len(order):
        sys.exit(f"Need {sum(counts)} variants, eSpeak NG has {len(order)}")
    out, start = {}, 0
    for split, n in zip(SPLITS, counts):
        out[split] = sorted(order[start : start + n])
        start += n
    return out


def assign_base_voices(split_variants_, rng):
    """One base voice per variant, cycling through the 8 voices per split."""
    speakers = {}
    for split in SPLITS:
        cycle = []
        out = []
        for variant in split_variants_[split]:
            if not cycle:
                cycle = [BASE_VOICES[i] for i in rng.permutation(len(BASE_VOICES))]
            out.append(f"{cycle.pop()}+{variant}")
        speakers[split] = out
    return speakers


# ----------------------------------------------------------------------------
# AV-Digits


def digits_images():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype("uint8")
    return images, digits.target.astype(int)


def digits_sha256(images):
    return hashlib.sha256(np.ascontiguousarray(images, "uint8").tobytes()).hexdigest()


def _av_clip(voice, word, rate, pitch):
    """Synthesizes a digit word; speeds up until it fits in AV_MAX_SECONDS."""
    for _ in range(8):
        x = synthesize(voice, word, rate, pitch, AV_AMPLITUDE)
        if len(x) <= AV_MAX_SECONDS * SAMPLE_RATE:
            x = x / np.max(np.abs(x)) * 10 ** (AV_PEAK_DBFS / 20)
            return {"audio": to_int16(x), "rate": int(rate)}
        rate = int(round(rate * 1.15))
    raise RuntimeError(f"{voice} {word!r} longer than {AV_MAX_SECONDS} s")


def build_av_digits(engine, workers):
    import sklearn

    rng = np.random.default_rng(AV_SEED)
    variants = list_variants(engine["data_dir"])
    split_vars = split_variants(variants, AV_SPLIT_VARIANTS, rng)
    speakers = assign_base_voices(split_vars, rng)

    # Clips: every speaker says every digit once, with its own rate and pitch.
    jobs, clip_rows = {s: [] for s in SPLITS}, {s: [] for s in SPLITS}
    for split in SPLITS:
        for speaker in speakers[split]:
            for digit, word in enumerate(AV_WORDS):
                rate = int(rng.integers(AV_RATE_RANGE[0], AV_RATE_RANGE[1] + 1))
                pitch = int(rng.integers(AV_PITCH_RANGE[0], AV_PITCH_RANGE[1] + 1))
                jobs[split].append(
                    {"voice": speaker, "word": word, "rate": rate, "pitch": pitch}
                )
                clip_rows[split].append(
                    {"digit": digit, "speaker": speaker, "pitch": pitch}
                )

    # Images: each sklearn digit goes to exactly one split, per class 8:1:1.
    images, targets = digits_images()
    image_split = {s: [] for s in SPLITS}
    for digit in range(10):
        idx = np.flatnonzero(targets == digit)
        idx = idx[rng.permutation(len(idx))]
        n_val = round(AV_IMAGE_FRACTIONS[1] * len(idx))
        n_test = round(AV_IMAGE_FRACTIONS[2] * len(idx))
        n_train = len(idx) - n_val - n_test
        image_split["train"] += idx[:n_train].tolist()
        image_split["validation"] += idx[n_train : n_train + n_val].tolist()
        image_split["test"] += idx[n_train + n_val :].tolist()

    # Pairing: within a split, the images of digit d take the split's clips of
    # digit d in turn (shuffled), so every clip is used equally often (+-1).
    examples = {}
    for split in SPLITS:
        digit_of_clip = np.array([r["digit"] for r in clip_rows[split]])
        pairs = []
        for digit in range(10):
            imgs = [i for i in image_split[split] if targets[i] == digit]
            imgs = [imgs[k] for k in rng.permutation(len(imgs))]
            clips = np.flatnonzero(digit_of_clip == digit)
            clips = clips[rng.permutation(len(clips))]
            pairs += [(img, int(clips[k % len(clips)])) for k, img in enumerate(imgs)]
        pairs = [pairs[k] for k in rng.permutation(len(pairs))]
        examples[split] = {
            "image_index": [int(p[0]) for p in pairs],
            "clip": [p[1] for p in pairs],
        }

    out_dir = os.path.join(DATA_DIR, "av_digits")
    os.makedirs(out_dir, exist_ok=True)
    index = {"clips": {}, "examples": examples}
    durations = []
    for split in SPLITS:
        results = parallel_map(_av_clip, jobs[split], workers)
        offsets, lengths = write_split_audio(
            out_dir, split, [r["audio"] for r in results]
        )
        durations += [n / SAMPLE_RATE for n in lengths]
        index["clips"][split] = {
            "digit": [r["digit"] for r in clip_rows[split]],
            "speaker": [r["speaker"] for r in clip_rows[split]],
            "rate": [r["rate"] for r in results],
            "pitch": [r["pitch"] for r in clip_rows[split]],
            "offset": offsets,
            "length": lengths,
        }
    write_json(os.path.join(out_dir, "index.json"), index, compact=True)

    metadata = {
        "name": "av_digits",
        "description": (
            "AV-MNIST-style audio-visual digits: scikit-learn's 8x8 digit "
            "images (loaded at run time, not stored here) paired with spoken "
            "digit words synthesized by eSpeak NG. Synthetic speech, "
            "speaker-independent splits."
        ),
        "engine": {"espeak_ng": engine["espeak_ng"], "sox": engine["sox"]},
        "sample_rate": SAMPLE_RATE,
        "max_seconds": AV_MAX_SECONDS,
        "class_names": list(AV_WORDS),
        "base_voices": list(BASE_VOICES),
        "variants": variants,
        "excluded_variants": list(EXCLUDED_VARIANTS),
        "split_rule": (
            "speaker = eSpeak NG voice + variant; every variant belongs to "
            "exactly one split (so no speaker, and no variant, of validation "
            "or test occurs in train); each speaker says each digit once; each "
            "image is in exactly one split (8:1:1 per class) and is paired "
            "with a clip of its digit from the same split."
        ),
        "synthesis": {
            "seed": AV_SEED,
            "rate_wpm_range": list(AV_RATE_RANGE),
            "pitch_range": list(AV_PITCH_RANGE),
            "amplitude": AV_AMPLITUDE,
            "rate_rule": "rate x1.15 until the trimmed word fits in max_seconds",
            "trim_threshold_db": TRIM_THRESHOLD_DB,
            "trim_margin_seconds": TRIM_MARGIN_SECONDS,
            "peak_dbfs": AV_PEAK_DBFS,
            "resampling": "sox -D rate -h 16000 (22050 Hz -> 16000 Hz, float)",
        },
        "image_source": {
            "loader": "sklearn.datasets.load_digits",
            "sha256_uint8_images": digits_sha256(images),
            "scikit_learn_version": sklearn.__version__,
        },
        "splits": {
            split: {
                "speakers": speakers[split],
                "num_speakers": len(speakers[split]),
                "num_clips": len(jobs[split]),
                "num_examples": len(examples[split]["clip"]),
            }
            for split in SPLITS
        },
        "mean_clip_seconds": round(float(np.mean(durations)), 4),
        "max_clip_seconds": round(float(np.max(durations)), 4),
    }
    write_json(os.path.join(out_dir, "metadata.json"), metadata)
    return metadata


# ----------------------------------------------------------------------------
# Speech+text


def _st_clip(voice, text, rate, pitch, amplitude, pitch_range):
    x = synthesize(voice, text, rate, pitch, amplitude, pitch_range)
    if len(x) > ST_MAX_SECONDS * SAMPLE_RATE:
        raise RuntimeError(f"{voice} {text!r} longer than {ST_MAX_SECONDS} s")
    return x


def plan_utterances(n, rng):
    """(text emotion, prosody emotion, sentence) of the n utterances of a split.

    The 12 cells come in whole rounds (n must be a multiple of 12). Sentences
    are shared by all splits (like IEMOCAP's scripts). When every sentence of
    a text class can get all of that class's prosody cells equally often
    (e.g. each neutral sentence exactly 3x neutral and once each emotional
    prosody), it does: then a sentence tells nothing about its prosody, and
    a text model cannot memorise sentence -> prosody pairs of the training
    set. Otherwise sentences cycle and prosodies are shuffled. Returns the
    utterances in random order and whether the per-sentence balance held.
    """
    if n % len(ST_CELLS):
        sys.exit(f"a split needs a multiple of {len(ST_CELLS)} utterances, got {n}")
    rounds = n // len(ST_CELLS)
    utterances, balanced = [], True
    for text_class in ST_CLASSES:
        prosodies = [p for t, p in ST_CELLS if t == text_class] * rounds
        pool = [
            SENTENCES[text_class][i]
            for i in rng.permutation(len(SENTENCES[text_class]))
        ]
        per_sentence, rest = divmod(len(prosodies), len(pool))
        cells_per_text = len(prosodies) // rounds
        if rest == 0 and per_sentence % cells_per_text == 0:
            repeat = per_sentence // cells_per_text
            base = [p for t, p in ST_CELLS if t == text_class]
            utterances += [
                (text_class, p, text) for text in pool for p in base * repeat
            ]
        else:
            balanced = False
            prosodies = [prosodies[i] for i in rng.permutation(len(prosodies))]
            utterances += [
                (text_class, p, pool[k % len(pool)]) for k, p in enumerate(prosodies)
            ]
    return [utterances[i] for i in rng.permutation(len(utterances))], balanced


def _calibration_gain(voice):
    n = ST_PROSODY["neutral"]
    x = synthesize(voice, CALIBRATION_TEXT, n["rate"], n["pitch"], n["amplitude"], 100)
    return ST_TARGET_RMS / float(np.sqrt(np.mean(x**2)))


def build_speech_text(engine, workers):
    rng = np.random.default_rng(ST_SEED)
    variants = list_variants(engine["data_dir"])
    settings = {v: variant_settings(engine["data_dir"], v) for v in variants}
    usable = [v for v in variants if prosody_capable(settings[v])]
    split_vars = split_variants(usable, ST_SPLIT_FRACTIONS, rng)
    speakers = assign_base_voices(split_vars, rng)

    rows = {s: [] for s in SPLITS}
    sentence_balanced = {}
    for split in SPLITS:
        plan = plan_utterances(len(speakers[split]) * ST_UTTERANCES_PER_SPEAKER, rng)
        utterances, sentence_balanced[split] = plan
        for k, (text_class, prosody_class, text) in enumerate(utterances):
            speaker = speakers[split][k // ST_UTTERANCES_PER_SPEAKER]
            base = ST_PROSODY[prosody_class]
            j = ST_JITTER
            rate = base["rate"] * rng.uniform(1 - j["rate"], 1 + j["rate"])
            pitch = base["pitch"] + rng.uniform(-j["pitch"], j["pitch"])
            prange = base["range"] * rng.uniform(1 - j["range"], 1 + j["range"])
            amp = base["amplitude"] * rng.uniform(
                1 - j["amplitude"], 1 + j["amplitude"]
            )
            label = text_class if text_class != "neutral" else prosody_class
            rows[split].append(
                {
                    "voice": speaker,
                    "text": text,
                    "rate": int(round(rate)),
                    "pitch": int(round(np.clip(pitch, 0, 99))),
                    "amplitude": int(round(amp)),
                    "pitch_range": int(round(prange)),
                    "text_emotion": text_class,
                    "prosody_emotion": prosody_class,
                    "label": ST_CLASSES.index(label),
                }
            )

    all_speakers = [v for split in SPLITS for v in speakers[split]]
    speaker_gain = dict(
        zip(
            all_speakers,
            parallel_map(
                _calibration_gain, [{"voice": v} for v in all_speakers], workers
            ),
        )
    )
    synth_keys = ("voice", "text", "rate", "pitch", "amplitude", "pitch_range")
    audio = {}
    for split in SPLITS:
        clips = parallel_map(
            _st_clip, [{k: r[k] for k in synth_keys} for r in rows[split]], workers
        )
        audio[split] = [
            x * speaker_gain[r["voice"]] for x, r in zip(clips, rows[split])
        ]
    peak = max(np.max(np.abs(x)) for split in SPLITS for x in audio[split])
    gain = 10 ** (ST_PEAK_DBFS / 20) / peak

    out_dir = os.path.join(DATA_DIR, "speech_text")
    os.makedirs(out_dir, exist_ok=True)
    index = {}
    durations = []
    for split in SPLITS:
        clips = [to_int16(x * gain) for x in audio[split]]
        offsets, lengths = write_split_audio(out_dir, split, clips)
        durations += [n / SAMPLE_RATE for n in lengths]
        columns = {
            key: [r[key] for r in rows[split]]
            for key in rows[split][0]
            if key != "voice"
        }
        columns["speaker"] = [r["voice"] for r in rows[split]]
        columns["offset"] = offsets
        columns["length"] = lengths
        index[split] = columns
    write_json(os.path.join(out_dir, "index.json"), index, compact=True)

    metadata = {
        "name": "speech_text",
        "description": (
            "Synthetic speech+text emotion corpus for demos and tests: short "
            "English sentences (written for this corpus) spoken by eSpeak NG "
            "with rule-based emotional prosody. Not evidence about human "
            "emotion."
        ),
        "engine": {"espeak_ng": engine["espeak_ng"], "sox": engine["sox"]},
        "sample_rate": SAMPLE_RATE,
        "max_seconds": ST_MAX_SECONDS,
        "class_names": list(ST_CLASSES),
        "label_rule": ST_LABEL_RULE,
        "cells": [list(c) for c in ST_CELLS],
        "prosody": {
            "reference": (
                "Murray & Arnott (1993), J. Acoust. Soc. Am. 93(2), summary "
                "table: directions of rate, pitch average, pitch range and "
                "intensity changes; magnitudes chosen for this corpus."
            ),
            "units": {
                "rate": "espeak-ng -s, words per minute",
                "pitch": "espeak-ng -p, 0..99 (50 = voice default)",
                "range": 'SSML <prosody range="N%">, 100 = voice default',
                "amplitude": "espeak-ng -a (corpus-wide gain applied after)",
            },
            "table": ST_PROSODY,
            "jitter": ST_JITTER,
            "speaker_target_rms": ST_TARGET_RMS,
            "calibration_text": CALIBRATION_TEXT,
            "speaker_gain": {v: round(g, 4) for v, g in speaker_gain.items()},
            "corpus_gain": round(float(gain), 6),
            "peak_dbfs": ST_PEAK_DBFS,
        },
        "base_voices": list(BASE_VOICES),
        "variants_used": usable,
        "variants_left_out": {
            v: settings[v] for v in variants if not prosody_capable(settings[v])
        },
        "variant_rule": (
            "a variant is used if its pitch range (hi - lo in its `pitch` "
            "line) is at least 20 Hz, its `voicing` is at least 25 and its "
            "`intonation` is not <= 0; others cannot carry pitch prosody."
        ),
        "split_rule": (
            "speaker = eSpeak NG voice + variant; every variant belongs to "
            "exactly one split (60:20:20 of the usable variants), so no "
            "validation or test speaker occurs in train. Sentences are shared "
            "by all splits; where the counts allow (see sentence_balanced), "
            "every sentence gets each prosody cell of its text class equally "
            "often, so a sentence says nothing about its prosody."
        ),
        "sentences": {c: list(SENTENCES[c]) for c in ST_CLASSES},
        "synthesis": {
            "seed": ST_SEED,
            "utterances_per_speaker": ST_UTTERANCES_PER_SPEAKER,
            "trim_threshold_db": TRIM_THRESHOLD_DB,
            "trim_margin_seconds": TRIM_MARGIN_SECONDS,
            "resampling": "sox -D rate -h 16000 (22050 Hz -> 16000 Hz, float)",
        },
        "splits": {
            split: {
                "speakers": speakers[split],
                "num_speakers": len(speakers[split]),
                "num_examples": len(rows[split]),
                "sentence_balanced": sentence_balanced[split],
                "label_counts": {
                    c: sum(r["label"] == i for r in rows[split])
                    for i, c in enumerate(ST_CLASSES)
                },
            }
            for split in SPLITS
        },
        "mean_clip_seconds": round(float(np.mean(durations)), 4),
        "max_clip_seconds": round(float(np.max(durations)), 4),
    }
    write_json(os.path.join(out_dir, "metadata.json"), metadata)
    return metadata


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "datasets",
        nargs="*",
        help="av_digits and/or speech_text (default: both)",
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    engine = engine_info()
    print(f"eSpeak NG {engine['espeak_ng']}, SoX {engine['sox']}")
    builders = {"av_digits": build_av_digits, "speech_text": build_speech_text}
    unknown = sorted(set(args.datasets) - set(builders))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; expected {sorted(builders)}")
    for name in args.datasets or list(builders):
        start = time.time()
        meta = builders[name](engine, args.workers)
        counts = {s: meta["splits"][s]["num_examples"] for s in SPLITS}
        print(f"{name}: {counts} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
