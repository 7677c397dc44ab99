"""Training runs that never lose a model: atomic files and exact resume.

* Every file a run writes (model, model card, metrics, checkpoint) goes to a
  temporary file in the same folder first and is renamed into place with
  `os.replace`, so a crash or kill during a save leaves the previous file
  byte-identical (a rename within one file system is atomic on POSIX).
* `RunCheckpoint` saves, at the end of every epoch, everything a `fit` needs
  to carry on as if it had never stopped: all model variables (including
  the states of the layers' random seed generators), the optimizer's
  variables (its step counter, so learning-rate schedules resume too), the
  state of `EarlyStopping` / `ReduceLROnPlateau` (best value, best weights,
  patience counter), the epoch counter, the history so far and the
  cumulative training time. It also records what the run is (task, fusion,
  model configuration hash, seed, arguments, command), so a checkpoint is
  never loaded into another run.
* `ShuffledBatches` draws the order of the training examples from
  `(seed, epoch)` alone, and `RunCheckpoint` reseeds the global random
  generators at the start of every epoch from the same pair, so a resumed
  epoch sees the same data order and random draws as the uninterrupted
  run.
"""

import contextlib
import hashlib
import json
import os
import tempfile
import time
import zipfile

import keras
import numpy as np

CHECKPOINT_NAME = "checkpoint.npz"
RUN_FILES = ("model.keras", "model_card.json", CHECKPOINT_NAME)
CHECKPOINT_FORMAT = 1


# === Atomic files ===


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file


@contextlib.contextmanager
def atomic_write(path, mode="w", encoding="utf-8", newline=None):
    """Opens a temporary file beside `path`; renames it to `path` on success.

    If the block raises, the temporary file is removed and `path` is left
    exactly as it was.

    Example:

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with atomic_write(os.path.join(folder, "a.txt")) as f:
    ...     _ = f.write("hello")
    >>> open(os.path.join(folder, "a.txt")).read()
    'hello'
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        os.chmod(tmp, _FILE_MODE)  # mkstemp creates 0600 files
        with os.fdopen(
            fd,
            mode,
            **({} if "b" in mode else {"encoding": encoding, "newline": newline}),
        ) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def save_model(model, path):
    """`model.save(path)` through a temporary `.keras` file in the same folder."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp.keras"
    )
    os.close(fd)
    try:
        os.chmod(tmp, _FILE_MODE)
        model.save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_keras_file(path):
    """Raises a one-line `ValueError` unless `path` looks like a `.keras` file.

    A `.keras` file is a zip archive with `config.json` and
    `model.weights.h5`; an empty, truncated or foreign file is named as
    such (with its size) instead of Keras's "File not found".
    """
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"not a valid .keras file: {path} (0 bytes)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(
            f"not a valid .keras file: {path} ({size} bytes; not a complete zip "
            f"archive: {e}). The file is truncated or corrupt; save the model again."
        ) from e
    missing = [n for n in ("config.json", "model.weights.h5") if n not in names]
    if broken is not None or missing:
        what = f"member {broken!r} is corrupt" if broken else f"missing {missing}"
        raise ValueError(
            f"not a valid .keras file: {path} ({size} bytes; {what}). "
            "Save the model again."
        )


