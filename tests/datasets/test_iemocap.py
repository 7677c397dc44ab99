import os

import numpy as np
import soundfile as sf

from mmfusion_keras.datasets.iemocap import iemocap_session_folds
from mmfusion_keras.datasets.iemocap import load_iemocap
from mmfusion_keras.datasets.iemocap import parse_emo_evaluation
from mmfusion_keras.datasets.splits import stratified_split
from mmfusion_keras.testing.conformance import assert_raises_with_message

# (utterance suffix, code, transcript, duration in seconds)
UTTERANCES = {
    1: [
        ("F000", "neu", "Excuse me.", 0.30),
        ("M000", "ang", "Do you have your forms?", 0.25),
        ("F001", "hap", "Yes, I do!", 0.20),
        ("M001", "exc", "That's great news.", 0.40),
        ("F002", "fru", "I waited for hours.", 0.20),
        ("M002", "xxx", "[LAUGHTER]", 0.10),
        ("F003", "sad", "It's gone.", 0.15),
    ],
    2: [
        ("F000", "sad", "I miss her.", 0.20),
        ("M000", "neu", "Okay.", 0.10),
        ("F001", "hap", "Wonderful!", 0.20),
        ("M001", "sur", "Really?", 0.10),
        ("F002", "ang", "Stop it.", 0.20),
    ],
}


def _dialog(session):
    return f"Ses0{session}F_impro01"


def write_iemocap(root, utterances=UTTERANCES, rate=16000):
    """Writes a tiny IEMOCAP release in the real folder layout."""
    for session, rows in utterances.items():
        dialog = _dialog(session)
        base = os.path.join(root, f"Session{session}")
        eval_dir = os.path.join(base, "dialog", "EmoEvaluation")
        trans_dir = os.path.join(base, "dialog", "transcriptions")
        wav_dir = os.path.join(base, "sentences", "wav", dialog)
        for d in (eval_dir, trans_dir, wav_dir, os.path.join(eval_dir, "Categorical")):
            os.makedirs(d, exist_ok=True)
        eval_lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        trans_lines = []
        t = 1.0
        for k, (suffix, code, words, seconds) in enumerate(rows):
            utt = f"{dialog}_{suffix}"
            start, end = t, t + seconds
            t = end + 0.5
            eval_lines += [
                f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[2.5000, 3.0000, 3.5000]",
                "C-E2:\tNeutral;\t()",
                "C-E3:\tNeutral;\t()",
                "A-E3:\tval 3; act 2; dom  2;\t()",
                "",
            ]
            trans_lines.append(f"{utt} [{start:08.4f}-{end:08.4f}]: {words}")
            if k == 1:
                trans_lines.append("M: [BREATHING]")
            tone = 0.3 * np.sin(
                2 * np.pi * (200 + 50 * k) * np.arange(int(rate * seconds)) / rate
            )
            sf.write(os.path.join(wav_dir, f"{utt}.wav"), tone, rate, subtype="PCM_16")
        with open(os.path.join(eval_dir, f"{dialog}.txt"), "w") as f:
            f.write("\n".join(eval_lines) + "\n")
        # macOS resource-fork junk that ships in some copies of the release.
        with open(os.path.join(eval_dir, f"._{dialog}.txt"), "wb") as f:
            f.write(b"\x00\x05\x16\x07junk")
        with open(os.path.join(trans_dir, f"{dialog}.txt"), "w") as f:
            f.write("\n".join(trans_lines) + "\n")
    return root


def test_parse_emo_evaluation(tmp_path):
    root = write_iemocap(str(tmp_path))
    path = os.path.join(
        root, "Session1", "dialog", "EmoEvaluation", "Ses01F_impro01.txt"
    )
    records = parse_emo_evaluation(path)
    assert [r["code"] for r in records] == [
        "neu",
        "ang",
        "hap",
        "exc",
        "fru",
        "xxx",
        "sad",
    ]
    assert records[0]["id"] == "Ses01F_impro01_F000"
    assert records[0]["start"] == 1.0 and abs(records[0]["end"] - 1.3) < 1e-9
    assert records[0]["vad"] == [2.5, 3.0, 3.5]


