"""The `mmfusion` command: train, evaluate and compare fusion models.

The backend is chosen (`--backend`, else `KERAS_BACKEND`) before Keras is
imported. User errors (unknown names, missing files, inputs that don't fit
the model) print one line and exit with status 2, without a traceback.
"""

import argparse
import json
import os
import sys
import time

FUSIONS = (
    "concat",
    "sum",
    "product",
    "gmu",
    "tensor",
    "low_rank_tensor",
    "compact_bilinear",
    "late",
    "mbaf",
)


class UserError(Exception):
    """An error caused by the command line; printed as one line."""


def _set_backend(backend):
    if backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != backend:
            raise UserError("--backend must be chosen before Keras is imported.")
        os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _predict_labels(model, inputs):
    import numpy as np

    names = [t.name.split(":")[0] for t in model.inputs]
    missing = [n for n in names if n not in inputs]
    if missing:
        raise UserError(
            f"The model expects inputs {names}, but the data has {sorted(inputs)} "
            f"(missing {missing})."
        )
    for t in model.inputs:
        name = t.name.split(":")[0]
        expected = tuple(t.shape[1:])
        got = tuple(inputs[name].shape[1:])
        if expected != got:
            raise UserError(
                f"Input {name!r} of the model has shape {expected} per sample, "
                f"but the data has {got}."
            )
    probabilities = model.predict({n: inputs[n] for n in names}, verbose=0)
    return np.argmax(probabilities, axis=-1)


def _versions():
    import keras

    import mmfusion_keras

    return {
        "mmfusion_keras": mmfusion_keras.__version__,
        "keras": keras.__version__,
        "backend": keras.config.backend(),
    }


def _train_one(
    task,
    fusion,
    seed,
    epochs,
    batch_size,
    patience,
    verbose,
    output=None,
    tensorboard=None,
    resume=False,
    command=None,
):
    import keras

    from mmfusion_keras.metrics import classification_metrics

    keras.utils.set_random_seed(seed)
    x_train, y_train = task.load("train", seed=seed)
    x_val, y_val = task.load("validation", seed=seed)
    x_test, y_test = task.load("test", seed=seed)
    model = task.build_model(fusion, seed=seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True
        )
    ]
    if output:
        os.makedirs(output, exist_ok=True)
        if resume:
            callbacks.append(
                keras.callbacks.BackupAndRestore(os.path.join(output, "backup"))
            )
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(tensorboard))
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    validation = classification_metrics(
        y_val, _predict_labels(model, x_val), task.class_names
    )
    test = classification_metrics(
        y_test, _predict_labels(model, x_test), task.class_names
    )
    card = {
        "task": task.name,
        "task_description": task.description,
        "classes": task.class_names,
        "preprocessing": task.preprocessing,
        "fusion": fusion,
        **_versions(),
        "seed": seed,
        "epochs_run": len(history.history["loss"]),
        "max_epochs": epochs,
        "batch_size": batch_size,
        "training_seconds": round(seconds, 2),
        "validation_metrics": validation,
        "test_metrics": test,
        "command": command,
    }
    if output:
        model.save(os.path.join(output, "model.keras"))
        with open(os.path.join(output, "model_card.json"), "w") as f:
            json.dump(card, f, indent=2)
    return model, card


def _summary(metrics):
    return (
        f"accuracy={metrics['accuracy']:.4f}  UA={metrics['unweighted_accuracy']:.4f}"
        f"  macro-F1={metrics['macro_f1']:.4f}"
    )


def cmd_train(args):
    from mmfusion_keras.tasks import get_task

    task = get_task(args.task)
    _, card = _train_one(
        task,
        args.fusion,
        args.seed,
        args.epochs,
        args.batch_size,
        args.patience,
        verbose=args.verbose,
        output=args.output,
        tensorboard=args.tensorboard,
        resume=args.resume,
        command="mmfusion " + " ".join(args.argv),
    )
    print(
        f"[{card['backend']}] {task.name} / {args.fusion}: test {_summary(card['test_metrics'])}"
    )
    if args.output:
        print(f"Saved {os.path.join(args.output, 'model.keras')} and model_card.json")


