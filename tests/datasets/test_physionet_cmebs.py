import os

import numpy as np
import pytest

from mmfusion_keras.datasets.physionet_cmebs import load_physionet_cmebs
from mmfusion_keras.datasets.physionet_cmebs import subject_group_folds
from mmfusion_keras.testing.conformance import assert_raises_with_message

wfdb = pytest.importorskip("wfdb")

FS = 5000
LENGTHS = {"b": 13000, "m": 19000, "p": 12500}  # 2, 3 and 2 examples of 6000


def _signal(n, state_index, subject):
    t = np.arange(n) / FS
    return np.stack(
        [
            np.sin(2 * np.pi * 1.2 * t) + 0.1 * state_index,  # ECG I
            np.cos(2 * np.pi * 1.2 * t) - 0.1 * subject,  # ECG II
            0.5 * np.sin(2 * np.pi * 0.25 * t),  # respiration
            0.01 * np.arange(n) / n + state_index,  # SCG, a ramp
        ],
        axis=1,
    )


def write_record(folder, name, signal, fs=FS, sig_name=("I", "II", "RESP", "SCG")):
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV", "mV", "mV", "mV"][: signal.shape[1]],
        sig_name=list(sig_name)[: signal.shape[1]],
        p_signal=signal,
        fmt=["16"] * signal.shape[1],
        write_dir=folder,
    )


def write_cebs(folder, subjects=(1, 6), records_file=True):
    names = []
    for subject in subjects:
        for k, state in enumerate("bmp"):
            name = f"{state}{subject:03d}"
            write_record(folder, name, _signal(LENGTHS[state], k, subject))
            names.append(name)
    if records_file:
        with open(os.path.join(folder, "RECORDS"), "w") as f:
            f.write("\n".join(names) + "\n")
    return folder


def test_windows_labels_and_values(tmp_path):
    folder = write_cebs(str(tmp_path))
    ds = load_physionet_cmebs(folder)
    assert ds.class_names == ("basal", "music", "post_music")
    assert sorted(ds.inputs) == ["ecg_i", "ecg_ii", "respiration", "scg"]
    assert ds.inputs["ecg_i"].shape == (14, 6, 1000)
    assert ds.inputs["scg"].dtype == np.float32
    assert (
        ds.metadata["record"].tolist()[:7] == ["b001"] * 2 + ["m001"] * 3 + ["p001"] * 2
    )
    assert ds.labels.tolist()[:7] == [0, 0, 1, 1, 1, 2, 2]
    assert ds.metadata["subject"].tolist() == [1] * 7 + [6] * 7
    assert ds.metadata["start_sample"].tolist()[:5] == [0, 6000, 0, 6000, 12000]
    # Example 3 = m001 samples 6000..11999, chunk 2 = samples 8000..8999.
    expected = _signal(LENGTHS["m"], 1, 1)[8000:9000]
    for c, name in enumerate(["ecg_i", "ecg_ii", "respiration", "scg"]):
        np.testing.assert_allclose(ds.inputs[name][3, 2], expected[:, c], atol=2e-4)

    folds = subject_group_folds(ds)
    assert [f["held_out"] for f in folds] == [0, 1]
    assert folds[0]["test"].tolist() == list(range(7))
    assert folds[1]["train"].tolist() == list(range(7))


