"""The `mmfusion` command: train, evaluate and compare fusion models.

The backend is chosen (`--backend`, else `KERAS_BACKEND`) before Keras is
imported. User errors (unknown names, missing files, inputs that don't fit
the model) print one line and exit with status 2, without a traceback.
"""

import argparse
import contextlib
import importlib.util
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
    "dual_memory",
    "sequence",  # speech-text only: the word x audio-frame attention model
)


class UserError(Exception):
    """An error caused by the command line; printed as one line."""


def _set_backend(backend, argv):
    """Runs the command under `backend`, re-executing if Keras has another.

    Importing `mmfusion_keras` imports Keras (so every layer is registered
    for loading), which fixes the backend from `KERAS_BACKEND`; a different
    `--backend` re-runs the same command in a fresh process.
    """
    if not backend:
        return
    import keras

    if keras.config.backend() != backend:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        sys.stdout.flush()
        sys.stderr.flush()
        command = [sys.executable, "-m", "mmfusion_keras.cli", *argv]
        os.execve(sys.executable, command, env)


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


def _memory_health_callbacks(model, inputs):
    """[MemoryHealthCallback] for a model with a memory layer, else [].

    Per-epoch memory health (read entropy on `inputs`, e.g. the validation
    split) goes into the History and, as the callback comes before
    TensorBoard's, into TensorBoard.
    """
    from mmfusion_keras.callbacks import MemoryHealthCallback
    from mmfusion_keras.inspection import find_memory_layers

    if not find_memory_layers(model):
        return []
    return [MemoryHealthCallback(inputs=inputs)]


def _memory_health_card(model, inputs):
    """Model-card entry: a JSON-serializable health dict per memory, or None.

    Read entropy is measured on `inputs` (the test split) in inference
    mode; nothing is written to the memory.
    """
    from mmfusion_keras.inspection import find_memory_layers
    from mmfusion_keras.inspection import memory_health_summary
    from mmfusion_keras.inspection import model_memory_health

    if not find_memory_layers(model):
        return None
    return [memory_health_summary(h) for h in model_memory_health(model, inputs)]


def _skipped_memory_writes(model):
    """`{layer name: writes skipped as non-finite}` of the memory layers.

    `MemoryBasedAttentiveFusion` and `DualMemoryFusion` skip a memory write
    that would hold NaN or inf and count it in `skipped_writes` (NaN policy);
    None for a model without memory layers.
    """
    import keras

    from mmfusion_keras.inspection import find_memory_layers

    layers = [
        layer
        for layer in find_memory_layers(model)
        if getattr(layer, "skipped_writes", None) is not None
    ]
    if not layers:
        return None
    return {
        layer.name: int(keras.ops.convert_to_numpy(layer.skipped_writes))
        for layer in layers
    }


def _print_memory_health(card):
    """One `describe_memory_health` line per memory of a model card."""
    from mmfusion_keras.inspection import describe_memory_health

    for health in card.get("memory_health") or []:
        print(f"  memory health: {describe_memory_health(health)}")
    for name, count in (card.get("skipped_memory_writes") or {}).items():
        if count:
            print(
                f"  memory writes skipped as non-finite (NaN policy): {name}: {count}"
            )


