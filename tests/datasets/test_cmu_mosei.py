import json
import os

import h5py
import numpy as np

from mmfusion_keras.datasets.cmu_mosei import MOSEI_FILES
from mmfusion_keras.datasets.cmu_mosei import ComputationalSequence
from mmfusion_keras.datasets.cmu_mosei import load_cmu_mosei
from mmfusion_keras.datasets.cmu_mosei import sentiment_classes
from mmfusion_keras.testing.conformance import assert_raises_with_message

GLOVE_DIM, COVAREP_DIM, FACET_DIM = 6, 74, 35


def write_csd(path, root_name, data, metadata=None):
    """Writes a computational sequence in the CMU-MultimodalSDK HDF5 layout."""
    with h5py.File(path, "w") as f:
        root = f.create_group(root_name)
        group = root.create_group("data")
        for video, (features, intervals) in data.items():
            g = group.create_group(video)
            g.create_dataset("features", data=features)
            g.create_dataset("intervals", data=np.asarray(intervals, "float64"))
        meta = root.create_group("metadata")
        for key, value in (metadata or {"root name": root_name}).items():
            ds = meta.create_dataset(key, (1,), dtype=h5py.special_dtype(vlen=str))
            ds[0] = json.dumps(value)
    return path


def _word_intervals(n):
    return np.stack([np.arange(n), np.arange(n) + 1], axis=1).astype("float64")


def write_mosei(folder):
    words = {
        "vidA": ["i", "like", "sp", "it", "a", "lot"],
        "vidB": ["no", "sp", "way"],
        "vidC": ["hello"],
    }
    word_data, glove_data, covarep_data, facet_data = {}, {}, {}, {}
    for video, tokens in words.items():
        n = len(tokens)
        intervals = _word_intervals(n)
        word_data[video] = (np.array([[t.encode()] for t in tokens]), intervals)
        glove = np.stack(
            [
                np.full(GLOVE_DIM, 10.0 * i + (t == "sp") * 0)
                for i, t in enumerate(tokens)
            ]
        )
        glove[[i for i, t in enumerate(tokens) if t == "sp"]] = 0.0
        glove_data[video] = (glove.astype("float32"), intervals)
        # COVAREP at 2 frames per second, value k in every dim; one -inf.
        k = np.arange(2 * n)
        cov = np.repeat(k[:, None], COVAREP_DIM, axis=1).astype("float32")
        cov[1, 0] = -np.inf
        covarep_data[video] = (cov, np.stack([k * 0.5, k * 0.5 + 0.5], axis=1))
        if video != "vidC":  # vidC has no visual features
            j = np.arange(n)
            facet = np.repeat((100.0 + j)[:, None], FACET_DIM, axis=1).astype("float32")
            facet_data[video] = (facet, _word_intervals(n))
    labels = {
        "vidA": (
            np.array([[1.5, 1, 0, 0, 0, 0, 0], [-2.0, 0, 2, 0, 0, 0.5, 0]], "float32"),
            np.array([[0.0, 3.0], [3.0, 6.0]]),
        ),
        "vidB": (
            np.array([[0.0, 0, 0, 3, 0, 0, 1]], "float32"),
            np.array([[0.0, 3.0]]),
        ),
        "vidC": (
            np.array([[0.3, 0, 0, 0, 1, 0, 0]], "float32"),
            np.array([[0.0, 1.0]]),
        ),
    }
    write_csd(os.path.join(folder, MOSEI_FILES["words"]), "words", word_data)
    write_csd(os.path.join(folder, MOSEI_FILES["text"]), "glove_vectors", glove_data)
    write_csd(
        os.path.join(folder, MOSEI_FILES["audio"]),
        "COVAREP",
        covarep_data,
        {
            "root name": "COVAREP",
            "dimension names": [f"c{i}" for i in range(COVAREP_DIM)],
        },
    )
    write_csd(os.path.join(folder, MOSEI_FILES["vision"]), "FACET 4.2", facet_data)
    write_csd(os.path.join(folder, MOSEI_FILES["labels"]), "All Labels", labels)
    return folder


def test_read_computational_sequence(tmp_path):
    folder = write_mosei(str(tmp_path))
    with ComputationalSequence(os.path.join(folder, MOSEI_FILES["audio"])) as seq:
        assert seq.name == "COVAREP" and seq.keys() == ["vidA", "vidB", "vidC"]
        assert seq.metadata["dimension names"][:2] == ["c0", "c1"]
        features, intervals = seq["vidB"]
        assert features.shape == (6, COVAREP_DIM) and intervals.shape == (6, 2)


