"""Tiny corpora written in the real release formats (tests, smoke runs).

`mmfusion reproduce` reads the corpora from the layout of their official
releases. These writers produce a few seconds of synthetic data in exactly
those layouts, so that every recipe can be run end to end (`--quick`)
without the real data:

* `write_iemocap_release`: `Session1..5/dialog/EmoEvaluation/*.txt`,
  `dialog/transcriptions/*.txt`, `sentences/wav/<dialog>/*.wav`;
* `write_cebs_release`: WFDB records `b001.hea/.dat`, `m001`, `p001`, ...
  and a `RECORDS` file (needs `wfdb`);
* `write_mosei_release`: the CMU-MultimodalSDK computational sequences
  (`CMU_MOSEI_*.csd`, HDF5, needs `h5py`);
* `write_avmnist_manifests`: handwritten-digit PNGs and spoken-digit WAVs
  with `images/manifest.csv` and `audio/manifest.csv` (the layout of the
  `early-fusion-avmnist` and `mfas-avmnist` recipes).

The signals carry their label (a class-dependent tone, offset or feature
value) so that a short run can learn something, but no number measured on
them says anything about the papers.
"""

import json
import os

import numpy as np

# IEMOCAP codes written per speaker, in order: every 4-class code (with
# `exc`, merged into happiness) and three codes the protocol drops.
IEMOCAP_CODE_CYCLE = ("ang", "hap", "exc", "neu", "sad", "fru", "xxx", "sur")
_WORDS = {
    "ang": "stop it now i am angry",
    "hap": "that is wonderful news",
    "exc": "wow this is so great",
    "neu": "the meeting is at noon",
    "sad": "i miss her so much",
    "fru": "i waited for hours",
    "xxx": "laughter",
    "sur": "really is that true",
}
_TONE = {"ang": 900.0, "hap": 600.0, "exc": 650.0, "neu": 300.0, "sad": 150.0}


def write_iemocap_release(
    root,
    sessions=(1, 2, 3, 4, 5),
    utterances_per_speaker=8,
    seconds=0.3,
    sample_rate=16000,
    seed=0,
):
    """Writes a tiny IEMOCAP full release (two speakers per session).

    Speaker `F` and `M` of session `s` each say `utterances_per_speaker`
    utterances whose codes cycle through `IEMOCAP_CODE_CYCLE` (so the
    4-class protocol keeps 5 of every 8, with `exc` merged into happiness).

    Returns:
        `root`.
    """
    import soundfile as sf

    rng = np.random.default_rng(seed)
    for session in sessions:
        base = os.path.join(root, f"Session{session}")
        dialog = f"Ses{session:02d}F_impro01"
        eval_dir = os.path.join(base, "dialog", "EmoEvaluation")
        trans_dir = os.path.join(base, "dialog", "transcriptions")
        wav_dir = os.path.join(base, "sentences", "wav", dialog)
        for d in (eval_dir, trans_dir, wav_dir):
            os.makedirs(d, exist_ok=True)
        eval_lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        trans_lines = []
        t = 1.0
        for k in range(utterances_per_speaker):
            for gender in "FM":
                code = IEMOCAP_CODE_CYCLE[k % len(IEMOCAP_CODE_CYCLE)]
                utt = f"{dialog}_{gender}{k:03d}"
                start, end = t, t + seconds
                t = end + 0.5
                eval_lines += [
                    f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t"
                    "[2.5000, 3.0000, 3.5000]",
                    "C-E2:\tNeutral;\t()",
                    "A-E3:\tval 3; act 2; dom  2;\t()",
                    "",
                ]
                trans_lines.append(f"{utt} [{start:08.4f}-{end:08.4f}]: {_WORDS[code]}")
                n = int(round(seconds * sample_rate))
                freq = _TONE.get(code, 450.0)
                wave = 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / sample_rate)
                wave += 0.02 * rng.standard_normal(n)
                sf.write(
                    os.path.join(wav_dir, f"{utt}.wav"),
                    wave,
                    sample_rate,
                    subtype="PCM_16",
                )
        with open(os.path.join(eval_dir, f"{dialog}.txt"), "w") as f:
            f.write("\n".join(eval_lines) + "\n")
        with open(os.path.join(trans_dir, f"{dialog}.txt"), "w") as f:
            f.write("\n".join(trans_lines) + "\n")
    return root


