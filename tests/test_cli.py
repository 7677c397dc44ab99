import json
import os
import re

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
            "--batch-size",
            "256",  # few steps: the test is about the files, not the model
            "--output",
            str(out),
            "--verbose",
            "0",
            "--resume",
            "--fusion-option",
            "memory_slots=12",
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
    # --fusion-option reached the layer and the card.
    assert card["fusion_options"] == {"memory_slots": 12}
    model = keras.saving.load_model(trained / "model.keras", compile=False)
    slots = [
        layer.memory_slots for layer in model.layers if hasattr(layer, "memory_slots")
    ]
    assert slots == [12]


def test_fusion_option_misuse_is_one_line(capsys):
    argv = ["train", "--fusion", "concat", "--epochs", "1", "--max-examples", "8"]
    assert main([*argv, "--fusion-option", "memory_slots=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.search(
        r"--fusion-option \{'memory_slots': 3\} does not fit fusion 'concat': ", err
    ), err
    with pytest.raises(SystemExit):
        main([*argv, "--fusion-option", "memory_slots"])
    err = capsys.readouterr().err
    assert re.search(r"expected KEY=VALUE .* Received: 'memory_slots'", err), err


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
    assert main(["evaluate", "--model", str(corrupt), "--task", "digits-views"]) == 2
    err = capsys.readouterr().err
    assert re.search(
        r"not a valid \.keras file: .*corrupt\.keras \(7 bytes; not a", err
    )
    other = keras.Sequential([keras.Input((5,), name="audio"), keras.layers.Dense(2)])
    other.save(tmp_path / "other.keras")
    other_path = str(tmp_path / "other.keras")
    assert main(["evaluate", "--model", other_path, "--task", "digits-views"]) == 2
    err = capsys.readouterr().err
    assert "The model expects inputs ['audio']" in err and "missing ['audio']" in err
    (tmp_path / "nocard").mkdir()
    lonely = tmp_path / "nocard" / "model.keras"
    lonely.write_bytes((tmp_path / "other.keras").read_bytes())
    assert main(["evaluate", "--model", str(lonely)]) == 2
    assert "No model_card.json beside" in capsys.readouterr().err


def test_evaluate_names_empty_and_truncated_keras_files(trained, tmp_path, capsys):
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    assert main(["evaluate", "--model", str(empty), "--task", "digits-views"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"not a valid .keras file: {empty} (0 bytes)" in err
    data = (trained / "model.keras").read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    assert main(["evaluate", "--model", str(truncated), "--task", "digits-views"]) == 2
    err = capsys.readouterr().err
    assert f"not a valid .keras file: {truncated} ({len(data) // 2} bytes;" in err


@pytest.fixture(scope="module")
def trained_bundled(tmp_path_factory):
    """One small concat model per bundled task, trained once per module."""
    runs = {}

    def train(task):
        if task not in runs:
            out = tmp_path_factory.mktemp(task)
            code = main(
                [
                    "train",
                    "--task",
                    task,
                    "--fusion",
                    "concat",
                    # fast; the MiniLM kinds: tests/test_speech_text_pipeline.py
                    *(["--text-encoder", "tokens"] if task == "speech-text" else []),
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
            assert code == 0
            runs[task] = out
        return runs[task]

    return train


@pytest.mark.parametrize("task", ["speech-text", "avdigits"])
def test_train_and_evaluate_bundled_task(task, trained_bundled, capsys):
    out = trained_bundled(task)
    card = json.loads((out / "model_card.json").read_text())
    assert card["task"] == task and card["epochs_run"] == 1
    capsys.readouterr()
    # The task comes from the model card.
    assert (
        main(["evaluate", "--model", str(out / "model.keras"), "--data", "validation"])
        == 0
    )
    assert f"on {task}/validation" in capsys.readouterr().out


def test_evaluate_on_a_manifest_folder(trained_bundled, tmp_path, capsys):
    trained_speech_text = trained_bundled("speech-text") / "model.keras"
    import soundfile

    from mmfusion_keras.datasets.speech_text import load_speech_text

    ds = load_speech_text("test", max_seconds=3.0, max_examples=6)
    rows = ["audio,text,label"]
    for i in range(len(ds)):
        n = int(ds.metadata["audio_length"][i])
        clip = ds.inputs["audio"][i][:n]
        soundfile.write(tmp_path / f"clip{i}.wav", clip, 16000, subtype="FLOAT")
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
    # The same clips through the bundled loader (float WAV: no quantization)
    # give the same confusion matrix.
    from mmfusion_keras.cli import _predict_labels
    from mmfusion_keras.metrics import classification_metrics
    from mmfusion_keras.tasks import prepare_inputs

    card = json.loads((trained_speech_text.parent / "model_card.json").read_text())
    inputs, _ = prepare_inputs(
        card["preprocessing"],
        {"audio": list(ds.inputs["audio"]), "text": list(ds.inputs["text"])},
    )
    model = keras.saving.load_model(trained_speech_text, compile=False)
    bundled = classification_metrics(
        ds.labels, _predict_labels(model, inputs), card["classes"]
    )
    assert metrics["confusion_matrix"] == bundled["confusion_matrix"]
    assert (
        main(["evaluate", "--model", str(trained_speech_text), "--data", "nowhere"])
        == 2
    )
    assert "--data must be a bundled split" in capsys.readouterr().err


def test_late_fusion_is_refused_where_it_does_not_apply(capsys):
    assert (
        main(["train", "--task", "avdigits", "--fusion", "late", "--epochs", "1"]) == 2
    )
    assert "Late fusion averages class scores" in capsys.readouterr().err


def _unwritable_folder(tmp_path):
    """A folder no file can be created in (as root: read-only /sys/fs)."""
    import tempfile

    folder = tmp_path / "locked"
    folder.mkdir()
    os.chmod(folder, 0o500)
    for candidate in (folder, "/sys/fs"):
        try:
            with tempfile.TemporaryFile(dir=candidate):
                pass
        except OSError:
            return candidate
    pytest.skip("no unwritable folder on this machine (root without /sys)")


TRAIN_MISUSES = [
    (["--epochs", "0"], r"--epochs must be a positive integer. Received: --epochs 0"),
    (["--epochs", "-3"], r"--epochs must be a positive integer. Received: --epochs -3"),
    (["--batch-size", "-5"], r"--batch-size must be a positive integer. Received: "),
    (["--batch-size", "0"], r"--batch-size must be a positive integer. Received: "),
    (["--max-examples", "0"], r"--max-examples must be a positive integer"),
    (["--max-examples", "-1"], r"--max-examples must be a positive integer"),
    (["--patience", "-1"], r"--patience must be a non-negative integer"),
    (["--output", "{file}"], r"--output must be a folder, but .*afile is an existing"),
    (["--output", "{file}/sub"], r"Cannot write to --output folder .*afile/sub: Not a"),
    (["--output", "{locked}/run"], r"Cannot write to --output folder .*: (Perm|Oper)"),
    (["--output", "{dir}", "--resume", "--overwrite"], r"either --overwrite or --r"),
    (["--resume"], r"--resume needs --output \(the run folder\)"),
    (["--overwrite"], r"--overwrite needs --output"),
]


@pytest.mark.parametrize("extra,message", TRAIN_MISUSES)
def test_train_misuse_is_one_line_before_loading_data(
    extra, message, tmp_path, monkeypatch, capsys
):
    import mmfusion_keras.tasks

    def no_data(name, **kwargs):
        raise AssertionError("data loaded before the arguments were checked")

    monkeypatch.setattr(mmfusion_keras.tasks, "get_task", no_data)
    (tmp_path / "afile").write_text("x")
    names = {"file": tmp_path / "afile", "dir": tmp_path / "d"}
    if any("{locked}" in e for e in extra):
        names["locked"] = _unwritable_folder(tmp_path)
    extra = [e.format(**names) for e in extra]
    assert main(["train", "--epochs", "1", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_evaluate_output_misuse_is_one_line_before_evaluating(
    trained, tmp_path, monkeypatch, capsys
):
    import mmfusion_keras.metrics

    def no_metrics(*args, **kwargs):
        raise AssertionError("metrics computed before --output was checked")

    monkeypatch.setattr(mmfusion_keras.metrics, "classification_metrics", no_metrics)
    model = str(trained / "model.keras")
    locked = _unwritable_folder(tmp_path)
    cases = [
        (tmp_path, r"--output must be a file path, but .* is a folder"),
        (tmp_path / "no" / "m.json", r"The folder of --output .*m\.json does not "),
        (os.path.join(locked, "m.json"), r"Cannot write --output .*m\.json: (Perm|Op)"),
    ]
    for output, message in cases:
        assert main(["evaluate", "--model", model, "--output", str(output)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(message, err), err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--seeds", "0,a"], r"--seeds must be comma-separated integers. Received: "),
        (["--epochs", "0"], r"--epochs must be a positive integer"),
        (["--batch-size", "-5"], r"--batch-size must be a positive integer"),
    ],
)
def test_compare_misuse_is_one_line(argv, message, capsys):
    assert main(["compare", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
