"""`mmfusion reproduce early-fusion-avmnist / mfas-avmnist`: --quick end to
end on a tiny manifest corpus (PNG + WAV), the pairing and noise protocol,
errors and --resume."""

import json
import os
import shutil

import numpy as np
import pytest
from reproduce_testing import cli_error
from reproduce_testing import quick_runner
from reproduce_testing import quiet
from reproduce_testing import run_quick
from reproduce_testing import slow_unless_torch

from mmfusion_keras.experiments import reproduce_avmnist as av
from mmfusion_keras.experiments.reproduce_corpora import write_avmnist_manifests


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_avmnist_manifests(str(tmp_path_factory.mktemp("av") / "digits"))




# --- protocol -----------------------------------------------------------------


def test_pairs_agree_in_label_and_stay_inside_their_split(corpus):
    runner = quick_runner("early-fusion-avmnist")
    data = runner.load(corpus, quiet)
    assert runner.describe(data)["image_per_split"] == {
        "train": 40,
        "validation": 10,
        "test": 10,
    }
    split = data["split"]
    for modality in ("image", "audio"):
        seen = [set(split[modality][s].tolist()) for s in av.SPLITS]
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
        assert sum(len(s) for s in seen) == 60
    pairs = av.fold_pairs(data, {"train": 300, "validation": 50, "test": 50}, 0)
    used = {}
    for s in av.SPLITS:
        images, clips, labels = pairs[s]
        np.testing.assert_array_equal(data["image_labels"][images], labels)
        np.testing.assert_array_equal(data["clip_labels"][clips], labels)
        assert set(images.tolist()) <= set(split["image"][s].tolist())
        assert set(clips.tolist()) <= set(split["audio"][s].tolist())
        used[s] = (set(images.tolist()), set(clips.tolist()))
    assert not used["train"][0] & used["test"][0]
    assert not used["train"][1] & used["test"][1]
    # 300 pairs from 4 images x 4 clips per digit: every image is used.
    assert len(used["train"][0]) == 40
    assert len(set(zip(*pairs["train"][:2]))) > 100  # pairs differ, not 1:1


def test_split_column_is_followed(tmp_path):
    root = write_avmnist_manifests(str(tmp_path / "c"), split_column=True)
    data = quick_runner("mfas-avmnist").load(root, quiet)
    assert data["split_source"]["audio"] == "split column of the manifest"
    test_paths = data["clip_paths"][data["split"]["audio"]["test"]]
    assert len(test_paths) == 10
    assert all(p.endswith("_1.wav") for p in test_paths)


def test_noise_is_added_to_the_clip_before_front_padding():
    rng = np.random.default_rng(0)
    clip = np.sin(np.arange(500) / 3.0).astype("float32")
    out = av.noisy_front_padded(clip, 800, -3.0, rng)
    assert out.shape == (800,)
    assert np.all(out[:300] == 0.0)  # padding is exact zeros
    noise = out[300:] - clip
    snr = 10 * np.log10(np.mean(clip.astype("float64") ** 2) / np.mean(noise**2))
    assert abs(snr - (-3.0)) < 1e-3  # exact over the clip's samples
    np.testing.assert_array_equal(
        av.noisy_front_padded(clip, 800, None, rng)[300:], clip
    )
    spec = av.log_spectrogram(out[None])
    assert spec.shape == (1, av.stft_frames(800), 201)


def test_pca_energy_removal_keeps_a_quarter_of_the_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6, 6, 1)) * np.linspace(3, 0.1, 36).reshape(1, 6, 6, 1)
    y = av.remove_energy_pca(x, x, 0.75)
    kept = np.sum((y - x.mean(0)) ** 2) / np.sum((x - x.mean(0)) ** 2)
    assert 0.25 <= kept < 0.6
    np.testing.assert_array_equal(av.remove_energy_pca(x, x, 0.0), x)


def test_errors_are_one_line(tmp_path, corpus, capsys):
    out = str(tmp_path / "out")
    base = ["reproduce", "early-fusion-avmnist", "--quick", "--output", out]
    err = cli_error(capsys, base + ["--data-root", str(tmp_path / "nowhere")])
    assert "AV-MNIST-style data root not found" in err
    assert "images/manifest.csv" in err
    copy = str(tmp_path / "copy")
    shutil.copytree(corpus, copy)
    os.remove(os.path.join(copy, "audio", "manifest.csv"))
    err = cli_error(capsys, base + ["--data-root", copy])
    assert "Missing manifest(s)" in err and "audio/manifest.csv" in err
    shutil.rmtree(copy)
    shutil.copytree(corpus, copy)
    with open(os.path.join(copy, "images", "digits", "d3_002.png"), "wb") as f:
        f.write(b"not a png")
    err = cli_error(capsys, base + ["--data-root", copy])
    assert "Cannot read image file" in err and "d3_002.png" in err
    shutil.copy(
        os.path.join(corpus, "images", "digits", "d3_002.png"),
        os.path.join(copy, "images", "digits"),
    )
    with open(os.path.join(copy, "audio", "clips", "4_spk1_1.wav"), "wb") as f:
        f.write(b"not a wav")
    cmd = ["reproduce", "mfas-avmnist", "--quick", "--output", out]
    err = cli_error(capsys, cmd + ["--data-root", copy])
    assert "4_spk1_1.wav" in err and "line" in err
    os.remove(os.path.join(copy, "images", "digits", "d3_002.png"))
    err = cli_error(capsys, cmd + ["--data-root", copy])
    assert "Image file not found" in err and "d3_002.png" in err
    assert not os.path.exists(out)