def write_cebs_release(
    root, subjects=range(1, 21), samples=(600, 900, 600), sample_rate=5000, seed=0
):
    """Writes tiny PhysioNet CEBS records `b0NN`, `m0NN`, `p0NN` + `RECORDS`.

    Four channels (ECG I, ECG II, respiration, SCG) at `sample_rate`, 16-bit
    WFDB format; `samples` gives the basal, music and post-music lengths.

    Returns:
        `root`.
    """
    import wfdb

    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for subject in subjects:
        for k, (state, n) in enumerate(zip("bmp", samples)):
            t = np.arange(n) / sample_rate
            signal = np.stack(
                [
                    np.sin(2 * np.pi * (20 + 15 * k) * t),
                    np.cos(2 * np.pi * 20 * t) + 0.3 * k,
                    0.5 * np.sin(2 * np.pi * 5 * t) - 0.2 * k,
                    0.1 * rng.standard_normal(n) + 0.2 * k,
                ],
                axis=1,
            )
            name = f"{state}{subject:03d}"
            wfdb.wrsamp(
                name,
                fs=sample_rate,
                units=["mV"] * 4,
                sig_name=["I", "II", "RESP", "SCG"],
                p_signal=signal,
                fmt=["16"] * 4,
                write_dir=root,
            )
            names.append(name)
    with open(os.path.join(root, "RECORDS"), "w") as f:
        f.write("\n".join(names) + "\n")
    return root


def _write_csd(path, root_name, data, metadata=None):
    import h5py

    with h5py.File(path, "w") as f:
        group = f.create_group(root_name)
        data_group = group.create_group("data")
        for video, (features, intervals) in data.items():
            g = data_group.create_group(video)
            g.create_dataset("features", data=features)
            g.create_dataset("intervals", data=np.asarray(intervals, "float64"))
        meta = group.create_group("metadata")
        for key, value in (metadata or {"root name": root_name}).items():
            ds = meta.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
            ds[0] = json.dumps(value)
    return path


def write_mosei_release(
    root,
    videos=24,
    segments_per_video=2,
    words_per_segment=4,
    glove_dim=300,
    covarep_dim=74,
    facet_dim=35,
    seed=0,
):
    """Writes tiny CMU-MOSEI computational sequences (words, GloVe, COVAREP,
    FACET 4.2, labels) in the CMU-MultimodalSDK HDF5 layout.

    Each segment's sentiment is drawn in [-3, 3] and its six emotion
    intensities in {0, 1, 2, 3}; the features carry the sentiment's sign.

    Returns:
        `root`.
    """
    from mmfusion_keras.datasets.cmu_mosei import MOSEI_FILES

    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    words, glove, covarep, facet, labels = {}, {}, {}, {}, {}
    for v in range(videos):
        video = f"vid{v:03d}"
        n = segments_per_video * words_per_segment
        word_iv = np.stack([np.arange(n), np.arange(n) + 1], axis=1).astype(float)
        rows, seg_iv, signs = [], [], []
        for s in range(segments_per_video):
            sentiment = float(rng.uniform(-3, 3))
            emotions = rng.integers(0, 4, size=6).astype("float32")
            rows.append([sentiment, *emotions])
            seg_iv.append([s * words_per_segment, (s + 1) * words_per_segment])
            signs += [np.sign(sentiment) or 1.0] * words_per_segment
        signs = np.array(signs, "float32")[:, None]
        tokens = [b"good" if x > 0 else b"bad" for x in signs[:, 0]]
        words[video] = (np.array([[t] for t in tokens]), word_iv)
        glove[video] = (
            (signs + 0.1 * rng.standard_normal((n, glove_dim))).astype("float32"),
            word_iv,
        )
        k = np.arange(2 * n)  # COVAREP at two frames per word
        covarep[video] = (
            (
                np.repeat(signs, 2, axis=0)
                + 0.1 * rng.standard_normal((2 * n, covarep_dim))
            ).astype("float32"),
            np.stack([k * 0.5, k * 0.5 + 0.5], axis=1),
        )
        facet[video] = (
            (signs + 0.1 * rng.standard_normal((n, facet_dim))).astype("float32"),
            word_iv,
        )
        labels[video] = (np.array(rows, "float32"), np.array(seg_iv, float))
    _write_csd(os.path.join(root, MOSEI_FILES["words"]), "words", words)
    _write_csd(os.path.join(root, MOSEI_FILES["text"]), "glove_vectors", glove)
    _write_csd(os.path.join(root, MOSEI_FILES["audio"]), "COVAREP", covarep)
    _write_csd(os.path.join(root, MOSEI_FILES["vision"]), "FACET 4.2", facet)
    _write_csd(os.path.join(root, MOSEI_FILES["labels"]), "All Labels", labels)
    return root


