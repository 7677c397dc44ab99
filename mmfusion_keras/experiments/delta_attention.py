"""Delta self-attention readings and the hierarchical model on the delta task.

The experiment of Panchal's hierarchical delta-attention paper that can be
run offline: on the generated change-driven task (`load_delta_sequences`,
4 classes read from changes over time, idiosyncratic per-example offsets),

- `task`: how hard the task is, without attention: logistic regression on
  the modalities' mean levels (what a change-blind model sees) and on
  end-minus-start differences (a hand-made change detector);
- `attention`: per-modality `DeltaSelfAttention` -> masked mean -> concat
  -> Dense -> softmax, with the paper's relative term (`relative`), the
  per-key-bias reading (`per_key_bias`) and plain self-attention (`plain`),
  aligned and unaligned data, several seeds;
- `window`: the same classifier with the relative term and a sliding
  window of each size in the settings (unaligned);
- `models`: the hierarchical delta-attention model (end to end) vs MulT
  (`build_mult_model`, fewer layers than its default), with parameter
  counts;
- `params`: parameter counts at CMU-MOSEI input sizes.

Each run prints one JSON line and appends it to `<output>/results.jsonl`;
`<output>/summary.md` gets the tables (mean ± std over seeds of the test
accuracy at the last epoch). Settings (epochs, widths, seeds, data noise)
live in `delta_attention.json` beside this module; the command line
overrides some of them.

Run: `mmfusion delta-attention --parts task attention --output runs/delta`
or `python -m mmfusion_keras.experiments.delta_attention ...`.

Reference:
    Panchal, "Hierarchical Delta-Attention Method for Multimodal Fusion",
    sections 4.1-4.4, Table 2 (aligned vs unaligned, vs MulT).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

MODALITIES = ("text", "vision", "audio")
PARTS = ("task", "attention", "window", "models", "params")
_SETTINGS = os.path.join(os.path.dirname(__file__), "delta_attention.json")


def load_settings():
    """The experiment's settings (`delta_attention.json`)."""
    with open(_SETTINGS) as f:
        settings = json.load(f)
    settings.pop("source", None)
    return settings


def _data(settings, aligned, seed):
    from mmfusion_keras.datasets import load_delta_sequences

    d = settings["data"]
    kw = {
        "aligned": aligned,
        "seed": seed,
        "noise": d["noise"],
        "baseline_scale": d["baseline_scale"],
    }
    return tuple(
        load_delta_sequences(split, num_examples=d[split], **kw)
        for split in ("train", "validation", "test")
    )


def build_attention_classifier(
    ds, variant, width=16, heads=2, window=None, kernel_size=3
):
    """Per-modality (delta) self-attention, masked mean, concat, Dense, softmax."""
    import keras

    from mmfusion_keras.layers import DeltaSelfAttention

    inputs, pooled = {}, []
    for m in MODALITIES:
        x = keras.Input(ds.inputs[m].shape[1:], name=m)
        mask = keras.Input(ds.inputs[m].shape[1:2], dtype="bool", name=f"{m}_mask")
        inputs[m], inputs[f"{m}_mask"] = x, mask
        y = DeltaSelfAttention(
            num_heads=heads,
            filters=width,
            output_dim=width,
            kernel_size=kernel_size,
            delta_window=window,
            delta="relative" if variant == "plain" else variant,
            use_delta=variant != "plain",
            name=f"{m}_attention",
        )(x, mask=mask)
        pooled.append(keras.layers.GlobalAveragePooling1D()(y, mask=mask))
    h = keras.layers.Concatenate()(pooled)
    h = keras.layers.Dense(width, activation="relu")(h)
    out = keras.layers.Dense(ds.num_classes, activation="softmax")(h)
    return keras.Model(inputs, out)