def _print_compare_health(task_name, healths):
    """Memory health per fusion over seeds (mean ± std), beside accuracy.

    `healths` maps a fusion to its list (one per seed) of model-card
    `memory_health` lists; fusions without memory are left out.
    """
    import numpy as np

    rows = []
    for fusion, per_seed in healths.items():
        if not per_seed or any(h is None for h in per_seed):
            continue
        for j, first in enumerate(per_seed[0]):
            runs = [h[j] for h in per_seed]
            cells = []
            for key in (
                "distinct_slots",
                "effective_rank",
                "read_entropy",
                "slots_read",
            ):
                values = np.array(
                    [np.nan if r.get(key) is None else r[key] for r in runs], float
                )
                cells.append(f"{np.mean(values):.2f} ± {np.std(values):.2f}")
            rows.append(
                f"| {fusion} | {first['name']} | {first['slots']} | "
                + " | ".join(cells)
                + " |"
            )
    if not rows:
        return
    print(f"\n{task_name}: memory health on the test split, mean ± std over seeds")
    print(
        "| fusion | memory | slots | distinct slots | effective rank | read entropy "
        "| slots read |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)


def _identity(task_name, fusion, seed, epochs, batch_size, patience, max_examples):
    """What makes two training runs the same run (checked on --resume)."""
    return {
        "task": task_name,
        "fusion": fusion,
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "patience": patience,
        "max_examples": max_examples,
    }


def _check_resume(identity, state, checkpoint):
    """One-line error unless `state` (a checkpoint) belongs to this run."""
    saved = state["identity"]
    different = [
        f"{key}: checkpoint {saved.get(key)!r}, command line {value!r}"
        for key, value in identity.items()
        if key != "command" and saved.get(key) != value
    ]
    if different:
        raise UserError(
            f"--resume: {checkpoint} belongs to another run ({'; '.join(different)}). "
            "Resume with the same arguments, or start again with --overwrite."
        )


def _prepare_output(output, overwrite, resume):
    """Checks --output before any data is loaded; returns the checkpoint state.

    The folder is created and probed for writability. A folder holding a run
    (model.keras, model_card.json or a checkpoint) is refused unless
    --overwrite or --resume is given. Returns the checkpoint's state dict
    when resuming from one, else None.
    """
    from mmfusion_keras import runs

    if overwrite and resume:
        raise UserError("Pass either --overwrite or --resume, not both.")
    runs.check_writable_folder(output)
    existing = [n for n in runs.RUN_FILES if os.path.exists(os.path.join(output, n))]
    checkpoint = os.path.join(output, runs.CHECKPOINT_NAME)
    if existing and not (overwrite or resume):
        raise UserError(
            f"The run folder {output} already holds a run ({', '.join(existing)}): "
            "pass --overwrite to replace it, --resume to continue it, or choose "
            "another --output."
        )
    if resume and os.path.exists(checkpoint):
        return runs.read_checkpoint(checkpoint)
    if resume and existing:
        raise UserError(
            f"--resume: {output} holds a run ({', '.join(existing)}) but no "
            f"{runs.CHECKPOINT_NAME} to resume from (written by an older "
            "mmfusion?). Pass --overwrite to train it again."
        )
    return None


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
    resume_state=None,
    command=None,
    max_examples=None,
    recipe="adam",
    clear_session=True,
    fusion_options=None,
):
    """Trains one model; with `output`, checkpoints every epoch and saves it.

    The data order and random draws of each epoch depend on `(seed, epoch)`
    only, so a run resumed from `resume_state` (a checkpoint of the same
    run) ends with the same weights and history as an uninterrupted one.
    """
    import keras

    from mmfusion_keras import runs
    from mmfusion_keras.metrics import classification_metrics
    from mmfusion_keras.tasks import build_recipe_optimizer
    from mmfusion_keras.tasks import get_recipe

    task = task.for_fusion(fusion)
    identity = _identity(
        task.name, fusion, seed, epochs, batch_size, patience, max_examples
    )
    if fusion_options:  # (absent otherwise: older checkpoints still resume)
        identity["fusion_options"] = dict(fusion_options)
    if clear_session:  # (--distribute clears it before entering its scope)
        keras.backend.clear_session()  # same layer names, hence same config hash
    keras.utils.set_random_seed(seed)
    splits = {}
    for split in ("train", "validation", "test"):
        x, y = task.load(split, seed=seed)
        if max_examples:
            x, y = {k: v[:max_examples] for k, v in x.items()}, y[:max_examples]
        splits[split] = (x, y)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits.values()
    recipe_spec = get_recipe(recipe)
    head = recipe_spec["head_units"]
    try:
        model = task.build_model(
            fusion,
            fusion_kwargs=dict(fusion_options or {}),
            seed=seed,
            **({"head_units": head} if head else {}),
        )
    except (TypeError, ValueError) as error:
        if not fusion_options:
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(
            f"--fusion-option {fusion_options} does not fit fusion {fusion!r}: {first}"
        ) from None
    model.compile(
        optimizer=build_recipe_optimizer(recipe_spec, model),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    identity["model_sha256"] = runs.model_fingerprint(model)
    identity["command"] = command
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    train_data = runs.ShuffledBatches(x_train, y_train, batch_size, seed=seed)
    checkpoint_path = os.path.join(output, runs.CHECKPOINT_NAME) if output else None
    if resume_state is not None:
        _check_resume(identity, resume_state, checkpoint_path)
    run = runs.RunCheckpoint(
        checkpoint_path,
        identity,
        seed,
        train_data,
        callbacks=[early_stopping],
        state=resume_state,
    )
    # NaN policy: stop at the first non-finite loss; no checkpoint is written
    # for that epoch and early stopping restores the best finite weights.
    callbacks = [early_stopping, keras.callbacks.TerminateOnNaN()]
    # Memory health per epoch (into the History, the checkpoint and, as it
    # comes before TensorBoard's callback, TensorBoard).
    callbacks += _memory_health_callbacks(model, x_val) + [run]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(tensorboard))
    initial_epoch = 0
    if resume_state is not None:
        run.set_model(model)
        run.restore_model()
        initial_epoch = epochs if run.stop_training else run.initial_epoch
        if verbose:
            print(f"Resuming {output} after epoch {run.initial_epoch} of {epochs}.")
    model.fit(
        train_data,
        validation_data=(x_val, y_val),
        validation_batch_size=batch_size,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=verbose,
    )
    _check_finite_weights(model, run)
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
        "fusion_options": dict(fusion_options or {}),
        "recipe": recipe,
        **_versions(),
        "seed": seed,
        "epochs_run": len(run.history.get("loss", [])),
        "max_epochs": epochs,
        "batch_size": batch_size,
        "patience": patience,
        "training_seconds": round(run.training_seconds, 2),
        "resumed": resume_state is not None,
        "history": run.history,
        "validation_metrics": validation,
        "test_metrics": test,
        "max_examples": max_examples,
        "command": command,
        "memory_health": _memory_health_card(model, x_test),
        "skipped_memory_writes": _skipped_memory_writes(model),
    }
    if run.skipped_nonfinite_epochs:
        card["nonfinite_loss_epochs"] = run.skipped_nonfinite_epochs
    if output:
        _save_run(output, model, card, run)
    return model, card