def test_load_four_class_protocol(tmp_path):
    root = write_iemocap(str(tmp_path))
    ds = load_iemocap(root, sessions=(1, 2), max_seconds=0.25)
    assert ds.class_names == ("anger", "happiness", "neutral", "sadness")
    # fru / xxx / sur dropped; hap and exc both happiness.
    expected_ids = [
        "Ses01F_impro01_F000",
        "Ses01F_impro01_M000",
        "Ses01F_impro01_F001",
        "Ses01F_impro01_M001",
        "Ses01F_impro01_F003",
        "Ses02F_impro01_F000",
        "Ses02F_impro01_M000",
        "Ses02F_impro01_F001",
        "Ses02F_impro01_F002",
    ]
    assert ds.metadata["id"].tolist() == expected_ids
    names = [ds.class_names[i] for i in ds.labels]
    assert names == [
        "neutral",
        "anger",
        "happiness",
        "happiness",
        "sadness",
        "sadness",
        "neutral",
        "happiness",
        "anger",
    ]
    assert ds.metadata["code"].tolist()[3] == "exc"
    assert ds.inputs["text"].tolist()[:2] == ["Excuse me.", "Do you have your forms?"]
    assert (
        ds.inputs["audio"].shape == (9, 4000) and ds.inputs["audio"].dtype == np.float32
    )
    # 0.30 s and 0.40 s clips were cropped to 0.25 s; a 0.20 s clip was padded.
    assert ds.metadata["cropped"].tolist()[:4] == [True, False, False, True]
    assert ds.metadata["audio_length"].tolist()[2] == 3200
    assert np.all(ds.inputs["audio"][2, 3200:] == 0)
    assert np.abs(ds.inputs["audio"][2, :3200]).max() > 0.25
    assert ds.metadata["session"].tolist() == [1] * 5 + [2] * 4
    assert ds.metadata["speaker"].tolist()[:2] == ["Ses01F", "Ses01M"]
    np.testing.assert_allclose(ds.metadata["vad"][0], [2.5, 3.0, 3.5])
    assert ds.info["num_cropped"] == int(ds.metadata["cropped"].sum())

    folds = iemocap_session_folds(ds)
    assert [f["held_out"] for f in folds] == [1, 2]
    assert folds[1]["test"].tolist() == [5, 6, 7, 8]
    assert folds[1]["train"].tolist() == [0, 1, 2, 3, 4]

    no_audio = load_iemocap(root, sessions=(1,), load_waveforms=False)
    assert "audio" not in no_audio.inputs and len(no_audio) == 5
    assert no_audio.metadata["audio_path"][0].endswith(
        os.path.join("sentences", "wav", "Ses01F_impro01", "Ses01F_impro01_F000.wav")
    )


def test_custom_label_map(tmp_path):
    root = write_iemocap(str(tmp_path))
    ds = load_iemocap(
        root,
        sessions=(1,),
        label_map={"neu": "neutral", "fru": "frustration"},
        max_seconds=None,
    )
    assert ds.class_names == ("frustration", "neutral")
    assert ds.labels.tolist() == [1, 0]
    assert ds.inputs["audio"].shape == (2, 4800)  # padded to the longest clip


