"""PhysioNet CEBS loader: ECG, respiration and SCG windows by recording state.

"Combined measurement of ECG, Breathing and Seismocardiograms" (PhysioNet
database `cebsdb`, García-González et al., CinC 2013): 20 healthy subjects
lying still, recorded with a Biopac MP36 at 5 kHz on four channels (ECG
lead I, ECG lead II, thoracic respiration band, seismocardiogram). Each
subject has three WFDB records, named by state and subject number:

* `b001` .. `b020`: basal state, about 5 minutes;
* `m001` .. `m020`: listening to classical music, about 50 minutes;
* `p001` .. `p020`: the 5 minutes after the music ended.

The user brings the records (`<name>.hea` + `<name>.dat`; nothing is
downloaded); they are read with the `wfdb` package
(`pip install mmfusion-keras[data]`).

Each example is `chunks_per_example` consecutive non-overlapping chunks of
`chunk_samples` samples (default 6 x 1000 samples = 6 x 200 ms = 1.2 s) of
every channel; its label is the record's state.
"""

import glob
import importlib.util
import os
import re

import numpy as np

from mmfusion_keras.datasets.multimodal_dataset import MultimodalDataset
from mmfusion_keras.datasets.splits import leave_one_group_out

#: Record-name prefix -> state (class) name.
CEBS_STATES = {"b": "basal", "m": "music", "p": "post_music"}
#: Input names of the four channels, in record order.
CEBS_CHANNELS = ("ecg_i", "ecg_ii", "respiration", "scg")
#: Default leave-one-group-out groups: 4 groups of 5 subjects.
CEBS_SUBJECT_GROUPS = (
    (1, 2, 3, 4, 5),
    (6, 7, 8, 9, 10),
    (11, 12, 13, 14, 15),
    (16, 17, 18, 19, 20),
)
_DEFAULT_PATTERN = r"^(?P<state>[A-Za-z]+)(?P<subject>\d+)$"


def _wfdb():
    if importlib.util.find_spec("wfdb") is None:
        raise ImportError(
            "The PhysioNet loader needs the `wfdb` package, which is not "
            "installed. Install it with `pip install mmfusion-keras[data]` (or "
            "`pip install wfdb`)."
        )
    import wfdb

    return wfdb


