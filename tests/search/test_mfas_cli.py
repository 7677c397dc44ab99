import json

import keras
import pytest

from mmfusion_keras.cli import main


# End to end (spectrograms, two LeNets, search, final training) at tiny
# sizes: seconds on PyTorch, so it runs in the default suite there; the
# compiled LeNets make it much slower on TensorFlow and JAX, where it is
# `slow` (run with `-m slow`).
def slow_unless_torch(test):
    return test if keras.config.backend() == "torch" else pytest.mark.slow(test)


@slow_unless_torch
def test_search_command_runs_and_resumes(tmp_path, capsys):
    argv = [
        "search",
        "--task",
        "avdigits",
        "--budget",
        "2",
        "--seed",
        "1",
        "--max-examples",
        "20",
        "--unimodal-epochs",
        "1",
        "--epochs",
        "1",
        "--top-k",
        "1",
        "--final-epochs",
        "1",
        "--batch-size",
        "32",
        "--run-eagerly",
        "--output",
        str(tmp_path),
        "--verbose",
        "0",
    ]
    assert main(argv) == 0
    result = json.loads((tmp_path / "result_mfas.json").read_text())
    assert result["num_trained"] == 2 and result["seed"] == 1
    assert len(result["best"]["description"]) == 1  # budget < |Gamma_1|
    assert 0.0 <= result["best"]["test_accuracy"] <= 1.0
    assert (tmp_path / "unimodal" / "audio_lenet.keras").exists()
    assert "mfas: 2 architectures" in capsys.readouterr().out
    # A second call finds the finished search and trains nothing new.
    assert main(argv) == 0
    state = json.loads((tmp_path / "search_mfas" / "state.json").read_text())
    assert len(state["history"]) == 2 and state["finished"]


def test_search_command_rejects_other_tasks(capsys):
    assert main(["search", "--task", "speech-text", "--budget", "1"]) == 2
    assert "supports --task avdigits only" in capsys.readouterr().err


def test_paper_protocol_flag_sets_the_papers_search():
    from mmfusion_keras.cli import _search_protocol
    from mmfusion_keras.cli import build_parser

    args = build_parser().parse_args(["search", "--paper-protocol", "--budget", "7"])
    protocol = _search_protocol(args)
    assert (args.budget, args.num_samples, args.max_layers, args.epochs) == (
        180,
        10,
        4,
        2,
    )
    assert protocol == {
        "temperature_schedule": "exponential",
        "search_iterations": 3,
        "level_one": "all",
    }
    plain = build_parser().parse_args(
        ["search", "--budget", "7", "--temperature-schedule", "gaussian"]
    )
    assert _search_protocol(plain) == {"temperature_schedule": "gaussian"}
    assert plain.budget == 7
