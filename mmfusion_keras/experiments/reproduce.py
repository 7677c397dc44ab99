"""`mmfusion reproduce`: the papers' experiments on the user's own corpora.

One recipe per paper experiment. A recipe is a JSON file beside this module
(`reproduce_<name>.json`) holding the paper's protocol and hyperparameters
(`params`), the smaller settings of a smoke run (`quick`), what must be on
disk (`needs`) and the paper's reported numbers with the table they come
from (`paper`). The code of a recipe (its `Runner`) lives in
`reproduce_<dataset>.py`; this module runs it:

    mmfusion reproduce --list
    mmfusion reproduce NAME --data-root DIR --output DIR [--quick] [--resume]
        [--overwrite] [--set key=value ...] [--backend B]

The run is cut into units (seed x fold x variant). Each finished unit is
written at once (`<output>/units/...json`), so `--resume` skips them; a
fold's pre-trained encoders are kept too (`<output>/work/`). The report
(`report.json`, `report.md`) puts "paper" and "this run" side by side per
fold and overall (mean ± std over folds and seeds) and records every
`--set` override. All files are written atomically.
"""

import argparse
import copy
import importlib
import json
import os
import shutil
import sys
import time

import numpy as np

from mmfusion_keras.runs import atomic_write
from mmfusion_keras.runs import write_json

_HERE = os.path.dirname(os.path.abspath(__file__))

#: Recipe name -> module holding its runner (`RUNNERS[name]`).
RECIPES = {
    "mbaf-iemocap": "reproduce_iemocap",
    "dual-memory-iemocap": "reproduce_iemocap",
    "mbaf-physionet": "reproduce_physionet",
    "delta-mosei": "reproduce_mosei",
    "mult-mosei": "reproduce_mosei",
    "early-fusion-avmnist": "reproduce_avmnist",
    "mfas-avmnist": "reproduce_avmnist",
}


def recipe_path(name):
    return os.path.join(_HERE, f"reproduce_{name.replace('-', '_')}.json")


def load_recipe(name):
    """The recipe dict of `name` (see `RECIPES`)."""
    if name not in RECIPES:
        raise ValueError(
            f"Unknown recipe {name!r}. Expected one of {sorted(RECIPES)} "
            "(see `mmfusion reproduce --list`)."
        )
    with open(recipe_path(name), encoding="utf-8") as f:
        recipe = json.load(f)
    recipe["name"] = name
    return recipe


def _runner(name):
    module = importlib.import_module(f"mmfusion_keras.experiments.{RECIPES[name]}")
    return module.RUNNERS[name]


# --- parameters ---------------------------------------------------------------


def parse_override(text):
    """`"a.b=value"` -> `("a.b", value)`; the value is read as JSON if it
    parses (numbers, true/false/null, lists), else kept as a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(
            f"--set expected key=value (e.g. --set epochs=3). Received: {text!r}"
        )
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        pass
    return key, value


def _set_dotted(params, key, value, recipe_name):
    node = params
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ValueError(
                f"--set {key}: recipe {recipe_name!r} has no parameter group "
                f"{part!r}. Parameters: {sorted(params)}"
            )
        node = node[part]
    if parts[-1] not in node:
        raise ValueError(
            f"--set {key}: recipe {recipe_name!r} has no parameter {key!r}. "
            f"Parameters: {sorted(node)}"
        )
    node[parts[-1]] = value


def _merge(base, extra):
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_params(recipe, quick=False, overrides=()):
    """The recipe's `params`, merged with `quick` and the `--set` overrides."""
    params = copy.deepcopy(recipe["params"])
    if quick:
        params = _merge(params, recipe.get("quick", {}))
    for key, value in overrides:
        _set_dotted(params, key, value, recipe["name"])
    return params


# --- report -------------------------------------------------------------------


def _stats(values):
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "n": len(values),
        "values": values,
    }


