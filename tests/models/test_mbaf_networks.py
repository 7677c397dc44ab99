import inspect
import os
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

from mmfusion_keras.layers import ConcatenateFusion
from mmfusion_keras.layers import FeatureSelfAttention
from mmfusion_keras.layers import MemoryBasedAttentiveFusion
from mmfusion_keras.layers import SincConv1D
from mmfusion_keras.layers import SumFusion
from mmfusion_keras.models.mbaf_networks import IEMOCAP_VARIANTS
from mmfusion_keras.models.mbaf_networks import build_iemocap_audio_encoder
from mmfusion_keras.models.mbaf_networks import build_iemocap_network
from mmfusion_keras.models.mbaf_networks import build_iemocap_text_encoder
from mmfusion_keras.models.mbaf_networks import build_physionet_network
from mmfusion_keras.testing import assert_raises_with_message

AUDIO = dict(
    audio_length=400,
    sinc_filters=2,
    sinc_kernel_size=31,
    conv_filters=(3,),
    conv_kernel_size=5,
    pool_size=3,
    dense_units=(8, 6),
)
TEXT = dict(
    sequence_length=8,
    embedding_dim=6,
    rnn_units=3,
    conv_filters=4,
    kernel_sizes=(1, 3, 5),
    output_units=10,
)
# Fewer layers for the variant tests that differ only after the encoders
# (each fit compiles a train step, the slow part here).
MINI_AUDIO = {**AUDIO, "conv_filters": (), "dense_units": (6,)}
MINI_TEXT = {**TEXT, "kernel_sizes": (3,)}
VOCAB = 50
BATCH = 4


@pytest.fixture(autouse=True, scope="module")
def _fast_jax_compilation():
    """JAX: compile with most XLA optimizations off in this module.

    Compiling (train steps, eager RNN scans, weight initializers) is most of
    this module's time on JAX; without the optimization passes it takes
    about half as long. Results agree with the optimized build up to float
    rounding, and every comparison here is within one build.
    """
    if keras.config.backend() != "jax":
        yield
        return
    import jax

    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def _iemocap_data(seed=0):
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((BATCH, 400)).astype("float32")
    text = rng.integers(0, VOCAB, (BATCH, 8)).astype("int32")
    labels = np.arange(BATCH) % 4
    return {"audio": audio, "text": text}, labels


def _predict(model, x):
    # A direct call (not `predict`), which saves compiling a predict step.
    return ops.convert_to_numpy(model(x, training=False))


