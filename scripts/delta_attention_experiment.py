"""Delta self-attention vs plain self-attention on the generated delta task.

Runs every configuration with several seeds and prints one JSON line per run
plus a summary table (mean +- std of test accuracy). Results and the exact
command are recorded in docs/delta_attention.md.

    KERAS_BACKEND=jax nice -n 5 python scripts/delta_attention_experiment.py \
        --part attention --seeds 0 1 2

Parts:
  attention: per-modality (delta) self-attention -> masked mean -> concat ->
             softmax; attention "plain" / "difference" / "absolute",
             aligned and unaligned data.
  models:    the hierarchical delta-attention model (end to end and stage-wise),
             then the parameter counts.
  mult:      MulT (`build_mult_model`, width --width, 2 heads, --mult-layers
             layers) on the same task.
  params:    parameter counts of the hierarchical model (and of MulT when
             `build_mult_model` exists) at equal width, CMU-MOSEI input dims.
"""

import argparse
import json
import time

import keras
import numpy as np

from mmfusion_keras.datasets import load_delta_sequences
from mmfusion_keras.layers import DeltaSelfAttention

MODALITIES = ("text", "vision", "audio")


def to_inputs(ds):
    return {k: ds.inputs[k] for k in ds.inputs}


def build_attention_classifier(ds, attention, width=16, heads=2, window=None):
    """Per-modality self-attention, masked mean over time, concat, softmax."""
    inputs, pooled = {}, []
    for m in MODALITIES:
        x = keras.Input(ds.inputs[m].shape[1:], name=m)
        mask = keras.Input(ds.inputs[m].shape[1:2], dtype="bool", name=f"{m}_mask")
        inputs[m], inputs[f"{m}_mask"] = x, mask
        y = DeltaSelfAttention(
            num_heads=heads,
            filters=width,
            output_dim=width,
            kernel_size=3,
            delta_window=window,
            delta="relative" if attention == "plain" else attention,
            use_delta=attention != "plain",
            name=f"{m}_attention",
        )(x, mask=mask)
        pooled.append(keras.layers.GlobalAveragePooling1D()(y, mask=mask))
    h = keras.layers.Concatenate()(pooled)
    h = keras.layers.Dense(width, activation="relu")(h)
    out = keras.layers.Dense(ds.num_classes, activation="softmax")(h)
    return keras.Model(inputs, out)


