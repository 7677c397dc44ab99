"""What a user waits for: upload a clip, see every chart, in a real browser.

Starts `mmfusion demo --backend B` (one server per backend) and headless
Chromium, drives the page over the DevTools protocol
(`apps/browser_driver.py`), and per backend:

1. opens `/?model=MODEL` and waits for the prediction and every chart
   (reported as the first page load: model loading and compilation
   included);
2. uploads a WAV clip through the page's audio file input
   (`DOM.setFileInputFiles`, as a user's upload), and times from the upload
   until the page is idle (no rerun running, no greyed stale element), the
   "Inputs used" line names the new file, the waveform chart's title shows
   the new clip's length (each clip has its own length, so an old chart
   cannot pass) and every Vega-Lite chart is drawn. The page checks this
   itself every 16 ms and stamps the time (`performance.now()`), so the
   polling adds no DevTools round trips to the figure.

The first `--warmup` uploads are dropped (first decode, compiles for a new
input); the median of the next `--repeats` is the warm figure. The app's
own timer ("This run took N ms") of each upload is printed too, and the
load average: on a shared CPU the figures move with it.

    .venv/bin/python benchmarks/app_latency_browser.py
    .venv/bin/python benchmarks/app_latency_browser.py --backends jax --repeats 3
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "apps"))

import browser_driver as bd  # noqa: E402


def _clip(path, seconds, pitch):
    import numpy as np
    import soundfile as sf

    rate = 44100
    t = np.arange(int(seconds * rate)) / rate
    voice = 0.3 * np.sin(2 * np.pi * pitch * t) * (1 + np.sin(2 * np.pi * 2.5 * t)) / 2
    noise = 0.01 * np.random.default_rng(int(pitch)).standard_normal(len(t))
    sf.write(path, (voice + noise).astype("float32"), rate, subtype="PCM_16")


def _svg_has(text):
    return (
        'Array.from(document.querySelectorAll(\'[data-testid="stVegaLiteChart"] '
        f"svg')).some(s => s.textContent.includes({json.dumps(text)}))"
    )


def run_backend(backend, args, folder):
    result = {"backend": backend, "model": args.model}
    log = os.path.join(folder, f"server_{backend}.log")
    with (
        bd.start_server(backend, args.models_dir, log) as url,
        bd.start_chromium() as page,
    ):
        start = time.monotonic()
        page.call("Page.navigate", url=f"{url}/?model={args.model}")
        bd.wait(
            lambda: "Predicted class:" in page.text() and page.idle(),
            600,
            "the first page",
            interval=0.1,
        )
        charts = bd.wait(
            lambda: page.evaluate(bd.CHARTS_DRAWN), 60, "the charts", interval=0.1
        )
        result["first_load_s"] = round(time.monotonic() - start, 2)
        result["charts"] = charts
        times, app_ms = [], []
        for i in range(args.warmup + args.repeats):
            seconds = round(args.seconds + 0.05 * (i + 1), 2)
            name = f"upload_{backend}_{i}.wav"
            path = os.path.join(folder, name)
            _clip(path, seconds, 150 + 10 * i)
            title = f"Waveform, {seconds:.2f} s"
            condition = " && ".join(
                [
                    f"!({bd.RUNNING})",
                    "document.querySelector('[data-stale=\"true\"]') === null",
                    f"document.body.textContent.includes({json.dumps(repr(name))})",
                    _svg_has(title),
                    f"({bd.CHARTS_DRAWN}) >= {charts}",
                ]
            )
            # The page checks itself every 16 ms (textContent: no forced
            # layout) and stamps the time: the Python side only starts it.
            page.evaluate(
                "window.__t0 = performance.now(); window.__done = null;"
                f"(function check() {{ if ({condition}) "
                "window.__done = performance.now(); else setTimeout(check, 16); })()"
            )
            page.upload(0, path)
            done = bd.wait(
                lambda: page.evaluate("window.__done && window.__done - window.__t0"),
                300,
                f"upload {i}",
            )
            times.append(done / 1000.0)
            found = re.findall(r"This run took (\d+) ms", page.text())
            app_ms.append(int(found[-1]) if found else None)
        warm = times[args.warmup :]
        result["warm_median_s"] = round(statistics.median(warm), 3)
        result["warm_s"] = [round(t, 3) for t in warm]
        result["warmup_s"] = [round(t, 3) for t in times[: args.warmup]]
        result["app_timer_ms"] = app_ms[args.warmup :]
        result["load_average"] = [round(x, 1) for x in os.getloadavg()]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    parser.add_argument("--model", default="speech_text_mbaf")
    parser.add_argument("--models-dir", default=None, help="default: saved_models/")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if bd.CHROMIUM is None:
        sys.exit("Chromium is not installed (Debian: apt-get install chromium).")
    with tempfile.TemporaryDirectory(prefix="mmfusion-latency-") as folder:
        for backend in args.backends:
            try:
                result = run_backend(backend, args, folder)
            except AssertionError as e:  # a timeout: report it, go on
                result = {"backend": backend, "failed": str(e)}
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