def _check_finite_weights(model, run):
    """Refuses to keep a model whose weights are NaN or infinite."""
    import numpy as np

    if all(np.all(np.isfinite(w)) for w in model.get_weights()):
        return
    raise UserError(
        "Training diverged: the loss or the weights became non-finite (epochs "
        f"{run.skipped_nonfinite_epochs}) before any finite epoch to "
        "restore; no model was saved (the run folder is unchanged). Try a "
        "lower learning rate or check the data for NaN/inf values."
    )


def _save_run(output, model, card, run):
    """Writes model.keras, model_card.json and the final checkpoint atomically."""
    from mmfusion_keras import runs

    model_path = os.path.join(output, "model.keras")
    try:
        runs.save_model(model, model_path)
        card["model_sha256"] = runs.file_sha256(model_path)
        runs.write_json(os.path.join(output, "model_card.json"), card)
        run.save(finished=True)
    except OSError as e:
        raise UserError(
            f"Could not write the run into {output}: {e}. Files that were "
            "already there are unchanged."
        ) from e


def _summary(metrics):
    return (
        f"accuracy={metrics['accuracy']:.4f}  UA={metrics['unweighted_accuracy']:.4f}"
        f"  macro-F1={metrics['macro_f1']:.4f}"
    )


def _check_positive(args, *names, allow_zero=()):
    """One-line errors for integer options that must be positive."""
    for name in names:
        value = getattr(args, name, None)
        if value is None:
            continue
        low = 0 if name in allow_zero else 1
        if value < low:
            flag = "--" + name.replace("_", "-")
            what = "a non-negative" if low == 0 else "a positive"
            raise UserError(f"{flag} must be {what} integer. Received: {flag} {value}")


def _distribution_scope(mode, batch_size):
    """The context `mmfusion train --distribute MODE` trains in.

    `data-parallel` replicates the model on every local device and splits
    each batch between them: `keras.distribution.DataParallel` on JAX (one
    program over the global batch: the gradients, and the memory layers'
    writes, are those of single-device training on the same global batch,
    up to float rounding) and `tf.distribute.MirroredStrategy` on
    TensorFlow (each replica sees its share of the batch; gradients are
    summed across replicas). PyTorch: refused, Keras has no data
    parallelism for it. Several hosts (JAX): call
    `jax.distributed.initialize()` on every host before `mmfusion train`;
    `keras.distribution.list_devices()` then lists all hosts' devices.
    """
    if mode is None:
        return contextlib.nullcontext()
    import keras

    backend = keras.config.backend()
    if backend == "torch":
        raise UserError(
            "--distribute data-parallel is not supported on the PyTorch backend "
            "(Keras has no data parallelism for torch); use --backend jax or "
            "--backend tensorflow."
        )
    if backend == "jax":
        devices = keras.distribution.list_devices()
    else:
        import tensorflow as tf

        devices = [
            d.name
            for d in tf.config.list_logical_devices("GPU")
            or tf.config.list_logical_devices("CPU")
        ]
    if batch_size % len(devices):
        raise UserError(
            f"--distribute data-parallel splits each batch over {len(devices)} "
            f"devices, so --batch-size must be a multiple of {len(devices)}. "
            f"Received: --batch-size {batch_size}"
        )
    print(f"Data-parallel training on {len(devices)} devices ({backend}).")
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy(devices=devices).scope()
    return _jax_data_parallel(keras, devices)


