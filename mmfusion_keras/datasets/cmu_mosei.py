"""CMU-MOSEI loader: computational sequences (.csd) to padded NumPy arrays.

A computational sequence is an HDF5 file (read with `h5py`) laid out as::

    /<root name>/data/<video id>/features    (frames, dim)  values per frame
    /<root name>/data/<video id>/intervals   (frames, 2)    [start, end] seconds
    /<root name>/metadata/<key>              1-element strings (mostly JSON)

CMU-MOSEI ships one file per feature set (the user brings them; nothing is
downloaded):

* words (`CMU_MOSEI_TimestampedWords.csd`): one byte string per word, `sp`
  for silences;
* GloVe word vectors (`CMU_MOSEI_TimestampedWordVectors.csd`, 300-d), one
  row per word, sharing the words' intervals;
* COVAREP acoustic features (`CMU_MOSEI_COVAREP.csd`, 74-d, 100 Hz);
* FACET 4.2 (`CMU_MOSEI_VisualFacet42.csd`, 35-d) or OpenFace 2 visual
  features (`CMU_MOSEI_VisualOpenFace2.csd`);
* labels (`CMU_MOSEI_Labels.csd`): one row per labelled segment of a video,
  7 values `[sentiment, happy, sad, anger, surprise, disgust, fear]`
  (sentiment in [-3, 3], emotion intensities in [0, 3]); its intervals
  are the segments' start and end times.

An example is one labelled segment. A modality's frames belong to it when
their interval overlaps the segment's interval.
"""

import json
import os

import numpy as np

from mmfusion_keras.datasets.multimodal_dataset import MultimodalDataset

MOSEI_LABEL_NAMES = (
    "sentiment",
    "happy",
    "sad",
    "anger",
    "surprise",
    "disgust",
    "fear",
)
MOSEI_EMOTIONS = MOSEI_LABEL_NAMES[1:]

#: Standard file names in a CMU-MOSEI download folder.
MOSEI_FILES = {
    "text": "CMU_MOSEI_TimestampedWordVectors.csd",
    "audio": "CMU_MOSEI_COVAREP.csd",
    "vision": "CMU_MOSEI_VisualFacet42.csd",
    "labels": "CMU_MOSEI_Labels.csd",
    "words": "CMU_MOSEI_TimestampedWords.csd",
}


class ComputationalSequence:
    """A lazily read CMU computational sequence (.csd, HDF5).

    Use as a context manager, or call `close()`. `seq[video_id]` returns
    `(features, intervals)` as NumPy arrays, checked for matching lengths.

    Args:
        path: path of the .csd file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not HDF5, or lacks the `<root>/data` group.
    """

    def __init__(self, path):
        import h5py

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(
                f"Computational sequence file not found: '{self.path}'"
            )
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise ValueError(
                f"Cannot read computational sequence '{self.path}': it is not a "
                f"valid HDF5 (.csd) file. ({e})"
            ) from e
        roots = list(self._file.keys())
        if not roots or "data" not in self._file[roots[0]]:
            self._file.close()
            raise ValueError(
                f"Computational sequence '{self.path}' has no '<root>/data' group. "
                f"Found top-level groups: {roots}. Expected the CMU-MultimodalSDK "
                "layout <root>/data/<video id>/{features,intervals}."
            )
        self.name = roots[0]
        self._data = self._file[self.name]["data"]
        self.metadata = self._read_metadata()

    def _read_metadata(self):
        root = self._file[self.name]
        if "metadata" not in root:
            return {}
        metadata = {}
        for key, dataset in root["metadata"].items():
            try:
                value = dataset[()]
                value = value[0] if np.ndim(value) else value
                if isinstance(value, bytes):
                    value = value.decode("utf-8", errors="replace")
                try:
                    value = json.loads(value)
                except (TypeError, ValueError):
                    value = str(value)
            except (AttributeError, TypeError, OSError):
                continue  # a sub-group or unreadable entry: not metadata text
            metadata[key] = value
        return metadata

    def keys(self):
        """The video ids, sorted."""
        return sorted(self._data.keys())

    def __contains__(self, video_id):
        return video_id in self._data

    def __len__(self):
        return len(self._data)

    def __getitem__(self, video_id):
        if video_id not in self._data:
            raise KeyError(f"Video {video_id!r} is not in '{self.path}'.")
        group = self._data[video_id]
        if "features" not in group or "intervals" not in group:
            raise ValueError(
                f"Computational sequence '{self.path}', video {video_id!r}: expected "
                f"'features' and 'intervals' datasets. Found: {list(group.keys())}"
            )
        features = group["features"][()]
        intervals = np.asarray(group["intervals"][()], dtype="float64")
        if features.ndim == 1:
            features = features[:, None]
        if intervals.ndim != 2 or intervals.shape[1] != 2:
            raise ValueError(
                f"Computational sequence '{self.path}', video {video_id!r}: "
                f"intervals should have shape (frames, 2). Received: {intervals.shape}"
            )
        if len(features) != len(intervals):
            raise ValueError(
                f"Computational sequence '{self.path}', video {video_id!r}: "
                f"{len(features)} feature rows but {len(intervals)} intervals."
            )
        return features, intervals

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _overlapping(intervals, start, end):
    """Indices of frames whose [s, e] interval overlaps (start, end)."""
    return np.flatnonzero((intervals[:, 0] < end) & (intervals[:, 1] > start))


