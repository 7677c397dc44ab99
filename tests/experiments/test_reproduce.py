"""`mmfusion reproduce`: recipes end to end (--quick) on tiny corpora written
in the real release formats, folds, label protocol, errors and --resume."""

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

from mmfusion_keras import cli
from mmfusion_keras.experiments import reproduce
from mmfusion_keras.experiments.reproduce_corpora import write_cebs_release
from mmfusion_keras.experiments.reproduce_corpora import write_iemocap_release

pytest.importorskip("wfdb")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpora")
    return {
        "iemocap": write_iemocap_release(str(base / "iemocap")),
        "cebs": write_cebs_release(str(base / "cebs")),
    }


# --- framework -------------------------------------------------------------------


def test_list_names_every_recipe_with_its_source(capsys):
    assert cli.main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in reproduce.RECIPES:
        recipe = reproduce.load_recipe(name)
        assert f"{name}: {recipe['title']}" in out
        assert recipe["paper"]["results"], name
        # Every paper number belongs to a variant the recipe runs.
        assert set(recipe["paper"]["results"]) <= set(recipe["params"]["variants"])


def test_overrides_are_parsed_and_checked():
    recipe = reproduce.load_recipe("mbaf-physionet")
    params = reproduce.resolve_params(
        recipe,
        quick=True,
        overrides=[
            reproduce.parse_override("epochs=3"),
            reproduce.parse_override("memory_slots.F-V=7"),
            reproduce.parse_override('variants=["F-V NF"]'),
        ],
    )
    assert params["epochs"] == 3 and params["memory_slots"]["F-V"] == 7
    assert params["variants"] == ["F-V NF"]
    assert params["lstm_units"] == recipe["quick"]["lstm_units"]
    with pytest.raises(ValueError, match="has no parameter 'epoch'"):
        reproduce.resolve_params(recipe, overrides=[("epoch", 3)])
    with pytest.raises(ValueError, match="expected key=value"):
        reproduce.parse_override("epochs")


def test_errors_are_one_line(tmp_path, corpora, capsys):
    out = str(tmp_path / "out")
    base = ["reproduce", "mbaf-iemocap", "--quick", "--output", out]
    err = cli_error(capsys, base + ["--data-root", str(tmp_path / "nowhere")])
    assert "IEMOCAP data root not found" in err and "Session1..Session5" in err
    os.makedirs(tmp_path / "empty")
    err = cli_error(capsys, base + ["--data-root", str(tmp_path / "empty")])
    assert "No IEMOCAP session folder" in err and "dialog/EmoEvaluation" in err
    partial = write_iemocap_release(
        str(tmp_path / "partial"), sessions=(1, 2), utterances_per_speaker=1
    )
    err = cli_error(capsys, base + ["--data-root", partial])
    assert "found sessions [1, 2], missing [3, 4, 5]" in err
    assert "--set sessions=[1, 2]" in err
    shutil.rmtree(os.path.join(partial, "Session2", "sentences"))
    err = cli_error(capsys, base + ["--data-root", partial, "--set", "sessions=[1, 2]"])
    assert "IEMOCAP folder missing" in err and "Session2/sentences/wav" in err
    # An unreadable WAV is named.
    bad = write_iemocap_release(
        str(tmp_path / "bad"), sessions=(1, 2), utterances_per_speaker=1
    )
    wav = os.path.join(
        bad, "Session1", "sentences", "wav", "Ses01F_impro01", "Ses01F_impro01_F000.wav"
    )
    with open(wav, "wb") as f:
        f.write(b"not a wav file")
    err = cli_error(capsys, base + ["--data-root", bad, "--set", "sessions=[1, 2]"])
    assert "Ses01F_impro01_F000.wav" in err
    # PhysioNet: missing subjects and records.
    cebs = str(tmp_path / "cebs")
    shutil.copytree(corpora["cebs"], cebs)
    os.remove(os.path.join(cebs, "m003.hea"))
    cmd = ["reproduce", "mbaf-physionet", "--quick", "--output", out]
    err = cli_error(capsys, cmd + ["--data-root", cebs])
    assert "subject -> missing states {3: ['m']}" in err
    for name in os.listdir(cebs):
        if name[1:4] in ("019", "020"):
            os.remove(os.path.join(cebs, name))
    err = cli_error(capsys, cmd + ["--data-root", cebs])
    assert "missing [19, 20]" in err and "Partial PhysioNet CEBS copy" in err
    err = cli_error(capsys, cmd + ["--data-root", str(tmp_path / "empty")])
    assert "No CEBS WFDB record" in err and "b001.hea" in err
    assert not os.path.exists(out)
    err = cli_error(capsys, ["reproduce", "no-such-recipe", "--data-root", "x"])
    assert "Unknown recipe 'no-such-recipe'" in err


# --- folds and label protocols ---------------------------------------------------------