def summarize(recipe, units, fold_names, variants):
    """Per variant: per-fold and overall mean ± std of every reported metric."""
    metrics = recipe["report_metrics"]
    paper = recipe.get("paper", {}).get("results", {})
    results = {}
    for variant in variants:
        rows = [u for u in units if u["variant"] == variant]
        per_fold = {}
        for fold in fold_names:
            fold_rows = [u["metrics"] for u in rows if u["fold"] == fold]
            per_fold[fold] = {m: _stats([r.get(m) for r in fold_rows]) for m in metrics}
        overall = {m: _stats([u["metrics"].get(m) for u in rows]) for m in metrics}
        counts = sorted(
            {u["details"]["parameters"] for u in rows if "parameters" in u["details"]}
        )
        results[variant] = {
            "parameters": counts[0] if len(counts) == 1 else counts or None,
            "paper": paper.get(variant, {}),
            "per_fold": per_fold,
            "overall": overall,
        }
    return results


def _cell(stats, scale):
    if stats is None:
        return "—"
    if stats["n"] == 1:
        return f"{stats['mean'] * scale:.2f}"
    return f"{stats['mean'] * scale:.2f} ± {stats['std'] * scale:.2f}"


def _paper_cell(value, scale):
    return "—" if value is None else f"{value * scale:.2f}"


def markdown(report, extra=None):
    """The report as markdown: one table per variant, paper vs this run.

    `extra(report)` (a runner's `markdown_extra`, optional) returns more
    lines, put after the tables (e.g. accuracy per SNR cell)."""
    recipe = report["recipe"]
    scale = 100.0 if recipe.get("percent", True) else 1.0
    metrics = recipe["report_metrics"]
    labels = recipe.get("metric_labels", {})
    lines = [
        f"# {recipe['name']}: {recipe['title']}",
        "",
        f"Paper: {recipe['paper']['citation']}; numbers from "
        f"{recipe['paper']['source']}.",
        "",
    ]
    if recipe["paper"].get("figure_values"):
        lines += [f"Paper's numbers: {recipe['paper']['figure_values']}", ""]
    lines += [
        f"Command: `{report['command']}`  ",
        f"Backend: {report['backend']}; quick: {report['quick']}; seeds: "
        f"{report['params'].get('seeds')}; {report['elapsed_seconds']:.0f} s.  ",
        "Overrides (--set): "
        + (
            ", ".join(f"`{k}={json.dumps(v)}`" for k, v in report["overrides"].items())
            or "none"
        ),
        "",
        "Values in %" if scale == 100 else "Values as fractions",
        "(this run: mean ± std over folds and seeds overall, over seeds per "
        "fold). The papers report overall numbers only.",
        "",
    ]
    if report["quick"]:
        lines += [
            "**Quick run** (one fold, tiny widths, few epochs): it checks the "
            "data and the pipeline; its numbers are not comparable to the "
            "paper's.",
            "",
        ]
    for variant, res in report["results"].items():
        folds = list(res["per_fold"])
        header = ["metric", "paper", "this run (overall)"] + [
            f"this run: {fold}" for fold in folds
        ]
        lines += [f"## {variant}", ""]
        if res.get("parameters") is not None:
            lines += [f"Parameters: {res['parameters']}", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for m in metrics:
            cells = [
                labels.get(m, m),
                _paper_cell(res["paper"].get(m), scale),
                _cell(res["overall"][m], scale),
            ] + [_cell(res["per_fold"][fold][m], scale) for fold in folds]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if extra is not None:
        lines += list(extra(report))
    lines += ["## Folds", ""]
    for fold in report["folds"]:
        sizes = ", ".join(f"{k} {v}" for k, v in fold["sizes"].items())
        lines.append(f"- {fold['name']}: {sizes}; held out: {fold['held_out']}")
    lines += ["", "## Data", "", "```", json.dumps(report["data"], indent=2), "```"]
    return "\n".join(lines) + "\n"


# --- running ------------------------------------------------------------------


class Context:
    """What a runner gets for one (seed, fold): where to write, what is done."""

    def __init__(self, output, seed, fold, params, log):
        self.output = output
        self.seed = seed
        self.fold = fold
        self.params = params
        self.log = log
        self.workdir = os.path.join(output, "work", f"seed{seed}", fold["name"])
        os.makedirs(self.workdir, exist_ok=True)

    def unit_path(self, variant):
        safe = variant.replace("/", "_").replace(" ", "_")
        return os.path.join(
            self.output, "units", f"seed{self.seed}", self.fold["name"], f"{safe}.json"
        )

    def done(self, variant):
        return os.path.isfile(self.unit_path(variant))

    def save(self, variant, metrics, details=None):
        path = self.unit_path(variant)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(
            path,
            {
                "seed": self.seed,
                "fold": self.fold["name"],
                "variant": variant,
                "metrics": metrics,
                "details": details or {},
            },
        )
        shown = ", ".join(
            f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)
        )
        self.log(f"  {variant}: {shown}")


