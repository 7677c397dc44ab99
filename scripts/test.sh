#!/usr/bin/env bash
# Sets up ./.venv, then runs the test suite once per Keras backend, each in
# its own pytest process. Fails if any backend fails. Extra arguments go to
# pytest (e.g. `bash scripts/test.sh -x tests/layers`); `-rs` prints the
# reason of every skipped test, `--durations=10` the ten slowest tests.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh || exit 1
export TF_CPP_MIN_LOG_LEVEL=3
# Two pytest-xdist workers per backend (one per core of the CI machine); a
# test file stays on one worker, so its module fixtures are built once.
# MMFUSION_TEST_WORKERS=0 runs in a single process.
workers=${MMFUSION_TEST_WORKERS:-2}
status=0
summary=()
for backend in tensorflow jax torch; do
    echo "=== KERAS_BACKEND=$backend"
    start=$(date +%s)
    # JAX: a compilation cache for this run only (fresh directory, removed
    # after), shared by the workers and the CLI subprocesses the tests
    # start, which compile the same programs again (tests/test_cli*.py and
    # test_snr_grid.py: 103 -> 77 s of CPU with a cold cache).
    cache=""
    extra=()
    if [ "$backend" = jax ] && [ -z "${JAX_COMPILATION_CACHE_DIR:-}" ]; then
        cache=$(mktemp -d)
        extra=(JAX_COMPILATION_CACHE_DIR="$cache"
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0)
    fi
    env "${extra[@]}" KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -rs \
        --durations=10 -n "$workers" --dist loadfile "$@"
    code=$?
    if [ -n "$cache" ]; then rm -rf "$cache"; fi
    took=$(( $(date +%s) - start ))
    if [ $code -ne 0 ]; then status=1; fi
    summary+=("$backend: exit $code in ${took}s")
done
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit $status
