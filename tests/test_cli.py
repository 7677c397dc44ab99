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
            "--data",
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
    assert "No model_card.json beside" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(corrupt), "--task", "digits-views"]) == 2
    assert "Could not load" in capsys.readouterr().err
    other = keras.Sequential([keras.Input((5,), name="audio"), keras.layers.Dense(2)])
    other.save(tmp_path / "other.keras")
    other_path = str(tmp_path / "other.keras")
    assert main(["evaluate", "--model", other_path, "--task", "digits-views"]) == 2
    err = capsys.readouterr().err
    assert "The model expects inputs ['audio']" in err and "missing ['audio']" in err


@pytest.mark.parametrize("task", ["speech-text", "avdigits"])
def test_train_and_evaluate_bundled_task(task, tmp_path, capsys):
    out = tmp_path / task
    assert (
        main(
            [
                "train",
                "--task",
                task,
                "--fusion",
                "concat",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--max-examples",
                "32",
                "--output",
                str(out),
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    card = json.loads((out / "model_card.json").read_text())
    assert card["task"] == task and card["epochs_run"] == 1
    capsys.readouterr()
    # The task comes from the model card.
    assert (
        main(["evaluate", "--model", str(out / "model.keras"), "--data", "validation"])
        == 0
    )
    assert f"on {task}/validation" in capsys.readouterr().out


def test_evaluate_on_a_manifest_folder(trained_speech_text, tmp_path, capsys):
    import soundfile

    from mmfusion_keras.datasets.speech_text import load_speech_text

    ds = load_speech_text("test", max_seconds=3.0, max_examples=6)
    rows = ["audio,text,label"]
    for i in range(len(ds)):
        n = int(ds.metadata["audio_length"][i])
        soundfile.write(tmp_path / f"clip{i}.wav", ds.inputs["audio"][i][:n], 16000)
        label = ds.class_names[ds.labels[i]]
        rows.append(f'clip{i}.wav,"{ds.inputs["text"][i]}",{label}')
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    report = tmp_path / "report.json"
    code = main(
        [
            "evaluate",
            "--model",
            str(trained_speech_text),
            "--data",
            str(tmp_path),
            "--output",
            str(report),
        ]
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads(report.read_text())
    assert metrics["num_samples"] == 6
    # The same clips through the bundled loader give the same predictions.
    assert (
        main(["evaluate", "--model", str(trained_speech_text), "--data", "nowhere"])
        == 2
    )
    assert "--data must be a bundled split" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_speech_text(tmp_path_factory):
    out = tmp_path_factory.mktemp("st")
    assert (
        main(
            [
                "train",
                "--task",
                "speech-text",
                "--fusion",
                "mbaf",
                "--epochs",
                "1",
                "--max-examples",
                "32",
                "--output",
                str(out),
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    return out / "model.keras"


def test_late_fusion_is_refused_where_it_does_not_apply(capsys):
    assert (
        main(["train", "--task", "avdigits", "--fusion", "late", "--epochs", "1"]) == 2
    )
    assert "Late fusion averages class scores" in capsys.readouterr().err
