#!/usr/bin/env bash
# Creates ./.venv (if needed) and installs mmfusion-keras with its dev extras
# (TensorFlow, JAX, PyTorch CPU, keras-hub, Streamlit, pytest, ruff).
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "mmfusion-keras needs Python 3.11; found $("$PYTHON" --version 2>&1) at $PYTHON." >&2
    echo "Set PYTHON=/path/to/python3.11 and try again." >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "Creating ./.venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.mmfusion-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing mmfusion-keras[dev] into ./.venv (first run: several minutes)"
    if ! .venv/bin/python -m pip install --disable-pip-version-check -e ".[dev]" \
        > .venv/install.log 2>&1; then
        tail -n 40 .venv/install.log >&2
        echo "pip install failed; the whole log is in .venv/install.log" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
