"""Models for the app tests: `$MMFUSION_MODELS_DIR`, the shipped ones, or tiny new ones."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

REPO = Path(__file__).resolve().parents[2]
NEEDED = ("speech_text_mbaf", "speech_text_concat", "avdigits_mbaf", "avdigits_concat")


def _has_models(root):
    return all((root / name / "model.keras").is_file() for name in NEEDED)


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    """A folder with the models the app tests use.

    `$MMFUSION_MODELS_DIR` or `saved_models/` when they hold the models;
    otherwise tiny 1-epoch models trained with the CLI (a few minutes).
    """
    for root in (os.environ.get("MMFUSION_MODELS_DIR"), REPO / "saved_models"):
        if root and _has_models(Path(root)):
            return Path(root)
    root = tmp_path_factory.mktemp("models")
    for name in NEEDED:
        task, fusion = name.rsplit("_", 1)
        task = {"speech_text": "speech-text"}.get(task, task)
        subprocess.run(
            [sys.executable, "-m", "mmfusion_keras.cli", "train", "--task", task,
             "--fusion", fusion, "--epochs", "1", "--verbose", "0",
             "--output", str(root / name)],
            check=True,
            env={**os.environ, "KERAS_BACKEND": keras.config.backend()},
        )  # fmt: skip
    return root