def test_iemocap_label_protocol_and_speaker_independent_folds(corpora):
    runner = quick_runner("dual-memory-iemocap")
    data = runner.load(corpora["iemocap"], quiet)
    described = runner.describe(data)
    # 8 utterances per speaker cycle ang hap exc neu sad fru xxx sur: the
    # 4-class protocol keeps 5, exc merged into happiness.
    assert described["class_counts"] == {
        "anger": 10,
        "happiness": 20,
        "neutral": 10,
        "sadness": 10,
    }
    assert set(described["codes"]) == {"ang", "hap", "exc", "neu", "sad"}
    folds = runner.folds(data)
    assert [f["name"] for f in folds] == [f"session{s}" for s in range(1, 6)]
    speakers = data.metadata["speaker"]
    tested = []
    for fold in folds:
        idx = fold["indices"]
        test_speakers = set(speakers[idx["test"]])
        assert len(test_speakers) == 2
        for split in ("train", "validation"):
            assert not test_speakers & set(speakers[idx[split]])
            assert not set(idx[split]) & set(idx["test"])
        assert fold["groups"]["test"] == sorted(test_speakers)
        tested += sorted(test_speakers)
    assert len(tested) == len(set(tested)) == 10  # each speaker in one test fold
    holdout = quick_runner("mbaf-iemocap").folds(data)
    assert [f["name"] for f in holdout] == ["holdout"]
    sizes = {k: len(v) for k, v in holdout[0]["indices"].items()}
    assert sizes == {"train": 40, "validation": 5, "test": 5}


def test_cebs_subject_group_folds(corpora):
    runner = quick_runner("mbaf-physionet")
    data = runner.load(corpora["cebs"], quiet)
    # 2 examples per record (quick cap), 20 subjects, 3 states.
    assert runner.describe(data)["class_counts"] == {
        "basal": 40,
        "music": 40,
        "post_music": 40,
    }
    folds = runner.folds(data)
    assert [f["held_out"] for f in folds] == [
        f"subjects {list(range(g * 5 + 1, g * 5 + 6))}" for g in range(4)
    ]
    subjects = data.metadata["subject"]
    for fold in folds:
        test = set(subjects[fold["indices"]["test"]])
        assert len(test) == 5
        assert not test & set(subjects[fold["indices"]["train"]])


def test_cebs_first_five_minutes_crop(corpora):
    from mmfusion_keras.datasets.physionet_cmebs import load_physionet_cmebs

    # Music records are 900 samples; keeping the first 600 leaves 2 windows
    # of 6 x 50 in every record instead of 3.
    full = load_physionet_cmebs(corpora["cebs"], records=["m001"], chunk_samples=50)
    cut = load_physionet_cmebs(
        corpora["cebs"], records=["m001"], chunk_samples=50, max_samples_per_record=600
    )
    assert len(full) == 3 and len(cut) == 2
    np.testing.assert_array_equal(full.inputs["scg"][:2], cut.inputs["scg"])


# --- end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def physionet_run(corpora, tmp_path_factory):
    output = tmp_path_factory.mktemp("runs") / "physionet"
    report = run_quick("mbaf-physionet", corpora["cebs"], output, ["epochs=1"])
    return output, report


def test_physionet_quick_report(physionet_run):
    output, report = physionet_run
    with open(output / "report.json") as f:
        saved = json.load(f)
    assert saved["results"].keys() == {"F-IV NF", "F-IV MBAF"}
    assert saved["overrides"] == {"epochs": 1}
    nf = saved["results"]["F-IV NF"]
    assert nf["paper"] == {"ua": 0.3523}
    assert set(nf["per_fold"]) == {"group1"}
    ua = nf["overall"]["ua"]
    assert ua["n"] == 1 and 0.0 <= ua["mean"] <= 1.0 and ua["std"] == 0.0
    assert saved["folds"][0]["sizes"] == {"train": 90, "test": 30}
    text = (output / "report.md").read_text()
    assert saved["results"]["F-IV MBAF"]["parameters"] > nf["parameters"] > 0
    assert f"Parameters: {nf['parameters']}" in text
    assert "| UA | 35.23 | " in text and "| this run: group1 |" in text
    assert "`epochs=1`" in text and "Quick run" in text


def test_refuses_to_overwrite_and_resume_continues(physionet_run, corpora, capsys):
    output, report = physionet_run
    err = cli_error(
        capsys,
        [
            "reproduce",
            "mbaf-physionet",
            "--quick",
            "--data-root",
            corpora["cebs"],
            "--output",
            str(output),
            "--set",
            "epochs=1",
        ],
    )
    assert "already holds files" in err and "--resume" in err
    err = cli_error(
        capsys,
        [
            "reproduce",
            "mbaf-physionet",
            "--quick",
            "--data-root",
            corpora["cebs"],
            "--output",
            str(output),
            "--resume",
            "--set",
            "epochs=2",
        ],
    )
    assert "other settings (params differ)" in err
    # Interrupted after the first variant: its unit is kept, the rest redone.
    os.remove(output / "units" / "seed0" / "group1" / "F-IV_MBAF.json")
    os.remove(output / "report.json")
    lines = []
    resumed = run_quick(
        "mbaf-physionet", corpora["cebs"], output, ["epochs=1"], True, lines.append
    )
    assert "  F-IV NF: done (skipped)" in lines
    assert any(line.startswith("  F-IV MBAF: wa") for line in lines)
    assert "1 already done (--resume)" in lines[2]
    assert (
        resumed["results"]["F-IV NF"]["overall"]
        == report["results"]["F-IV NF"]["overall"]
    )
    assert (output / "report.json").exists()