def run_attention(args):
    rows = []
    for aligned in (False, True):
        for attention in ("plain", "difference", "absolute"):
            for seed in args.seeds:
                kw = {
                    "aligned": aligned,
                    "seed": seed,
                    "noise": args.noise,
                    "baseline_scale": args.baseline,
                }
                train = load_delta_sequences("train", **kw)
                val = load_delta_sequences("validation", **kw)
                test = load_delta_sequences("test", **kw)
                keras.utils.set_random_seed(seed)
                model = build_attention_classifier(
                    train, attention, width=args.width, window=args.window
                )
                model.compile(
                    keras.optimizers.Adam(args.lr),
                    loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"],
                )
                start = time.time()
                history = model.fit(
                    to_inputs(train),
                    train.labels,
                    validation_data=(to_inputs(val), val.labels),
                    epochs=args.epochs,
                    batch_size=32,
                    verbose=0,
                )
                seconds = time.time() - start
                best = int(np.argmax(history.history["val_accuracy"]))
                _, acc = model.evaluate(to_inputs(test), test.labels, verbose=0)
                row = {
                    "part": "attention",
                    "aligned": aligned,
                    "attention": attention,
                    "seed": seed,
                    "test_accuracy": round(float(acc), 4),
                    "best_val_accuracy": round(
                        history.history["val_accuracy"][best], 4
                    ),
                    "best_epoch": best + 1,
                    "params": model.count_params(),
                    "fit_seconds": round(seconds, 1),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    print("\n| data | attention | test accuracy (mean ± std over seeds) | params |")
    print("|---|---|---|---|")
    for aligned in (False, True):
        for attention in ("plain", "difference", "absolute"):
            accs = [
                r["test_accuracy"]
                for r in rows
                if r["aligned"] == aligned and r["attention"] == attention
            ]
            params = next(
                r["params"]
                for r in rows
                if r["aligned"] == aligned and r["attention"] == attention
            )
            print(
                f"| {'aligned' if aligned else 'unaligned'} | {attention} | "
                f"{np.mean(accs):.3f} ± {np.std(accs):.3f} ({len(accs)} seeds) "
                f"| {params} |"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=("attention", "models", "mult", "params"), default="attention"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--baseline", type=float, default=1.0)
    parser.add_argument("--mult-layers", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps({"backend": keras.config.backend(), **vars(args)}), flush=True)
    if args.part == "attention":
        run_attention(args)
    elif args.part == "models":
        run_models(args)
    elif args.part == "mult":
        run_mult(args)
    else:
        print_parameter_counts(args)


def _mult_builder():
    try:
        from mmfusion_keras.models import build_mult_model
    except ImportError:
        return None
    return build_mult_model


def run_models(args):
    """Hierarchical model end to end vs stage-wise; parameter counts."""
    from mmfusion_keras.models import build_hierarchical_delta_attention_model
    from mmfusion_keras.models import fit_hierarchical_stagewise

    rows = []
    for aligned in (False, True):
        for training in ("end_to_end", "stagewise"):
            for seed in args.seeds:
                kw = {
                    "aligned": aligned,
                    "seed": seed,
                    "noise": args.noise,
                    "baseline_scale": args.baseline,
                }
                train = load_delta_sequences("train", **kw)
                test = load_delta_sequences("test", **kw)
                shapes = {m: train.inputs[m].shape[1:] for m in MODALITIES}
                keras.utils.set_random_seed(seed)
                model = build_hierarchical_delta_attention_model(
                    shapes,
                    train.num_classes,
                    filters=args.width,
                    output_dim=args.width,
                    reduced_dim=args.width // 2,
                    fused_dim=args.width,
                    delta_window=args.window,
                )
                start = time.time()
                if training == "end_to_end":
                    model.compile(
                        keras.optimizers.Adam(args.lr),
                        loss="sparse_categorical_crossentropy",
                        metrics=["accuracy"],
                    )
                    model.fit(
                        to_inputs(train),
                        train.labels,
                        epochs=args.epochs,
                        batch_size=32,
                        verbose=0,
                    )
                else:
                    third = max(1, args.epochs // 3)
                    fit_hierarchical_stagewise(
                        model,
                        to_inputs(train),
                        train.labels,
                        epochs=(third, third, third),
                        learning_rates=(args.lr, args.lr, args.lr),
                    )
                    model.compile(
                        loss="sparse_categorical_crossentropy", metrics=["accuracy"]
                    )
                seconds = time.time() - start
                _, acc = model.evaluate(to_inputs(test), test.labels, verbose=0)
                row = {
                    "part": "models",
                    "aligned": aligned,
                    "training": training,
                    "seed": seed,
                    "test_accuracy": round(float(acc), 4),
                    "params": model.count_params(),
                    "fit_seconds": round(seconds, 1),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    print_parameter_counts(args)


def run_mult(args):
    """MulT (fewer layers than its default, to fit the time budget) on the task."""
    build_mult = _mult_builder()
    for aligned in (False, True):
        for seed in args.seeds:
            kw = {
                "aligned": aligned,
                "seed": seed,
                "noise": args.noise,
                "baseline_scale": args.baseline,
            }
            train = load_delta_sequences("train", **kw)
            test = load_delta_sequences("test", **kw)
            keras.utils.set_random_seed(seed)
            model = build_mult(
                [train.inputs[m].shape[1:] for m in MODALITIES],
                width=args.width,
                num_heads=2,
                num_layers=args.mult_layers,
                head="multiclass",
                num_classes=train.num_classes,
                modality_names=MODALITIES,
            )
            model.compile(
                keras.optimizers.Adam(args.lr),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
            start = time.time()
            model.fit(
                to_inputs(train),
                train.labels,
                epochs=args.epochs,
                batch_size=32,
                verbose=0,
            )
            seconds = time.time() - start
            _, acc = model.evaluate(to_inputs(test), test.labels, verbose=0)
            row = {
                "part": "mult",
                "aligned": aligned,
                "seed": seed,
                "num_layers": args.mult_layers,
                "test_accuracy": round(float(acc), 4),
                "params": model.count_params(),
                "fit_seconds": round(seconds, 1),
            }
            print(json.dumps(row), flush=True)


def print_parameter_counts(args):
    """Parameters of the hierarchical model vs MulT at equal width (CMU-MOSEI dims)."""
    from mmfusion_keras.models import build_hierarchical_delta_attention_model

    shapes = {"text": (50, 300), "vision": (50, 35), "audio": (50, 74)}
    build_mult = _mult_builder()
    print(
        "\n| width | hierarchical delta-attention (5 heads) | MulT (5 layers, 5 heads) | ratio |"
    )
    print("|---|---|---|---|")
    for width in (30, 40):
        ours = build_hierarchical_delta_attention_model(
            shapes,
            6,
            num_heads=5,
            filters=width,
            output_dim=width,
            reduced_dim=width // 2,
            fused_dim=width,
        ).count_params()
        if build_mult is None:
            print(f"| {width} | {ours} | (not available) | |")
            continue
        mult = build_mult(list(shapes.values()), width=width).count_params()
        print(f"| {width} | {ours} | {mult} | {ours / mult:.2f} |")


if __name__ == "__main__":
    main()
