import csv
import json

import keras

from mmfusion_keras.cli import main as cli_main
from mmfusion_keras.experiments.mbaf_ablation import expand_cells
from mmfusion_keras.experiments.mbaf_ablation import layer_accepts
from mmfusion_keras.experiments.mbaf_ablation import load_grid
from mmfusion_keras.testing import assert_raises_with_message

ARGV = [
    "mbaf-ablation",
    "--tasks", "digits-views",
    "--groups", "per_modality",
    "--seeds", "0",
    "--epochs", "1",
    "--max-examples", "24",
    "--batch-size", "8",
]  # fmt: skip


def test_one_cell_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "ablation"
    assert cli_main([*ARGV, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 cells x 1 seeds x 1 tasks = 1 runs" in printed
    with open(out / "mbaf_ablation.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["task"] == "digits-views" and row["memory"] == "per_modality"
    assert row["memory_slots"] == "30" and row["read"] == "self"
    assert row["seeds"] == "0"
    assert 0.0 <= float(row["accuracy_mean"]) <= 1.0
    assert float(row["accuracy_std"]) == 0.0  # one seed
    assert 0 <= float(row["distinct_slots_mean"]) <= 30
    assert 0.0 <= float(row["read_entropy_mean"]) <= 1.0
    summary = json.loads((out / "mbaf_ablation.json").read_text())
    assert summary["backend"] == keras.config.backend()
    assert summary["command"].startswith("mmfusion mbaf-ablation")
    (run,) = summary["runs"]
    # Two memories (one per modality), each with its own health.
    assert [h["name"] for h in run["memory_health"]] == ["fusion/0", "fusion/1"]
    assert run["distinct_slots"] == min(
        h["distinct_slots"] for h in run["memory_health"]
    )
    assert run["num_test"] == 24 and run["epochs_run"] == 1
    table = (out / "mbaf_ablation.md").read_text()
    assert "| per_modality | 30 | self | per_modality | " in table
    # Resume: the finished run is read back, not trained again.
    run_file = out / "runs" / "digits-views" / run["cell"] / "seed0.json"
    before = run_file.read_text()
    assert cli_main([*ARGV, "--output", str(out)]) == 0
    assert "seed 0: done before" in capsys.readouterr().out
    assert run_file.read_text() == before


def test_grid_cells_are_deduplicated():
    grid = load_grid()
    cells = expand_cells(grid, log=lambda message: None)
    # 6 sizes x (self, cross) + per-modality memory; the write group adds
    # one cell (the other write equals the base cell) when the layer has it,
    # the Eq. 5-6 group three (one reading is the default) and the old
    # defaults one.
    extra = (1 if layer_accepts("write") else 0) + (
        4 if layer_accepts("composition_attention") else 0
    )
    assert len(cells) == 13 + extra
    assert len({c["id"] for c in cells}) == len(cells)
    base = [c for c in cells if "memory_size" in c["groups"]]
    assert sorted(c["config"]["memory_slots"] for c in base) == [
        10, 20, 30, 40, 50, 100
    ]  # fmt: skip
    cross = [c for c in cells if c["config"]["read"] == "cross"]
    assert len(cross) == 6 and all(c["groups"] == ["cross_read"] for c in cross)
    quick = expand_cells(grid, ["memory_size"], [10, 30], log=lambda message: None)
    assert [c["config"]["memory_slots"] for c in quick] == [10, 30]


def test_errors(capsys):
    assert_raises_with_message(
        lambda: expand_cells(load_grid(), ["size"]),
        r"unknown group\(s\) \['size'\]\. Expected some of \['memory_size'",
    )
    assert cli_main(["mbaf-ablation", "--seeds", "a,1"]) == 2
    assert "`--seeds` takes comma-separated integers >= 0" in capsys.readouterr().err
    assert cli_main(["mbaf-ablation", "--epochs", "0"]) == 2
    assert "`--epochs` must be an integer >= 1" in capsys.readouterr().err


def test_speech_text_uses_the_text_features_of_mmfusion_train(capsys):
    import argparse

    from mmfusion_keras.experiments.mbaf_ablation import add_arguments
    from mmfusion_keras.experiments.mbaf_ablation import settings
    from mmfusion_keras.tasks import DEFAULT_TEXT_ENCODER

    parser = add_arguments(argparse.ArgumentParser())
    s = settings(parser.parse_args(["--tasks", "speech-text,digits-views"]))
    assert s["training"]["speech-text"]["text_encoder"] == DEFAULT_TEXT_ENCODER
    assert "text_encoder" not in s["training"]["digits-views"]
    s = settings(
        parser.parse_args(["--tasks", "speech-text", "--text-encoder", "tokens"])
    )
    assert s["training"]["speech-text"]["text_encoder"] == "tokens"
    assert (
        cli_main(["mbaf-ablation", "--tasks", "speech-text", "--text-encoder", "bert"])
        == 2
    )
    err = capsys.readouterr().err
    assert "`--text-encoder` must be one of ['glove', 'minilm', 'tokens']" in err
    assert "Received: 'bert'" in err