@contextlib.contextmanager
def _jax_data_parallel(keras, devices):
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices)
    )
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def cmd_train(args):
    from mmfusion_keras.tasks import get_task

    _check_positive(
        args,
        "epochs",
        "batch_size",
        "patience",
        "max_examples",
        allow_zero=["patience"],
    )
    if args.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UserError(
            "--tensorboard needs the `tensorboard` package, which is not "
            "installed: `pip install tensorboard` (received: --tensorboard "
            f"{args.tensorboard})."
        )
    resume_state = None
    if args.output:
        resume_state = _prepare_output(args.output, args.overwrite, args.resume)
    elif args.overwrite or args.resume:
        flag = "--overwrite" if args.overwrite else "--resume"
        raise UserError(f"{flag} needs --output (the run folder).")
    if resume_state is not None:
        identity = _identity(
            args.task,
            args.fusion,
            args.seed,
            args.epochs,
            args.batch_size,
            args.patience,
            args.max_examples,
        )
        checkpoint = os.path.join(args.output, "checkpoint.npz")
        _check_resume(identity, resume_state, checkpoint)
        if resume_state.get("finished"):
            print(
                f"The run in {args.output} is already finished "
                f"({resume_state['epochs_done']} epochs; model.keras and "
                "model_card.json are saved). Nothing to resume; pass --overwrite "
                "to train it again."
            )
            return
    task = get_task(args.task, text_encoder=_text_encoder(args))
    distribute = getattr(args, "distribute", None)
    if distribute:
        import keras

        # Cleared before the scope: on TensorFlow it resets the graph that
        # holds the strategy's scope.
        keras.backend.clear_session()
    with _distribution_scope(distribute, args.batch_size):
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
            resume_state=resume_state,
            command="mmfusion " + " ".join(args.argv),
            max_examples=args.max_examples,
            recipe=args.recipe,
            clear_session=not distribute,
            fusion_options=args.fusion_option,
        )
    print(
        f"[{card['backend']}] {task.name} / {args.fusion}: test {_summary(card['test_metrics'])}"
    )
    _print_memory_health(card)
    if args.output:
        print(f"Saved {os.path.join(args.output, 'model.keras')} and model_card.json")


def _read_card(model_path):
    card_path = os.path.join(
        os.path.dirname(os.path.abspath(model_path)), "model_card.json"
    )
    if not os.path.isfile(card_path):
        return None
    with open(card_path) as f:
        return json.load(f)


def _manifest_inputs(folder, preprocessing, class_names):
    """Model inputs and labels from a user folder with manifest.csv."""
    from mmfusion_keras.datasets.manifest import load_manifest
    from mmfusion_keras.tasks import prepare_inputs

    specs = preprocessing["inputs"]
    image_size = None
    if "image" in specs:
        image_size = tuple(specs["image"]["shape"][:2])
    audio = specs.get("audio", {})
    # Long clips are cropped while decoding, to the samples the model takes.
    ds = load_manifest(
        folder,
        class_names=class_names,
        image_mode="L",
        image_size=image_size,
        sample_rate=audio.get("sample_rate", 16000),
        max_samples=audio.get("samples"),
    )
    raw = {}
    for name in specs:
        if name not in ds.inputs:
            raise UserError(
                f"The model takes {sorted(specs)}, but {folder}/manifest.csv has no "
                f"{name!r} column."
            )
        values = ds.inputs[name]
        if name == "audio":
            lengths = ds.metadata["audio_length"]
            values = [w[: int(n)] for w, n in zip(values, lengths)]
        raw[name] = list(values)
    inputs, notes = prepare_inputs(preprocessing, raw)
    cropped = len(notes) + int(sum(ds.metadata.get("cropped", [])))
    if cropped:
        print(f"{cropped} clips were longer than the model takes and were cropped.")
    return inputs, ds.labels


def _evaluation_model_path(args):
    """The .keras file to evaluate, from the positional path or --model.

    The positional argument may be a run folder (holding model.keras, e.g.
    `saved_models/speech_text_mbaf`) or a .keras file.
    """
    if args.model_path and args.model:
        raise UserError(
            "Pass the model once, as the path or as --model. Received: "
            f"{args.model_path} and --model {args.model}"
        )
    path = args.model_path or args.model
    if not path:
        raise UserError(
            "evaluate needs a model: `mmfusion evaluate RUN_FOLDER_OR_MODEL.keras "
            "[--split SPLIT]`."
        )
    if os.path.isdir(path):
        model = os.path.join(path, "model.keras")
        if not os.path.isfile(model):
            raise UserError(f"No model.keras in the folder {path}.")
        return model
    return path


