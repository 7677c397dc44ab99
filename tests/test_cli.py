import json

import keras
import numpy as np
import pytest

from mmfusion_keras.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(
        [
            "train",
            "--task",
            "digits-views",
            "--fusion",
            "mbaf",
            "--epochs",
            "1",
            "--output",
            str(out),
            "--verbose",
            "0",
            "--resume",
        ]
    )
    assert code == 0
    return out


def test_train_writes_model_and_card(trained, capsys):
    card = json.loads((trained / "model_card.json").read_text())
    assert card["fusion"] == "mbaf" and card["task"] == "digits-views"
    assert card["backend"] == keras.config.backend()
    assert card["epochs_run"] == 1
    assert len(card["classes"]) == 10
    test = card["test_metrics"]
    assert 0.0 <= test["accuracy"] <= 1.0
    assert np.array(test["confusion_matrix"]).sum() == test["num_samples"]
    assert card["command"].startswith("mmfusion train")


def test_evaluate(trained, tmp_path, capsys):
    metrics_path = tmp_path / "m.json"
    code = main(
        [
            "evaluate",
            "--model",
            str(trained / "model.keras"),
            "--split",
            "test",
            "--output",
            str(metrics_path),
        ]
    )
    assert code == 0
    metrics = json.loads(metrics_path.read_text())
    card = json.loads((trained / "model_card.json").read_text())
    assert metrics["accuracy"] == pytest.approx(card["test_metrics"]["accuracy"])
    assert "UA=" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--fusion", "nope"], r"Unknown fusion 'nope'. Expected one of"),
        (["train", "--task", "mnist"], r"Unknown task 'mnist'. Expected one of"),
        (
            ["evaluate", "--model", "missing.keras"],
            r"Model file not found: missing.keras",
        ),
        (["compare", "--fusions", "concat,bad"], r"Unknown fusion 'bad'"),
    ],
)
def test_user_errors_print_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err


def test_evaluate_rejects_non_keras_and_mismatched_models(tmp_path, capsys):
    bogus = tmp_path / "model.txt"
    bogus.write_text("not a model")
    assert main(["evaluate", "--model", str(bogus)]) == 2
    assert "Expected a .keras model file" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"garbage")
    assert main(["evaluate", "--model", str(corrupt)]) == 2
    assert "Could not load" in capsys.readouterr().err
    other = keras.Sequential([keras.Input((5,), name="audio"), keras.layers.Dense(2)])
    other.save(tmp_path / "other.keras")
    assert main(["evaluate", "--model", str(tmp_path / "other.keras")]) == 2
    err = capsys.readouterr().err
    assert "The model expects inputs ['audio']" in err and "missing ['audio']" in err
