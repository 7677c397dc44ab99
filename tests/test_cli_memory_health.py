"""Memory health in `mmfusion train` (stdout, model card, History) and `compare`."""

import json

from mmfusion_keras import cli
from mmfusion_keras.cli import main


def _train(tmp_path, fusion):
    out = tmp_path / fusion
    code = main(
        [
            "train",
            "--task", "digits-views",
            "--fusion", fusion,
            "--epochs", "2",
            "--max-examples", "32",
            "--batch-size", "16",
            "--output", str(out),
            "--verbose", "0",
        ]
    )  # fmt: skip
    assert code == 0
    return out


def test_train_prints_and_records_memory_health(tmp_path, capsys):
    out = _train(tmp_path, "mbaf")
    printed = capsys.readouterr().out
    assert "memory health: fusion: " in printed
    assert " of 30 slots distinct" in printed
    card = json.loads((out / "model_card.json").read_text())
    (health,) = card["memory_health"]
    assert card["skipped_memory_writes"] == {"fusion": 0}
    assert health["name"] == "fusion" and health["slots"] == 30
    assert 0 <= health["distinct_slots"] <= 30
    assert 0.0 <= health["read_entropy"] <= 1.0  # measured on the test split
    assert health["norm_min"] <= health["norm_mean"] <= health["norm_max"]
    assert "slot_norms" not in health


def test_health_callback_and_card_only_with_a_memory_layer():
    import numpy as np

    from mmfusion_keras.callbacks import MemoryHealthCallback
    from mmfusion_keras.models import build_fusion_classifier

    dims = {"a": 4, "b": 3}
    x = {"a": np.ones((2, 4)), "b": np.ones((2, 3))}
    mbaf = build_fusion_classifier(dims, 2, "mbaf", fusion_kwargs={"memory_slots": 3})
    concat = build_fusion_classifier(dims, 2, "concat")
    (callback,) = cli._memory_health_callbacks(mbaf, x)
    assert isinstance(callback, MemoryHealthCallback)
    assert cli._memory_health_callbacks(concat, x) == []
    assert cli._memory_health_card(concat, x) is None
    (health,) = cli._memory_health_card(mbaf, x)
    assert json.loads(json.dumps(health)) == health and health["slots"] == 3


def _card(fusion, seed, distinct):
    health = None
    if fusion != "concat":
        health = [
            {
                "name": "fusion",
                "slots": 10,
                "distinct_slots": distinct,
                "distinct_fraction": distinct / 10,
                "effective_rank": 2.0 + seed,
                "read_entropy": 0.5,
                "slots_read": 3 + seed,
                "top_slot_share": 0.5,
            }
        ]
    metrics = {"accuracy": 0.5, "unweighted_accuracy": 0.5, "macro_f1": 0.5}
    return None, {
        "test_metrics": metrics,
        "memory_health": health,
        "epochs_run": 1,
        "training_seconds": 0.1,
    }


def test_compare_reports_health_mean_and_std(monkeypatch, capsys):
    distinct = {0: 4, 1: 8}
    monkeypatch.setattr(
        cli,
        "_train_one",
        lambda task, fusion, seed, *a, **k: _card(fusion, seed, distinct[seed]),
    )
    code = main(["compare", "--fusions", "concat,mbaf", "--seeds", "0,1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "memory health on the test split, mean ± std over seeds" in printed
    # distinct 4 and 8: mean 6, std 2; effective rank 2 and 3: 2.5 ± 0.5.
    assert (
        "| mbaf | fusion | 10 | 6.00 ± 2.00 | 2.50 ± 0.50 | 0.50 ± 0.00 | 3.50 ± 0.50 |"
        in (printed)
    )
    assert "| concat | fusion |" not in printed
    # and each seed's own health under its accuracy line
    assert "memory health: fusion: 4 of 10 slots distinct (6 identical" in printed
    assert "memory health: fusion: 8 of 10 slots distinct (2 identical" in printed


def test_compare_without_memory_prints_no_health_table(monkeypatch, capsys):
    monkeypatch.setattr(
        cli, "_train_one", lambda task, fusion, seed, *a, **k: _card("concat", 0, 0)
    )
    assert main(["compare", "--fusions", "concat,sum", "--seeds", "0"]) == 0
    assert "memory health" not in capsys.readouterr().out