def _evaluation_data(args, task, card, class_names):
    """`(inputs, labels, where)` of `--split` / `--data` for a saved model.

    A bundled split is preprocessed with the model card's own
    `preprocessing` when the task can give raw inputs (`Task.load_raw`), so
    a model trained with another text encoder or vocabulary than the task's
    default gets exactly the features it was trained on.
    """
    from mmfusion_keras.tasks import prepare_inputs

    if args.split and args.data:
        raise UserError(
            f"Pass either --split or --data, not both. Received: --split {args.split} "
            f"and --data {args.data}"
        )
    data = args.split or args.data or "test"
    if args.split and args.split not in task.splits:
        raise UserError(
            f"--split must be a split of the {task.name} task: {list(task.splits)}. "
            f"Received: --split {args.split}"
        )
    if data in task.splits:
        preprocessing = card.get("preprocessing")
        if task.load_raw is not None and preprocessing:
            raw, labels = task.load_raw(data, seed=args.seed)
            inputs, _ = prepare_inputs(preprocessing, raw)
        else:
            inputs, labels = task.load(data, seed=args.seed)
        return inputs, labels, f"{task.name}/{data}"
    if os.path.isdir(data):
        inputs, labels = _manifest_inputs(
            data, card.get("preprocessing", task.preprocessing), class_names
        )
        return inputs, labels, data
    raise UserError(
        f"--data must be a bundled split ({', '.join(task.splits)}) or a folder "
        f"with manifest.csv. Received: {data}"
    )


def cmd_evaluate(args):
    import keras

    from mmfusion_keras import runs
    from mmfusion_keras.metrics import classification_metrics
    from mmfusion_keras.tasks import get_task

    model_path = _evaluation_model_path(args)
    if not os.path.isfile(model_path):
        raise UserError(f"Model file not found: {model_path}")
    if not model_path.endswith(".keras"):
        raise UserError(f"Expected a .keras model file. Received: {model_path}")
    runs.check_keras_file(model_path)
    if args.output:
        runs.check_writable_file(args.output)
    card = _read_card(model_path) or {}
    if card.get("model_sha256") not in (None, runs.file_sha256(model_path)):
        print(
            f"Note: the model_card.json beside {model_path} was written for "
            "another model.keras (its sha256 differs); its task and classes may "
            "not apply."
        )
    task_name = args.task or card.get("task")
    if task_name is None:
        raise UserError(
            f"No model_card.json beside {model_path}: pass --task to say which task it is."
        )
    task = get_task(task_name)
    class_names = card.get("classes", task.class_names)
    if args.split and args.split not in task.splits:
        _evaluation_data(args, task, card, class_names)  # raises the error
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as e:  # a corrupt or foreign file
        raise UserError(f"Could not load {model_path} as a Keras model: {e}") from e
    inputs, labels, where = _evaluation_data(args, task, card, class_names)
    metrics = classification_metrics(
        labels, _predict_labels(model, inputs), class_names
    )
    print(f"[{keras.config.backend()}] {model_path} on {where}: {_summary(metrics)}")
    if metrics.get("note"):
        print(f"Note: {metrics['note']}")
    if args.output:
        try:
            runs.write_json(args.output, metrics)
        except OSError as e:
            raise UserError(f"Could not write {args.output}: {e}") from e
        print(f"Wrote {args.output}")


def cmd_compare(args):
    import numpy as np

    from mmfusion_keras.tasks import get_task

    task = get_task(args.task, text_encoder=_text_encoder(args))
    fusions = [f.strip() for f in args.fusions.split(",") if f.strip()]
    for f in fusions:
        if f not in FUSIONS:
            raise UserError(f"Unknown fusion {f!r}. Expected one of {list(FUSIONS)}.")
    _check_positive(args, "epochs", "batch_size", "patience", allow_zero=["patience"])
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UserError(
            f"--seeds must be comma-separated integers. Received: --seeds {args.seeds}"
        ) from None
    rows, healths = [], {}
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
                recipe=args.recipe,
                fusion_options=args.fusion_option,
            )
            scores.append(card["test_metrics"])
            healths.setdefault(fusion, []).append(card["memory_health"])
            print(
                f"  {fusion:>16} seed {seed}: test {_summary(card['test_metrics'])}"
                f"  ({card['epochs_run']} epochs, {card['training_seconds']:.1f} s)",
                flush=True,
            )
            _print_memory_health(card)  # this seed's (the table: mean ± std)
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
    _print_compare_health(task.name, healths)