def test_stratified_split_is_seeded_and_stratified():
    labels = np.repeat([0, 1, 2, 3], [40, 30, 20, 10])
    a = stratified_split(labels, seed=3)
    b = stratified_split(labels, seed=3)
    c = stratified_split(labels, seed=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["test"], c["test"])
    assert [len(a[k]) for k in ("train", "validation", "test")] == [80, 10, 10]
    together = np.sort(np.concatenate(list(a.values())))
    np.testing.assert_array_equal(together, np.arange(100))
    assert np.bincount(labels[a["test"]]).tolist() == [4, 3, 2, 1]
    assert np.bincount(labels[a["train"]]).tolist() == [32, 24, 16, 8]
    assert_raises_with_message(
        lambda: stratified_split(labels, fractions=(0.8, 0.1, 0.2)),
        r"summing to 1.*\(0\.8, 0\.1, 0\.2\)",
    )
    assert_raises_with_message(
        lambda: stratified_split([0, 0, 0, 0, 1, 1, 1, 1, 1, 2]),
        r"could not keep the class proportions.*Class counts: \{0: 4, 1: 5, 2: 1\}",
    )


def test_errors_name_the_file(tmp_path):
    root = str(tmp_path / "IEMOCAP_full_release")
    assert_raises_with_message(
        lambda: load_iemocap(root),
        r"IEMOCAP root directory not found: '.*IEMOCAP_full_release'",
        FileNotFoundError,
    )
    write_iemocap(root)
    assert_raises_with_message(
        lambda: load_iemocap(root, sessions=(1, 3)),
        r"session directory not found: '.*Session3'",
        FileNotFoundError,
    )
    assert_raises_with_message(
        lambda: load_iemocap(root, sessions=(6,)), r"integers in 1\.\.5.*\[6\]"
    )
    assert_raises_with_message(
        lambda: load_iemocap(root, label_map={"joy": "happiness"}),
        r"codes that IEMOCAP does not use: \['joy'\]",
    )

    eval_path = os.path.join(
        root, "Session2", "dialog", "EmoEvaluation", "Ses02F_impro01.txt"
    )
    original = open(eval_path).read()
    with open(eval_path, "w") as f:
        f.write(original.replace("\tsur\t", "\tjoy\t"))
    assert_raises_with_message(
        lambda: load_iemocap(root, sessions=(2,)),
        r"Unknown IEMOCAP emotion label 'joy' for Ses02F_impro01_M001 on line \d+ of "
        r"'.*Ses02F_impro01\.txt'",
    )
    with open(eval_path, "w") as f:
        f.write(original.replace("[2.5000, 3.0000, 3.5000]", "[2.5, oops]", 1))
    assert_raises_with_message(
        lambda: load_iemocap(root, sessions=(2,)),
        r"Malformed IEMOCAP EmoEvaluation line 3 in '.*Ses02F_impro01\.txt'",
    )
    with open(eval_path, "w") as f:
        f.write(original)

    wav = os.path.join(
        root,
        "Session2",
        "sentences",
        "wav",
        "Ses02F_impro01",
        "Ses02F_impro01_M000.wav",
    )
    with open(wav, "wb") as f:
        f.write(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    assert_raises_with_message(
        lambda: load_iemocap(root, sessions=(2,)),
        r"Cannot decode audio file '.*Ses02F_impro01_M000\.wav'",
    )
    os.remove(wav)
    assert_raises_with_message(
        lambda: load_iemocap(root, sessions=(2,)),
        r"audio file not found: '.*Ses02F_impro01_M000\.wav' \(utterance Ses02F_impro01_M000",
        FileNotFoundError,
    )

    trans = os.path.join(
        root, "Session1", "dialog", "transcriptions", "Ses01F_impro01.txt"
    )
    lines = open(trans).read().splitlines()
    with open(trans, "w") as f:
        f.write("\n".join(line for line in lines if "_F001" not in line))
    assert_raises_with_message(
        lambda: load_iemocap(root, sessions=(1,)),
        r"No transcript for utterance Ses01F_impro01_F001 in '.*Ses01F_impro01\.txt'",
    )
    os.remove(trans)
    assert_raises_with_message(
        lambda: load_iemocap(root, sessions=(1,)),
        r"transcription file not found: '.*transcriptions.*Ses01F_impro01\.txt'",
        FileNotFoundError,
    )