def _fit_and_test(model, train, val, test, training):
    import keras

    model.compile(
        keras.optimizers.Adam(training["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.time()
    history = model.fit(
        train.inputs,
        train.labels,
        validation_data=(val.inputs, val.labels),
        epochs=training["epochs"],
        batch_size=training["batch_size"],
        verbose=0,
    )
    seconds = time.time() - start
    _, acc = model.evaluate(test.inputs, test.labels, verbose=0)
    return {
        "test_accuracy": round(float(acc), 4),
        "val_accuracy_last": round(float(history.history["val_accuracy"][-1]), 4),
        "val_accuracy_best": round(float(max(history.history["val_accuracy"])), 4),
        "params": int(model.count_params()),
        "fit_seconds": round(seconds, 1),
    }


def run_task(settings, seeds, emit, aligned_values=(False, True)):
    """Logistic regressions on mean levels and on end-minus-start features."""
    from sklearn.linear_model import LogisticRegression

    def features(ds, kind):
        out = []
        for m in MODALITIES:
            x, mask = ds.inputs[m], ds.inputs[f"{m}_mask"]
            n = mask.sum(1)
            if kind == "level":
                out.append(x.sum(1) / n[:, None])
            else:
                k = np.maximum(2, n // 4)
                idx = np.arange(x.shape[1])[None, :]
                first = (idx < k[:, None])[:, :, None]
                last = ((idx >= (n - k)[:, None]) & mask)[:, :, None]
                out.append(
                    (x * last).sum(1) / k[:, None] - (x * first).sum(1) / k[:, None]
                )
        return np.concatenate(out, axis=1)

    for aligned in aligned_values:
        for seed in seeds:
            train, _, test = _data(settings, aligned, seed)
            for kind in ("level", "end_minus_start"):
                clf = LogisticRegression(max_iter=2000).fit(
                    features(train, kind), train.labels
                )
                acc = clf.score(features(test, kind), test.labels)
                emit(
                    {
                        "part": "task",
                        "aligned": aligned,
                        "model": f"logistic on {kind}",
                        "seed": seed,
                        "test_accuracy": round(float(acc), 4),
                    }
                )


def run_attention(
    settings, seeds, emit, variants, windows=(None,), aligned_values=(False, True)
):
    import keras

    a = settings["attention"]
    # Seeds outermost: every finished seed is a complete comparison.
    for seed in seeds:
        for aligned in aligned_values:
            for window in windows:
                for variant in variants:
                    train, val, test = _data(settings, aligned, seed)
                    keras.utils.set_random_seed(seed)
                    model = build_attention_classifier(
                        train, variant, a["width"], a["heads"], window, a["kernel_size"]
                    )
                    row = _fit_and_test(model, train, val, test, settings["training"])
                    emit(
                        {
                            "part": "attention" if window is None else "window",
                            "aligned": aligned,
                            "model": variant,
                            "window": window,
                            "kernel_size": a["kernel_size"],
                            "seed": seed,
                            **row,
                        }
                    )


def _mult(shapes, num_classes, m, heads, layers):
    from mmfusion_keras.models import build_mult_model

    return build_mult_model(
        list(shapes),
        width=m,
        num_heads=heads,
        num_layers=layers,
        head="multiclass",
        num_classes=num_classes,
        modality_names=MODALITIES,
    )


def _hierarchical(shapes, num_classes, h):
    from mmfusion_keras.models import build_hierarchical_delta_attention_model

    return build_hierarchical_delta_attention_model(
        dict(zip(MODALITIES, shapes)),
        num_classes,
        num_heads=h["heads"],
        filters=h["width"],
        output_dim=h["width"],
        reduced_dim=h["reduced_dim"],
        fused_dim=h["width"],
        fused_heads=h["fused_heads"],
        cca_weight=h["cca_weight"],
    )


def run_models(settings, seeds, emit, aligned_values=(False, True)):
    import keras

    h, mt = settings["hierarchical"], settings["mult"]
    for aligned in aligned_values:
        for seed in seeds:
            train, val, test = _data(settings, aligned, seed)
            shapes = [train.inputs[m].shape[1:] for m in MODALITIES]
            for name in ("hierarchical", "mult"):
                keras.utils.set_random_seed(seed)
                if name == "hierarchical":
                    model = _hierarchical(shapes, train.num_classes, h)
                else:
                    model = _mult(
                        shapes,
                        train.num_classes,
                        mt["width"],
                        mt["heads"],
                        mt["layers"],
                    )
                row = _fit_and_test(model, train, val, test, settings["training"])
                emit(
                    {
                        "part": "models",
                        "aligned": aligned,
                        "model": name,
                        "seed": seed,
                        **row,
                    }
                )


def run_params(settings, emit):
    """Parameter counts at CMU-MOSEI input sizes (text 300, vision 35, audio 74)."""
    shapes = [(50, 300), (50, 35), (50, 74)]
    for width in (30, 40):
        h = {
            "width": width,
            "heads": 5,
            "reduced_dim": width // 2,
            "fused_heads": 1,
            "cca_weight": 0.1,
        }
        ours = _hierarchical(shapes, 6, h).count_params()
        mult = _mult(shapes, 6, width, 5, 5).count_params()
        emit(
            {
                "part": "params",
                "width": width,
                "hierarchical": int(ours),
                "mult": int(mult),
            }
        )


def summarize(rows):
    """Markdown tables: mean ± std of the test accuracy per configuration."""
    groups = {}
    for r in rows:
        if r["part"] == "params":
            continue
        key = (
            r["part"],
            "aligned" if r["aligned"] else "unaligned",
            r["model"],
            r.get("window"),
        )
        groups.setdefault(key, []).append(r)
    lines = [
        "| part | data | model | window | test accuracy (mean ± std) | seeds | params | fit s (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (part, data, model, window), rs in groups.items():
        accs = np.array([r["test_accuracy"] for r in rs])
        params = rs[0].get("params", "")
        fit = (
            np.mean([r["fit_seconds"] for r in rs]) if "fit_seconds" in rs[0] else None
        )
        lines.append(
            f"| {part} | {data} | {model} | {'-' if window is None else window} | "
            f"{accs.mean():.3f} ± {accs.std():.3f} | {len(rs)} | {params} | "
            f"{'' if fit is None else f'{fit:.0f}'} |"
        )
    params = [r for r in rows if r["part"] == "params"]
    if params:
        lines += [
            "",
            "| width | hierarchical | MulT (5 layers, 5 heads) | ratio |",
            "|---|---|---|---|",
        ]
        for r in params:
            lines.append(
                f"| {r['width']} | {r['hierarchical']:,} | {r['mult']:,} | "
                f"{r['hierarchical'] / r['mult']:.2f} |"
            )
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=["task", "attention"]
    )
    parser.add_argument(
        "--output", default="runs/delta_attention", help="results folder"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="override the settings' seeds"
    )
    parser.add_argument("--epochs", type=int, help="override the settings' epochs")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=("plain", "per_key_bias", "relative", "absolute"),
    )
    parser.add_argument("--windows", type=int, nargs="+", help="window sweep sizes")
    parser.add_argument("--kernel-size", type=int, help="attention conv kernel size")
    parser.add_argument(
        "--data", choices=("both", "aligned", "unaligned"), default="both"
    )
    parser.add_argument("--train-examples", type=int, help="override the train size")
    parser.add_argument(
        "--summarize",
        action="store_true",
        help="run nothing; print the tables of all rows in <output>/results.jsonl",
    )
    return parser


def read_results(output):
    """All result rows (headers excluded) of `<output>/results.jsonl`."""
    with open(os.path.join(output, "results.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if r["part"] != "header"]


def run(args):
    if getattr(args, "summarize", False):
        summary = summarize(read_results(args.output))
        print(summary)
        return summary
    import keras

    settings = load_settings()
    if args.epochs is not None:
        settings["training"]["epochs"] = args.epochs
    if args.kernel_size is not None:
        settings["attention"]["kernel_size"] = args.kernel_size
    if args.train_examples is not None:
        settings["data"]["train"] = args.train_examples
    seeds = args.seeds or settings["seeds"]
    aligned_values = {"both": (False, True), "aligned": (True,), "unaligned": (False,)}[
        args.data
    ]
    os.makedirs(args.output, exist_ok=True)
    rows = []
    header = {
        "part": "header",
        "backend": keras.config.backend(),
        "command": getattr(args, "command_line", ""),
        "settings": settings,
        "seeds": seeds,
    }
    with open(os.path.join(args.output, "results.jsonl"), "a") as f:
        f.write(json.dumps(header) + "\n")

    def emit(row):
        print(json.dumps(row), flush=True)
        rows.append(row)
        with open(os.path.join(args.output, "results.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")

    start = time.time()
    for part in args.parts:
        if part == "task":
            run_task(settings, seeds, emit, aligned_values)
        elif part == "attention":
            variants = args.variants or settings["attention"]["variants"]
            run_attention(
                settings, seeds, emit, variants, aligned_values=aligned_values
            )
        elif part == "window":
            windows = args.windows or settings["windows"]
            run_attention(
                settings,
                seeds,
                emit,
                args.variants or ["relative"],
                windows,
                aligned_values,
            )
        elif part == "models":
            run_models(settings, seeds, emit, aligned_values)
        else:
            run_params(settings, emit)
    summary = summarize(rows)
    with open(os.path.join(args.output, "summary.md"), "a") as f:
        f.write(
            f"\n{header['command']} ({header['backend']}, {time.time() - start:.0f} s)\n\n"
        )
        f.write(summary + "\n")
    print(summary)
    return rows


def main(argv=None):
    """`python -m mmfusion_keras.experiments.delta_attention [options]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="python -m mmfusion_keras.experiments.delta_attention",
            description="Delta self-attention readings and the hierarchical model "
            "on the generated delta task (Panchal).",
        )
    )
    args = parser.parse_args(argv)
    args.command_line = (
        "python -m mmfusion_keras.experiments.delta_attention " + " ".join(argv)
    )
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
