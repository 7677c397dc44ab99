"""Tasks the CLI and the demo app can train, evaluate and run on.

A task ties a bundled dataset to its model and to the preprocessing that
turns raw inputs (waveforms of any length, strings, images) into model
inputs, so a model card records everything needed to use a saved model.
"""

import dataclasses

import numpy as np

SAMPLE_RATE = 16000


@dataclasses.dataclass
class Task:
    """A named task: its splits, classes, model builder and preprocessing.

    Attributes:
        name: task name used by the CLI.
        class_names: list of class names (index = label).
        load: `load(split, seed) -> (inputs dict, labels)`, model-ready.
        build_model: `build_model(fusion, fusion_kwargs=None, seed=0,
            head_units=None)`; `head_units` replaces the task's head
            (training recipes, see `TRAINING_RECIPES`).
        description: one line for `--help` and model cards.
        preprocessing: JSON-serializable dict recorded in model cards.
        modalities: the raw modalities `prepare` takes.
    """

    name: str
    class_names: list
    load: callable
    build_model: callable
    description: str
    preprocessing: dict
    modalities: tuple = ()

    def prepare(self, raw):
        """Model inputs from raw inputs, and notes on what was changed.

        Args:
            raw: dict with, per modality, a list (one entry per example):
                `"audio"`: 1-D float waveforms at 16 kHz (any length),
                `"text"`: strings, `"image"`: 2-D arrays (8x8, values in
                [0, 1]), `"left"`/`"right"`: vectors.

        Returns:
            `(inputs, notes)`: a dict of arrays for `model.predict`, and a
            list of human-readable notes (e.g. "audio cropped").
        """
        return prepare_inputs(self.preprocessing, raw)


def _fit_audio(waveforms, samples, padding):
    out = np.zeros((len(waveforms), samples), "float32")
    notes = []
    for i, w in enumerate(waveforms):
        w = np.asarray(w, "float32").reshape(-1)
        if len(w) > samples:
            notes.append(
                f"audio {i}: {len(w) / SAMPLE_RATE:.2f} s cropped to the model's "
                f"{samples / SAMPLE_RATE:.2f} s"
            )
            w = w[:samples]
        if padding == "front":
            out[i, samples - len(w) :] = w
        else:
            out[i, : len(w)] = w
    return out, notes


def prepare_inputs(preprocessing, raw):
    """Applies a model card's `preprocessing` to raw inputs (see `Task.prepare`)."""
    from mmfusion_keras.datasets.text import WordTokenizer

    inputs, notes = {}, []
    for name, spec in preprocessing["inputs"].items():
        if name not in raw:
            raise ValueError(
                f"Missing input {name!r}: the model takes {sorted(preprocessing['inputs'])}."
            )
        values = raw[name]
        kind = spec["kind"]
        if kind == "waveform":
            inputs[name], n = _fit_audio(values, spec["samples"], spec["padding"])
            notes += n
        elif kind == "tokens":
            for i, text in enumerate(values):
                if not isinstance(text, str) or not text.strip():
                    raise ValueError(
                        f"Text {i} is empty: the model needs a sentence. Received: {text!r}"
                    )
            tokenizer = WordTokenizer(vocabulary=spec["vocabulary"])
            inputs[name] = tokenizer.encode(
                list(values), sequence_length=spec["length"]
            )
            inputs[name] = inputs[name].astype("int32")
        elif kind == "image":
            images = np.stack([np.asarray(v, "float32") for v in values])
            if images.shape[1:3] != tuple(spec["shape"][:2]):
                raise ValueError(
                    f"Expected images of {spec['shape'][0]}x{spec['shape'][1]} pixels. "
                    f"Received shape {images.shape[1:]}."
                )
            inputs[name] = images.reshape((len(images),) + tuple(spec["shape"]))
        else:
            inputs[name] = np.stack([np.asarray(v, "float32") for v in values])
    return inputs, notes


def _digits_views():
    from mmfusion_keras.datasets.digits_views import load_digits_views

    def build_model(fusion, fusion_kwargs=None, seed=0, head_units=None):
        from mmfusion_keras.models import build_fusion_classifier

        return build_fusion_classifier(
            {"left": 32, "right": 32},
            num_classes=10,
            fusion=fusion,
            fusion_kwargs=_mbaf_seed(fusion, fusion_kwargs, seed),
            encoder_units=(64,),
            head_units=tuple(head_units or (64,)),
            dropout=0.2,
            name=f"digits_views_{fusion}",
        )

    return Task(
        name="digits-views",
        class_names=[str(d) for d in range(10)],
        load=load_digits_views,
        build_model=build_model,
        description="left/right halves of scikit-learn's 8x8 digits (bundled)",
        preprocessing={
            "inputs": {
                "left": {"kind": "vector", "note": "left 8x4 columns, pixel / 16"},
                "right": {"kind": "vector", "note": "right 8x4 columns, pixel / 16"},
            }
        },
        modalities=("left", "right"),
    )


# Dual memory fusion on the bundled tasks' 64-wide embeddings: smaller
# than the paper's 120 slots x 768 and 1024-wide pooling (for 5531 clips).
DUAL_MEMORY_TASK_KWARGS = {"memory_slots": 32, "output_dim": 256, "writer_heads": 4}


def _mbaf_seed(fusion, fusion_kwargs, seed):
    kwargs = dict(fusion_kwargs or {})
    if fusion in ("mbaf", "dual_memory"):
        kwargs.setdefault("seed", seed)
    if fusion == "dual_memory":
        for key, value in DUAL_MEMORY_TASK_KWARGS.items():
            kwargs.setdefault(key, value)
    return kwargs


