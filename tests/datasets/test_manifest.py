import os

import numpy as np
import soundfile as sf
from PIL import Image

from mmfusion_keras.datasets.manifest import load_manifest
from mmfusion_keras.testing.conformance import assert_raises_with_message


def write_folder(folder, rows=None, header="label,audio,image,text,speaker"):
    """A tiny user folder: 3 WAV/FLAC clips, 3 PNG images, a manifest."""
    os.makedirs(os.path.join(folder, "clips"), exist_ok=True)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    for i, (name, fmt) in enumerate(
        [("a.wav", "WAV"), ("b.flac", "FLAC"), ("c.wav", "WAV")]
    ):
        tone = 0.2 * np.sin(2 * np.pi * 300 * np.arange(800 * (i + 1)) / 8000)
        sf.write(os.path.join(folder, "clips", name), tone, 8000, format=fmt)
        pixels = np.full((4, 6, 3), 50 * (i + 1), dtype=np.uint8)
        pixels[0, 0] = [255, 0, 0]
        Image.fromarray(pixels).save(os.path.join(folder, "images", f"{i}.png"))
    if rows is None:
        rows = [
            "yes,clips/a.wav,images/0.png,the answer is yes,s1",
            'no,clips/b.flac,images/1.png,"no, certainly not",s2',
            "yes,clips/c.wav,images/2.png,sure,s1",
        ]
    with open(os.path.join(folder, "manifest.csv"), "w") as f:
        f.write("\n".join([header, *rows]) + "\n")
    return folder


def test_all_modalities(tmp_path):
    folder = write_folder(str(tmp_path))
    ds = load_manifest(folder, max_samples=4000)
    assert ds.class_names == ("no", "yes") and ds.labels.tolist() == [1, 0, 1]
    assert ds.inputs["audio"].shape == (3, 4000)
    # 8 kHz clips of 800/1600/2400 samples -> 1600/3200/4800 at 16 kHz.
    assert ds.metadata["audio_length"].tolist() == [1600, 3200, 4000]
    assert ds.metadata["cropped"].tolist() == [False, False, True]
    assert ds.inputs["image"].shape == (3, 4, 6, 3)
    np.testing.assert_allclose(ds.inputs["image"][1, 1, 1], [100 / 255] * 3, atol=1e-6)
    np.testing.assert_allclose(ds.inputs["image"][0, 0, 0], [1, 0, 0])
    assert ds.inputs["text"].tolist() == [
        "the answer is yes",
        "no, certainly not",
        "sure",
    ]
    assert ds.metadata["speaker"].tolist() == ["s1", "s2", "s1"]
    assert ds.metadata["row"].tolist() == [1, 2, 3]

    ordered = load_manifest(
        folder, class_names=["yes", "no", "maybe"], image_size=(2, 3)
    )
    assert ordered.labels.tolist() == [0, 1, 0] and ordered.num_classes == 3
    assert ordered.inputs["image"].shape == (3, 2, 3, 3)
    assert ordered.inputs["audio"].shape == (3, 4800)  # padded to the longest
    gray = load_manifest(folder, image_mode="L")
    assert gray.inputs["image"].shape == (3, 4, 6, 1)


def test_text_only(tmp_path):
    folder = str(tmp_path)
    with open(os.path.join(folder, "manifest.csv"), "w") as f:
        f.write("text,label\nhello there,greet\nbye now,leave\n")
    ds = load_manifest(folder)
    assert list(ds.inputs) == ["text"] and ds.labels.tolist() == [0, 1]