def _decode_words(features):
    out = []
    for value in np.asarray(features).reshape(len(features), -1)[:, 0]:
        out.append(
            value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        )
    return np.array(out, dtype=object)


def sentiment_classes(scores, num_classes=2):
    """Discretizes MOSEI sentiment scores in [-3, 3].

    `num_classes=2`: 1 for scores >= 0 (non-negative), 0 for negative.
    `num_classes=7`: `round(clip(score, -3, 3)) + 3`, i.e. 0..6.
    """
    scores = np.asarray(scores, dtype="float64")
    if num_classes == 2:
        return (scores >= 0).astype("int32")
    if num_classes == 7:
        return (np.round(np.clip(scores, -3, 3)) + 3).astype("int32")
    raise ValueError(
        f"sentiment_classes expected num_classes 2 or 7. Received: num_classes={num_classes}"
    )


def load_cmu_mosei(
    root=None,
    modalities=None,
    labels=None,
    words=None,
    aligned=False,
    align_to="text",
    max_length=50,
    target="all",
    video_ids=None,
    drop_silence=True,
    replace_non_finite=True,
    missing="skip",
):
    """Loads CMU-MOSEI segments from computational sequence files.

    Two layouts:

    * unaligned (`aligned=False`): each modality keeps its own frames inside
      the segment (its own length), cut to `max_length` and zero-padded,
      with a boolean mask `"<name>_mask"` (`True` = real frame).
    * aligned to words (`aligned=True`): the steps are the frames of the
      `align_to` modality (GloVe words); every other modality is averaged
      over its frames that overlap each word's interval (zeros where no
      frame overlaps). All modalities share one length and one mask. With
      `words` given and `drop_silence`, `sp` (silence) steps are removed.

    Args:
        root: folder with the standard file names (`MOSEI_FILES`); used for
            any of `modalities`, `labels`, `words` not given. If `words` is
            not given, the words file is used when present.
        modalities: dict from input name to .csd path, e.g.
            `{"text": ..., "audio": ..., "vision": ...}`.
        labels: path of the labels .csd.
        words: optional path of the words .csd (raw strings, returned as
            `inputs["words"]`, an object array padded with `""`).
        aligned: see above.
        align_to: the reference modality name for `aligned=True`.
        max_length: steps kept per modality (the first ones).
        target: `"all"` (N, 7), `"sentiment"` (N,) or `"emotions"` (N, 6).
        video_ids: optional list of video ids to keep (e.g. a standard fold).
        drop_silence: see above.
        replace_non_finite: replace NaN / +-inf features by 0 (COVAREP has
            -inf entries) and count them in `info["non_finite"]`; if `False`
            such values raise.
        missing: a video absent from some modality is `"skip"`ped (counted
            in `info["skipped_videos"]`) or raises (`"error"`).

    Returns:
        A `MultimodalDataset`: `inputs` float32 `(N, max_length, dim)` per
        modality plus boolean masks, float32 `labels`, `class_names=None`,
        `metadata` with `id` (`"<video>[<segment>]"`), `video`, `segment`,
        `start`, `end`, and `info` with feature dims and label names.

    Raises:
        FileNotFoundError: a folder or file is missing.
        ValueError: unreadable or malformed files, mismatched words / vectors,
            wrong label width, unknown arguments.
    """
    if target not in ("all", "sentiment", "emotions"):
        raise ValueError(
            "load_cmu_mosei expected `target` in ('all', 'sentiment', 'emotions'). "
            f"Received: target={target!r}"
        )
    if missing not in ("skip", "error"):
        raise ValueError(
            f"load_cmu_mosei expected `missing` in ('skip', 'error'). Received: missing={missing!r}"
        )
    if int(max_length) != max_length or max_length < 1:
        raise ValueError(
            f"load_cmu_mosei expected a positive integer `max_length`. Received: {max_length}"
        )
    if root is not None and not os.path.isdir(root):
        raise FileNotFoundError(f"CMU-MOSEI directory not found: '{root}'")

    def in_root(key):
        if root is None:
            raise ValueError(
                f"load_cmu_mosei needs `root` or an explicit path for {key!r}."
            )
        return os.path.join(root, MOSEI_FILES[key])

    if modalities is None:
        modalities = {k: in_root(k) for k in ("text", "audio", "vision")}
    if not modalities:
        raise ValueError("load_cmu_mosei expected at least one modality.")
    labels = labels if labels is not None else in_root("labels")
    if words is None and root is not None and os.path.isfile(in_root("words")):
        words = in_root("words")
    if aligned and align_to not in modalities:
        raise ValueError(
            f"load_cmu_mosei: align_to={align_to!r} is not a modality. "
            f"Modalities: {list(modalities)}"
        )
    if "words" in modalities or any(k.endswith("_mask") for k in modalities):
        raise ValueError(
            "load_cmu_mosei: modality names may not be 'words' or end in '_mask' "
            f"(reserved). Received: {list(modalities)}"
        )

    sequences = {}
    label_seq = word_seq = None
    try:
        label_seq = ComputationalSequence(labels)
        for name, path in modalities.items():
            sequences[name] = ComputationalSequence(path)
        word_seq = ComputationalSequence(words) if words is not None else None
        return _build(
            label_seq,
            sequences,
            word_seq,
            aligned,
            align_to,
            int(max_length),
            target,
            video_ids,
            drop_silence,
            replace_non_finite,
            missing,
        )
    finally:
        for seq in [*sequences.values(), label_seq, word_seq]:
            if seq is not None:
                seq.close()


