import json
import os

from mmfusion_keras.experiments import delta_attention


def test_task_part_runs_and_separates_level_from_change(tmp_path):
    """The generated task: mean levels say little, end minus start says all."""
    out = str(tmp_path / "run")
    assert (
        delta_attention.main(
            ["--parts", "task", "--seeds", "0", "--data", "unaligned", "--output", out]
        )
        == 0
    )
    with open(os.path.join(out, "results.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert rows[0]["part"] == "header" and rows[0]["seeds"] == [0]
    acc = {r["model"]: r["test_accuracy"] for r in rows[1:]}
    assert acc["logistic on end_minus_start"] > 0.9
    assert acc["logistic on level"] < acc["logistic on end_minus_start"] - 0.3
    with open(os.path.join(out, "summary.md")) as f:
        assert "| task | unaligned | logistic on level |" in f.read()
    assert len(delta_attention.read_results(out)) == 2
    table = delta_attention.run(delta_attention.add_arguments(
        __import__("argparse").ArgumentParser()).parse_args(
            ["--summarize", "--output", out]))  # fmt: skip
    assert "| task | unaligned | logistic on end_minus_start |" in table


def test_summary_table_and_cli_verb():
    rows = [
        {"part": "attention", "aligned": False, "model": "relative", "seed": s,
         "test_accuracy": a, "params": 10, "fit_seconds": 2.0}
        for s, a in ((0, 0.5), (1, 0.7))
    ]  # fmt: skip
    table = delta_attention.summarize(rows)
    assert (
        "| attention | unaligned | relative | - | 0.600 ± 0.100 | 2 | 10 | 2 |" in table
    )
    from mmfusion_keras.cli import build_parser

    args = build_parser().parse_args(["delta-attention", "--parts", "models"])
    assert args.parts == ["models"]
