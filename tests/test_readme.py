"""The README's quickstart runs as written (under the current backend)."""

import pathlib
import re

import keras

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _quickstart():
    text = README.read_text()
    section = text.split("## Quickstart", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)


def test_readme_starts_with_two_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.DOTALL).group(1)
    commands = [line for line in first_block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert ".venv" in text.split("## ", 1)[0]


def test_quickstart_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _quickstart()
    assert len(code.strip().splitlines()) <= 25
    namespace = {}
    exec(compile(code, "README quickstart", "exec"), namespace)
    # setdefault never overrides the backend this process runs under
    assert namespace["keras"].config.backend() == keras.config.backend()
    assert (tmp_path / "quickstart.keras").exists()