def _build(
    label_seq,
    sequences,
    word_seq,
    aligned,
    align_to,
    max_length,
    target,
    video_ids,
    drop_silence,
    replace_non_finite,
    missing,
):
    ids = label_seq.keys() if video_ids is None else list(video_ids)
    dims = {}
    non_finite = dict.fromkeys(sequences, 0)
    skipped = []
    examples = []  # (video, segment, start, end, label, {name: frames}, words)

    def clean(name, features, video):
        features = np.asarray(features, dtype="float32")
        bad = ~np.isfinite(features)
        if bad.any():
            if not replace_non_finite:
                raise ValueError(
                    f"Computational sequence '{sequences[name].path}', video "
                    f"{video!r}: {int(bad.sum())} non-finite feature values. Pass "
                    "replace_non_finite=True to replace them by 0."
                )
            non_finite[name] += int(bad.sum())
            features = np.where(bad, 0.0, features).astype("float32")
        if dims.setdefault(name, features.shape[1]) != features.shape[1]:
            raise ValueError(
                f"Computational sequence '{sequences[name].path}', video {video!r}: "
                f"features have {features.shape[1]} dims, other videos {dims[name]}."
            )
        return features

    for video in ids:
        if video not in label_seq:
            raise ValueError(f"Video {video!r} has no labels in '{label_seq.path}'.")
        absent = [n for n, s in sequences.items() if video not in s]
        if word_seq is not None and video not in word_seq:
            absent.append("words")
        if absent:
            if missing == "error":
                raise ValueError(
                    f"Video {video!r} is labelled in '{label_seq.path}' but missing "
                    f"from modalities {absent}."
                )
            skipped.append(video)
            continue
        label_values, segments = label_seq[video]
        label_values = np.asarray(label_values, dtype="float32")
        if label_values.shape[1] != len(MOSEI_LABEL_NAMES):
            raise ValueError(
                f"Labels file '{label_seq.path}', video {video!r}: expected "
                f"{len(MOSEI_LABEL_NAMES)} values per segment {MOSEI_LABEL_NAMES}. "
                f"Received: {label_values.shape[1]}"
            )
        frames = {}
        for name, seq in sequences.items():
            features, intervals = seq[video]
            frames[name] = (clean(name, features, video), intervals)
        video_words = None
        if word_seq is not None:
            word_features, word_intervals = word_seq[video]
            video_words = (_decode_words(word_features), word_intervals)
            if aligned:
                ref = frames[align_to][1]
                if len(ref) != len(word_intervals) or not np.allclose(
                    ref, word_intervals
                ):
                    raise ValueError(
                        f"Video {video!r}: the words in '{word_seq.path}' do not match "
                        f"the {align_to!r} steps in '{sequences[align_to].path}' "
                        f"({len(word_intervals)} words vs {len(ref)} steps)."
                    )
        for j, (start, end) in enumerate(segments):
            examples.append(
                (video, j, start, end, label_values[j], frames, video_words)
            )

    if not examples:
        raise ValueError(
            f"load_cmu_mosei found no labelled segment present in every modality "
            f"({len(skipped)} videos skipped)."
        )

    n = len(examples)
    names = list(sequences)
    inputs = {}
    if aligned:
        for name in names:
            inputs[name] = np.zeros((n, max_length, dims[name]), "float32")
        mask = np.zeros((n, max_length), bool)
        word_array = np.full((n, max_length), "", dtype=object)
        for i, (_, _, start, end, _, frames, video_words) in enumerate(examples):
            ref_features, ref_intervals = frames[align_to]
            steps = _overlapping(ref_intervals, start, end)
            if video_words is not None and drop_silence:
                steps = steps[video_words[0][steps] != "sp"]
            steps = steps[:max_length]
            mask[i, : len(steps)] = True
            inputs[align_to][i, : len(steps)] = ref_features[steps]
            if video_words is not None:
                word_array[i, : len(steps)] = video_words[0][steps]
            for name in names:
                if name == align_to:
                    continue
                features, intervals = frames[name]
                for t, step in enumerate(steps):
                    ws, we = ref_intervals[step]
                    inside = _overlapping(intervals, ws, we)
                    if len(inside):
                        inputs[name][i, t] = features[inside].mean(axis=0)
        for name in names:
            inputs[f"{name}_mask"] = mask.copy()
        if word_seq is not None:
            inputs["words"] = word_array
    else:
        for name in names:
            data = np.zeros((n, max_length, dims[name]), "float32")
            mask = np.zeros((n, max_length), bool)
            for i, (_, _, start, end, _, frames, _) in enumerate(examples):
                features, intervals = frames[name]
                idx = _overlapping(intervals, start, end)[:max_length]
                data[i, : len(idx)] = features[idx]
                mask[i, : len(idx)] = True
            inputs[name] = data
            inputs[f"{name}_mask"] = mask
        if word_seq is not None:
            word_array = np.full((n, max_length), "", dtype=object)
            for i, (_, _, start, end, _, _, video_words) in enumerate(examples):
                values, intervals = video_words
                idx = _overlapping(intervals, start, end)
                if drop_silence:
                    idx = idx[values[idx] != "sp"]
                idx = idx[:max_length]
                word_array[i, : len(idx)] = values[idx]
            inputs["words"] = word_array

    all_labels = np.stack([e[4] for e in examples]).astype("float32")
    if target == "sentiment":
        label_array, label_names = all_labels[:, 0], MOSEI_LABEL_NAMES[:1]
    elif target == "emotions":
        label_array, label_names = all_labels[:, 1:], MOSEI_EMOTIONS
    else:
        label_array, label_names = all_labels, MOSEI_LABEL_NAMES
    return MultimodalDataset(
        inputs=inputs,
        labels=label_array,
        class_names=None,
        metadata={
            "id": np.array([f"{e[0]}[{e[1]}]" for e in examples]),
            "video": np.array([e[0] for e in examples]),
            "segment": np.array([e[1] for e in examples], "int32"),
            "start": np.array([e[2] for e in examples], "float32"),
            "end": np.array([e[3] for e in examples], "float32"),
        },
        info={
            "dataset": "CMU-MOSEI",
            "aligned": aligned,
            "align_to": align_to if aligned else None,
            "max_length": max_length,
            "feature_dims": dims,
            "label_names": label_names,
            "non_finite": non_finite,
            "skipped_videos": skipped,
            "sources": {k: s.path for k, s in sequences.items()},
        },
    )