def cmd_demo(args):
    """Starts the Streamlit demo (`apps/demo_app.py`) as a headless server."""
    import importlib.util

    import mmfusion_keras

    repo = os.path.dirname(os.path.dirname(os.path.abspath(mmfusion_keras.__file__)))
    app = os.path.join(repo, "apps", "demo_app.py")
    if not os.path.isfile(app):
        raise UserError(
            f"The demo app {app} is missing: `mmfusion demo` runs from a source "
            "checkout of mmfusion-keras (installed with `pip install -e .[app]`)."
        )
    if importlib.util.find_spec("streamlit") is None:
        raise UserError("The demo needs Streamlit: pip install 'mmfusion-keras[app]'")
    env = dict(os.environ)
    if args.demo_backend:
        env["KERAS_BACKEND"] = args.demo_backend
    command = [
        sys.executable, "-m", "streamlit", "run", app,
        "--server.headless", "true",
        "--server.port", str(args.port),
        "--server.address", args.address,
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    backend = env.get("KERAS_BACKEND", "tensorflow (Keras' default)")
    print(
        f"Demo on http://{args.address}:{args.port} with Keras backend {backend}; "
        "Ctrl+C stops it.",
        flush=True,
    )
    sys.stderr.flush()
    # Replace this process (which has imported Keras) by the server.
    os.execve(sys.executable, command, env)


def _search_protocol(args):
    """Search settings from `--paper-protocol` / `--temperature-schedule`.

    With `--paper-protocol`, sets `args.budget`, `args.num_samples`,
    `args.max_layers` and `args.epochs` to the paper's and returns the
    other `FusionArchitectureSearch` settings of `PAPER_PROTOCOL`.
    """
    protocol = {"temperature_schedule": args.temperature_schedule}
    if args.paper_protocol:
        from mmfusion_keras.search.fusion_architecture_search import PAPER_PROTOCOL

        args.budget = PAPER_PROTOCOL["budget"]
        args.num_samples = PAPER_PROTOCOL["num_samples"]
        args.epochs = PAPER_PROTOCOL["epochs"]
        args.max_layers = 4
        protocol["search_iterations"] = PAPER_PROTOCOL["search_iterations"]
        protocol["level_one"] = PAPER_PROTOCOL["level_one"]
    return protocol


def cmd_search(args):
    """MFAS or random search on AV-Digits, then final training of the top K."""
    if args.task != "avdigits":
        raise UserError(
            f"`mmfusion search` supports --task avdigits only. Received: {args.task!r}"
        )
    from mmfusion_keras.search.av_digits_search import prepare
    from mmfusion_keras.search.av_digits_search import search_and_train

    output = args.output or os.path.join("runs", f"search_avdigits_seed{args.seed}")
    protocol = _search_protocol(args)
    start = time.perf_counter()
    data = prepare(
        os.path.join(output, "unimodal"),
        audio_snr_db=args.audio_snr_db,
        image_snr_db=args.image_snr_db,
        seed=args.seed,
        unimodal_epochs=args.unimodal_epochs,
        max_examples=args.max_examples,
        verbose=args.verbose > 0,
    )
    result = search_and_train(
        data,
        output,
        method=args.method,
        budget=args.budget,
        seed=args.seed,
        num_samples=args.num_samples,
        max_layers=args.max_layers,
        epochs=args.epochs,
        top_k=args.top_k,
        final_units=args.final_units,
        final_epochs=args.final_epochs,
        multitask_epochs=args.multitask_epochs,
        batch_size=args.batch_size,
        final_patience=args.final_patience,
        run_eagerly=args.run_eagerly,
        verbose=args.verbose > 0,
        **protocol,
    )
    result.update(
        {
            "task": args.task,
            "audio_snr_db": args.audio_snr_db,
            "image_snr_db": args.image_snr_db,
            "command": "mmfusion " + " ".join(args.argv),
            "wall_seconds": time.perf_counter() - start,
            **_versions(),
        }
    )
    from mmfusion_keras import runs

    path = os.path.join(output, f"result_{args.method}.json")
    runs.write_json(path, result)
    best = result["best"]
    print(
        f"{args.method}: {result['num_trained']} architectures, top-{len(result['top'])} "
        f"val {result['top_val_mean']:.4f} ± {result['top_val_std']:.4f}; best "
        f"{best['description']} val {best['val_accuracy']:.4f} test "
        f"{best['test_accuracy']:.4f}. Wrote {path}"
    )


def _add_search_parser(sub):
    search = sub.add_parser(
        "search", help="fusion architecture search (MFAS or random) on AV-Digits"
    )
    search.add_argument("--task", default="avdigits", help="avdigits")
    search.add_argument("--method", choices=["mfas", "random"], default="mfas")
    search.add_argument("--budget", type=int, default=60, help="architectures sampled")
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--num-samples", type=int, default=5, help="K per step")
    search.add_argument("--max-layers", type=int, default=4, help="L")
    search.add_argument("--epochs", type=int, default=2, help="E_train per sample")
    search.add_argument("--top-k", type=int, default=5)
    search.add_argument("--final-units", type=int, default=64)
    search.add_argument("--final-epochs", type=int, default=40)
    search.add_argument("--final-patience", type=int, default=8)
    search.add_argument("--batch-size", type=int, default=64)
    search.add_argument(
        "--run-eagerly",
        action="store_true",
        help="do not compile the fusion heads (faster for many tiny models)",
    )
    search.add_argument(
        "--multitask-epochs",
        type=int,
        default=0,
        help="fine-tune the best end to end with the multitask loss (0: skip)",
    )
    search.add_argument(
        "--paper-protocol",
        action="store_true",
        help="the paper's search (section 4.1, Table 1): E_search 3, L 4, K 10, "
        "E_train 2, all one-layer fusions every iteration: 180 architectures "
        "(overrides --budget, --num-samples, --max-layers, --epochs)",
    )
    search.add_argument(
        "--temperature-schedule",
        choices=("exponential", "gaussian"),
        default="exponential",
        help="T_max -> T_min exponentially (default) or the public code's "
        "Gaussian-shaped decay (step index corrected)",
    )
    search.add_argument("--audio-snr-db", type=float, default=None)
    search.add_argument("--image-snr-db", type=float, default=None)
    search.add_argument("--unimodal-epochs", type=int, default=30)
    search.add_argument("--max-examples", type=int, default=None)
    search.add_argument(
        "--output", help="run folder (state, unimodal nets, results); resumes"
    )
    search.add_argument("--verbose", type=int, default=1)
    search.set_defaults(func=cmd_search)


# Paper experiments: a module in `mmfusion_keras.experiments` with
# `add_arguments(parser)` and `run(args)`, behind one CLI verb each.
EXPERIMENTS = {
    "snr-grid": (
        "snr_grid",
        "train initial / second-layer / FC fusion at one SNR, test over an "
        "SNR grid (Barnum et al. 2020)",
    ),
    "mbaf-ablation": (
        "mbaf_ablation",
        "MBAF ablations: memory size, self/cross read, fused/per-modality "
        "memory, write rule, over seeds (Priyasad et al. 2021, section 6)",
    ),
    "delta-attention": (
        "delta_attention",
        "delta self-attention readings and the hierarchical model on the "
        "generated delta task (Panchal)",
    ),
    "reproduce": (
        "reproduce",
        "run a paper's experiment on your copy of its corpus, with the paper's "
        "numbers beside yours (--list for the recipes)",
    ),
}


def cmd_experiment(args):
    """Runs the experiment module of the verb (see `EXPERIMENTS`)."""
    import importlib

    module = importlib.import_module(f"mmfusion_keras.experiments.{args.experiment}")
    args.command_line = "mmfusion " + " ".join(args.argv)
    module.run(args)


def _add_experiment_parsers(sub):
    import importlib

    for verb, (name, help_text) in EXPERIMENTS.items():
        module = importlib.import_module(f"mmfusion_keras.experiments.{name}")
        parser = sub.add_parser(verb, help=help_text)
        module.add_arguments(parser).set_defaults(func=cmd_experiment, experiment=name)


def _add_recipe_argument(parser):
    from mmfusion_keras.tasks import recipe_names

    parser.add_argument(
        "--recipe",
        default="adam",
        choices=recipe_names(),
        help="optimizer and head: adam (Adam 1e-3, the task's head) or paper "
        "(Dual Memory Fusion's SGD 0.01, memory module 0.001, head 1024-512)",
    )


def _fusion_option(text):
    """`KEY=VALUE` of `--fusion-option`; VALUE read as JSON, else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            "expected KEY=VALUE (a keyword argument of the fusion layer, "
            f"e.g. embedding_norm=none). Received: {text!r}"
        )
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


class _FusionOptions(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest) or {})
        key, value = values
        options[key] = value
        setattr(namespace, self.dest, options)


def _add_fusion_option_argument(parser):
    parser.add_argument(
        "--fusion-option",
        type=_fusion_option,
        action=_FusionOptions,
        default={},
        metavar="KEY=VALUE",
        help="a keyword argument of the fusion layer (repeatable; VALUE is "
        "read as JSON, else as a string), e.g. --fusion-option "
        "embedding_norm=none; recorded in model_card.json",
    )


def _text_encoder(args):
    """`--text-encoder`, defaulting to MiniLM on the speech-text task."""
    from mmfusion_keras.tasks import DEFAULT_TEXT_ENCODER

    if args.text_encoder is None and args.task == "speech-text":
        return DEFAULT_TEXT_ENCODER
    return args.text_encoder


def _add_text_encoder_argument(parser):
    parser.add_argument(
        "--text-encoder",
        default=None,
        choices=["minilm", "glove", "tokens"],
        help="speech-text only: the text features, computed outside the model "
        "and recorded in the model card: minilm (default; frozen "
        "all-MiniLM-L6-v2 sentence vectors, word-piece states for --fusion "
        "sequence), glove (frozen GloVe 6B 50-d word vectors) or tokens (a "
        "vocabulary of the training sentences, learned embeddings)",
    )


def build_parser():
    from_tasks = ["digits-views", "speech-text", "avdigits"]
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
    train.add_argument(
        "--output",
        help="run folder: model.keras, model_card.json and checkpoint.npz "
        "(refused if it holds a run, unless --overwrite or --resume)",
    )
    train.add_argument("--tensorboard", help="directory for TensorBoard logs")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUTPUT from its last epoch checkpoint "
        "(same arguments required; starts a new run if there is none)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in OUTPUT (its files are replaced only "
        "when the new ones are written)",
    )
    train.add_argument(
        "--max-examples",
        type=int,
        default=None,
        help="use only the first N examples of each split (quick runs, tests)",
    )
    train.add_argument("--verbose", type=int, default=2)
    train.add_argument(
        "--distribute",
        choices=["data-parallel"],
        help="replicate the model on all local devices, split each batch "
        "(JAX: keras.distribution.DataParallel; TensorFlow: MirroredStrategy)",
    )
    _add_recipe_argument(train)
    _add_text_encoder_argument(train)
    _add_fusion_option_argument(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate a saved model on a bundled split or a manifest folder "
        "(accuracy, UA, macro-F1)",
    )
    evaluate.add_argument(
        "model_path",
        nargs="?",
        help="a run folder holding model.keras (e.g. saved_models/speech_text_mbaf) "
        "or a .keras file",
    )
    evaluate.add_argument("--model", help="the .keras file (instead of the path)")
    evaluate.add_argument(
        "--task",
        default=None,
        help="task of the model (default: from its model_card.json)",
    )
    evaluate.add_argument(
        "--split",
        default=None,
        help="a bundled split of the model's task (speech-text: train, "
        "validation, test, unseen)",
    )
    evaluate.add_argument(
        "--data",
        default=None,
        help="a bundled split (default: test) or a folder with manifest.csv",
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
    _add_recipe_argument(compare)
    _add_text_encoder_argument(compare)
    _add_fusion_option_argument(compare)
    compare.set_defaults(func=cmd_compare)

    demo = sub.add_parser("demo", help="start the Streamlit demo app")
    demo.add_argument("--port", type=int, default=8501)
    demo.add_argument(
        "--address", default="localhost", help="address to serve on (0.0.0.0: all)"
    )
    demo.add_argument(
        "--backend",
        dest="demo_backend",
        choices=["tensorflow", "jax", "torch"],
        help="Keras backend of the app (default: the global --backend or "
        "KERAS_BACKEND)",
    )
    demo.set_defaults(func=cmd_demo)
    _add_search_parser(sub)
    _add_experiment_parsers(sub)
    return parser


def _check_task_options(args):
    """One-line errors for options that only the speech-text task has."""
    task = getattr(args, "task", None)
    fusions = [getattr(args, "fusion", None)] + (
        getattr(args, "fusions", "") or ""
    ).split(",")
    if (
        task
        and task != "speech-text"
        and "sequence" in [f and f.strip() for f in fusions]
    ):
        raise UserError(
            "The sequence model (word x audio-frame attention) is built for the "
            f"speech-text task only. Received: --task {task} with fusion sequence"
        )
    if task and task != "speech-text" and getattr(args, "text_encoder", None):
        raise UserError(
            "--text-encoder applies to the speech-text task only. Received: "
            f"--task {task} --text-encoder {args.text_encoder}"
        )


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if getattr(args, "fusion", None) is not None and args.fusion not in FUSIONS:
            raise UserError(
                f"Unknown fusion {args.fusion!r}. Expected one of {list(FUSIONS)}."
            )
        _set_backend(args.backend, argv)
        from mmfusion_keras.tasks import task_names

        if getattr(args, "task", None) is not None and args.task not in task_names():
            raise UserError(
                f"Unknown task {args.task!r}. Expected one of {task_names()}."
            )
        _check_task_options(args)
        args.func(args)
    except (UserError, ValueError, FileNotFoundError) as e:
        # Library errors are written for users: one line, no traceback.
        message = " ".join(str(e).split())
        print(f"mmfusion: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
