import csv
import json

import keras
import pytest

from mmfusion_keras.cli import main as cli_main
from mmfusion_keras.experiments.snr_grid import parse_snr
from mmfusion_keras.experiments.snr_grid import parse_variant
from mmfusion_keras.testing import assert_raises_with_message


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
        ]
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