def _read_units(output):
    units = []
    base = os.path.join(output, "units")
    for folder, _, files in sorted(os.walk(base)):
        for name in sorted(files):
            if name.endswith(".json"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    units.append(json.load(f))
    return units


def _check_output(output, resume, overwrite, run_config):
    state = os.path.join(output, "run.json")
    if os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"--output '{output}' exists and is not a folder.")
    existing = os.path.isdir(output) and os.listdir(output)
    if existing and not (resume or overwrite):
        raise ValueError(
            f"--output '{output}' already holds files. Pass --resume to continue "
            "that run or --overwrite to replace it (or choose another folder)."
        )
    if existing and overwrite:
        shutil.rmtree(output)
    if existing and resume and os.path.isfile(state):
        with open(state, encoding="utf-8") as f:
            previous = json.load(f)
        keys = ("recipe", "params", "quick", "backend")
        changed = [k for k in keys if previous.get(k) != run_config.get(k)]
        if changed:
            raise ValueError(
                f"--resume: the run in '{output}' was started with other "
                f"settings ({', '.join(changed)} differ). Use the same recipe, "
                "--quick, --set values and backend, or --overwrite."
            )
    os.makedirs(output, exist_ok=True)
    write_json(state, run_config)


def run_recipe(
    name,
    data_root,
    output,
    quick=False,
    overrides=(),
    resume=False,
    overwrite=False,
    command="",
    log=print,
):
    """Runs recipe `name` and writes `report.json` and `report.md` in `output`.

    Returns:
        The report dict.
    """
    import keras

    recipe = load_recipe(name)
    overrides = [parse_override(o) if isinstance(o, str) else o for o in overrides]
    params = resolve_params(recipe, quick, overrides)
    if data_root is None:
        raise ValueError(
            f"reproduce {name}: --data-root is required. It needs: {recipe['needs']}"
        )
    if output is None:
        raise ValueError(f"reproduce {name}: --output is required (a run folder).")
    runner = _runner(name)(recipe, params)
    run_config = {
        "recipe": name,
        "params": params,
        "quick": bool(quick),
        "backend": keras.config.backend(),
        "overrides": dict(overrides),
    }
    start = time.time()
    if os.path.isdir(output) and os.listdir(output) and not (resume or overwrite):
        # Refuse before the (possibly long) data check.
        _check_output(output, resume, overwrite, run_config)
    log(f"[reproduce {name}] checking the data in '{data_root}'")
    data = runner.load(data_root, log)
    folds = runner.folds(data)
    if params.get("folds"):
        wanted = list(params["folds"])
        unknown = sorted(set(wanted) - {f["name"] for f in folds})
        if unknown:
            raise ValueError(
                f"--set folds: unknown folds {unknown}. Folds of this recipe: "
                f"{[f['name'] for f in folds]}"
            )
        folds = [f for f in folds if f["name"] in wanted]
    if params.get("max_folds"):
        folds = folds[: int(params["max_folds"])]
    _check_output(output, resume, overwrite, run_config)
    variants = list(params["variants"])
    seeds = list(params["seeds"])
    total = len(seeds) * len(folds) * len(variants)
    done = len(_read_units(output))
    log(
        f"[reproduce {name}] {len(folds)} fold(s) x {len(seeds)} seed(s) x "
        f"{len(variants)} variant(s) = {total} runs"
        + (f"; {done} already done (--resume)" if done else "")
    )
    for seed in seeds:
        for k, fold in enumerate(folds, start=1):
            ctx = Context(output, seed, fold, params, log)
            if all(ctx.done(v) for v in variants):
                log(
                    f"[seed {seed}, fold {k}/{len(folds)} {fold['name']}] done (skipped)"
                )
                continue
            log(
                f"[seed {seed}, fold {k}/{len(folds)} {fold['name']}] "
                f"{ {s: len(i) for s, i in fold['indices'].items()} }"
            )
            keras.utils.set_random_seed(seed)
            runner.run_fold(data, fold, ctx, variants)
    units = _read_units(output)
    fold_names = [f["name"] for f in folds]
    units = [
        u
        for u in units
        if u["seed"] in seeds and u["fold"] in fold_names and u["variant"] in variants
    ]
    report = {
        "recipe": {
            k: recipe[k]
            for k in (
                "name",
                "title",
                "paper",
                "needs",
                "report_metrics",
                "metric_labels",
                "percent",
            )
            if k in recipe
        },
        "command": command,
        "backend": keras.config.backend(),
        "quick": bool(quick),
        "overrides": dict(overrides),
        "params": params,
        "data_root": os.path.abspath(data_root),
        "data": runner.describe(data),
        "folds": [
            {
                "name": f["name"],
                "held_out": f["held_out"],
                "sizes": {s: int(len(i)) for s, i in f["indices"].items()},
                **({"groups": f["groups"]} if "groups" in f else {}),
            }
            for f in folds
        ],
        "results": summarize(recipe, units, fold_names, variants),
        "units": units,
        "elapsed_seconds": time.time() - start,
    }
    write_json(os.path.join(output, "report.json"), report)
    with atomic_write(os.path.join(output, "report.md")) as f:
        f.write(markdown(report, getattr(runner, "markdown_extra", None)))
    log(f"[reproduce {name}] report: {os.path.join(output, 'report.md')}")
    return report


