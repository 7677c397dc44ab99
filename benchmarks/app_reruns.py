"""Time the demo app's reruns in-process (Streamlit's AppTest), per prediction.

Runs `apps/demo_app.py` under AppTest on the active backend, then picks
another bundled test sample N times (one rerun each) and prints, per
rerun, the wall time of the whole rerun and the wall and process-CPU time
of each `demo_core.predict` call (the model, then its twin). No browser:
`benchmarks/app_latency_browser.py` measures what a user waits for; this
one isolates the server's prediction cost.

    KERAS_BACKEND=tensorflow .venv/bin/python benchmarks/app_reruns.py
    KERAS_BACKEND=tensorflow TF_ENABLE_ONEDNN_OPTS=1 .venv/bin/python \\
        benchmarks/app_reruns.py       # with TensorFlow's oneDNN kernels

The app sets `TF_ENABLE_ONEDNN_OPTS=0` unless it is set already, so the
second command measures the app as it was before that default.
"""

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(REPO, "apps", "demo_app.py")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, os.path.join(REPO, "apps"))
    import demo_core
    from streamlit.testing.v1 import AppTest

    predict = demo_core.predict
    calls = []

    def timed(*a, **k):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return predict(*a, **k)
        finally:
            calls.append((time.perf_counter() - wall, time.process_time() - cpu))

    demo_core.predict = timed
    at = AppTest.from_file(APP, default_timeout=600)
    start = time.perf_counter()
    at.run()
    if at.exception:
        raise SystemExit(f"The app failed: {at.exception}")
    print(
        f"backend {os.environ.get('KERAS_BACKEND', 'default')}, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, "
        f"model {at.selectbox(key='model').value}: first run "
        f"{time.perf_counter() - start:.1f} s"
    )
    for i in range(1, args.reruns + 1):
        picker = next(s for s in at.selectbox if s.key.startswith("sample:"))
        calls.clear()
        start = time.perf_counter()
        picker.select_index(i % len(picker.options)).run()
        rerun = time.perf_counter() - start
        cells = ", ".join(f"{w * 1000:.0f} ms (cpu {c * 1000:.0f})" for w, c in calls)
        print(f"rerun {i}: {rerun * 1000:.0f} ms; predict calls: {cells}")


if __name__ == "__main__":
    main()
