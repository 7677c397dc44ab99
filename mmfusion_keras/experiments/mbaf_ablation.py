"""The MBAF paper's ablations: memory size, read, memory location, write.

Priyasad et al. (2021), section 6, study their memory-based attentive
fusion layer on IEMOCAP by changing one thing at a time: the memory size
(Table 4: 10, 20, 30, 40, 50, 100 slots), a cross-attention read that
composes and writes the swapped concatenation `x_s = x_m2 ⊕ x_m1` (Eq.
11-12, Table 6, over the same sizes), and a memory per modality instead
of one memory of the fused features (Eq. 13, section 6.3). This runner
trains `MemoryBasedAttentiveFusion` with each of these settings on the
bundled tasks (`speech-text`, `digits-views`) over several seeds, and adds
the write rule of Eq. 8 (`write="soft"`, every slot by its read weight, or
`write="selected"`, the slot of the largest read weight) and the readings
of Eq. 5-6 (`composition_attention`), with the layer's readings before
issue 13 (soft write, `c = softmax(features) ⊙ b`) as `old_defaults`, when
the layer has those options.

The grid (tasks, seeds, groups of cells, training settings, the `--quick`
subset) lives in `mbaf_ablation.json` beside this module; flags override
it. A cell is one layer configuration; cells shared by several groups
(e.g. 30 slots with self read is in `memory_size` and `write`) are
trained once. Each cell is resolved through the layer's own `get_config`,
so its recorded configuration (and its id) includes the layer's defaults
at the time of the run.

Per run (task, cell, seed) the runner records test accuracy, unweighted
accuracy (UA, mean per-class recall), macro-F1 and the memory health of
`mmfusion_keras.inspection.memory_health` on the test inputs (distinct
slots, effective rank, read entropy relative to uniform; for
`memory="per_modality"` the worst of the two memories). Outputs in
`--output`:

- `runs/<task>/<cell>/seed<k>.json`: one file per finished run. A later
  invocation with the same output skips the runs whose file exists with
  the same configuration (resume after an interruption, or add seeds);
- `mbaf_ablation.csv`: one row per (task, cell), mean and std over seeds;
- `mbaf_ablation.json`: the grid, every run, every cell summary, versions;
- `mbaf_ablation.md`: the tables (all cells, and Table 6's layout: self vs
  cross read over memory sizes).

The three summary files are rewritten after every run, so a partial run is
usable.

Run: `mmfusion mbaf-ablation --output runs/mbaf_ablation` (the full grid:
2 tasks x 18 cells x 3 seeds), `--quick` (digits-views, one seed, 3
memory sizes, 10 epochs), or `python -m mmfusion_keras.experiments.mbaf_ablation`.

Reference:
    Priyasad, Fernando, Denman, Sridharan, Fookes, "Memory Based Fusion
    for Multi-modal Deep Learning", Information Fusion 68 (2021), section
    6, Tables 4-6, Eq. 11-13.
"""

import argparse
import copy
import csv
import hashlib
import inspect
import json
import os
import sys
import time

import numpy as np

GRID_FILE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "mbaf_ablation.json"
)
METRICS = ("accuracy", "unweighted_accuracy", "macro_f1")
HEALTH = ("distinct_slots", "distinct_fraction", "effective_rank", "read_entropy")
CSV_FIELDS = (
    "task",
    "cell",
    "groups",
    "memory_slots",
    "read",
    "memory",
    "write",
    "eq56",
    "seeds",
    *(f"{key}_{stat}" for key in METRICS + HEALTH for stat in ("mean", "std")),
    "collapsed_runs",
    "epochs_mean",
    "train_seconds_mean",
)
# Layer-config keys that are not part of a cell's identity.
_NOT_IN_CELL = ("name", "trainable", "dtype", "seed")


def load_grid(path=None):
    """The grid of the experiment (the JSON data file), as a dict."""
    with open(path or GRID_FILE, encoding="utf-8") as f:
        return json.load(f)


def layer_accepts(argument):
    """True if `MemoryBasedAttentiveFusion` takes the constructor `argument`."""
    from mmfusion_keras.layers import MemoryBasedAttentiveFusion

    return argument in inspect.signature(MemoryBasedAttentiveFusion).parameters