@slow_unless_torch  # ~18 s of CPU on JAX (several minutes under load)
def test_mbaf_iemocap_quick(corpora, tmp_path):
    report = run_quick(
        "mbaf-iemocap",
        corpora["iemocap"],
        tmp_path / "out",
        ['variants=["MBAF-III"]', "max_segments_per_utterance=2"],
    )
    result = report["results"]["MBAF-III"]
    assert result["paper"] == {"wa": 0.822, "ua": 0.8066}
    unit = report["units"][0]
    assert np.sum(unit["details"]["confusion_matrix"]) == 5  # test utterances
    assert os.path.isfile(
        tmp_path / "out" / "work" / "seed0" / "holdout" / "audio_encoder.weights.h5"
    )
    assert "## MBAF-III" in (tmp_path / "out" / "report.md").read_text()


@slow_unless_torch  # ~30 s of CPU on JAX (several minutes under load)
def test_dual_memory_iemocap_quick(corpora, tmp_path):
    report = run_quick(
        "dual-memory-iemocap",
        corpora["iemocap"],
        tmp_path / "out",
        ['variants=["memory"]'],
    )
    assert report["folds"][0]["name"] == "session1"
    assert report["folds"][0]["groups"]["test"] == ["Ses01F", "Ses01M"]
    result = report["results"]["memory"]
    assert result["paper"] == {"wa": 0.768, "ua": 0.773, "f1": 0.77}
    assert np.sum(report["units"][0]["details"]["confusion_matrix"]) == 10


# --- CMU-MOSEI ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mosei_root(tmp_path_factory):
    pytest.importorskip("h5py")
    from mmfusion_keras.experiments.reproduce_corpora import write_mosei_release

    return write_mosei_release(str(tmp_path_factory.mktemp("mosei")), videos=20)


def test_mosei_split_by_video_and_missing_files(mosei_root, tmp_path, capsys):
    runner = quick_runner(
        "mult-mosei", [("variants", ["MulT aligned", "MulT unaligned"])]
    )
    data = runner.load(mosei_root, quiet)
    assert set(data) == {True, False}
    described = runner.describe(data)
    assert described["aligned"]["segments"] == 40
    assert described["unaligned"]["videos"] == 20
    (fold,) = runner.folds(data)
    videos = next(iter(data.values())).metadata["video"]
    seen = [set(videos[i].tolist()) for i in fold["indices"].values()]
    assert [len(s) for s in seen] == [16, 2, 2]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert fold["groups"] == {"train": 16, "validation": 2, "test": 2}
    partial = str(tmp_path / "partial")
    shutil.copytree(mosei_root, partial)
    os.remove(os.path.join(partial, "CMU_MOSEI_COVAREP.csd"))
    err = cli_error(
        capsys,
        [
            "reproduce",
            "mult-mosei",
            "--quick",
            "--data-root",
            partial,
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert "CMU-MOSEI files missing" in err and "['CMU_MOSEI_COVAREP.csd']" in err


@slow_unless_torch
def test_mult_mosei_quick(mosei_root, tmp_path):
    report = run_quick("mult-mosei", mosei_root, tmp_path / "out")
    result = report["results"]["MulT unaligned"]
    assert result["paper"] == {"acc_6": 0.507, "f1_6": 0.816}
    unit = report["units"][0]
    assert unit["details"]["parameters"] > 0
    assert set(unit["metrics"]) >= {"acc_6", "f1_6", "happy_acc_2", "fear_f1"}


@slow_unless_torch
def test_delta_mosei_quick(mosei_root, tmp_path):
    report = run_quick(
        "delta-mosei", mosei_root, tmp_path / "out", ['variants=["stagewise aligned"]']
    )
    result = report["results"]["stagewise aligned"]
    assert result["paper"]["acc_6"] == 0.497
    assert result["paper"]["fear_f1"] == 0.932
    assert report["units"][0]["details"]["parameters"] > 0


def test_backend_option_before_or_after_the_verb():
    parser = cli.build_parser()
    args = parser.parse_args(["reproduce", "mbaf-physionet", "--backend", "torch"])
    assert args.backend == "torch"
    args = parser.parse_args(["--backend", "jax", "reproduce", "mbaf-physionet"])
    assert args.backend == "jax"  # not reset by the verb's own option
