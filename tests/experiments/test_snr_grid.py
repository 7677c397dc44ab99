import csv
import json

import keras
import pytest

from mmfusion_keras.cli import main as cli_main
from mmfusion_keras.experiments.snr_grid import parse_snr
from mmfusion_keras.experiments.snr_grid import parse_variant
from mmfusion_keras.testing import assert_raises_with_message

# Tiny runs: eager is faster on TensorFlow and PyTorch; on JAX the compiled
# step is (an eager C-LSTM step there is very slow).
EAGER = [] if keras.config.backend() == "jax" else ["--run-eagerly"]


def test_runner_end_to_end(tmp_path):
    out = tmp_path / "grid"
    code = cli_main(
        [
            "snr-grid",
            "--output", str(out),
            "--variants", "initial,fc",
            "--train-snr", "0.5,0.25",
            "--audio-snrs", "orig,0.5",
            "--image-snrs", "0.25,orig",
            "--units", "2",
            "--dense-units", "4",
            "--epochs", "1",
            "--max-train", "12",
            "--max-test", "6",
            "--last-frames", "5",
            "--verbose", "0",
        ] + EAGER
    )  # fmt: skip
    assert code == 0
    with open(out / "snr_grid.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2
    assert {r["variant"] for r in rows} == {"initial", "fc"}
    assert {(r["test_audio_snr"], r["test_image_snr"]) for r in rows} == {
        ("orig", "0.25"), ("orig", "orig"), ("0.5", "0.25"), ("0.5", "orig")
    }  # fmt: skip
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and r["num_test"] == "6"
        assert (r["train_audio_snr"], r["train_image_snr"]) == ("0.5", "0.25")
    assert (out / "snr_grid.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "snr_grid.json").read_text())
    assert summary["backend"] == keras.config.backend()
    assert summary["sizes"] == {"units": 2, "dense_units": 4}
    assert summary["audio_shape"] == [5, 201]
    assert summary["command"].startswith("mmfusion snr-grid")
    assert set(summary["variants_timing"]) == {"initial", "fc"}


def test_snr_and_variant_parsing():
    assert parse_snr("orig") is None and parse_snr("0.25") == 0.25
    assert parse_variant("second_no_audio") == ("second", "audio")
    assert parse_variant("fc") == ("fc", None)
    assert_raises_with_message(
        lambda: parse_snr("-3"),
        r"positive power ratio \(e.g. 0.5\) or 'orig'.*Received: '-3'",
    )
    assert_raises_with_message(
        lambda: parse_variant("late"), r"unknown variant 'late'.*'initial_no_audio'"
    )


def test_cli_reports_bad_snr(capsys):
    assert cli_main(["snr-grid", "--train-snr", "0.5"]) == 2
    assert "`--train-snr` takes two values" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--epochs", "--units"])
def test_cli_reports_bad_sizes(flag, capsys):
    assert cli_main(["snr-grid", flag, "0"]) == 2
    assert f"`{flag}` must be an integer >= 1" in capsys.readouterr().err


TINY = [
    "--units", "2",
    "--dense-units", "4",
    "--epochs", "1",
    "--max-train", "12",
    "--max-test", "6",
    "--last-frames", "5",
    "--verbose", "0",
] + EAGER  # fmt: skip


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_grid_trains_one_model_per_training_pair(tmp_path):
    # Fig. 2: every (train audio, train image) pair, each tested on the grid.
    out = tmp_path / "fig2"
    code = cli_main(
        ["snr-grid", "--output", str(out), "--train-grid", "--variants", "initial",
         "--train-audio-snrs", "orig,0.5", "--train-image-snrs", "0.25",
         "--audio-snrs", "orig,0.5", "--image-snrs", "0.25"] + TINY
    )  # fmt: skip
    assert code == 0
    rows = _rows(out / "snr_grid.csv")
    assert len(rows) == 2 * 2
    assert {(r["train_audio_snr"], r["train_image_snr"]) for r in rows} == {
        ("orig", "0.25"), ("0.5", "0.25")
    }  # fmt: skip
    for pair in (("orig", "0.25"), ("0.5", "0.25")):
        tests = {
            (r["test_audio_snr"], r["test_image_snr"])
            for r in rows
            if (r["train_audio_snr"], r["train_image_snr"]) == pair
        }
        assert tests == {("orig", "0.25"), ("0.5", "0.25")}
    assert (out / "snr_train_grid_initial.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "snr_grid.json").read_text())
    assert summary["figure"] == "2" and len(summary["variants_timing"]) == 2


def test_unimodal_curves_over_two_seeds(tmp_path):
    # Fig. 3-4: image-only and audio-only models, each tested over its own
    # modality's SNRs; two seeds give a mean/std summary per cell.
    out = tmp_path / "fig34"
    code = cli_main(
        ["snr-grid", "--output", str(out), "--unimodal-curves", "--seeds", "0,1",
         "--train-audio-snrs", "0.5", "--train-image-snrs", "0.25",
         "--audio-snrs", "orig,0.5", "--image-snrs", "0.25,orig"] + TINY
    )  # fmt: skip
    assert code == 0
    rows = _rows(out / "snr_grid.csv")
    image_only = [r for r in rows if r["variant"] == "initial_no_audio"]
    audio_only = [r for r in rows if r["variant"] == "initial_no_image"]
    assert len(rows) == 2 * 2 * 2 and len(image_only) == len(audio_only) == 4
    assert {r["test_audio_snr"] for r in image_only} == {"orig"}
    assert {r["test_image_snr"] for r in image_only} == {"0.25", "orig"}
    assert {r["test_image_snr"] for r in audio_only} == {"orig"}
    assert {r["train_audio_snr"] for r in audio_only} == {"0.5"}
    assert {r["seed"] for r in rows} == {"0", "1"}
    summary = _rows(out / "snr_grid_summary.csv")
    assert len(summary) == 4
    for cell in summary:
        values = [
            float(r["accuracy"])
            for r in rows
            if all(r[k] == cell[k] for k in list(cell)[:5])
        ]
        assert len(values) == 2 and cell["num_seeds"] == "2"
        assert float(cell["mean"]) == pytest.approx(sum(values) / 2, abs=1e-6)
        assert float(cell["std"]) == pytest.approx(
            abs(values[0] - values[1]) / 2, abs=1e-6
        )
    assert (out / "snr_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_aggregate_writes_mean_and_std_of_separate_runs(tmp_path, capsys):
    fields = ["variant", "train_audio_snr", "train_image_snr", "test_audio_snr",
              "test_image_snr", "accuracy", "num_test", "seed"]  # fmt: skip
    values = {0: [0.5, 0.25], 1: [0.75, 0.0], 2: [1.0, 0.5]}
    dirs = []
    for seed, (a, b) in values.items():
        d = tmp_path / f"s{seed}"
        d.mkdir()
        with open(d / "snr_grid.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(fields)
            w.writerow(["initial", "0.5", "0.25", "orig", "orig", a, 6, seed])
            w.writerow(["initial", "0.5", "0.25", "orig", "0.25", b, 6, seed])
        dirs.append(str(d))
    out = tmp_path / "mean"
    code = cli_main(
        ["snr-grid", "--aggregate", ",".join(dirs), "--output", str(out),
         "--verbose", "0"]
    )  # fmt: skip
    assert code == 0
    summary = {r["test_image_snr"]: r for r in _rows(out / "snr_grid_summary.csv")}
    first = [v[0] for v in values.values()]
    second = [v[1] for v in values.values()]
    mean = sum(first) / 3
    assert float(summary["orig"]["mean"]) == pytest.approx(mean)
    std = (sum((x - mean) ** 2 for x in first) / 3) ** 0.5
    assert float(summary["orig"]["std"]) == pytest.approx(std, abs=1e-6)
    assert float(summary["0.25"]["mean"]) == pytest.approx(sum(second) / 3)
    assert summary["orig"]["num_seeds"] == "3"
    assert (out / "snr_grid.png").read_bytes()[:4] == b"\x89PNG"
    assert "0.750 (0.204)" in (out / "snr_grid_summary.md").read_text()
    # The results are never replaced silently: a second run into the same
    # --output is refused (files untouched) unless --overwrite is given.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    again = ["snr-grid", "--aggregate", dirs[0], "--output", str(out), "--verbose", "0"]
    assert cli_main(again) == 2
    err = capsys.readouterr().err
    assert f"--output {str(out)!r} already holds a run (snr_grid.png, " in err
    assert "pass --overwrite to replace it" in err and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert cli_main(again + ["--overwrite"]) == 0
    replaced = {r["test_image_snr"]: r for r in _rows(out / "snr_grid_summary.csv")}
    assert float(replaced["orig"]["mean"]) == pytest.approx(values[0][0])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    capsys.readouterr()
    assert cli_main(["snr-grid", "--aggregate", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "no snr_grid.csv in" in err and "Expected the --output directory" in err