def resolve_cell(kwargs):
    """A cell's full layer configuration (the layer's defaults filled in)."""
    from mmfusion_keras.layers import MemoryBasedAttentiveFusion

    config = MemoryBasedAttentiveFusion(**kwargs).get_config()
    return {
        key: value
        for key, value in sorted(config.items())
        if key not in _NOT_IN_CELL and not isinstance(value, dict)
    }


def cell_id(config):
    """A short, readable, file-safe id of a resolved cell configuration."""
    parts = [f"k{config['memory_slots']}", config["read"], config["memory"]]
    if "write" in config:
        parts.append(f"write-{config['write']}")
    if "composition_attention" in config:
        parts.append(f"eq56-{config['composition_attention']}")
    digest = hashlib.sha1(
        json.dumps(config, sort_keys=True).encode("utf-8")
    ).hexdigest()[:6]
    return "-".join(str(p) for p in parts) + f"-{digest}"


def expand_cells(grid, groups=None, memory_slots=None, log=print):
    """The grid's cells: `[{"id", "config", "kwargs", "groups"}]`, deduplicated.

    Args:
        grid: the data file's dict.
        groups: names of the groups to run (default: all).
        memory_slots: optional list overriding every group's memory sizes.
        log: where to say which groups are skipped (the layer lacks an
            option a group needs).
    """
    names = list(grid["groups"]) if groups is None else list(groups)
    unknown = [g for g in names if g not in grid["groups"]]
    if unknown:
        raise ValueError(
            f"mbaf-ablation: unknown group(s) {unknown}. Expected some of "
            f"{list(grid['groups'])}."
        )
    cells = {}
    for name in names:
        group = grid["groups"][name]
        needed = group.get("requires")
        if needed and not layer_accepts(needed):
            log(
                f"mbaf-ablation: skipping group {name!r}: this "
                f"MemoryBasedAttentiveFusion has no `{needed}` argument."
            )
            continue
        fixed = {**grid["base"], **group.get("set", {})}
        vary = dict(group.get("vary", {}))
        if memory_slots is not None and "memory_slots" in vary:
            vary["memory_slots"] = list(memory_slots)
        combos = [{}]
        for key, values in vary.items():
            combos = [{**c, key: v} for c in combos for v in values]
        for combo in combos:
            kwargs = {**fixed, **combo}
            config = resolve_cell(kwargs)
            key = cell_id(config)
            if key not in cells:
                cells[key] = {
                    "id": key,
                    "config": config,
                    "kwargs": kwargs,
                    "groups": [],
                }
            if name not in cells[key]["groups"]:
                cells[key]["groups"].append(name)
    return list(cells.values())


def add_arguments(parser):
    """The runner's options (shared by `main` and `mmfusion mbaf-ablation`)."""
    parser.add_argument(
        "--output",
        default="mbaf_ablation",
        help="directory for the runs and the CSV, JSON and markdown summaries; "
        "finished runs found there are skipped",
    )
    parser.add_argument(
        "--grid", default=None, help=f"grid data file (default {GRID_FILE})"
    )
    parser.add_argument(
        "--tasks", default=None, help="comma-separated (default: the grid's)"
    )
    parser.add_argument(
        "--groups",
        default=None,
        help="comma-separated: memory_size, cross_read, per_modality, write "
        "(default: all)",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma-separated ints (default: the grid's, 0,1,2)",
    )
    parser.add_argument(
        "--memory-slots",
        default=None,
        help="comma-separated memory sizes replacing the grid's 10,...,100",
    )
    parser.add_argument("--epochs", type=int, default=None, help="overrides the grid")
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--max-examples",
        type=int,
        default=None,
        help="first N examples of each split (tests and smoke runs)",
    )
    parser.add_argument(
        "--text-encoder",
        default=None,
        help="speech-text only: the text features (minilm, glove or tokens; "
        "default: the grid's, minilm, as `mmfusion train`)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the grid's quick subset (digits-views, seed 0, 3 sizes, 10 epochs)",
    )
    parser.add_argument(
        "--summarize-only",
        action="store_true",
        help="rewrite the summaries from the runs in --output, train nothing",
    )
    parser.add_argument("--verbose", type=int, default=1)
    return parser


def _ints(name, text, minimum):
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < minimum for v in values):
        raise ValueError(
            f"mbaf-ablation: `--{name}` takes comma-separated integers >= "
            f"{minimum}. Received: {text!r}"
        )
    return values