def list_recipes():
    """One line per recipe: name, title, paper source, what it needs."""
    lines = []
    for name in RECIPES:
        recipe = load_recipe(name)
        lines.append(f"{name}: {recipe['title']} ({recipe['paper']['source']})")
        lines.append(f"    needs: {recipe['needs']}")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("name", nargs="?", help="recipe name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the recipes")
    parser.add_argument("--data-root", help="folder holding the corpus release")
    parser.add_argument("--output", help="run folder (report.json, report.md)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: one fold, one epoch, small widths (checks data + pipeline)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --output"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the run in --output"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe parameter (JSON value), e.g. --set epochs=5; "
        "recorded in the report",
    )
    parser.add_argument(
        "--backend",
        choices=["tensorflow", "jax", "torch"],
        default=argparse.SUPPRESS,
        help="Keras backend",
    )
    return parser


def run(args):
    if args.list:
        print(list_recipes())
        return None
    if not args.name:
        raise ValueError(
            f"reproduce expected a recipe name or --list. Recipes: {sorted(RECIPES)}"
        )

    def log(message):
        print(message, flush=True)

    return run_recipe(
        args.name,
        args.data_root,
        args.output,
        quick=args.quick,
        overrides=args.overrides,
        resume=args.resume,
        overwrite=args.overwrite,
        command=getattr(args, "command_line", ""),
        log=log,
    )


def main(argv=None):
    """`python -m mmfusion_keras.experiments.reproduce NAME ...`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="python -m mmfusion_keras.experiments.reproduce",
            description="Run a paper's experiment on your copy of its corpus.",
        )
    )
    args = parser.parse_args(argv)
    args.command_line = "mmfusion reproduce " + " ".join(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"reproduce: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