def test_unaligned_segments_pad_and_mask(tmp_path):
    folder = write_mosei(str(tmp_path))
    ds = load_cmu_mosei(folder, max_length=4)
    # vidC lacks FACET: skipped.
    assert ds.info["skipped_videos"] == ["vidC"]
    assert ds.metadata["id"].tolist() == ["vidA[0]", "vidA[1]", "vidB[0]"]
    assert ds.labels.shape == (3, 7) and ds.class_names is None
    np.testing.assert_allclose(ds.labels[1], [-2, 0, 2, 0, 0, 0.5, 0])
    assert ds.inputs["text"].shape == (3, 4, GLOVE_DIM)
    assert ds.inputs["audio"].shape == (3, 4, COVAREP_DIM)
    assert ds.inputs["vision"].shape == (3, 4, FACET_DIM)
    # Segment vidA[0] = [0, 3): words 0..2 (3 steps), COVAREP frames 0..5 cut to 4.
    assert ds.inputs["text_mask"][0].tolist() == [True, True, True, False]
    np.testing.assert_allclose(ds.inputs["text"][0, :3, 0], [0, 10, 0])
    assert ds.inputs["audio_mask"][0].all()
    np.testing.assert_allclose(ds.inputs["audio"][0, :, 1], [0, 1, 2, 3])
    assert ds.inputs["audio"][0, 1, 0] == 0  # -inf replaced
    assert ds.info["non_finite"]["audio"] == 2  # vidA, vidB (vidC skipped unread)
    # Segment vidA[1] = [3, 6): COVAREP frames 6..11, FACET frames 3..5.
    np.testing.assert_allclose(ds.inputs["audio"][1, :, 1], [6, 7, 8, 9])
    np.testing.assert_allclose(ds.inputs["vision"][1, :3, 0], [103, 104, 105])
    assert ds.inputs["vision_mask"][1].tolist() == [True, True, True, False]
    assert np.all(ds.inputs["vision"][1, 3] == 0)
    # Words: silences dropped, padded with "".
    assert ds.inputs["words"][0].tolist() == ["i", "like", "", ""]
    assert ds.inputs["words"][2].tolist() == ["no", "way", "", ""]

    sentiment = load_cmu_mosei(folder, target="sentiment", max_length=4)
    np.testing.assert_allclose(sentiment.labels, [1.5, -2.0, 0.0])
    emotions = load_cmu_mosei(folder, target="emotions", max_length=4)
    assert (
        emotions.labels.shape == (3, 6) and emotions.info["label_names"][0] == "happy"
    )
    np.testing.assert_array_equal(sentiment_classes(sentiment.labels), [1, 0, 1])
    np.testing.assert_array_equal(
        sentiment_classes([-3.4, -0.6, 0.4, 2.6], 7), [0, 2, 3, 6]
    )


def test_aligned_to_words_averages_frames(tmp_path):
    folder = write_mosei(str(tmp_path))
    ds = load_cmu_mosei(folder, aligned=True, max_length=3)
    assert ds.info["aligned"] and ds.info["align_to"] == "text"
    # vidA[0]: words "i" [0,1) and "like" [1,2); "sp" [2,3) dropped.
    assert ds.inputs["words"][0].tolist() == ["i", "like", ""]
    for name in ("text", "audio", "vision"):
        assert ds.inputs[f"{name}_mask"][0].tolist() == [True, True, False]
    np.testing.assert_allclose(ds.inputs["text"][0, :2, 0], [0, 10])
    # COVAREP frames 0,1 (dim 0: 0 and -inf->0) and 2,3 averaged per word.
    np.testing.assert_allclose(ds.inputs["audio"][0, :2, 1], [0.5, 2.5])
    np.testing.assert_allclose(ds.inputs["audio"][0, :2, 0], [0.0, 2.5])
    np.testing.assert_allclose(ds.inputs["vision"][0, :2, 0], [100, 101])
    assert np.all(ds.inputs["audio"][0, 2] == 0)
    # vidA[1] = [3, 6): "it", "a", "lot".
    assert ds.inputs["words"][1].tolist() == ["it", "a", "lot"]
    np.testing.assert_allclose(ds.inputs["audio"][1, :, 1], [6.5, 8.5, 10.5])
    # Keep silences: the "sp" step stays.
    with_sp = load_cmu_mosei(folder, aligned=True, max_length=3, drop_silence=False)
    assert with_sp.inputs["words"][0].tolist() == ["i", "like", "sp"]
    np.testing.assert_allclose(with_sp.inputs["audio"][0, 2, 1], 4.5)