def cmd_evaluate(args):
    import keras

    from mmfusion_keras.metrics import classification_metrics
    from mmfusion_keras.tasks import get_task

    if not os.path.isfile(args.model):
        raise UserError(f"Model file not found: {args.model}")
    if not args.model.endswith(".keras"):
        raise UserError(f"Expected a .keras model file. Received: {args.model}")
    task = get_task(args.task)
    try:
        model = keras.saving.load_model(args.model, compile=False)
    except Exception as e:  # a corrupt or foreign file
        raise UserError(f"Could not load {args.model} as a Keras model: {e}") from e
    inputs, labels = task.load(args.split, seed=args.seed)
    metrics = classification_metrics(
        labels, _predict_labels(model, inputs), task.class_names
    )
    print(
        f"[{keras.config.backend()}] {args.model} on {task.name}/{args.split}: {_summary(metrics)}"
    )
    if args.output:
        with open(args.output, "w") as f:
            json.dump(metrics, f, indent=2)
        print(f"Wrote {args.output}")


def cmd_compare(args):
    import numpy as np

    from mmfusion_keras.tasks import get_task

    task = get_task(args.task)
    fusions = [f.strip() for f in args.fusions.split(",") if f.strip()]
    for f in fusions:
        if f not in FUSIONS:
            raise UserError(f"Unknown fusion {f!r}. Expected one of {list(FUSIONS)}.")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for fusion in fusions:
        scores = []
        for seed in seeds:
            _, card = _train_one(
                task,
                fusion,
                seed,
                args.epochs,
                args.batch_size,
                args.patience,
                verbose=0,
            )
            scores.append(card["test_metrics"])
            print(
                f"  {fusion:>16} seed {seed}: test {_summary(card['test_metrics'])}"
                f"  ({card['epochs_run']} epochs, {card['training_seconds']:.1f} s)",
                flush=True,
            )
        rows.append((fusion, scores))
    backend = _versions()["backend"]
    print(f"\n{task.name}, backend {backend}, seeds {seeds}: test metrics, mean ± std")
    print("| fusion | accuracy | UA | macro F1 |\n|---|---|---|---|")
    for fusion, scores in rows:
        cells = []
        for key in ("accuracy", "unweighted_accuracy", "macro_f1"):
            values = np.array([s[key] for s in scores])
            cells.append(f"{values.mean():.4f} ± {values.std():.4f}")
        print(f"| {fusion} | " + " | ".join(cells) + " |")


def build_parser():
    from_tasks = ["digits-views"]
    parser = argparse.ArgumentParser(
        prog="mmfusion",
        description="Train, evaluate and compare multimodal fusion models.",
    )
    parser.add_argument(
        "--backend", choices=["tensorflow", "jax", "torch"], help="Keras backend"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a fusion model with model.fit")
    train.add_argument("--task", default="digits-views", help=f"one of {from_tasks}")
    train.add_argument("--fusion", default="mbaf", help=f"one of {list(FUSIONS)}")
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--patience", type=int, default=5)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--output", help="directory for model.keras and model_card.json")
    train.add_argument("--tensorboard", help="directory for TensorBoard logs")
    train.add_argument(
        "--resume",
        action="store_true",
        help="back up each epoch to OUTPUT/backup and resume from it",
    )
    train.add_argument("--verbose", type=int, default=2)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a saved .keras model")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--task", default="digits-views")
    evaluate.add_argument(
        "--split", default="test", choices=["train", "validation", "test"]
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the split")
    evaluate.add_argument("--output", help="write the metrics as JSON here")
    evaluate.set_defaults(func=cmd_evaluate)

    compare = sub.add_parser("compare", help="train several fusions over seeds")
    compare.add_argument("--task", default="digits-views")
    compare.add_argument("--fusions", default="concat,mbaf")
    compare.add_argument("--seeds", default="0,1,2")
    compare.add_argument("--epochs", type=int, default=40)
    compare.add_argument("--batch-size", type=int, default=64)
    compare.add_argument("--patience", type=int, default=5)
    compare.set_defaults(func=cmd_compare)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if getattr(args, "fusion", None) is not None and args.fusion not in FUSIONS:
            raise UserError(
                f"Unknown fusion {args.fusion!r}. Expected one of {list(FUSIONS)}."
            )
        _set_backend(args.backend)
        from mmfusion_keras.tasks import task_names

        if args.task not in task_names():
            raise UserError(
                f"Unknown task {args.task!r}. Expected one of {task_names()}."
            )
        args.func(args)
    except (UserError, ValueError, FileNotFoundError) as e:
        # Library errors are written for users: one line, no traceback.
        message = " ".join(str(e).split())
        print(f"mmfusion: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
