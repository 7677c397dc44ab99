"""MFAS (progressive SMBO, Algorithm 1) and random search, resumable."""

import json
import math
import os
import time

import keras
import numpy as np

from mmfusion_keras.search.fusion_network import build_fusion_head
from mmfusion_keras.search.fusion_network import x_name
from mmfusion_keras.search.fusion_network import y_name
from mmfusion_keras.search.padded_fusion_head import PaddedFusionTrainer
from mmfusion_keras.search.sampling import gaussian_temperature_at
from mmfusion_keras.search.sampling import sample_k
from mmfusion_keras.search.sampling import temperature_at
from mmfusion_keras.search.shared_fusion_weights import SharedFusionWeights
from mmfusion_keras.search.surrogate import Surrogate

METHODS = ("mfas", "random")
LEVEL_ONE = ("sampled", "all")
SCHEDULES = ("exponential", "gaussian")
# Perez-Rua et al. 2019, section 4.1 and Tables 1 and 6 (AV-MNIST): E_search
# = 3, L = 4 (set in the SearchSpace), E_train = 2, 180 architectures.
PAPER_PROTOCOL = {
    "budget": 180,
    "num_samples": 10,
    "search_iterations": 3,
    "epochs": 2,
    "level_one": "all",
}
_CONFIG_DEFAULTS = {
    "one_compiled_head": False,
    "level_one": "sampled",
    "temperature_schedule": "exponential",
    "temperature_decay": 4.0,
}
STATE_FILE = "state.json"


def feature_widths(features, space):
    """`(x_widths, y_widths)` of a cached-feature dict `{"x1": ..., "y1": ...}`."""
    missing = [
        k
        for k in [x_name(m) for m in range(1, space.num_x_features + 1)]
        + [y_name(n) for n in range(1, space.num_y_features + 1)]
        if k not in features
    ]
    if missing:
        raise ValueError(
            f"The cached features lack {missing}: expected keys x1..x"
            f"{space.num_x_features} and y1..y{space.num_y_features}. "
            f"Received keys: {sorted(features)}"
        )
    x_widths = [
        int(features[x_name(m)].shape[-1]) for m in range(1, space.num_x_features + 1)
    ]
    y_widths = [
        int(features[y_name(n)].shape[-1]) for n in range(1, space.num_y_features + 1)
    ]
    return x_widths, y_widths


def train_fusion_head(
    description,
    space,
    train,
    validation,
    num_classes,
    units=16,
    epochs=2,
    batch_size=64,
    learning_rate=1e-3,
    seed=0,
    shared_weights=None,
    run_eagerly=False,
    trainer=None,
):
    """Trains one fusion head on cached features; returns its val accuracy.

    Args:
        description: list of `(m, n, p)` triplets.
        space: the `SearchSpace`.
        train: `(features, labels)`: features a dict `{"x1": (n, w), ...,
            "y1": ...}` of cached candidate features, labels int.
        validation: the same for the validation split.
        num_classes: classes.
        units: fusion-layer width.
        epochs: training epochs (`E_train`).
        batch_size: batch size.
        learning_rate: Adam learning rate.
        seed: seeds the initialisation and the shuffling.
        shared_weights: a `SharedFusionWeights` bank: initialises the
            fusion layers whose key it holds, and is updated after training.
        run_eagerly: passed to `compile` (`True` skips compiling the
            train step: faster for tiny data).
        trainer: a `PaddedFusionTrainer` of the same settings: trains the
            description with its one compiled model instead of building a
            new one (no model construction or compile per architecture);
            `model` is then `None`.

    Returns:
        `(model, accuracy, seconds, restored_keys)`.
    """
    description = space.validate(description)
    if trainer is not None:
        accuracy, seconds, restored, _ = trainer.train(
            description,
            train,
            validation,
            epochs=epochs,
            seed=seed,
            shared_weights=shared_weights,
        )
        return None, accuracy, seconds, restored
    x_widths, y_widths = feature_widths(train[0], space)
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model = build_fusion_head(
        description, x_widths, y_widths, num_classes, units, space.activations
    )
    restored = []
    if shared_weights is not None:
        restored = shared_weights.restore(model, description, space.activations)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        run_eagerly=run_eagerly,
    )
    names = list(model.input)
    model.fit(
        {k: train[0][k] for k in names},
        train[1],
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
    )
    probabilities = model.predict(
        {k: validation[0][k] for k in names}, batch_size=1024, verbose=0
    )
    accuracy = float(np.mean(np.argmax(probabilities, -1) == np.asarray(validation[1])))
    if shared_weights is not None:
        shared_weights.store(model, description, space.activations)
    return model, accuracy, time.perf_counter() - start, restored


