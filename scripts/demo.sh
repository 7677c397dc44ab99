#!/usr/bin/env bash
# The main job: sets up ./.venv, then trains naive (concatenation) fusion and
# memory-based attentive fusion on the bundled Digits-Views data and prints
# their test metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL=3
exec .venv/bin/mmfusion --backend "${KERAS_BACKEND:-jax}" compare \
    --task digits-views --fusions concat,mbaf --seeds 0 "$@"