def settings(args):
    """The run's settings: the grid with `--quick` and the flags applied."""
    grid = load_grid(args.grid)
    tasks, seeds, slots = grid["tasks"], grid["seeds"], None
    training = copy.deepcopy(grid["training"])
    if args.quick:
        quick = grid.get("quick", {})
        tasks = quick.get("tasks", tasks)
        seeds = quick.get("seeds", seeds)
        slots = quick.get("memory_slots")
        for task, override in quick.get("training", {}).items():
            training.setdefault(task, {}).update(override)
    if args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.seeds:
        seeds = _ints("seeds", args.seeds, 0)
    if args.memory_slots:
        slots = _ints("memory-slots", args.memory_slots, 1)
    for name in ("epochs", "patience", "batch_size", "max_examples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(
                f"mbaf-ablation: `--{name.replace('_', '-')}` must be an integer "
                f">= 1. Received: {value}"
            )
    for task in tasks:
        if task not in training:
            raise ValueError(
                f"mbaf-ablation: no training settings for task {task!r} in the "
                f"grid. Expected one of {sorted(training)}."
            )
        for name in ("epochs", "patience", "batch_size"):
            if getattr(args, name) is not None:
                training[task][name] = getattr(args, name)
        text_encoder = getattr(args, "text_encoder", None)
        if text_encoder is not None and task == "speech-text":
            from mmfusion_keras.tasks import TEXT_ENCODERS

            if text_encoder not in TEXT_ENCODERS:
                raise ValueError(
                    "mbaf-ablation: `--text-encoder` must be one of "
                    f"{sorted(TEXT_ENCODERS)}. Received: {text_encoder!r}"
                )
            training[task]["text_encoder"] = text_encoder
    groups = None
    if args.groups:
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    return {
        "grid": grid,
        "tasks": tasks,
        "seeds": seeds,
        "groups": groups,
        "memory_slots": slots,
        "training": training,
        "max_examples": args.max_examples,
    }


def _log(args, message):
    if args.verbose:
        print(message, flush=True)