def _record_names(root):
    records_file = os.path.join(root, "RECORDS")
    if os.path.isfile(records_file):
        with open(records_file, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    return sorted(
        os.path.splitext(os.path.basename(p))[0]
        for p in glob.glob(os.path.join(root, "*.hea"))
    )


def _windows(num_samples, window, stride, limit):
    starts = np.arange(0, num_samples - window + 1, stride, dtype="int64")
    if limit is not None and len(starts) > limit:
        # Evenly spaced over the record rather than only its beginning.
        starts = starts[np.linspace(0, len(starts) - 1, limit).round().astype(int)]
    return starts


def load_physionet_cmebs(
    root,
    records=None,
    states=None,
    record_pattern=_DEFAULT_PATTERN,
    channels=None,
    channel_names=CEBS_CHANNELS,
    sample_rate=5000,
    chunk_samples=1000,
    chunks_per_example=6,
    stride=None,
    max_examples_per_record=None,
    max_samples_per_record=None,
):
    """Loads CEBS records as windows of chunks, labelled by state.

    Args:
        root: folder holding the WFDB records (`RECORDS` file optional).
        records: optional list of record names; defaults to the `RECORDS`
            file, else every `*.hea` in `root`.
        states: dict from record-name prefix to state name; defaults to
            `CEBS_STATES` (`b` basal, `m` music, `p` post_music). The class
            order is the dict's value order (duplicates merged).
        record_pattern: regular expression with groups `state` (the prefix)
            and `subject` (an integer) matched against each record name.
        channels: which signals to read, by index (int) or by the header's
            signal name (str); defaults to the first four, in record order.
        channel_names: input names given to those signals.
        sample_rate: expected sampling frequency; a record at another rate
            raises.
        chunk_samples: samples per chunk (1000 = 200 ms at 5 kHz).
        chunks_per_example: consecutive chunks per example.
        stride: samples between example starts; defaults to the example
            length (non-overlapping).
        max_examples_per_record: optional cap, taking evenly spaced windows
            (the music records are ten times longer than the others).
        max_samples_per_record: optional; read only the first this many
            samples of every record. The MBAF paper keeps "a single 5min
            segment from the second state (first 5 mins)" (section 4.2):
            `5 * 60 * 5000`, which leaves the 5-minute records whole.

    Returns:
        A `MultimodalDataset`: `inputs` float32 `(N, chunks_per_example,
        chunk_samples)` per channel name (physical units of the header),
        int32 `labels` (state), `class_names`, `metadata` arrays `record`,
        `subject` (int), `state`, `start_sample`, and `info`.

    Raises:
        ImportError: `wfdb` is not installed.
        FileNotFoundError: the folder or a record's files are missing.
        ValueError: a record name does not match `record_pattern`, an
            unknown state prefix, a wrong sampling rate, missing channels, an
            unreadable record, or a record shorter than one example.
    """
    wfdb = _wfdb()
    states = dict(CEBS_STATES if states is None else states)
    class_names = tuple(dict.fromkeys(states.values()))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"PhysioNet CEBS directory not found: '{root}'")
    for name, value in (
        ("chunk_samples", chunk_samples),
        ("chunks_per_example", chunks_per_example),
    ):
        if int(value) != value or value < 1:
            raise ValueError(
                f"load_physionet_cmebs expected a positive integer `{name}`. "
                f"Received: {name}={value}"
            )
    window = int(chunk_samples) * int(chunks_per_example)
    stride = window if stride is None else int(stride)
    if stride < 1:
        raise ValueError(
            f"load_physionet_cmebs expected a positive `stride`. Received: {stride}"
        )
    if max_samples_per_record is not None and (
        int(max_samples_per_record) != max_samples_per_record
        or max_samples_per_record < window
    ):
        raise ValueError(
            "load_physionet_cmebs expected `max_samples_per_record` to be None or "
            f"an integer >= one example ({window} samples). Received: "
            f"max_samples_per_record={max_samples_per_record}"
        )
    pattern = re.compile(record_pattern)
    if {"state", "subject"} - set(pattern.groupindex):
        raise ValueError(
            "load_physionet_cmebs expected `record_pattern` with named groups "
            f"'state' and 'subject'. Received: {record_pattern!r}"
        )
    records = _record_names(root) if records is None else list(records)
    if not records:
        raise FileNotFoundError(f"No WFDB records (*.hea) found in '{root}'.")
    channels = list(range(len(channel_names))) if channels is None else list(channels)
    if len(channels) != len(channel_names):
        raise ValueError(
            f"load_physionet_cmebs: {len(channels)} channels but {len(channel_names)} "
            f"channel_names. Received: channels={channels}, channel_names={list(channel_names)}"
        )

    data = {name: [] for name in channel_names}
    meta = {"record": [], "subject": [], "state": [], "start_sample": []}
    labels = []
    for record in records:
        match = pattern.match(record)
        if match is None:
            raise ValueError(
                f"PhysioNet record name {record!r} in '{root}' does not match "
                f"record_pattern={record_pattern!r} (expected e.g. 'b001')."
            )
        prefix, subject = match.group("state"), int(match.group("subject"))
        if prefix not in states:
            raise ValueError(
                f"Unknown state prefix {prefix!r} of record {record!r} in '{root}'. "
                f"Expected one of {sorted(states)} (see `states`)."
            )
        base = os.path.join(root, record)
        if not os.path.isfile(base + ".hea"):
            raise FileNotFoundError(f"WFDB header not found: '{base}.hea'")
        try:
            header = wfdb.rdheader(base)
        except Exception as e:  # wfdb raises many types on bad headers
            raise ValueError(f"Cannot read WFDB header '{base}.hea': {e}") from e
        if header.fs is None or abs(float(header.fs) - sample_rate) > 1e-6:
            raise ValueError(
                f"WFDB record '{base}' is sampled at {header.fs} Hz; expected "
                f"{sample_rate} Hz (see `sample_rate`)."
            )
        indices = []
        for channel in channels:
            if isinstance(channel, str):
                if channel not in (header.sig_name or []):
                    raise ValueError(
                        f"WFDB record '{base}' has no signal {channel!r}. Signals: "
                        f"{header.sig_name}"
                    )
                indices.append(header.sig_name.index(channel))
            else:
                if not 0 <= channel < header.n_sig:
                    raise ValueError(
                        f"WFDB record '{base}' has {header.n_sig} signals; channel "
                        f"index {channel} is out of range."
                    )
                indices.append(int(channel))
        for file_name in dict.fromkeys(header.file_name or []):
            path = os.path.join(root, file_name)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"WFDB signal file not found: '{path}' (named in '{base}.hea')."
                )
        try:
            sampto = None
            if max_samples_per_record is not None and header.sig_len:
                sampto = min(int(max_samples_per_record), int(header.sig_len))
            signal = wfdb.rdrecord(
                base, channels=indices, return_res=32, sampto=sampto
            ).p_signal
        except Exception as e:
            raise ValueError(f"Cannot read WFDB record '{base}': {e}") from e
        if signal is None or len(signal) < window:
            length = 0 if signal is None else len(signal)
            raise ValueError(
                f"WFDB record '{base}' has {length} samples, fewer than one example "
                f"({chunks_per_example} x {chunk_samples} = {window})."
            )
        signal = np.nan_to_num(np.asarray(signal, dtype="float32"))
        starts = _windows(len(signal), window, stride, max_examples_per_record)
        for c, name in enumerate(channel_names):
            chunks = np.stack([signal[s : s + window, c] for s in starts])
            data[name].append(
                chunks.reshape(len(starts), chunks_per_example, chunk_samples)
            )
        labels.extend([class_names.index(states[prefix])] * len(starts))
        meta["record"].extend([record] * len(starts))
        meta["subject"].extend([subject] * len(starts))
        meta["state"].extend([states[prefix]] * len(starts))
        meta["start_sample"].extend(starts.tolist())

    return MultimodalDataset(
        inputs={name: np.concatenate(chunks) for name, chunks in data.items()},
        labels=np.array(labels, "int32"),
        class_names=class_names,
        metadata={
            "record": np.array(meta["record"]),
            "subject": np.array(meta["subject"], "int32"),
            "state": np.array(meta["state"]),
            "start_sample": np.array(meta["start_sample"], "int64"),
        },
        info={
            "dataset": "PhysioNet CEBS (cebsdb)",
            "sample_rate": sample_rate,
            "chunk_samples": int(chunk_samples),
            "chunks_per_example": int(chunks_per_example),
            "stride": stride,
            "max_samples_per_record": max_samples_per_record,
            "channels": dict(zip(channel_names, channels)),
        },
    )


def subject_group_folds(dataset, groups=CEBS_SUBJECT_GROUPS):
    """Leave-one-subject-group-out folds of a loaded CEBS dataset.

    Args:
        dataset: the `MultimodalDataset` from `load_physionet_cmebs`.
        groups: sequence of subject-number groups (default 1-5, 6-10,
            11-15, 16-20).

    Returns:
        One dict per group `{"held_out": group_index, "train": idx,
        "test": idx}`.

    Raises:
        ValueError: a subject is in no group or in several.
    """
    subjects = dataset.metadata["subject"]
    group_of = {}
    for g, members in enumerate(groups):
        for subject in members:
            if subject in group_of:
                raise ValueError(
                    f"subject_group_folds: subject {subject} is in groups "
                    f"{group_of[subject]} and {g}."
                )
            group_of[int(subject)] = g
    unassigned = sorted({int(s) for s in subjects} - set(group_of))
    if unassigned:
        raise ValueError(
            f"subject_group_folds: subjects {unassigned} are in no group. "
            f"Received: groups={[list(g) for g in groups]}"
        )
    present = sorted({group_of[int(s)] for s in subjects})
    return leave_one_group_out(
        np.array([group_of[int(s)] for s in subjects]), order=present
    )
