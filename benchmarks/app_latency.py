"""Warm latency of the demo app, from an uploaded 5 s clip to the last plot.

Times the functions `apps/demo_app.py` calls for one request, in the same
order: decode the uploaded WAV bytes (`demo_core.decode_audio`), prepare the
inputs, run the MBAF model and its naive twin, inspect the memory layer,
project the memory (PCA), compute attention maps, and build the data and
Vega-Lite spec of every chart (`apps/demo_charts.py`, what the page sends;
the browser draws them). The model is cached per model in the app
(`st.cache_resource`), so it is loaded once here too, before timing.
Streamlit's own overhead and the browser's drawing are not included: see
`benchmarks/app_latency_browser.py` for what a user waits for.

Each backend runs in its own process (the backend is fixed per process).
The first `--warmup` requests (compilation, caches) are dropped; the median
of the next `--repeats` is reported, with its parts. The machine's load
average is printed too: on a shared CPU the numbers move with it.

    .venv/bin/python benchmarks/app_latency.py
    .venv/bin/python benchmarks/app_latency.py --backends jax --blank text
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "apps"))
sys.path.insert(1, REPO)  # this checkout's library


def _clip_bytes(seconds, rate=44100):
    """A 5 s, 44.1 kHz, 16-bit WAV: a voiced-like tone with noise."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 2.5 * t)) / 2
    wave = voice + 0.01 * rng.standard_normal(len(t))
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype("float32"), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _chart_specs(analysis):
    """The page's Vega-Lite charts (data + spec), as `demo_app` builds them."""
    import demo_charts as charts

    out = [charts.probability_chart(analysis)]
    if analysis.image is not None:
        out.append(charts.image_chart(analysis.image))
    if analysis.waveform is not None:
        out += list(charts.audio_charts(analysis.waveform, analysis.model_seconds))
    for view in analysis.memories:
        out += [charts.read_chart(analysis, view), charts.memory_chart(view)]
        if view.projection is not None:
            out.append(charts.pca_chart(analysis, view))
    if analysis.report is not None and "attention" in analysis.report:
        out.append(charts.attention_bar_chart(analysis))
    out += [charts.attention_map_chart(view) for view in analysis.attention]
    return out


def worker(args):
    import demo_core as core
    import keras

    core.configure_backend()  # as the app does
    path = os.path.join(args.models_dir, args.model, "model.keras")
    loaded = core.load_model(path)
    twin_path = core.find_twin(path, loaded.card, args.models_dir)
    twin = core.load_model(twin_path) if twin_path else None
    data = _clip_bytes(args.seconds)
    text = "I can't believe you did that again"
    memory_png = True  # charts: no per-model image to cache any more
    parts = {"decode": [], "model": [], "figures": [], "total": []}
    for i in range(args.warmup + args.repeats):
        t0 = time.perf_counter()
        waveform, _ = core.decode_audio(data, "clip.wav")
        t1 = time.perf_counter()
        analysis = core.analyze(
            loaded, twin, {"audio": waveform, "text": text}, args.blank
        )
        t2 = time.perf_counter()
        if memory_png is None and analysis.report is not None:  # cached per model
            memory_png = core.render_png(
                core.memory_figure(analysis.report["memory"], analysis.feature_spans)
            )
        t3 = time.perf_counter()
        pngs = _chart_specs(analysis)
        t4 = time.perf_counter()
        if i >= args.warmup:
            parts["decode"].append(t1 - t0)
            parts["model"].append(t2 - t1)
            parts["figures"].append(t4 - t3)
            parts["total"].append((t2 - t0) + (t4 - t3))
    result = {
        "backend": keras.config.backend(),
        "model": args.model,
        "twin": os.path.basename(os.path.dirname(twin_path)) if twin_path else None,
        "figures": len(pngs),
        "notes": analysis.notes,
        **{f"{k}_ms": 1000 * statistics.median(v) for k, v in parts.items()},
        "p90_total_ms": 1000
        * sorted(parts["total"])[int(0.9 * (len(parts["total"]) - 1))],
        "load_average": os.getloadavg()[0],
    }
    print("RESULT " + json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--model", default="speech_text_mbaf")
    parser.add_argument("--models-dir", default=os.path.join(REPO, "saved_models"))
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length")
    parser.add_argument("--blank", default=None, help="modality to blank, e.g. text")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    print(
        f"Warm latency of the demo app, {args.seconds:g} s WAV clip, model {args.model}"
        f"{f', {args.blank} blanked' if args.blank else ''}: median of "
        f"{args.repeats} requests after {args.warmup} warm-up ones (ms)\n"
    )
    print(
        "| backend | total | p90 total | decode | models + inspect | chart specs | load avg |"
    )
    print("|---|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        command = [sys.executable, os.path.abspath(__file__), "--worker", *sys.argv[1:]]
        out = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode or not lines:
            print(f"| {backend} | failed: {out.stderr.strip().splitlines()[-1:]} |")
            continue
        r = json.loads(lines[0][len("RESULT ") :])
        print(
            f"| {r['backend']} | {r['total_ms']:.0f} | {r['p90_total_ms']:.0f} | "
            f"{r['decode_ms']:.0f} | {r['model_ms']:.0f} | {r['figures_ms']:.0f} "
            f"({r['figures']} charts) | {r['load_average']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
