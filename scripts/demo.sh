#!/usr/bin/env bash
# The main job: sets up ./.venv, trains naive (concatenation) fusion and
# memory-based attentive fusion on the bundled Digits-Views data, prints
# their test metrics, then says how to open the Streamlit demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/mmfusion --backend "${KERAS_BACKEND:-jax}" compare \
    --task digits-views --fusions concat,mbaf --seeds 0 "$@"
cat <<'MSG'

Open the demo app (shipped models in saved_models/, upload a clip and text):
    .venv/bin/mmfusion demo            # then browse to http://localhost:8501
MSG
