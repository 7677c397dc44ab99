"""Training runs that never lose a model: atomic saves, no silent overwrite,
exact resume (issue 19)."""

import json
import re

import keras
import numpy as np
import pytest

from mmfusion_keras import runs
from mmfusion_keras.cli import main

TINY = ["--task", "digits-views", "--max-examples", "32", "--batch-size", "16"]
TINY += ["--verbose", "0"]


def train(out, *extra, fusion="mbaf", epochs="2"):
    argv = ["train", *TINY, "--fusion", fusion, "--epochs", epochs]
    return main([*argv, "--output", str(out), *extra])


def weights_of(path):
    model = keras.saving.load_model(path, compile=False)
    return [np.asarray(w) for w in model.get_weights()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    assert train(out) == 0
    return out


def test_second_train_without_overwrite_exits_2_and_keeps_the_model(finished, capsys):
    before = (finished / "model.keras").read_bytes()
    card = (finished / "model_card.json").read_bytes()
    capsys.readouterr()
    assert train(finished, fusion="concat") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(r"already holds a run \(model\.keras, .*--overwrite", err), err
    assert (finished / "model.keras").read_bytes() == before
    assert (finished / "model_card.json").read_bytes() == card


def test_resume_with_another_fusion_exits_2(finished, capsys):
    capsys.readouterr()
    assert train(finished, "--resume", fusion="concat") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "belongs to another run (fusion: checkpoint 'mbaf', command line " in err


def test_resume_on_a_finished_run_says_so(finished, capsys):
    before = (finished / "model.keras").read_bytes()
    capsys.readouterr()
    assert train(finished, "--resume") == 0
    assert "is already finished (2 epochs" in capsys.readouterr().out
    assert (finished / "model.keras").read_bytes() == before


def test_kill_during_save_leaves_the_previous_model_intact(
    finished, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("model.keras", "model_card.json", "checkpoint.npz"):
        (out / name).write_bytes((finished / name).read_bytes())
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def save_half_then_fail(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:  # the write starts...
            f.write(before["model.keras"][:1000])
        raise OSError(28, "No space left on device")  # ...and dies midway

    monkeypatch.setattr(keras.Model, "save", save_half_then_fail)
    capsys.readouterr()
    assert train(out, "--overwrite", fusion="concat", epochs="1") == 2
    err = capsys.readouterr().err
    assert "Could not write the run into" in err and "No space left" in err
    assert (out / "model.keras").read_bytes() == before["model.keras"]
    assert (out / "model_card.json").read_bytes() == before["model_card.json"]
    assert sorted(p.name for p in out.iterdir() if p.name != "checkpoint.npz") == [
        "model.keras",
        "model_card.json",
    ]  # no temporary file left behind


def test_atomic_json_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "metrics.json"
    runs.write_json(path, {"accuracy": 0.5})
    before = path.read_bytes()

    class Unserializable:
        pass

    with pytest.raises(TypeError):
        runs.write_json(path, {"accuracy": 0.9, "bad": Unserializable()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    args = ("--patience", "1")
    assert train(straight, *args, epochs="3") == 0

    original = runs.RunCheckpoint.on_epoch_end

    def killed_after_epoch_2(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt  # the process dies after epoch 2's checkpoint

    monkeypatch.setattr(runs.RunCheckpoint, "on_epoch_end", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(resumed, *args, epochs="3")
    assert not (resumed / "model.keras").exists()
    assert runs.read_checkpoint(resumed / "checkpoint.npz")["epochs_done"] == 2
    monkeypatch.setattr(runs.RunCheckpoint, "on_epoch_end", original)
    assert train(resumed, *args, "--resume", epochs="3") == 0

    a = json.loads((straight / "model_card.json").read_text())
    b = json.loads((resumed / "model_card.json").read_text())
    assert b["resumed"] and not a["resumed"]
    assert b["epochs_run"] == a["epochs_run"] == len(a["history"]["loss"])
    assert b["history"] == a["history"]  # same losses, epoch by epoch
    assert b["test_metrics"] == a["test_metrics"]
    for x, y in zip(
        weights_of(straight / "model.keras"), weights_of(resumed / "model.keras")
    ):
        np.testing.assert_array_equal(x, y)


def test_resume_needs_a_checkpoint_when_the_folder_holds_a_run(
    finished, tmp_path, capsys
):
    out = tmp_path / "old"
    out.mkdir()
    (out / "model.keras").write_bytes((finished / "model.keras").read_bytes())
    assert train(out, "--resume") == 2
    assert "holds a run (model.keras) but no checkpoint.npz" in capsys.readouterr().err


def test_nan_training_stops_and_keeps_the_previous_model(
    finished, tmp_path, monkeypatch, capsys
):
    import mmfusion_keras.tasks as tasks

    out = tmp_path / "run"
    out.mkdir()
    for name in ("model.keras", "model_card.json"):
        (out / name).write_bytes((finished / name).read_bytes())
    before = (out / "model.keras").read_bytes()
    real_get_task = tasks.get_task

    def poisoned(name, **kwargs):
        task = real_get_task(name, **kwargs)
        load = task.load

        def load_with_a_nan(split, seed=0):
            x, y = load(split, seed=seed)
            if split == "train":
                x = {k: v.copy() for k, v in x.items()}
                x["left"][3, 0] = np.nan
            return x, y

        task.load = load_with_a_nan
        return task

    monkeypatch.setattr(tasks, "get_task", poisoned)
    capsys.readouterr()
    assert train(out, "--overwrite", fusion="concat", epochs="3") == 2
    captured = capsys.readouterr()
    assert (
        "Training diverged: the loss or the weights became non-finite (epochs [1])"
        in captured.err
    )
    assert "no model was saved" in captured.err
    assert (out / "model.keras").read_bytes() == before
    assert not (out / "checkpoint.npz").exists()  # no checkpoint of NaN weights


def test_evaluate_notes_a_card_written_for_another_model(finished, tmp_path, capsys):
    (tmp_path / "model_card.json").write_bytes(
        (finished / "model_card.json").read_bytes()
    )
    other = keras.Sequential([keras.Input((5,), name="x"), keras.layers.Dense(2)])
    other.save(tmp_path / "model.keras")
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "model.keras")]) == 2
    assert "was written for another model.keras (its sha256 differs)" in (
        capsys.readouterr().out
    )


def test_checkpoint_restores_early_stopping_and_lr_schedule_state(tmp_path):
    def setup():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
        stop = keras.callbacks.EarlyStopping(patience=4, restore_best_weights=True)
        plateau = keras.callbacks.ReduceLROnPlateau(patience=2, cooldown=3)
        for c in (stop, plateau):
            c.set_model(model)
            c.on_train_begin()
        return model, stop, plateau

    model, stop, plateau = setup()
    stop.wait, stop.best, stop.best_epoch = 2, 0.25, 5
    stop.best_weights = [w + 1.0 for w in model.get_weights()]
    plateau.wait, plateau.best, plateau.cooldown_counter = 1, 0.3, 2
    path = str(tmp_path / "checkpoint.npz")
    saved = runs.RunCheckpoint(path, {"task": "t"}, 0, None, [stop, plateau])
    saved.set_model(model)
    saved.model_variables()  # builds the optimizer
    model.optimizer.learning_rate = 0.004  # as ReduceLROnPlateau would
    saved.epochs_done, saved.history = 6, {"loss": [1.0] * 6}
    saved.save()

    model2, stop2, plateau2 = setup()  # a fresh process: fresh callbacks
    state = runs.read_checkpoint(path)
    assert state["epochs_done"] == 6 and state["identity"] == {"task": "t"}
    resumed = runs.RunCheckpoint(path, {}, 0, None, [stop2, plateau2], state=state)
    resumed.set_model(model2)
    resumed.restore_model()
    resumed.on_train_begin()
    assert (stop2.wait, stop2.best, stop2.best_epoch) == (2, 0.25, 5)
    assert (plateau2.wait, plateau2.best, plateau2.cooldown_counter) == (1, 0.3, 2)
    for a, b in zip(stop.best_weights, stop2.best_weights):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.get_weights(), model2.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert resumed.initial_epoch == 6 and resumed.history == saved.history
    assert float(np.asarray(model2.optimizer.learning_rate)) == pytest.approx(0.004)


def test_killed_after_the_last_epoch_resumes_to_the_same_model(tmp_path, monkeypatch):
    # The kill lands between the last epoch's checkpoint and the model save:
    # resuming trains no epoch and saves the same model as a clean run.
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train(straight, fusion="concat") == 0
    original = runs.RunCheckpoint.on_epoch_end

    def killed_after_epoch_2(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(runs.RunCheckpoint, "on_epoch_end", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(resumed, fusion="concat")
    monkeypatch.setattr(runs.RunCheckpoint, "on_epoch_end", original)
    assert train(resumed, "--resume", fusion="concat") == 0
    a = json.loads((straight / "model_card.json").read_text())
    b = json.loads((resumed / "model_card.json").read_text())
    assert b["history"] == a["history"] and b["epochs_run"] == 2
    for x, y in zip(
        weights_of(straight / "model.keras"), weights_of(resumed / "model.keras")
    ):
        np.testing.assert_array_equal(x, y)


def test_tensorboard_without_the_package_is_a_one_line_error(
    tmp_path, monkeypatch, capsys
):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    out = tmp_path / "tb_run"
    assert train(out, "--tensorboard", str(tmp_path / "logs")) == 2
    err = capsys.readouterr().err
    assert "--tensorboard needs the `tensorboard` package" in err
    assert f"received: --tensorboard {tmp_path / 'logs'}" in err
    assert not out.exists()