def _atomic_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


class FusionArchitectureSearch:
    """Multimodal fusion architecture search on cached unimodal features.

    `method="mfas"` runs Algorithm 1 of the paper: step 0 trains every
    one-layer description (`Gamma_1`; a uniform sample of it if the budget
    is smaller); every later step either extends the descriptions sampled
    at the previous level by one triplet (levels 2..L) or restarts from
    `Gamma_1` (level 1 of the next search iteration), scores the
    candidates with the recurrent surrogate, samples `num_samples` (`K`)
    of them with probabilities `a ** (1 / T)` at the step's temperature,
    trains each for `epochs` (`E_train`) epochs and records its validation
    accuracy, then refits the surrogate on all (description, best
    accuracy) pairs seen so far. `method="random"` samples the same number
    of descriptions uniformly (number of layers uniform in `1..L`, each
    triplet uniform), in steps of `K`. Both stop at `budget` trained
    architectures and share fusion weights (`SharedFusionWeights`) the
    same way.

    Choices where the paper is open: candidates already trained are not
    offered again at levels >= 2 (they would waste budget); by default
    (`level_one="sampled"`) level 1 of a later search iteration samples `K`
    of `Gamma_1` with the surrogate (re-training them from their shared
    weights) instead of re-training all of `Gamma_1`; `level_one="all"`
    follows Algorithm 1 literally (lines 11-13: every search iteration
    trains all of `Gamma_1`). The first sampled step uses `T_max` and the
    last one `T_min` (`temperature_schedule="exponential"`, `temperature_at`
    over the steps); `"gaussian"` is the public code's form
    (`gaussian_temperature_at`, with its step index corrected).

    **The paper's protocol** (section 4.1, Table 1, Table 6: AV-MNIST,
    `E_search = 3`, `L = 4`, `E_train = 2`, 180 sampled architectures for
    both methods) is `PAPER_PROTOCOL`: with `level_one="all"` and `K = 10`
    every search iteration trains the 30 one-layer descriptions and
    `3 x 10` deeper ones, `3 x (30 + 30) = 180`:
    `FusionArchitectureSearch(..., **PAPER_PROTOCOL)` (and a
    `SearchSpace(5, 3, ("relu", "sigmoid"), max_layers=4)`).

    State (history, temperatures, RNG state, sampled descriptions of the
    current step, shared weights and surrogate weights) is written to
    `directory` after every trained architecture and every step; a new
    object on the same directory with the same settings resumes where the
    last one stopped, and gives the same result as an uninterrupted run
    (every architecture is trained from a seed derived from `seed` and its
    index, the surrogate is refit from `seed` and the step).

    Args:
        space: the `SearchSpace` (`M`, `N`, activations, `L`).
        train: `(features, labels)` of the training split: a dict of
            cached candidate features `{"x1": (n, w), ..., "yN": ...}`
            and int labels.
        validation: the same for the validation split.
        num_classes: classes.
        directory: where the state is kept (created if needed).
        method: `"mfas"` or `"random"`.
        budget: total architectures to train.
        num_samples: `K`, architectures sampled per step.
        search_iterations: `E_search`; by default just enough to spend the
            budget.
        epochs: `E_train`, epochs per sampled architecture.
        units: fusion-layer width during the search.
        batch_size, learning_rate: training of the sampled networks.
        t_max, t_min: temperature range.
        weight_sharing: share fusion-layer weights between samples.
        surrogate_kwargs: arguments of `Surrogate`.
        run_eagerly: `compile` argument for the sampled networks.
        seed: seed of the whole search.
        one_compiled_head: train every sampled architecture with one
            fixed-shape, compiled model (`PaddedFusionTrainer`: padded
            inputs, masked levels, gated activations; the same Eq. 1-2
            network up to float rounding, NumPy-drawn Glorot
            initialisation) instead of building and compiling a new model
            per architecture (`train_fusion_head` without a trainer, the
            behaviour of searches saved before this option existed).
        level_one: `"sampled"` or `"all"` (see above).
        temperature_schedule: `"exponential"` or `"gaussian"`.
        temperature_decay: the decay constant of `"gaussian"`, in steps.

    Example:

    >>> import numpy as np, tempfile
    >>> from mmfusion_keras.search import SearchSpace
    >>> rng = np.random.default_rng(0)
    >>> feats = {"x1": rng.normal(size=(32, 3)), "y1": rng.normal(size=(32, 2))}
    >>> labels = rng.integers(0, 2, 32)
    >>> space = SearchSpace(1, 1, ("relu",), max_layers=2)
    >>> search = FusionArchitectureSearch(space, (feats, labels), (feats, labels),
    ...     2, tempfile.mkdtemp(), budget=2, num_samples=1, epochs=1,
    ...     surrogate_kwargs={"epochs": 1})
    >>> [d for d, _ in search.run()]
    [((1, 1, 1),), ((1, 1, 1), (1, 1, 1))]

    Reference:
        Perez-Rua et al., "MFAS: Multimodal Fusion Architecture Search",
        CVPR 2019, section 3.2 and Algorithm 1; section 4 (random search
        at the same budget).
    """

    def __init__(
        self,
        space,
        train,
        validation,
        num_classes,
        directory,
        method="mfas",
        budget=30,
        num_samples=5,
        search_iterations=None,
        epochs=2,
        units=16,
        batch_size=64,
        learning_rate=1e-3,
        t_max=10.0,
        t_min=0.2,
        weight_sharing=True,
        surrogate_kwargs=None,
        run_eagerly=False,
        seed=0,
        level_one="sampled",
        temperature_schedule="exponential",
        temperature_decay=4.0,
        one_compiled_head=True,
    ):
        if method not in METHODS:
            raise ValueError(
                f"FusionArchitectureSearch expected `method` in {METHODS}. "
                f"Received: method={method!r}"
            )
        for name, value in (("budget", budget), ("num_samples", num_samples)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"FusionArchitectureSearch expected `{name}` to be a "
                    f"positive integer. Received: {name}={value!r}"
                )
        if level_one not in LEVEL_ONE:
            raise ValueError(
                f"FusionArchitectureSearch expected `level_one` in {LEVEL_ONE}. "
                f"Received: level_one={level_one!r}"
            )
        if temperature_schedule not in SCHEDULES:
            raise ValueError(
                "FusionArchitectureSearch expected `temperature_schedule` in "
                f"{SCHEDULES}. Received: temperature_schedule={temperature_schedule!r}"
            )
        self.level_one = level_one
        self.one_compiled_head = bool(one_compiled_head)
        self._trainer = None
        self.temperature_schedule = temperature_schedule
        self.temperature_decay = temperature_decay
        self.space = space
        self.train = train
        self.validation = validation
        feature_widths(train[0], space)
        feature_widths(validation[0], space)
        self.num_classes = num_classes
        self.directory = directory
        self.method = method
        self.budget = budget
        self.num_samples = num_samples
        first = min(len(space.layer_choices()), budget)
        if search_iterations is None and level_one == "all":
            per_iteration = first + (space.max_layers - 1) * num_samples
            search_iterations = math.ceil(budget / per_iteration)
        elif search_iterations is None:
            steps = 1 + math.ceil(max(0, budget - first) / num_samples)
            search_iterations = math.ceil(steps / space.max_layers)
        self.search_iterations = search_iterations
        self.epochs = epochs
        self.units = units
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.t_max = t_max
        self.t_min = t_min
        self.weight_sharing = weight_sharing
        self.surrogate_kwargs = dict(surrogate_kwargs or {})
        self.run_eagerly = run_eagerly
        self.seed = seed
        self.num_steps = (
            search_iterations * space.max_layers
            if method == "mfas"
            else math.ceil(budget / num_samples)
        )
        self.surrogate = Surrogate(space, **self.surrogate_kwargs)
        os.makedirs(directory, exist_ok=True)

    # ------------------------------------------------------------------ state
    def get_config(self):
        """The settings that must match for a resume."""
        return {
            "space": self.space.get_config(),
            "method": self.method,
            "budget": self.budget,
            "num_samples": self.num_samples,
            "search_iterations": self.search_iterations,
            "epochs": self.epochs,
            "units": self.units,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "t_max": self.t_max,
            "t_min": self.t_min,
            "weight_sharing": self.weight_sharing,
            "surrogate": self.surrogate.get_config(),
            "run_eagerly": self.run_eagerly,
            "seed": self.seed,
            "num_classes": self.num_classes,
            "level_one": self.level_one,
            "temperature_schedule": self.temperature_schedule,
            "temperature_decay": self.temperature_decay,
            "one_compiled_head": self.one_compiled_head,
        }

    def _new_state(self):
        return {
            "config": self.get_config(),
            "step": 0,
            "history": [],
            "steps": [],
            "previous": [],
            "pending": None,
            "rng": np.random.default_rng(self.seed).bit_generator.state,
            "shared_weights_file": None,
            "surrogate_file": None,
            "finished": False,
            "backend": keras.config.backend(),
        }

    def _load_state(self):
        path = os.path.join(self.directory, STATE_FILE)
        if not os.path.exists(path):
            return self._new_state()
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        # States written before these settings existed used their defaults.
        state["config"] = {**_CONFIG_DEFAULTS, **state["config"]}
        if state["config"] != json.loads(json.dumps(self.get_config())):
            raise ValueError(
                f"FusionArchitectureSearch cannot resume from {path}: it was "
                f"started with other settings. Saved: {state['config']}. "
                f"Now: {self.get_config()}. Use another directory or the "
                "same settings."
            )
        return state

    def _save(self, state, bank):
        """Writes bank and surrogate under new names, then the JSON."""
        n = len(state["history"])
        old = [state.get("shared_weights_file"), state.get("surrogate_file")]
        if self.weight_sharing:
            name = f"shared_weights_{n}_{state['step']}.npz"
            if name != state.get("shared_weights_file"):
                bank.save(os.path.join(self.directory, name))
                state["shared_weights_file"] = name
        if self.surrogate.model is not None and state.get("surrogate_dirty"):
            name = f"surrogate_step{state['step']}.weights.h5"
            self.surrogate.save_weights(os.path.join(self.directory, name))
            state["surrogate_file"] = name
            state["surrogate_dirty"] = False
        _atomic_json(os.path.join(self.directory, STATE_FILE), state)
        for name in old:
            if name and name not in (
                state["shared_weights_file"],
                state["surrogate_file"],
            ):
                path = os.path.join(self.directory, name)
                if os.path.exists(path):
                    os.remove(path)

    def state(self):
        """The saved state (a dict), or a fresh one if nothing was saved."""
        return self._load_state()

    # --------------------------------------------------------------- planning
    def _seen(self, state):
        best = {}
        for entry in state["history"]:
            d = tuple(tuple(t) for t in entry["description"])
            best[d] = max(best.get(d, -1.0), entry["accuracy"])
        return best

    def _plan(self, state, rng):
        """Descriptions to train at the current step, plus step notes."""
        step = state["step"]
        remaining = self.budget - len(state["history"])
        space = self.space
        if self.method == "random":
            seen = set(self._seen(state))
            samples = []
            for _ in range(100 * self.num_samples):
                if len(samples) == min(self.num_samples, remaining):
                    break
                d = space.random_description(rng)
                if d not in seen and d not in samples:
                    samples.append(d)
            return samples, {"step": step, "level": None, "temperature": None}
        level = step % space.max_layers + 1
        if step == 0:
            choices = space.layer_choices()
            if len(choices) > remaining:
                index = rng.choice(len(choices), remaining, replace=False)
                choices = [choices[int(i)] for i in sorted(index)]
            samples = [(t,) for t in choices]
            return samples, {"step": 0, "level": 1, "temperature": None}
        if level == 1 and self.level_one == "all":
            # Algorithm 1, lines 11-13: all of Gamma_1, every iteration.
            samples = [(t,) for t in space.layer_choices()][:remaining]
            return samples, {"step": step, "level": 1, "temperature": None}
        if level == 1 or not state["previous"]:
            level = 1
            candidates = [(t,) for t in space.layer_choices()]
        else:
            previous = [tuple(tuple(t) for t in d) for d in state["previous"]]
            candidates = space.extend(previous)
            seen = self._seen(state)
            unseen = [c for c in candidates if c not in seen]
            candidates = unseen or candidates
            candidates = list(dict.fromkeys(candidates))
        scores = self.surrogate.predict(candidates)
        if self.temperature_schedule == "gaussian":
            temperature = gaussian_temperature_at(
                step, self.t_max, self.t_min, self.temperature_decay
            )
        else:
            temperature = temperature_at(
                step - 1, max(1, self.num_steps - 1), self.t_max, self.t_min
            )
        samples = sample_k(
            rng, candidates, scores, min(self.num_samples, remaining), temperature
        )
        return samples, {
            "step": step,
            "level": level,
            "temperature": temperature,
            "num_candidates": len(candidates),
            "predicted": [float(scores[candidates.index(s)]) for s in samples],
        }

    def trainer(self):
        """The `PaddedFusionTrainer` of this search (built at first use)."""
        if self._trainer is None:
            x_widths, y_widths = feature_widths(self.train[0], self.space)
            self._trainer = PaddedFusionTrainer(
                self.space,
                x_widths,
                y_widths,
                self.num_classes,
                units=self.units,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                run_eagerly=self.run_eagerly,
            )
        return self._trainer

    # -------------------------------------------------------------------- run
    def run(self, max_trained=None, verbose=False):
        """Runs (or resumes) the search until the budget is spent.

        Args:
            max_trained: stop after training this many architectures in
                this call (the state stays resumable), e.g. to split a
                search over several sessions.
            verbose: print one line per trained architecture.

        Returns:
            The top descriptions: a list of `(description, accuracy)`
            sorted by validation accuracy (best first), one entry per
            distinct description with its best accuracy.
        """
        state = self._load_state()
        bank = SharedFusionWeights()
        if state.get("shared_weights_file"):
            bank = SharedFusionWeights.load(
                os.path.join(self.directory, state["shared_weights_file"])
            )
        if state.get("surrogate_file"):
            self.surrogate.load_weights(
                os.path.join(self.directory, state["surrogate_file"])
            )
        trained_now = 0
        while not state["finished"]:
            if max_trained is not None and trained_now >= max_trained:
                break
            rng = np.random.default_rng()
            rng.bit_generator.state = state["rng"]
            if state["pending"] is None:
                if (
                    len(state["history"]) >= self.budget
                    or state["step"] >= self.num_steps
                ):
                    state["finished"] = True
                    self._save(state, bank)
                    break
                samples, notes = self._plan(state, rng)
                if not samples:
                    state["finished"] = True
                    self._save(state, bank)
                    break
                state["rng"] = rng.bit_generator.state
                state["pending"] = {
                    **notes,
                    "samples": [[list(t) for t in d] for d in samples],
                    "done": 0,
                }
                self._save(state, bank)
                continue
            pending = state["pending"]
            if pending["done"] < len(pending["samples"]):
                description = pending["samples"][pending["done"]]
                index = len(state["history"])
                _, accuracy, seconds, restored = train_fusion_head(
                    description,
                    self.space,
                    self.train,
                    self.validation,
                    self.num_classes,
                    units=self.units,
                    epochs=self.epochs,
                    batch_size=self.batch_size,
                    learning_rate=self.learning_rate,
                    seed=self.seed * 1_000_003 + index,
                    shared_weights=bank if self.weight_sharing else None,
                    run_eagerly=self.run_eagerly,
                    trainer=self.trainer() if self.one_compiled_head else None,
                )
                state["history"].append(
                    {
                        "index": index,
                        "step": pending["step"],
                        "level": pending["level"],
                        "description": description,
                        "accuracy": accuracy,
                        "seconds": seconds,
                        "shared_layers": len(restored),
                    }
                )
                pending["done"] += 1
                trained_now += 1
                if verbose:
                    print(
                        f"[{self.method}] {index + 1}/{self.budget} step "
                        f"{pending['step']} {description} val acc {accuracy:.4f} "
                        f"({seconds:.2f} s)",
                        flush=True,
                    )
                self._save(state, bank)
                continue
            # The step's samples are all trained: update the surrogate
            # (not after the last step: nothing would use it).
            last = (
                len(state["history"]) >= self.budget
                or state["step"] + 1 >= self.num_steps
            )
            if self.method == "mfas" and not last:
                seen = self._seen(state)
                loss = self.surrogate.fit(
                    list(seen),
                    list(seen.values()),
                    seed=self.seed * 7919 + state["step"],
                )
                pending["surrogate_loss"] = loss
                state["surrogate_dirty"] = True
            state["steps"].append({k: v for k, v in pending.items() if k != "done"})
            state["previous"] = pending["samples"]
            state["pending"] = None
            state["step"] += 1
            self._save(state, bank)
        return self.top_k(state=state)

    def top_k(self, k=None, state=None):
        """The best `k` distinct descriptions seen, `(description, accuracy)`."""
        state = state or self._load_state()
        seen = self._seen(state)
        order = sorted(seen.items(), key=lambda item: -item[1])
        return order if k is None else order[:k]