def check_writable_folder(path, flag="--output"):
    """Creates `path` if needed and checks that files can be written in it."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"{flag} must be a folder, but {path} is an existing file. "
            "Choose another path."
        )
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ValueError(
            f"Cannot write to {flag} folder {path}: {e.strerror or e}. "
            "Choose a writable folder."
        ) from e


def check_writable_file(path, flag="--output"):
    """Checks that `path` can be (re)written as a file, without writing it."""
    if os.path.isdir(path):
        raise ValueError(
            f"{flag} must be a file path, but {path} is a folder. "
            f"Received: {flag} {path}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(
            f"The folder of {flag} {path} does not exist ({folder}); create it first."
        )
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ValueError(
            f"Cannot write {flag} {path}: {e.strerror or e}. Choose a writable path."
        ) from e


# === What a run is ===


def model_fingerprint(model):
    """SHA-256 of the model's and its optimizer's configurations."""
    config = {"model": model.get_config()}
    if getattr(model, "optimizer", None) is not None:
        config["optimizer"] = model.optimizer.get_config()
    text = json.dumps(config, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def epoch_seed(seed, epoch):
    """The global seed of one epoch: depends on `(seed, epoch)` only."""
    return int(np.random.SeedSequence([int(seed) % 2**32, epoch]).generate_state(1)[0])


class ShuffledBatches(keras.utils.PyDataset):
    """Batches of `(x, y)` in an order drawn from `(seed, epoch)`.

    `set_epoch(e)` fixes the order of epoch `e` (`RunCheckpoint` calls it at
    the start of each epoch), so epoch `e` sees the same batches whether or
    not the run was interrupted before it.

    Args:
        x: dict of arrays (or one array), first axis = examples.
        y: array of labels.
        batch_size: examples per batch (the last batch may be smaller).
        seed: integer seed of the data order.
    """

    def __init__(self, x, y, batch_size, seed=0):
        super().__init__()
        self.x, self.y = x, np.asarray(y)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.num_examples = len(self.y)
        self.set_epoch(0)

    def set_epoch(self, epoch):
        rng = np.random.default_rng([self.seed % 2**32, 7919, epoch])
        self.order = rng.permutation(self.num_examples)

    def __len__(self):
        return -(-self.num_examples // self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if isinstance(self.x, dict):
            return {k: v[rows] for k, v in self.x.items()}, self.y[rows]
        return self.x[rows], self.y[rows]


# === Checkpoints ===

_CALLBACK_STATE = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
}


def read_checkpoint(path):
    """The state dict of a checkpoint file (without loading the arrays)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["__state__"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(
            f"Cannot read the checkpoint {path} ({e}). Start the run again with "
            "--overwrite."
        ) from e


class RunCheckpoint(keras.callbacks.Callback):
    """Saves and restores the whole state of a `fit` at epoch boundaries.

    Put it after the `EarlyStopping` / `ReduceLROnPlateau` callbacks it
    should save (it restores their state after they reset themselves in
    `on_train_begin`). Without `path`, it only reseeds each epoch (so runs
    with and without a checkpoint are the same).

    Args:
        path: the checkpoint file (`.npz`), or `None`.
        identity: JSON-serializable dict describing the run (task, fusion,
            seed, arguments, model fingerprint); stored in the checkpoint.
        seed: the run's seed.
        data: the `ShuffledBatches` of the training set.
        callbacks: the callbacks whose state is checkpointed.
        state: a checkpoint state dict to resume from (from
            `read_checkpoint`), or `None` for a new run.
    """

    def __init__(self, path, identity, seed, data, callbacks=(), state=None):
        super().__init__()
        self.path = path
        self.identity = identity
        self.seed = int(seed)
        self.data = data
        self.stateful = [c for c in callbacks if type(c).__name__ in _CALLBACK_STATE]
        self.resume_state = state
        self.history = {}
        self.epochs_done = 0
        self.base_seconds = 0.0
        self.stop_training = False
        self.skipped_nonfinite_epochs = []

    # --- resume ---
    @property
    def initial_epoch(self):
        return 0 if self.resume_state is None else self.resume_state["epochs_done"]

    def restore_model(self):
        """Assigns the checkpoint's model and optimizer variables (before fit)."""
        state = self.resume_state
        with np.load(self.path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "__state__"}
        variables = self.model_variables()
        if len(variables) != state["num_variables"]:
            raise ValueError(
                f"The checkpoint {self.path} has {state['num_variables']} variables "
                f"but the model has {len(variables)}: it belongs to another model."
            )
        for i, v in enumerate(variables):
            v.assign(arrays[f"v{i}"])
        for i, weights in enumerate(state["callbacks"]):
            if weights.get("has_best_weights"):
                weights["best_weights"] = [
                    arrays[f"c{i}_{j}"] for j in range(weights["num_best_weights"])
                ]
        self._callback_arrays = state["callbacks"]
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.epochs_done = state["epochs_done"]
        self.base_seconds = state["training_seconds"]
        self.stop_training = state.get("stop_training", False)
        self.skipped_nonfinite_epochs = list(state.get("skipped_nonfinite_epochs", []))

    def model_variables(self):
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        return list(self.model.variables) + list(optimizer.variables)

    # --- callback hooks ---
    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()
        if self.resume_state is None:
            return
        for callback, saved in zip(self.stateful, self._callback_arrays):
            for name in _CALLBACK_STATE[type(callback).__name__]:
                if name in saved:
                    setattr(callback, name, saved[name])
            if "best_weights" in saved:
                callback.best_weights = saved["best_weights"]

    def on_epoch_begin(self, epoch, logs=None):
        keras.utils.set_random_seed(epoch_seed(self.seed, epoch))
        if self.data is not None:
            self.data.set_epoch(epoch)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.epochs_done = epoch + 1
        self.stop_training = bool(self.model.stop_training)
        finite = np.isfinite(logs.get("loss", 0.0)) and all(
            np.all(np.isfinite(w)) for w in self.model.get_weights()
        )
        if not finite:
            # NaN policy: never checkpoint non-finite weights (the last finite
            # checkpoint stays) and stop: NaN weights do not recover. The
            # loss alone is not enough: TensorFlow's crossentropy clips NaN
            # probabilities, so the loss can stay finite while weights are NaN.
            self.skipped_nonfinite_epochs.append(epoch + 1)
            self.model.stop_training = True
            return
        if self.path is not None:
            self.save()

    @property
    def training_seconds(self):
        start = getattr(self, "_start", None)
        now = 0.0 if start is None else time.perf_counter() - start
        return self.base_seconds + now

    def save(self, finished=False, extra=None):
        arrays = {
            f"v{i}": keras.ops.convert_to_numpy(v.value)
            for i, v in enumerate(self.model_variables())
        }
        callbacks = []
        for i, callback in enumerate(self.stateful):
            saved = {}
            for name in _CALLBACK_STATE[type(callback).__name__]:
                value = getattr(callback, name, None)
                saved[name] = (
                    value
                    if value is None or isinstance(value, int)
                    else float(keras.ops.convert_to_numpy(value))
                )
            best = getattr(callback, "best_weights", None)
            saved["has_best_weights"] = best is not None
            if best is not None:
                saved["num_best_weights"] = len(best)
                for j, w in enumerate(best):
                    arrays[f"c{i}_{j}"] = np.asarray(w)
            callbacks.append(saved)
        state = {
            "format": CHECKPOINT_FORMAT,
            "identity": self.identity,
            "epochs_done": self.epochs_done,
            "stop_training": self.stop_training,
            "finished": finished,
            "training_seconds": self.training_seconds,
            "history": self.history,
            "callbacks": callbacks,
            "num_variables": len(self.model_variables()),
            "skipped_nonfinite_epochs": self.skipped_nonfinite_epochs,
            **(extra or {}),
        }
        arrays["__state__"] = np.array(json.dumps(state))
        with atomic_write(self.path, "wb") as f:
            np.savez(f, **arrays)
