"""IEMOCAP loader: utterance audio + transcript, 4-class emotion protocol.

Reads the layout of the IEMOCAP full release (the user brings the data;
nothing is downloaded)::

    <root>/Session1 .. Session5/
        dialog/EmoEvaluation/<dialog>.txt     consensus labels, one file per dialog
        dialog/transcriptions/<dialog>.txt    "<utterance> [start-end]: text"
        sentences/wav/<dialog>/<utterance>.wav

An EmoEvaluation file has one summary line per utterance, tab separated::

    [6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]

followed by per-annotator lines (`C-E2: ...`, `A-E3: ...`) that are ignored.

The common 4-class protocol keeps anger (`ang`), happiness (`hap` and
`exc` merged), neutral (`neu`) and sadness (`sad`), and drops the other
categories (`fru`, `sur`, `fea`, `dis`, `oth`, `xxx`). It gives 5531
utterances on the full release.
"""

import glob
import os
import re

import numpy as np

from mmfusion_keras.datasets.audio import load_audio
from mmfusion_keras.datasets.multimodal_dataset import MultimodalDataset
from mmfusion_keras.datasets.splits import leave_one_group_out

#: Every category code that appears in IEMOCAP's EmoEvaluation files.
IEMOCAP_CODES = (
    "ang",
    "hap",
    "exc",
    "neu",
    "sad",
    "fru",
    "sur",
    "fea",
    "dis",
    "oth",
    "xxx",
)

#: The 4-class protocol: code -> class name (codes not listed are dropped).
IEMOCAP_4_CLASS = {
    "ang": "anger",
    "hap": "happiness",
    "exc": "happiness",
    "neu": "neutral",
    "sad": "sadness",
}

_NUMBER = r"[-+]?\d+(?:\.\d*)?"
_EVAL_LINE = re.compile(
    rf"^\[\s*({_NUMBER})\s*-\s*({_NUMBER})\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]\s*$"
)
_TRANSCRIPT_LINE = re.compile(r"^(Ses\S+)\s+\[[^\]]*\]\s*:\s?(.*)$")


def parse_emo_evaluation(path, known_codes=IEMOCAP_CODES):
    """Parses one EmoEvaluation file into a list of utterance records.

    Args:
        path: path of `Session*/dialog/EmoEvaluation/<dialog>.txt`.
        known_codes: category codes accepted; any other code raises.

    Returns:
        A list of dicts with keys `id`, `start`, `end` (seconds), `code`
        (e.g. `"exc"`) and `vad` (valence, activation, dominance floats),
        in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a summary line is malformed or carries an unknown code
            (the message names the file and line number).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IEMOCAP EmoEvaluation file not found: '{path}'")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"Cannot read IEMOCAP EmoEvaluation file '{path}': {e}") from e
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith("["):
            continue  # header ('%'), blank and per-annotator lines
        match = _EVAL_LINE.match(line.strip())
        if match is None:
            raise ValueError(
                f"Malformed IEMOCAP EmoEvaluation line {number} in '{path}': "
                f"{line!r}. Expected '[start - end]<TAB>utterance_id<TAB>code"
                "<TAB>[V, A, D]'."
            )
        start, end, utterance, code, vad = match.groups()
        if code not in known_codes:
            raise ValueError(
                f"Unknown IEMOCAP emotion label {code!r} for {utterance} on line "
                f"{number} of '{path}'. Expected one of {list(known_codes)}."
            )
        try:
            vad = [float(v) for v in vad.split(",")]
        except ValueError:
            vad = []
        if len(vad) != 3:
            raise ValueError(
                f"Malformed IEMOCAP EmoEvaluation line {number} in '{path}': the "
                f"[V, A, D] part should hold three numbers. Received: {line!r}"
            )
        records.append(
            {
                "id": utterance,
                "start": float(start),
                "end": float(end),
                "code": code,
                "vad": vad,
            }
        )
    return records


def parse_transcription(path):
    """Reads `transcriptions/<dialog>.txt` into `{utterance_id: text}`.

    Lines that are not `<utterance> [start-end]: text` (e.g. `M: [BREATHING]`
    fragments) are skipped.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IEMOCAP transcription file not found: '{path}'")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"Cannot read IEMOCAP transcription file '{path}': {e}") from e
    texts = {}
    for line in lines:
        match = _TRANSCRIPT_LINE.match(line.strip())
        if match:
            texts[match.group(1)] = match.group(2).strip()
    return texts