def test_explicit_paths_and_video_subset(tmp_path):
    folder = write_mosei(str(tmp_path))
    ds = load_cmu_mosei(
        modalities={
            "language": os.path.join(folder, MOSEI_FILES["text"]),
            "acoustic": os.path.join(folder, MOSEI_FILES["audio"]),
        },
        labels=os.path.join(folder, MOSEI_FILES["labels"]),
        video_ids=["vidC", "vidB"],
        max_length=2,
    )
    assert sorted(ds.inputs) == [
        "acoustic",
        "acoustic_mask",
        "language",
        "language_mask",
    ]
    assert ds.metadata["video"].tolist() == ["vidC", "vidB"]
    assert ds.info["feature_dims"] == {"language": GLOVE_DIM, "acoustic": COVAREP_DIM}


def test_errors_name_the_file(tmp_path):
    missing_dir = str(tmp_path / "mosei")
    assert_raises_with_message(
        lambda: load_cmu_mosei(missing_dir),
        r"directory not found: '.*mosei'",
        FileNotFoundError,
    )
    folder = write_mosei(str(tmp_path))
    audio_path = os.path.join(folder, MOSEI_FILES["audio"])
    labels_path = os.path.join(folder, MOSEI_FILES["labels"])

    assert_raises_with_message(
        lambda: load_cmu_mosei(folder, missing="error"),
        r"Video 'vidC' is labelled in '.*CMU_MOSEI_Labels\.csd' but missing from "
        r"modalities \['vision'\]",
    )
    assert_raises_with_message(
        lambda: load_cmu_mosei(folder, replace_non_finite=False),
        r"'.*CMU_MOSEI_COVAREP\.csd', video 'vidA': 1 non-finite",
    )
    assert_raises_with_message(
        lambda: load_cmu_mosei(folder, video_ids=["nope"]),
        r"Video 'nope' has no labels in '.*CMU_MOSEI_Labels\.csd'",
    )
    assert_raises_with_message(
        lambda: load_cmu_mosei(folder, aligned=True, align_to="words"),
        r"align_to='words' is not a modality",
    )
    assert_raises_with_message(
        lambda: load_cmu_mosei(folder, target="happy"), r"target='happy'"
    )

    os.remove(os.path.join(folder, MOSEI_FILES["vision"]))
    assert_raises_with_message(
        lambda: load_cmu_mosei(folder),
        r"file not found: '.*CMU_MOSEI_VisualFacet42\.csd'",
        FileNotFoundError,
    )
    with open(os.path.join(folder, MOSEI_FILES["vision"]), "wb") as f:
        f.write(b"this is not hdf5")
    assert_raises_with_message(
        lambda: load_cmu_mosei(folder),
        r"Cannot read computational sequence '.*CMU_MOSEI_VisualFacet42\.csd': it is "
        r"not a valid HDF5",
    )
    with h5py.File(os.path.join(folder, MOSEI_FILES["vision"]), "w") as f:
        f.create_group("FACET").create_group("oops")
    assert_raises_with_message(
        lambda: load_cmu_mosei(folder),
        r"'.*VisualFacet42\.csd' has no '<root>/data' group",
    )

    # Features / intervals of different lengths.
    with h5py.File(audio_path, "a") as f:
        del f["COVAREP/data/vidB/intervals"]
        f["COVAREP/data/vidB/intervals"] = np.zeros((2, 2))
    assert_raises_with_message(
        lambda: load_cmu_mosei(modalities={"audio": audio_path}, labels=labels_path),
        r"'.*COVAREP\.csd', video 'vidB': 6 feature rows but 2 intervals",
    )

    # Labels with the wrong width.
    write_csd(
        labels_path, "All Labels", {"vidA": (np.zeros((1, 3)), np.array([[0.0, 3.0]]))}
    )
    assert_raises_with_message(
        lambda: load_cmu_mosei(
            modalities={"text": os.path.join(folder, MOSEI_FILES["text"])},
            labels=labels_path,
        ),
        r"Labels file '.*Labels\.csd', video 'vidA': expected 7 values.*Received: 3",
    )