def test_errors_name_file_and_row(tmp_path):
    assert_raises_with_message(
        lambda: load_manifest(str(tmp_path / "nope")),
        r"folder not found: '.*nope'",
        FileNotFoundError,
    )
    assert_raises_with_message(
        lambda: load_manifest(str(tmp_path)),
        r"Manifest file not found: '.*manifest\.csv'",
        FileNotFoundError,
    )
    folder = str(tmp_path / "d")
    write_folder(folder, header="category,audio", rows=["yes,clips/a.wav"])
    assert_raises_with_message(
        lambda: load_manifest(folder),
        r"'.*manifest\.csv' has no 'label' column. Found columns: \['category', 'audio'\]",
    )
    write_folder(folder, header="label,notes", rows=["yes,hello"])
    assert_raises_with_message(
        lambda: load_manifest(folder),
        r"no modality column: expected one or more of \['audio', 'image', 'text'\]",
    )
    write_folder(
        folder, header="label,audio", rows=["yes,clips/a.wav", "no,clips/missing.wav"]
    )
    assert_raises_with_message(
        lambda: load_manifest(folder),
        r"Audio file not found: '.*missing\.wav' \(row 2, line 3 of '.*manifest\.csv'\)",
        FileNotFoundError,
    )
    write_folder(
        folder, header="label,image", rows=["yes,images/0.png", "no,images/9.png"]
    )
    assert_raises_with_message(
        lambda: load_manifest(folder),
        r"Image file not found: '.*9\.png' \(row 2, line 3",
        FileNotFoundError,
    )
    write_folder(folder, header="label,text", rows=["yes,fine", "maybe,hmm"])
    assert_raises_with_message(
        lambda: load_manifest(folder, class_names=["no", "yes"]),
        r"Unknown label 'maybe' in row 2, line 3 of '.*manifest\.csv'. Expected one of "
        r"\['no', 'yes'\]",
    )
    write_folder(folder, header="label,text", rows=["yes,fine", ",hmm"])
    assert_raises_with_message(
        lambda: load_manifest(folder), r"Empty 'label' cell in row 2, line 3"
    )
    with open(os.path.join(folder, "clips", "bad.wav"), "wb") as f:
        f.write(b"RIFF1234WAVEnot really a wave file")
    write_folder(
        folder, header="label,audio", rows=["yes,clips/a.wav", "no,clips/bad.wav"]
    )
    assert_raises_with_message(
        lambda: load_manifest(folder),
        r"Cannot decode audio file '.*bad\.wav'.*\(row 2, line 3 of",
    )
    with open(os.path.join(folder, "images", "bad.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\nbroken")
    write_folder(folder, header="label,image", rows=["yes,images/bad.png"])
    assert_raises_with_message(
        lambda: load_manifest(folder),
        r"Cannot read image file '.*bad\.png' \(row 1, line 2 of",
    )
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
        os.path.join(folder, "images", "big.png")
    )
    write_folder(
        folder, header="label,image", rows=["yes,images/0.png", "no,images/big.png"]
    )
    assert_raises_with_message(
        lambda: load_manifest(folder),
        r"'.*big\.png' \(row 2, line 3.*\) has shape \(8, 8, 3\).*Pass image_size",
    )
    write_folder(folder, header="label,text", rows=[])
    assert_raises_with_message(
        lambda: load_manifest(folder), r"has a header but no data rows"
    )


def test_integer_labels_are_class_indices_when_they_are_not_class_names(tmp_path):
    digits = ["zero", "one", "two", "three"]
    folder = str(tmp_path)
    with open(os.path.join(folder, "manifest.csv"), "w") as f:
        f.write("text,label\na,0\nb,3\nc,1\n")
    ds = load_manifest(folder, class_names=digits)
    assert ds.labels.tolist() == [0, 3, 1] and ds.info["label_mode"] == "indices"
    # Class names that are integers are names, never indices.
    names = load_manifest(folder, class_names=["3", "1", "0"])
    assert names.labels.tolist() == [2, 0, 1] and names.info["label_mode"] == "names"
    # Without class names, integer labels sort as numbers.
    with open(os.path.join(folder, "manifest.csv"), "w") as f:
        f.write("text,label\na,10\nb,2\nc,0\n")
    ds = load_manifest(folder)
    assert ds.class_names == ("0", "2", "10") and ds.labels.tolist() == [2, 1, 0]
    assert_raises_with_message(
        lambda: load_manifest(folder, class_names=digits),
        r"Unknown label '10' in row 1, line 2 of '.*manifest\.csv'. Expected one of "
        r"\['zero', 'one', 'two', 'three'\] \(or, in every row, a class index 0\.\.3\)",
    )
    # Names and indices mixed in one column: refused, not guessed.
    with open(os.path.join(folder, "manifest.csv"), "w") as f:
        f.write("text,label\na,one\nb,2\n")
    assert_raises_with_message(
        lambda: load_manifest(folder, class_names=digits),
        r"Unknown label '2' in row 2, line 3",
    )