def write_avmnist_manifests(
    root,
    images_per_digit=6,
    clips_per_digit=6,
    image_size=28,
    sample_rate=8000,
    seconds=(0.06, 0.12),
    split_column=False,
    seed=0,
):
    """Writes a tiny AV-MNIST-style corpus: PNG digits + WAV spoken digits.

    Layout (what `early-fusion-avmnist` and `mfas-avmnist` read)::

        root/images/manifest.csv   label,image[,split]   images/d3_002.png ...
        root/audio/manifest.csv    label,audio[,split]   clips/3_spk1_0.wav ...

    An image of digit `d` is a grey bar at a digit-dependent position plus
    noise (8-bit grayscale PNG, `image_size` square); a clip of `d` is a
    tone of `200 + 150 d` Hz whose length varies between `seconds` (16-bit
    PCM WAV at `sample_rate`, FSDD's file naming `<digit>_<speaker>_<n>`).
    With `split_column`, each manifest gets a `split` column (the first
    two files of a digit in validation and test, the rest in train).

    Returns:
        `root`.
    """
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(seed)
    image_dir = os.path.join(root, "images", "digits")
    clip_dir = os.path.join(root, "audio", "clips")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(clip_dir, exist_ok=True)

    def split_of(k):
        return "validation" if k == 0 else "test" if k == 1 else "train"

    image_rows, clip_rows = [], []
    for digit in range(10):
        for k in range(images_per_digit):
            pixels = rng.uniform(0, 40, (image_size, image_size))
            col = 1 + digit * (image_size - 4) // 10
            pixels[2:-2, col : col + 3] = 230
            name = f"d{digit}_{k:03d}.png"
            Image.fromarray(pixels.astype("uint8"), mode="L").save(
                os.path.join(image_dir, name)
            )
            image_rows.append([str(digit), f"digits/{name}", split_of(k)])
        for k in range(clips_per_digit):
            n = int(sample_rate * rng.uniform(*seconds))
            t = np.arange(n) / sample_rate
            wave = 0.4 * np.sin(2 * np.pi * (200 + 150 * digit) * t)
            wave += 0.01 * rng.standard_normal(n)
            name = f"{digit}_spk{k % 3}_{k}.wav"
            sf.write(os.path.join(clip_dir, name), wave, sample_rate, subtype="PCM_16")
            clip_rows.append([str(digit), f"clips/{name}", split_of(k)])
    for sub, column, rows in (
        ("images", "image", image_rows),
        ("audio", "audio", clip_rows),
    ):
        with open(os.path.join(root, sub, "manifest.csv"), "w", newline="") as f:
            header = ["label", column] + (["split"] if split_column else [])
            f.write(",".join(header) + "\n")
            for row in rows:
                f.write(",".join(row if split_column else row[:2]) + "\n")
    return root