def _write_json(path, data):
    """Writes `data` as JSON atomically (a partial file is never left)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _load_splits(task, seed, max_examples):
    splits = {}
    for split in ("train", "validation", "test"):
        x, y = task.load(split, seed=seed)
        if max_examples:
            x, y = {k: v[:max_examples] for k, v in x.items()}, y[:max_examples]
        splits[split] = (x, y)
    return splits


def train_cell(task, cell, seed, training, splits):
    """Trains one cell with one seed; returns the run record (a dict)."""
    import keras

    from mmfusion_keras.inspection import memory_health_summary
    from mmfusion_keras.inspection import memory_is_collapsed
    from mmfusion_keras.inspection import model_memory_health
    from mmfusion_keras.metrics import classification_metrics

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits.values()
    keras.utils.set_random_seed(seed)
    model = task.build_model("mbaf", fusion_kwargs=dict(cell["kwargs"]), seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(training["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=training["epochs"],
        batch_size=training["batch_size"],
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=training["patience"],
                restore_best_weights=True,
            )
        ],
        verbose=0,
    )
    seconds = time.perf_counter() - start
    predicted = np.argmax(model.predict(x_test, verbose=0), axis=-1)
    metrics = classification_metrics(y_test, predicted, task.class_names)
    healths = model_memory_health(model, x_test)
    worst = {
        "distinct_slots": min(h["distinct_slots"] for h in healths),
        "distinct_fraction": min(h["distinct_fraction"] for h in healths),
        "effective_rank": min(h["effective_rank"] for h in healths),
        "read_entropy": max(h["read_entropy"] for h in healths),
    }
    return {
        "task": task.name,
        "cell": cell["id"],
        "config": cell["config"],
        "seed": seed,
        "training": training,
        **{key: float(metrics[key]) for key in METRICS},
        **{key: float(value) for key, value in worst.items()},
        "collapsed": any(memory_is_collapsed(h) for h in healths),
        "memory_health": [memory_health_summary(h) for h in healths],
        "num_test": int(len(y_test)),
        "epochs_run": len(history.history["loss"]),
        "train_seconds": round(seconds, 2),
        "params": int(model.count_params()),
        "backend": keras.config.backend(),
    }


def _run_path(output, task_name, cell, seed):
    return os.path.join(output, "runs", task_name, cell["id"], f"seed{seed}.json")


def _finished(path, cell, training, max_examples):
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if (
        record.get("config") != cell["config"]
        or record.get("training") != training
        or record.get("max_examples") != max_examples
    ):
        return None
    return record


def run(args):
    """Runs (or resumes) the ablation for parsed `args`; returns the records."""
    import keras

    from mmfusion_keras.tasks import get_task

    start = time.time()
    s = settings(args)
    cells = expand_cells(
        s["grid"], s["groups"], s["memory_slots"], log=lambda m: _log(args, m)
    )
    if not cells:
        raise ValueError("mbaf-ablation: no cell to run (every group was skipped).")
    os.makedirs(args.output, exist_ok=True)
    # The cells at the paper's chosen size (30 slots: every group's
    # comparison) first, so that a partial run compares the groups.
    order = sorted(cells, key=lambda c: c["config"]["memory_slots"] != 30)
    records, done, trained = [], 0, 0
    total = len(s["tasks"]) * len(s["seeds"]) * len(cells)
    _log(
        args,
        f"mbaf-ablation: {len(cells)} cells x {len(s['seeds'])} seeds x "
        f"{len(s['tasks'])} tasks = {total} runs (backend {keras.config.backend()})",
    )
    for task_name in s["tasks"]:
        training = s["training"][task_name]
        # speech-text: the text features of `mmfusion train` (MiniLM) unless
        # the grid or --text-encoder says otherwise; part of the run's
        # identity (a run with other features is not reused).
        task = get_task(task_name, text_encoder=training.get("text_encoder"))
        for seed in s["seeds"]:
            splits = None
            for cell in order:
                path = _run_path(args.output, task_name, cell, seed)
                record = _finished(path, cell, training, s["max_examples"])
                done += 1
                if record is not None:
                    records.append(record)
                    _log(
                        args,
                        f"[{done}/{total}] {task_name} {cell['id']} seed {seed}: done before",
                    )
                    continue
                if args.summarize_only:
                    continue
                if splits is None:
                    splits = _load_splits(task, seed, s["max_examples"])
                record = train_cell(task, cell, seed, training, splits)
                record["max_examples"] = s["max_examples"]
                _write_json(path, record)
                records.append(record)
                trained += 1
                _log(
                    args,
                    f"[{done}/{total}] {task_name} {cell['id']} seed {seed}: "
                    f"accuracy {record['accuracy']:.3f} UA "
                    f"{record['unweighted_accuracy']:.3f}, distinct slots "
                    f"{record['distinct_slots']:.0f}/{cell['config']['memory_slots']}, "
                    f"read entropy {record['read_entropy']:.2f} "
                    f"({record['epochs_run']} epochs, {record['train_seconds']:.0f} s)",
                )
                write_summaries(args, s, cells, records, start)
    paths = write_summaries(args, s, cells, records, start)
    _log(
        args,
        f"mbaf-ablation: {trained} runs trained, {len(records)} of {total} "
        f"finished; wrote {', '.join(paths)} ({time.time() - start:.0f} s)",
    )
    return records


def summarize(cells, records, tasks):
    """One summary dict per (task, cell) with runs: mean and std over seeds."""
    summaries = []
    for task_name in tasks:
        for cell in cells:
            runs = [
                r for r in records if r["task"] == task_name and r["cell"] == cell["id"]
            ]
            if not runs:
                continue
            row = {
                "task": task_name,
                "cell": cell["id"],
                "groups": "+".join(cell["groups"]),
                "memory_slots": cell["config"]["memory_slots"],
                "read": cell["config"]["read"],
                "memory": cell["config"]["memory"],
                "write": cell["config"].get("write", "soft"),
                "eq56": cell["config"].get("composition_attention", "softmax_features"),
                "seeds": " ".join(str(r["seed"]) for r in runs),
            }
            for key in METRICS + HEALTH:
                values = np.array([r[key] for r in runs], dtype=float)
                row[f"{key}_mean"] = round(float(values.mean()), 4)
                row[f"{key}_std"] = round(float(values.std()), 4)
            row["collapsed_runs"] = int(sum(r["collapsed"] for r in runs))
            row["epochs_mean"] = round(
                float(np.mean([r["epochs_run"] for r in runs])), 1
            )
            row["train_seconds_mean"] = round(
                float(np.mean([r["train_seconds"] for r in runs])), 1
            )
            summaries.append(row)
    return summaries


def _pm(row, key, digits=3):
    return f"{row[f'{key}_mean']:.{digits}f} ± {row[f'{key}_std']:.{digits}f}"


def markdown(summaries, cells, tasks):
    """The markdown tables: every cell per task, then Table 6's layout."""
    lines = []
    for task_name in tasks:
        rows = [r for r in summaries if r["task"] == task_name]
        if not rows:
            continue
        lines += [
            f"### {task_name}",
            "",
            "Test split, mean ± std over seeds; memory health of the worst memory "
            "(distinct slots: no other slot at cosine > 0.99; read entropy: "
            "relative to uniform, 1 = uniform reads).",
            "",
            "| group | slots | read | memory | write | Eq. 5-6 | seeds | accuracy | "
            "UA | macro-F1 | distinct slots | effective rank | read entropy | "
            "collapsed runs |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['groups']} | {r['memory_slots']} | {r['read']} | {r['memory']} "
                f"| {r['write']} | {r['eq56']} | {r['seeds']} | {_pm(r, 'accuracy')} | "
                f"{_pm(r, 'unweighted_accuracy')} | {_pm(r, 'macro_f1')} | "
                f"{_pm(r, 'distinct_slots', 1)} | {_pm(r, 'effective_rank', 1)} | "
                f"{_pm(r, 'read_entropy', 2)} | {r['collapsed_runs']} |"
            )
        lines.append("")
        # Table 6's layout: UA of self (NA) and cross (CA) read per size.
        sizes = sorted({r["memory_slots"] for r in rows if r["memory"] == "fused"})
        by = {
            (r["read"], r["memory_slots"]): r
            for r in rows
            if r["memory"] == "fused"
            and {"memory_size", "cross_read"} & set(r["groups"].split("+"))
        }
        reads = [
            read for read in ("self", "cross") if any((read, k) in by for k in sizes)
        ]
        if len(sizes) > 1 and reads:
            lines += [
                f"{task_name}, Table 6 layout (UA / distinct slots, mean over seeds):",
                "",
                "| read | " + " | ".join(str(k) for k in sizes) + " |",
                "|---|" + "---|" * len(sizes),
            ]
            for read in reads:
                cells_text = []
                for k in sizes:
                    r = by.get((read, k))
                    cells_text.append(
                        "–"
                        if r is None
                        else f"{r['unweighted_accuracy_mean']:.3f} / "
                        f"{r['distinct_slots_mean']:.0f}"
                    )
                lines.append(f"| {read} | " + " | ".join(cells_text) + " |")
            lines.append("")
    return "\n".join(lines)