# --- end to end ---------------------------------------------------------------


@pytest.fixture(scope="module")
def early_fusion_run(corpus, tmp_path_factory):
    output = tmp_path_factory.mktemp("runs") / "early"
    return output, run_quick("early-fusion-avmnist", corpus, output)


@slow_unless_torch
def test_early_fusion_quick_report(early_fusion_run):
    output, report = early_fusion_run
    with open(output / "report.json") as f:
        saved = json.load(f)
    assert list(saved["results"]) == ["initial", "fc"]
    fc = saved["results"]["fc"]
    assert fc["paper"] == {"cells_initial_ge": 1.0}
    assert fc["parameters"] > 0
    units = {u["variant"]: u for u in saved["units"]}
    grid = units["fc"]["details"]["grid"]
    assert [(a, v) for a, v, _ in grid] == [
        ("orig", "orig"),
        ("orig", "0.25"),
        ("0.5", "orig"),
        ("0.5", "0.25"),
    ]
    initial = {(a, v): acc for a, v, acc in units["initial"]["details"]["grid"]}
    share = np.mean([initial[(a, v)] >= acc for a, v, acc in grid])
    assert units["fc"]["metrics"]["cells_initial_ge"] == share
    assert units["fc"]["metrics"]["acc_train_snr"] == grid[3][2]
    assert "cells_initial_ge" not in units["initial"]["metrics"]
    text = (output / "report.md").read_text()
    assert "### fc minus initial" in text and "| 0.5 |" in text
    assert "Fig. 1-4 are images" in text


@pytest.fixture(scope="module")
def mfas_run(corpus, tmp_path_factory):
    output = tmp_path_factory.mktemp("runs") / "mfas"
    return output, run_quick("mfas-avmnist", corpus, output)


@slow_unless_torch
def test_mfas_quick_report(mfas_run):
    output, report = mfas_run
    results = report["results"]
    assert list(results) == [
        "LeNet-5 (spectrogram)",
        "LeNet-3 (image)",
        "two-stream",
        "random",
        "MFAS",
    ]
    assert results["MFAS"]["paper"]["test_acc"] == 0.8838
    assert results["random"]["paper"]["top5_val_mean"] == 0.9203
    units = {u["variant"]: u for u in report["units"]}
    mfas = units["MFAS"]
    assert len(mfas["details"]["top"]) == 1  # quick top_k
    assert mfas["details"]["trained_architectures"] == 4  # quick budget
    vals = [r["val_accuracy"] for r in mfas["details"]["top"]]
    assert mfas["metrics"]["top5_val_mean"] == pytest.approx(np.mean(vals))
    for name in ("audio_lenet.keras", "image_lenet.keras", "features.npz"):
        assert (output / "work" / "seed0" / "holdout" / name).exists()
    assert "| test accuracy (Table 2" in (output / "report.md").read_text()


@slow_unless_torch
def test_resume_continues_where_it_stopped(early_fusion_run, mfas_run, corpus):
    output, report = early_fusion_run
    os.remove(output / "units" / "seed0" / "holdout" / "fc.json")
    lines = []
    resumed = run_quick(
        "early-fusion-avmnist", corpus, output, resume=True, log=lines.append
    )
    assert "  initial: done (skipped)" in lines
    assert "1 already done (--resume)" in lines[2]
    assert any(line.startswith("  fc: acc_train_snr") for line in lines)
    assert (
        resumed["results"]["initial"]["overall"]
        == report["results"]["initial"]["overall"]
    )
    # MFAS: the unimodal nets and features are kept; a lost unit is redone
    # from them without training the LeNets again.
    output, report = mfas_run
    os.remove(output / "units" / "seed0" / "holdout" / "two-stream.json")
    lines = []
    resumed = run_quick("mfas-avmnist", corpus, output, resume=True, log=lines.append)
    assert "  MFAS: done (skipped)" in lines
    assert not any("training the unimodal" in line for line in lines)
    assert (
        resumed["results"]["two-stream"]["overall"]
        == report["results"]["two-stream"]["overall"]
    )