def test_options_channels_stride_cap_and_mapping(tmp_path):
    folder = write_cebs(str(tmp_path), subjects=(3,), records_file=False)
    ds = load_physionet_cmebs(
        folder,
        records=["m003", "b003"],
        states={"b": "rest", "m": "music"},
        channels=["SCG", "I"],
        channel_names=["scg", "ecg"],
        chunk_samples=500,
        chunks_per_example=4,
        stride=1000,
        max_examples_per_record=5,
    )
    assert ds.class_names == ("rest", "music")
    assert ds.inputs["scg"].shape == (10, 4, 500)
    starts = ds.metadata["start_sample"].tolist()
    # m003: 18 windows of 2000 at stride 1000 (starts 0..17000), 5 evenly
    # spaced = round(linspace(0, 17, 5)); b003: 12 windows -> linspace(0, 11, 5).
    assert starts[:5] == [0, 4000, 8000, 13000, 17000]
    assert starts[5:] == [0, 3000, 6000, 8000, 11000]
    assert ds.labels.tolist() == [1] * 5 + [0] * 5
    np.testing.assert_allclose(
        ds.inputs["scg"][0, 0], _signal(19000, 1, 3)[:500, 3], atol=2e-4
    )
    np.testing.assert_allclose(
        ds.inputs["ecg"][5, 1], _signal(13000, 0, 3)[500:1000, 0], atol=2e-4
    )

    # Records named differently: a custom pattern maps them.
    write_record(folder, "subj07_rest", _signal(6000, 0, 7))
    custom = load_physionet_cmebs(
        folder,
        records=["subj07_rest"],
        record_pattern=r"^subj(?P<subject>\d+)_(?P<state>\w+)$",
        states={"rest": "basal"},
    )
    assert custom.metadata["subject"].tolist() == [7] and custom.class_names == (
        "basal",
    )


def test_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "cebsdb")
    assert_raises_with_message(
        lambda: load_physionet_cmebs(missing),
        r"directory not found: '.*cebsdb'",
        FileNotFoundError,
    )
    folder = str(tmp_path / "data")
    os.makedirs(folder)
    assert_raises_with_message(
        lambda: load_physionet_cmebs(folder),
        r"No WFDB records \(\*\.hea\) found",
        FileNotFoundError,
    )
    write_cebs(folder, subjects=(2,))
    assert_raises_with_message(
        lambda: load_physionet_cmebs(folder, records=["b009"]),
        r"WFDB header not found: '.*b009\.hea'",
        FileNotFoundError,
    )
    assert_raises_with_message(
        lambda: load_physionet_cmebs(folder, records=["x002"]),
        r"Unknown state prefix 'x' of record 'x002'.*\['b', 'm', 'p'\]",
    )
    assert_raises_with_message(
        lambda: load_physionet_cmebs(folder, records=["basal-2"]),
        r"record name 'basal-2' .* does not match record_pattern",
    )
    assert_raises_with_message(
        lambda: load_physionet_cmebs(folder, channels=["I", "II", "RESP", "PCG"]),
        r"'.*b002' has no signal 'PCG'. Signals: \['I', 'II', 'RESP', 'SCG'\]",
    )
    assert_raises_with_message(
        lambda: load_physionet_cmebs(folder, chunks_per_example=3, chunk_samples=5000),
        r"'.*b002' has 13000 samples, fewer than one example \(3 x 5000 = 15000\)",
    )
    write_record(folder, "b004", _signal(7000, 0, 4), fs=1000)
    assert_raises_with_message(
        lambda: load_physionet_cmebs(folder, records=["b004"]),
        r"'.*b004' is sampled at 1000 Hz; expected 5000 Hz",
    )
    write_record(folder, "m004", _signal(7000, 1, 4)[:, :2])
    assert_raises_with_message(
        lambda: load_physionet_cmebs(folder, records=["m004"]),
        r"'.*m004' has 2 signals; channel index 2 is out of range",
    )
    os.remove(os.path.join(folder, "p002.dat"))
    assert_raises_with_message(
        lambda: load_physionet_cmebs(folder, records=["p002"]),
        r"WFDB signal file not found: '.*p002\.dat' \(named in '.*p002\.hea'\)",
        FileNotFoundError,
    )
    with open(os.path.join(folder, "p002.dat"), "wb") as f:
        f.write(b"\x01\x02\x03")  # truncated signal file
    assert_raises_with_message(
        lambda: load_physionet_cmebs(folder, records=["p002"]),
        r"Cannot read WFDB record '.*p002'",
    )
    with open(os.path.join(folder, "b002.hea"), "w") as f:
        f.write("this is not a header\n")
    assert_raises_with_message(
        lambda: load_physionet_cmebs(folder, records=["b002"]),
        r"Cannot read WFDB header '.*b002\.hea'",
    )

    ds = load_physionet_cmebs(folder, records=["m002"])
    assert_raises_with_message(
        lambda: subject_group_folds(ds, groups=[(1,), (3,)]),
        r"subjects \[2\] are in no group",
    )