def _speech_text():
    from mmfusion_keras.datasets.speech_text import CLASS_NAMES
    from mmfusion_keras.datasets.speech_text import load_speech_text
    from mmfusion_keras.datasets.text import fit_tokenizer

    seconds, length = 3.0, 16
    train = load_speech_text("train", max_seconds=seconds)
    tokenizer = fit_tokenizer(list(train.inputs["text"]))
    preprocessing = {
        "inputs": {
            "audio": {
                "kind": "waveform",
                "sample_rate": SAMPLE_RATE,
                "samples": int(seconds * SAMPLE_RATE),
                "padding": "back",
            },
            "text": {
                "kind": "tokens",
                "length": length,
                "vocabulary": list(tokenizer.vocabulary[2:]),
            },
        }
    }

    def load(split, seed=0):
        ds = train if split == "train" else load_speech_text(split, max_seconds=seconds)
        inputs, _ = prepare_inputs(
            preprocessing,
            {"audio": list(ds.inputs["audio"]), "text": list(ds.inputs["text"])},
        )
        return inputs, ds.labels.astype("int64")

    def build_model(fusion, fusion_kwargs=None, seed=0, head_units=None):
        from mmfusion_keras.models.task_models import build_speech_text_model

        return build_speech_text_model(
            tokenizer.vocabulary_size,
            sequence_length=length,
            audio_samples=int(seconds * SAMPLE_RATE),
            num_classes=len(CLASS_NAMES),
            fusion=fusion,
            fusion_kwargs=_mbaf_seed(fusion, fusion_kwargs, seed),
            head_units=head_units,
        )

    return Task(
        name="speech-text",
        class_names=list(CLASS_NAMES),
        load=load,
        build_model=build_model,
        description="synthetic speech+text emotion corpus (espeak-ng, bundled; demo only)",
        preprocessing=preprocessing,
        modalities=("audio", "text"),
    )


def _av_digits():
    from mmfusion_keras.datasets.av_digits import load_av_digits

    preprocessing = {
        "inputs": {
            "image": {"kind": "image", "shape": [8, 8, 1], "range": [0, 1]},
            "audio": {
                "kind": "waveform",
                "sample_rate": SAMPLE_RATE,
                "samples": SAMPLE_RATE,
                "padding": "front",
            },
        }
    }

    def load(split, seed=0):
        ds = load_av_digits(split, features="waveform", seed=seed)
        return (
            {"image": ds.inputs["image"], "audio": ds.inputs["audio"]},
            ds.labels.astype("int64"),
        )

    def build_model(fusion, fusion_kwargs=None, seed=0, head_units=None):
        from mmfusion_keras.models.task_models import build_av_digits_model

        if head_units is not None:
            raise ValueError(
                "The avdigits task has a fixed one-layer head; training "
                "recipes with their own head (e.g. --recipe paper) support "
                f"the tasks digits-views and speech-text. Received: "
                f"head_units={list(head_units)}"
            )
        return build_av_digits_model(
            audio_samples=SAMPLE_RATE,
            fusion=fusion,
            fusion_kwargs=_mbaf_seed(fusion, fusion_kwargs, seed),
        )

    return Task(
        name="avdigits",
        class_names=[
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
        ],
        load=load,
        build_model=build_model,
        description="AV-Digits: sklearn digits + espeak-ng spoken digits, speaker-independent splits",
        preprocessing=preprocessing,
        modalities=("image", "audio"),
    )


# Training recipes of `mmfusion train/compare --recipe`. "adam": what the CLI
# uses for every fusion (Adam 1e-3, the task's own head). "paper": Dual
# Memory Fusion's recipe (Priyasad et al. 2023, section 3.1: "an SGD
# optimizer with learning rates of 0.01 (complete network) and 0.001
# (memory module)"; section 2.3: "two fully connected layers with 1024 and
# 512 units"). For a model without a memory layer (the concat twin) it is
# plain SGD 0.01 with the same head.
TRAINING_RECIPES = {
    "adam": {"optimizer": "adam", "learning_rate": 1e-3, "head_units": None},
    "paper": {
        "optimizer": "sgd",
        "learning_rate": 0.01,
        "memory_learning_rate": 0.001,
        "momentum": 0.0,
        "head_units": [1024, 512],
    },
}


def recipe_names():
    return list(TRAINING_RECIPES)


def get_recipe(name):
    """The `TRAINING_RECIPES` entry called `name`; `ValueError` otherwise."""
    if name not in TRAINING_RECIPES:
        raise ValueError(
            f"Unknown training recipe {name!r}. Expected one of {recipe_names()}."
        )
    return TRAINING_RECIPES[name]


def build_recipe_optimizer(recipe, model):
    """The optimizer of `recipe` (a `TRAINING_RECIPES` entry) for `model`.

    "sgd" recipes give the model's memory layers (if any) their own
    learning rate with `memory_module_optimizer`; otherwise plain SGD.
    """
    import keras

    from mmfusion_keras.inspection import find_memory_layers
    from mmfusion_keras.optimizers import memory_module_optimizer

    if recipe["optimizer"] == "adam":
        return keras.optimizers.Adam(recipe["learning_rate"])
    if find_memory_layers(model):
        return memory_module_optimizer(
            model,
            learning_rate=recipe["learning_rate"],
            memory_learning_rate=recipe["memory_learning_rate"],
            momentum=recipe["momentum"],
        )
    return keras.optimizers.SGD(recipe["learning_rate"], momentum=recipe["momentum"])


_TASKS = {
    "digits-views": _digits_views,
    "speech-text": _speech_text,
    "avdigits": _av_digits,
}


def task_names():
    return sorted(_TASKS)


def get_task(name):
    """Returns the `Task` called `name`; `ValueError` listing the known ones."""
    if name not in _TASKS:
        raise ValueError(f"Unknown task {name!r}. Expected one of {task_names()}.")
    return _TASKS[name]()