def write_summaries(args, s, cells, records, start):
    """Writes the CSV, JSON and markdown summaries; returns their paths."""
    import keras

    summaries = summarize(cells, records, s["tasks"])
    csv_path = os.path.join(args.output, "mbaf_ablation.csv")
    tmp = f"{csv_path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(summaries)
    os.replace(tmp, csv_path)
    json_path = os.path.join(args.output, "mbaf_ablation.json")
    _write_json(
        json_path,
        {
            "command": getattr(args, "command_line", None),
            "backend": keras.config.backend(),
            "keras": keras.__version__,
            "tasks": s["tasks"],
            "seeds": s["seeds"],
            "training": s["training"],
            "max_examples": s["max_examples"],
            "grid": s["grid"],
            "cells": cells,
            "summaries": summaries,
            "runs": records,
            "run_seconds_total": round(sum(r["train_seconds"] for r in records), 1),
            "invocation_seconds": round(time.time() - start, 1),
        },
    )
    md_path = os.path.join(args.output, "mbaf_ablation.md")
    with open(md_path, "w", encoding="utf-8") as f:
        command = getattr(args, "command_line", None)
        f.write(f"Command: `{command}` (backend {keras.config.backend()})\n\n")
        f.write(markdown(summaries, cells, s["tasks"]) + "\n")
    return [csv_path, json_path, md_path]


def main(argv=None):
    """`python -m mmfusion_keras.experiments.mbaf_ablation [options]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="python -m mmfusion_keras.experiments.mbaf_ablation",
            description="The MBAF paper's ablations (Priyasad et al. 2021, "
            "section 6) on the bundled tasks.",
        )
    )
    args = parser.parse_args(argv)
    args.command_line = (
        "python -m mmfusion_keras.experiments.mbaf_ablation " + " ".join(argv)
    )
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