def _fit_save_load(model, x, y, compiled=True):
    """One fit step, then `.keras` save/load with identical predictions.

    With `compiled=False` the step runs eagerly on TensorFlow, where
    tracing a graph for a new model costs about five eager steps (on JAX the
    compiled step is the cheaper one; PyTorch runs eagerly anyway). The
    compiled train step is checked on every backend by the representative
    networks (`compiled=True`).
    """
    eager = not compiled and keras.config.backend() == "tensorflow"
    model.compile(
        optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=eager
    )
    history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    before = _predict(model, x)
    assert before.shape == (BATCH, model.output.shape[-1])
    np.testing.assert_allclose(before.sum(axis=-1), 1.0, atol=1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    np.testing.assert_allclose(_predict(restored, x), before, atol=1e-6)
    return restored


@pytest.mark.parametrize("variant", IEMOCAP_VARIANTS)
def test_iemocap_variants_fit_save_load(variant):
    # One variant trains the full encoder structure (sinc + conv stack + two
    # Dense; kernel sizes 1/3/5), the others smaller encoders.
    full = variant == "MBAF-III"
    model = build_iemocap_network(
        variant,
        vocabulary_size=VOCAB,
        audio_encoder_kwargs=AUDIO if full else MINI_AUDIO,
        text_encoder_kwargs=TEXT if full else MINI_TEXT,
        fusion_kwargs={"memory_slots": 3} if variant.startswith("MBAF") else None,
    )
    assert [x.name for x in model.inputs] == ["audio", "text"]
    assert model.name == "iemocap_" + variant.lower().replace("-", "_")
    fusion = model.get_layer("fusion")
    expected = (
        MemoryBasedAttentiveFusion if variant.startswith("MBAF") else ConcatenateFusion
    )
    assert type(fusion) is expected
    # Both fusions keep the concatenation's width (6 audio + 10 text).
    assert tuple(fusion.output.shape) == (None, 16)
    attention = {
        layer.name for layer in model.layers if isinstance(layer, FeatureSelfAttention)
    }
    structure = variant.split("-")[1]
    assert (
        attention
        == {
            "I": set(),
            "II": {"fused_self_attention"},
            "III": {"audio_self_attention", "text_self_attention"},
        }[structure]
    )
    if structure == "III":
        # Self-attention before fusion: the fusion reads the attention outputs.
        inbound = fusion._inbound_nodes[0].input_tensors
        assert [t._keras_history.operation.name for t in inbound] == [
            "audio_self_attention",
            "text_self_attention",
        ]
    if structure == "II":
        head = model.get_layer("predictions")
        assert head._inbound_nodes[0].input_tensors[
            0
        ]._keras_history.operation.name == ("fused_self_attention")
    x, y = _iemocap_data()
    restored = _fit_save_load(model, x, y, compiled=full)
    assert type(restored.get_layer("fusion")) is expected
    if variant.startswith("MBAF"):
        # The memory was written by fit and restored exactly.
        np.testing.assert_array_equal(
            ops.convert_to_numpy(restored.get_layer("fusion").memories[0]),
            ops.convert_to_numpy(fusion.memories[0]),
        )


def test_iemocap_bare_variant_with_other_fusion_and_classifier():
    model = build_iemocap_network(
        "ii",
        vocabulary_size=VOCAB,
        fusion="sum",
        fusion_kwargs={"projection_units": 5},
        audio_encoder_kwargs=AUDIO,
        text_encoder_kwargs=TEXT,
        classifier_units=(7,),
        dropout=0.25,
        num_classes=3,
        name="custom",
    )
    assert model.name == "custom"
    assert type(model.get_layer("fusion")) is SumFusion
    assert model.get_layer("fused_self_attention") is not None
    assert model.get_layer("classifier_1").units == 7
    assert model.get_layer("classifier_1_dropout").rate == 0.25
    assert tuple(model.output.shape) == (None, 3)


def test_iemocap_pretrained_encoders_and_fusion_instance():
    audio_encoder = build_iemocap_audio_encoder(**AUDIO)
    text_encoder = build_iemocap_text_encoder(VOCAB, **TEXT)
    fusion = MemoryBasedAttentiveFusion(memory_slots=2, name="fusion")
    model = build_iemocap_network(
        "MBAF-III",
        fusion=fusion,
        audio_encoder=audio_encoder,
        text_encoder=text_encoder,
    )
    assert model.get_layer("fusion") is fusion
    assert model.get_layer("audio_encoder") is audio_encoder
    assert model.get_layer("text_encoder") is text_encoder
    # The encoders' weights are the network's (no copies).
    network_weights = {id(w) for w in model.weights}
    for w in audio_encoder.weights + text_encoder.weights + fusion.weights:
        assert id(w) in network_weights, w.path


def test_audio_encoder_structure():
    encoder = build_iemocap_audio_encoder(**AUDIO)
    assert isinstance(encoder.get_layer("sinc_conv"), SincConv1D)
    assert encoder.get_layer("sinc_conv").kernel_size == 31
    # 400 - 30 = 370 -> pool 123 -> conv 119 -> pool 39; 39 * 3 flattened.
    assert tuple(encoder.get_layer("flatten").output.shape) == (None, 117)
    assert tuple(encoder.output.shape) == (None, 6)
    assert tuple(encoder.inputs[0].shape) == (None, 400)


def test_text_encoder_structure_and_embeddings():
    matrix = np.random.default_rng(3).standard_normal((VOCAB, 6)).astype("float32")
    encoder = build_iemocap_text_encoder(VOCAB, embeddings=matrix, **TEXT)
    embedding = encoder.get_layer("embedding")
    np.testing.assert_array_equal(ops.convert_to_numpy(embedding.embeddings), matrix)
    assert not embedding.trainable  # frozen by default when a matrix is given
    assert build_iemocap_text_encoder(VOCAB, **TEXT).get_layer("embedding").trainable
    unfrozen = build_iemocap_text_encoder(
        VOCAB, embeddings=matrix, trainable_embeddings=True, **TEXT
    )
    assert unfrozen.get_layer("embedding").trainable
    for k in (1, 3, 5):
        attention = encoder.get_layer(f"cross_attention_{k}")
        query, value = attention._inbound_nodes[0].input_tensors
        assert query._keras_history.operation.name == f"left_conv_{k}"
        assert value._keras_history.operation.name == f"right_conv_{k}"
        assert encoder.get_layer(f"left_conv_{k}").kernel_size == (k,)
        # Left branch: the convolution reads the bidirectional RNN.
        left_in = encoder.get_layer(f"left_conv_{k}")._inbound_nodes[0]
        assert left_in.input_tensors[0]._keras_history.operation.name == "bi_rnn"
        assert tuple(encoder.get_layer(f"concat_{k}").output.shape) == (None, 8, 8)
    assert tuple(encoder.output.shape) == (None, 10)
    lstm = build_iemocap_text_encoder(VOCAB, rnn_type="lstm", pooling="average", **TEXT)
    assert isinstance(lstm.get_layer("bi_rnn").forward_layer, keras.layers.LSTM)
    assert isinstance(lstm.get_layer("pool"), keras.layers.GlobalAveragePooling1D)


@pytest.mark.parametrize("fusion", ["concat", "mbaf"])
def test_physionet_fit_save_load(fusion):
    model = build_physionet_network(
        fusion,
        fusion_kwargs={"memory_slots": 3} if fusion == "mbaf" else None,
        chunk_length=20,
        lstm_units=8,
        dense_units=12,
    )
    assert [x.name for x in model.inputs] == ["ecg", "rs"]
    assert [tuple(x.shape) for x in model.inputs] == [(None, 6, 20)] * 2
    assert model.get_layer("ecg_lstm_1").return_sequences
    assert not model.get_layer("ecg_lstm_2").return_sequences
    assert tuple(model.get_layer("fusion").output.shape) == (None, 16)
    assert model.get_layer("dropout").rate == 0.5
    assert tuple(model.output.shape) == (None, 3)
    rng = np.random.default_rng(0)
    x = {
        m: rng.standard_normal((BATCH, 6, 20)).astype("float32") for m in ("ecg", "rs")
    }
    _fit_save_load(model, x, np.arange(BATCH) % 3, compiled=fusion == "mbaf")


def test_physionet_three_modalities():
    model = build_physionet_network(
        "concat",
        chunks=3,
        chunk_length=5,
        lstm_units=4,
        dense_units=4,
        modalities=("ecg", "rs", "scg"),
    )
    assert [x.name for x in model.inputs] == ["ecg", "rs", "scg"]
    assert tuple(model.get_layer("fusion").output.shape) == (None, 12)


def test_paper_default_sizes():
    # The paper's sizes are the defaults (checked without building the
    # full-size networks, which would be slow here).
    def defaults(fn):
        return {
            k: p.default
            for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    assert defaults(build_physionet_network) | {
        "chunks": 6,
        "chunk_length": 1000,
        "lstm_units": 512,
        "dense_units": 1024,
        "dropout": 0.5,
        "num_classes": 3,
    } == defaults(build_physionet_network)
    audio = defaults(build_iemocap_audio_encoder)
    assert audio["audio_length"] == 4000 and audio["sample_rate"] == 16000
    assert audio["dense_units"][-1] == 2048
    text = defaults(build_iemocap_text_encoder)
    assert (text["sequence_length"], text["embedding_dim"]) == (100, 300)
    assert (text["kernel_sizes"], text["output_units"]) == ((1, 3, 5), 4800)
    assert defaults(build_iemocap_network)["num_classes"] == 4


def _iemocap(**kwargs):
    base = dict(
        vocabulary_size=VOCAB, audio_encoder_kwargs=AUDIO, text_encoder_kwargs=TEXT
    )
    return lambda: build_iemocap_network(**{**base, **kwargs})


@pytest.mark.parametrize(
    "make, pattern",
    [
        (
            _iemocap(variant="MBAF-IV"),
            r"build_iemocap_network: unknown variant 'MBAF-IV'. Expected one of "
            r"\('NF-I', .*'MBAF-III', 'I', 'II', 'III'\)",
        ),
        (_iemocap(variant=3), r"unknown variant 3"),
        (
            _iemocap(variant="II"),
            r"bare variant 'II' needs a `fusion`.*Received: fusion=None",
        ),
        (
            _iemocap(variant="NF-I", fusion="mbaf"),
            r"variant 'NF-I' fuses with ConcatenateFusion \('concat'\). Received: "
            r"fusion='mbaf' \(MemoryBasedAttentiveFusion\). Use variant 'I'",
        ),
        (
            _iemocap(variant="MBAF-I", fusion="nope"),
            r"Unknown fusion 'nope'. Expected one of",
        ),
        (
            _iemocap(num_classes=1),
            r"argument `num_classes`, expected an integer >= 2. Received: num_classes=1",
        ),
        (
            _iemocap(classifier_units=(4, 0)),
            r"`classifier_units`, expected a tuple of positive integers. "
            r"Received: classifier_units=\(4, 0\)",
        ),
        (_iemocap(dropout=1.0), r"`dropout`, expected a number in \[0, 1\)"),
        (
            _iemocap(vocabulary_size=None),
            r"`vocabulary_size` is required to build the text encoder",
        ),
        (
            _iemocap(audio_encoder=keras.layers.Dense(3), audio_encoder_kwargs=None),
            r"`audio_encoder` must be a keras.Model with one input",
        ),
    ],
)
def test_iemocap_network_errors(make, pattern):
    assert_raises_with_message(make, pattern)


def test_encoder_with_wrong_output_rank():
    inputs = keras.Input((400,))
    sequence_encoder = keras.Model(inputs, keras.layers.Reshape((2, 200))(inputs))
    assert_raises_with_message(
        _iemocap(audio_encoder=sequence_encoder, audio_encoder_kwargs=None),
        r"`audio_encoder` must return one \(batch, features\) tensor.*"
        r"\[\(None, 2, 200\)\]",
    )


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (
            {"audio_length": 100},
            r"build_iemocap_audio_encoder: audio_length=100 is too short for the "
            r"convolution stack: the time axis has -150 steps after the sinc "
            r"convolution",
        ),
        (
            {"audio_length": 300},
            r"audio_length=300 is too short.*has 0 steps after conv_2 ",
        ),
        (
            {"sinc_kernel_size": 250},
            r"`kernel_size`, expected an odd integer >= 3.*kernel_size=250",
        ),
        (
            {"dense_units": ()},
            r"`dense_units`, expected a tuple of positive integers "
            r"\(not empty\). Received: dense_units=\(\)",
        ),
        ({"sinc_filters": 0}, r"`sinc_filters`, expected a positive integer"),
        ({"pool_size": 2.5}, r"Received: pool_size=2.5"),
    ],
)
def test_audio_encoder_errors(kwargs, pattern):
    assert_raises_with_message(lambda: build_iemocap_audio_encoder(**kwargs), pattern)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"vocabulary_size": 0}, r"`vocabulary_size`, expected a positive integer"),
        (
            {"embeddings": np.zeros((VOCAB, 5))},
            r"`embeddings` must have shape \(vocabulary_size, embedding_dim\) = "
            r"\(50, 6\). Received an array of shape \(50, 5\)",
        ),
        ({"rnn_type": "rnn"}, r"`rnn_type`, expected 'gru' or 'lstm'.*'rnn'"),
        ({"pooling": "sum"}, r"`pooling`, expected 'max' or 'average'.*'sum'"),
        ({"kernel_sizes": (3, 3)}, r"must not repeat a size.*\(3, 3\)"),
        ({"kernel_sizes": ()}, r"`kernel_sizes`.*\(not empty\)"),
    ],
)
def test_text_encoder_errors(kwargs, pattern):
    args = {"vocabulary_size": VOCAB, **TEXT, **kwargs}
    assert_raises_with_message(lambda: build_iemocap_text_encoder(**args), pattern)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"lstm_units": 0}, r"build_physionet_network.*`lstm_units`.*lstm_units=0"),
        ({"chunks": -1}, r"`chunks`, expected a positive integer.*chunks=-1"),
        ({"dropout": -0.1}, r"`dropout`, expected a number in \[0, 1\)"),
        ({"modalities": ("ecg",)}, r"`modalities` must be a tuple of at least two"),
        ({"modalities": ("ecg", "ecg")}, r"distinct.*\('ecg', 'ecg'\)"),
        ({"fusion": "nope"}, r"Unknown fusion 'nope'"),
        (
            {"fusion": SumFusion(), "fusion_kwargs": {"projection_units": 2}},
            r"Keyword arguments cannot be applied to a fusion layer instance",
        ),
    ],
)
def test_physionet_errors(kwargs, pattern):
    assert_raises_with_message(lambda: build_physionet_network(**kwargs), pattern)