def _session_dirs(root, sessions):
    if not os.path.isdir(root):
        raise FileNotFoundError(f"IEMOCAP root directory not found: '{root}'")
    dirs = []
    for session in sessions:
        if int(session) != session or not 1 <= session <= 5:
            raise ValueError(
                "load_iemocap expected `sessions` to hold integers in 1..5. "
                f"Received: sessions={list(sessions)}"
            )
        path = os.path.join(root, f"Session{session}")
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"IEMOCAP session directory not found: '{path}'. Expected the "
                "release layout <root>/Session1..Session5."
            )
        dirs.append((int(session), path))
    return dirs


def load_iemocap(
    root,
    sessions=(1, 2, 3, 4, 5),
    label_map=None,
    class_names=None,
    sample_rate=16000,
    max_seconds=8.0,
    load_waveforms=True,
):
    """Loads IEMOCAP utterances (audio + transcript) with emotion labels.

    Args:
        root: the folder holding `Session1` ... `Session5`
            (`IEMOCAP_full_release`).
        sessions: which sessions to read.
        label_map: dict from EmoEvaluation code to class name; codes not in
            it are dropped. Defaults to the 4-class protocol
            `IEMOCAP_4_CLASS` (hap + exc -> happiness).
        class_names: class order; defaults to the sorted distinct values of
            `label_map`.
        sample_rate: audio sample rate after resampling (Hz).
        max_seconds: audio is cropped / zero-padded to
            `round(max_seconds * sample_rate)` samples. `None` pads to the
            longest utterance.
        load_waveforms: if `False`, audio is not decoded (only the paths are
            returned in `metadata["audio_path"]`), e.g. to stream it later.

    Returns:
        A `MultimodalDataset` with
        `inputs = {"audio": float32 (N, samples), "text": object (N,)}` (no
        `"audio"` if `load_waveforms=False`), int32 `labels`, `class_names`,
        and `metadata` arrays `id`, `session` (int), `dialog`, `speaker`
        (e.g. `"Ses01F"`), `code` (raw category), `vad` (N, 3), `start`,
        `end`, `audio_path`, `audio_length` (real samples before padding)
        and `cropped`.

    Raises:
        FileNotFoundError: the root, a session folder, an EmoEvaluation
            folder, a transcription file or an utterance's WAV is missing.
        ValueError: a malformed line, an unknown emotion code, an utterance
            without transcript, or an unreadable WAV (named in the message).
    """
    label_map = dict(IEMOCAP_4_CLASS if label_map is None else label_map)
    unknown = sorted(set(label_map) - set(IEMOCAP_CODES))
    if unknown:
        raise ValueError(
            f"load_iemocap: `label_map` has codes that IEMOCAP does not use: "
            f"{unknown}. Expected codes among {list(IEMOCAP_CODES)}."
        )
    if class_names is None:
        class_names = sorted(set(label_map.values()))
    class_names = tuple(class_names)
    missing = sorted(set(label_map.values()) - set(class_names))
    if missing:
        raise ValueError(
            f"load_iemocap: `label_map` maps to classes {missing} that are not in "
            f"class_names={list(class_names)}."
        )
    max_samples = None if max_seconds is None else int(round(max_seconds * sample_rate))

    rows = []
    for session, session_dir in _session_dirs(root, sessions):
        eval_dir = os.path.join(session_dir, "dialog", "EmoEvaluation")
        if not os.path.isdir(eval_dir):
            raise FileNotFoundError(
                f"IEMOCAP EmoEvaluation directory not found: '{eval_dir}'"
            )
        eval_files = sorted(
            p
            for p in glob.glob(os.path.join(eval_dir, "*.txt"))
            if not os.path.basename(p).startswith("._")  # macOS resource forks
        )
        if not eval_files:
            raise FileNotFoundError(
                f"No EmoEvaluation .txt files in '{eval_dir}'. Expected one file "
                "per dialog, e.g. Ses01F_impro01.txt."
            )
        for eval_path in eval_files:
            dialog = os.path.splitext(os.path.basename(eval_path))[0]
            records = [
                r for r in parse_emo_evaluation(eval_path) if r["code"] in label_map
            ]
            if not records:
                continue
            transcript_path = os.path.join(
                session_dir, "dialog", "transcriptions", f"{dialog}.txt"
            )
            texts = parse_transcription(transcript_path)
            for record in records:
                if record["id"] not in texts:
                    raise ValueError(
                        f"No transcript for utterance {record['id']} in "
                        f"'{transcript_path}' (it is labelled in '{eval_path}')."
                    )
                wav = os.path.join(
                    session_dir, "sentences", "wav", dialog, f"{record['id']}.wav"
                )
                if not os.path.isfile(wav):
                    raise FileNotFoundError(
                        f"IEMOCAP audio file not found: '{wav}' (utterance "
                        f"{record['id']} labelled in '{eval_path}')."
                    )
                gender = record["id"].rsplit("_", 1)[-1][:1]
                rows.append(
                    {
                        **record,
                        "session": session,
                        "dialog": dialog,
                        "speaker": f"Ses{session:02d}{gender}",
                        "text": texts[record["id"]],
                        "audio_path": wav,
                        "label": class_names.index(label_map[record["code"]]),
                    }
                )
    if not rows:
        raise ValueError(
            f"load_iemocap found no utterance with a code in {sorted(label_map)} "
            f"under '{root}' (sessions {list(sessions)})."
        )

    inputs = {}
    lengths = np.zeros(len(rows), "int64")
    cropped = np.zeros(len(rows), bool)
    if load_waveforms:
        waves = []
        for i, row in enumerate(rows):
            wave, info = load_audio(
                row["audio_path"], sample_rate=sample_rate, max_samples=max_samples
            )
            waves.append(wave)
            lengths[i] = info.num_samples
            cropped[i] = info.cropped
        length = max_samples or max(len(w) for w in waves)
        audio = np.zeros((len(rows), length), "float32")
        for i, wave in enumerate(waves):
            audio[i, : len(wave)] = wave
        inputs["audio"] = audio
    inputs["text"] = np.array([r["text"] for r in rows], dtype=object)

    def column(key, dtype=None):
        return np.array([r[key] for r in rows], dtype=dtype)

    return MultimodalDataset(
        inputs=inputs,
        labels=column("label", "int32"),
        class_names=class_names,
        metadata={
            "id": column("id"),
            "session": column("session", "int32"),
            "dialog": column("dialog"),
            "speaker": column("speaker"),
            "code": column("code"),
            "vad": column("vad", "float32"),
            "start": column("start", "float32"),
            "end": column("end", "float32"),
            "audio_path": column("audio_path"),
            "audio_length": lengths,
            "cropped": cropped,
        },
        info={
            "dataset": "IEMOCAP",
            "sample_rate": sample_rate if load_waveforms else None,
            "max_samples": max_samples,
            "label_map": label_map,
            "num_cropped": int(cropped.sum()),
        },
    )


def iemocap_session_folds(dataset):
    """Leave-one-session-out folds of a loaded IEMOCAP dataset.

    Returns:
        One dict per session `{"held_out": session, "train": idx,
        "test": idx}` (see `leave_one_group_out`). Both speakers of the
        held-out session are unseen in training (speaker independent).
    """
    return leave_one_group_out(dataset.metadata["session"])
