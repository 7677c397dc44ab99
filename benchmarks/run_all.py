"""Every speed ratio the README quotes, measured side by side in one run.

Runs the existing benchmarks, one process per backend each, and prints:

1. fusion layers vs concatenation (`fusion_speed.py`, the small two-input
   classifier; ratio = layer / concat in the same process);
2. each paper network vs its naive-fusion twin (`fusion_speed.py --model
   physionet | iemocap | dual_memory`; dual memory at batch 1, as quoted);
3. backend vs fastest backend, for every row of 1-2 (step time / the
   fastest backend's step time for the same model) and for the multimodal
   C-LSTM (`scripts/early_fusion_speed.py 16 32 initial`, second epoch).

    .venv/bin/python benchmarks/run_all.py                  # everything
    .venv/bin/python benchmarks/run_all.py --quick          # a smoke run
    .venv/bin/python benchmarks/run_all.py --backends jax,tensorflow

MFAS cached-vs-uncached features is not included (see
`scripts/mfas_experiment.py`, which measures it on its own). Absolute
times depend on the machine and its load; the ratios are what to compare.
"""

import argparse
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUSION_SPEED = os.path.join(REPO, "benchmarks", "fusion_speed.py")
EARLY_FUSION = os.path.join(REPO, "scripts", "early_fusion_speed.py")


def _run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:]
        print(f"  failed: {' '.join(cmd[1:])}: {tail}", flush=True)
    return out.stdout


def _fusion_rows(model, backends, repeats, batch_size, fusions=None, clock="wall"):
    """Rows `(backend, fusion, train_ms, train_ratio, predict_ms, predict_ratio)`."""
    cmd = [sys.executable, FUSION_SPEED, "--model", model, "--backends", backends]
    cmd += ["--repeats", str(repeats), "--batch-size", str(batch_size)]
    cmd += ["--clock", clock]
    if fusions:
        cmd += ["--fusions", fusions]
    rows = []
    for line in _run(cmd).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and re.fullmatch(r"[\d.]+", cells[3] or "x"):
            backend, fusion = cells[0], cells[1]
            rows.append(
                (backend, fusion, float(cells[3]), float(cells[4]))
                + (float(cells[5]), float(cells[6]))
            )
    return rows


def _early_fusion(backends):
    """Second-epoch (wall, process CPU) seconds of the C-LSTM per backend."""
    times = {}
    for backend in backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        out = _run([sys.executable, EARLY_FUSION, "16", "32", "initial"], env=env)
        match = re.search(r"epoch 2 \(2 steps\) ([\d.]+) s \(cpu ([\d.]+)\)", out)
        if match:
            times[backend] = (float(match.group(1)), float(match.group(2)))
    return times


def _print_against_concat(title, rows):
    print(f"\n## {title}\n")
    print("| backend | fusion | train ms | / concat | predict ms | / concat |")
    print("|---|---|---|---|---|---|")
    for backend, fusion, train, t_ratio, predict, p_ratio in rows:
        print(
            f"| {backend} | {fusion} | {train:.2f} | {t_ratio:.2f} | "
            f"{predict:.2f} | {p_ratio:.2f} |"
        )


def _print_against_fastest_backend(sections, early):
    print("\n## Backend vs fastest backend (step time / fastest, same model)\n")
    print("| model | fusion | backend | train / fastest | predict / fastest |")
    print("|---|---|---|---|---|")
    for model, rows in sections:
        by_fusion = {}
        for backend, fusion, train, _, predict, _ in rows:
            by_fusion.setdefault(fusion, []).append((backend, train, predict))
        for fusion, entries in by_fusion.items():
            fastest_train = min(e[1] for e in entries)
            fastest_predict = min(e[2] for e in entries)
            for backend, train, predict in entries:
                print(
                    f"| {model} | {fusion} | {backend} | "
                    f"{train / fastest_train:.2f} | {predict / fastest_predict:.2f} |"
                )
    if early:
        # Wall time, and process CPU time (less sensitive to other load on
        # the machine); predict is not measured by the script.
        fastest = min(wall for wall, _ in early.values())
        fastest_cpu = min(cpu for _, cpu in early.values())
        for backend, (wall, cpu) in early.items():
            print(
                f"| early fusion C-LSTM (16 32 initial, epoch 2: {wall:.1f} s, "
                f"cpu {cpu:.1f} s) | initial | {backend} | {wall / fastest:.2f} "
                f"(cpu {cpu / fastest_cpu:.2f}) | - |"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="fusion_speed.py's clock: wall or process CPU seconds (cpu on a "
        "shared machine, with single-threaded math)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: concat vs gated fusion only, 3 repeats, no networks",
    )
    args = parser.parse_args(argv)
    print(
        f"backends={args.backends} repeats={args.repeats} clock={args.clock} "
        "(median step after "
        "5 warm-up steps; jit: XLA on TensorFlow, jax.jit on JAX, eager on "
        "PyTorch)",
        flush=True,
    )
    sections = []
    if args.quick:
        rows = _fusion_rows(
            "classifier", args.backends, 3, 64, "concat,gmu", args.clock
        )
        _print_against_concat("Fusion layers vs concatenation", rows)
        sections.append(("classifier", rows))
        _print_against_fastest_backend(sections, {})
        return 0
    rows = _fusion_rows("classifier", args.backends, args.repeats, 64, clock=args.clock)
    _print_against_concat("Fusion layers vs concatenation (batch 64)", rows)
    sections.append(("classifier", rows))
    for model, batch in (("physionet", 64), ("iemocap", 64), ("dual_memory", 1)):
        rows = _fusion_rows(model, args.backends, args.repeats, batch, clock=args.clock)
        _print_against_concat(f"{model} network vs naive twin (batch {batch})", rows)
        sections.append((model, rows))
    early = _early_fusion(args.backends)
    _print_against_fastest_backend(sections, early)
    return 0


if __name__ == "__main__":
    sys.exit(main())
