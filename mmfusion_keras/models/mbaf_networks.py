"""The reference networks of the MBAF paper (IEMOCAP and PhysioNet-CMEBS).

Functional-API builders for the networks of Priyasad et al., "Memory Based
Fusion for Multi-modal Deep Learning", Information Fusion 2021, sections
4.1-4.2 and Figures 2-3: the IEMOCAP audio and text encoders, the six
IEMOCAP fusion networks (NF-I/II/III with concatenation, MBAF-I/II/III with
`MemoryBasedAttentiveFusion`) and the PhysioNet-CMEBS LSTM network. Every
size is an argument; the defaults are the paper's.
"""

import keras
import numpy as np

from mmfusion_keras.layers.concatenate_fusion import ConcatenateFusion
from mmfusion_keras.layers.feature_self_attention import FeatureSelfAttention
from mmfusion_keras.layers.memory_based_attentive_fusion import (
    MemoryBasedAttentiveFusion,
)
from mmfusion_keras.layers.registry import get_fusion_layer
from mmfusion_keras.layers.sinc_conv1d import SincConv1D

IEMOCAP_VARIANTS = ("NF-I", "NF-II", "NF-III", "MBAF-I", "MBAF-II", "MBAF-III")
_STRUCTURES = ("I", "II", "III")
# variant prefix -> (registry name, class) of its fusion layer
_PREFIX_FUSION = {
    "NF": ("concat", ConcatenateFusion),
    "MBAF": ("mbaf", MemoryBasedAttentiveFusion),
}


# --- argument checks -------------------------------------------------------


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_positive_int(builder, name, value):
    if not _is_int(value) or value <= 0:
        raise ValueError(
            f"{builder}: received an invalid value for argument `{name}`, "
            f"expected a positive integer. Received: {name}={value!r}"
        )
    return int(value)


def _check_int_tuple(builder, name, value, allow_empty=False):
    what = "a tuple of positive integers" + ("" if allow_empty else " (not empty)")
    if isinstance(value, (list, tuple)) and all(_is_int(v) and v > 0 for v in value):
        if value or allow_empty:
            return tuple(int(v) for v in value)
    raise ValueError(
        f"{builder}: received an invalid value for argument `{name}`, "
        f"expected {what}. Received: {name}={value!r}"
    )


def _check_rate(builder, name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        value_ok = False
    else:
        value_ok = 0.0 <= value < 1.0
    if not value_ok:
        raise ValueError(
            f"{builder}: received an invalid value for argument `{name}`, "
            f"expected a number in [0, 1). Received: {name}={value!r}"
        )
    return float(value)


def _check_num_classes(builder, value):
    if not _is_int(value) or value < 2:
        raise ValueError(
            f"{builder}: received an invalid value for argument `num_classes`, "
            f"expected an integer >= 2. Received: num_classes={value!r}"
        )
    return int(value)


def _make_fusion(fusion, fusion_kwargs):
    """The fusion layer, named "fusion" unless an instance is given."""
    kwargs = dict(fusion_kwargs or {})
    if isinstance(fusion, keras.layers.Layer):
        return get_fusion_layer(fusion, **kwargs)
    kwargs.setdefault("name", "fusion")
    return get_fusion_layer(fusion, **kwargs)


def _check_encoder(builder, name, encoder):
    if not isinstance(encoder, keras.Model) or len(encoder.inputs) != 1:
        raise ValueError(
            f"{builder}: `{name}` must be a keras.Model with one input. "
            f"Received: {name}={encoder!r}"
        )
    shape = tuple(encoder.outputs[0].shape) if len(encoder.outputs) == 1 else None
    if shape is None or len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"{builder}: `{name}` must return one (batch, features) tensor with "
            f"a known width. Received an encoder with output shapes "
            f"{[tuple(o.shape) for o in encoder.outputs]}."
        )
    return encoder


# --- IEMOCAP encoders --------------------------------------------------------


def build_iemocap_audio_encoder(
    audio_length=4000,
    sample_rate=16000,
    sinc_filters=80,
    sinc_kernel_size=251,
    conv_filters=(60, 60),
    conv_kernel_size=5,
    pool_size=3,
    dense_units=(2048, 2048, 2048),
    name="audio_encoder",
):
    """The IEMOCAP audio encoder (AE): SincNet then a CNN and an MLP.

    A raw waveform segment goes through a `SincConv1D` band-pass filter bank
    and a stack of `Conv1D` layers (each followed by max pooling, layer
    normalization and a leaky ReLU), is flattened, and goes through `Dense`
    layers (each with batch normalization and a leaky ReLU). The last
    `Dense` width is the encoding size (2048 in the paper).

    The paper says only "SincNet followed by Convolution1D and Dense
    layers" with a 2048-d output; the remaining sizes (80 sinc filters of
    251 taps, two convolutions of 60 filters of width 5, pooling by 3, three
    Dense layers of 2048 units, layer and batch normalization, leaky ReLU)
    are those of SincNet (Ravanelli and Bengio 2018), which the paper
    builds on. Unlike SincNet, no `|.|` is applied to the sinc outputs
    before pooling.

    Args:
        audio_length: int, samples per segment. Default 4000 (250 ms at
            16 kHz).
        sample_rate: int, sampling rate in Hz. Default 16000.
        sinc_filters: int, number of SincNet band-pass filters. Default 80.
        sinc_kernel_size: odd int, taps of the sinc filters. Default 251.
        conv_filters: tuple of ints, filters of each `Conv1D` after the
            sinc layer. Default (60, 60).
        conv_kernel_size: int, kernel width of those convolutions. Default 5.
        pool_size: int, max-pooling size after every convolution. Default 3.
        dense_units: non-empty tuple of ints, widths of the Dense layers; the
            last one is the encoding size. Default (2048, 2048, 2048).
        name: model name. Default "audio_encoder".

    Returns:
        A functional `keras.Model` from a `(batch, audio_length)` float
        waveform to a `(batch, dense_units[-1])` encoding.

    Example:

    >>> from mmfusion_keras.models.mbaf_networks import build_iemocap_audio_encoder
    >>> encoder = build_iemocap_audio_encoder(
    ...     audio_length=400, sinc_filters=2, sinc_kernel_size=31,
    ...     conv_filters=(4,), dense_units=(16,))
    >>> tuple(encoder.output.shape)
    (None, 16)

    Reference:
        Priyasad et al., "Memory Based Fusion for Multi-modal Deep
        Learning", Information Fusion 2021, section 4.1 and Fig. 2 (AE);
        Ravanelli and Bengio, "Speaker Recognition from Raw Waveform with
        SincNet", IEEE SLT 2018.
    """
    builder = "build_iemocap_audio_encoder"
    audio_length = _check_positive_int(builder, "audio_length", audio_length)
    sinc_filters = _check_positive_int(builder, "sinc_filters", sinc_filters)
    sinc_kernel_size = _check_positive_int(
        builder, "sinc_kernel_size", sinc_kernel_size
    )
    conv_filters = _check_int_tuple(
        builder, "conv_filters", conv_filters, allow_empty=True
    )
    conv_kernel_size = _check_positive_int(
        builder, "conv_kernel_size", conv_kernel_size
    )
    pool_size = _check_positive_int(builder, "pool_size", pool_size)
    dense_units = _check_int_tuple(builder, "dense_units", dense_units)

    # The time axis after every convolution and pooling must stay >= 1.
    length, stage = audio_length - sinc_kernel_size + 1, "the sinc convolution"
    stages = [(length, stage), (length // pool_size, f"{stage} and its pooling")]
    for i in range(len(conv_filters)):
        length = stages[-1][0] - conv_kernel_size + 1
        stages.append((length, f"conv_{i + 1}"))
        stages.append((length // pool_size, f"the pooling after conv_{i + 1}"))
    for length, stage in stages:
        if length < 1:
            raise ValueError(
                f"{builder}: audio_length={audio_length} is too short for the "
                f"convolution stack: the time axis has {length} steps after "
                f"{stage} (sinc_kernel_size={sinc_kernel_size}, "
                f"conv_kernel_size={conv_kernel_size}, pool_size={pool_size}, "
                f"{len(conv_filters)} convolutions). Use longer segments or "
                "fewer / smaller convolutions."
            )

    waveform = keras.Input((audio_length,), name="waveform")
    x = SincConv1D(
        sinc_filters, sinc_kernel_size, sample_rate=sample_rate, name="sinc_conv"
    )(waveform)
    x = keras.layers.MaxPooling1D(pool_size, name="sinc_pool")(x)
    x = keras.layers.LayerNormalization(name="sinc_norm")(x)
    x = keras.layers.LeakyReLU(0.2, name="sinc_act")(x)
    for i, filters in enumerate(conv_filters):
        prefix = f"conv_{i + 1}"
        x = keras.layers.Conv1D(filters, conv_kernel_size, name=prefix)(x)
        x = keras.layers.MaxPooling1D(pool_size, name=f"{prefix}_pool")(x)
        x = keras.layers.LayerNormalization(name=f"{prefix}_norm")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"{prefix}_act")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense_units):
        prefix = f"dense_{i + 1}"
        x = keras.layers.Dense(units, name=prefix)(x)
        x = keras.layers.BatchNormalization(name=f"{prefix}_norm")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"{prefix}_act")(x)
    return keras.Model(waveform, x, name=name)


def build_iemocap_text_encoder(
    vocabulary_size,
    sequence_length=100,
    embedding_dim=300,
    embeddings=None,
    trainable_embeddings=None,
    rnn_units=128,
    rnn_type="gru",
    conv_filters=128,
    kernel_sizes=(1, 3, 5),
    pooling="max",
    output_units=4800,
    name="text_encoder",
):
    """The IEMOCAP text encoder (TE): embeddings, two CNN branches, attention.

    Token ids are embedded (optionally from a given matrix such as GloVe)
    and go through two parallel branches:

    - left: a bidirectional RNN returning sequences, then one `Conv1D` per
      kernel size in `kernel_sizes` (1, 3 and 5 in the paper);
    - right: one `Conv1D` per kernel size directly on the embeddings.

    For every kernel size `k`, cross-attention (`keras.layers.Attention`,
    dot-product) lets the left convolution attend to the right one (left
    as query, right as key and value); the attended left features and the
    right convolution are concatenated. The concatenations of all kernel
    sizes are joined, pooled over time and projected by a `Dense` layer
    (ReLU) to the encoding (4800-d in the paper).

    Readings of the paper: it does not give the RNN type and width, the
    number of convolution filters, the activations or the pooling; we use
    a GRU of 128 units per direction, 128 filters with ReLU and "same"
    padding (so that the kernel sizes can be concatenated along the
    features), and global max pooling over time. Token id 0 is an ordinary
    token (no masking): pad with any id and let the model learn to ignore
    it.

    Args:
        vocabulary_size: int, number of token ids (rows of the embedding).
        sequence_length: int, tokens per utterance. Default 100.
        embedding_dim: int, embedding width. Default 300 (GloVe-300d).
        embeddings: optional array `(vocabulary_size, embedding_dim)` that
            initialises the embedding (e.g. GloVe vectors). Default None.
        trainable_embeddings: bool or None. None (default) freezes the
            embedding when `embeddings` is given, and trains it otherwise.
        rnn_units: int, units per direction of the bidirectional RNN.
        rnn_type: `"gru"` or `"lstm"`. Default "gru".
        conv_filters: int, filters of every convolution. Default 128.
        kernel_sizes: tuple of ints, the convolution kernel sizes of each
            branch. Default (1, 3, 5).
        pooling: `"max"` or `"average"`, the pooling over time.
        output_units: int, encoding width. Default 4800.
        name: model name. Default "text_encoder".

    Returns:
        A functional `keras.Model` from `(batch, sequence_length)` int32
        token ids to a `(batch, output_units)` encoding.

    Example:

    >>> from mmfusion_keras.models.mbaf_networks import build_iemocap_text_encoder
    >>> encoder = build_iemocap_text_encoder(
    ...     50, sequence_length=8, embedding_dim=6, rnn_units=4,
    ...     conv_filters=4, output_units=12)
    >>> tuple(encoder.output.shape)
    (None, 12)

    Reference:
        Priyasad et al., "Memory Based Fusion for Multi-modal Deep
        Learning", Information Fusion 2021, section 4.1 and Fig. 2 (TE).
    """
    builder = "build_iemocap_text_encoder"
    vocabulary_size = _check_positive_int(builder, "vocabulary_size", vocabulary_size)
    sequence_length = _check_positive_int(builder, "sequence_length", sequence_length)
    embedding_dim = _check_positive_int(builder, "embedding_dim", embedding_dim)
    rnn_units = _check_positive_int(builder, "rnn_units", rnn_units)
    conv_filters = _check_positive_int(builder, "conv_filters", conv_filters)
    kernel_sizes = _check_int_tuple(builder, "kernel_sizes", kernel_sizes)
    output_units = _check_positive_int(builder, "output_units", output_units)
    if len(set(kernel_sizes)) != len(kernel_sizes):
        raise ValueError(
            f"{builder}: `kernel_sizes` must not repeat a size (layers are "
            f"named after it). Received: kernel_sizes={kernel_sizes}"
        )
    if rnn_type not in ("gru", "lstm"):
        raise ValueError(
            f"{builder}: received an invalid value for argument `rnn_type`, "
            f"expected 'gru' or 'lstm'. Received: rnn_type={rnn_type!r}"
        )
    if pooling not in ("max", "average"):
        raise ValueError(
            f"{builder}: received an invalid value for argument `pooling`, "
            f"expected 'max' or 'average'. Received: pooling={pooling!r}"
        )
    if embeddings is not None:
        embeddings = np.asarray(embeddings, dtype="float32")
        if embeddings.shape != (vocabulary_size, embedding_dim):
            raise ValueError(
                f"{builder}: `embeddings` must have shape (vocabulary_size, "
                f"embedding_dim) = {(vocabulary_size, embedding_dim)}. "
                f"Received an array of shape {embeddings.shape}."
            )
    if trainable_embeddings is None:
        trainable_embeddings = embeddings is None

    tokens = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    embedding = keras.layers.Embedding(
        vocabulary_size,
        embedding_dim,
        trainable=bool(trainable_embeddings),
        name="embedding",
    )
    embedded = embedding(tokens)
    if embeddings is not None:
        embedding.set_weights([embeddings])

    rnn_cls = keras.layers.GRU if rnn_type == "gru" else keras.layers.LSTM
    left = keras.layers.Bidirectional(
        rnn_cls(rnn_units, return_sequences=True), name="bi_rnn"
    )(embedded)
    branches = []
    for k in kernel_sizes:
        left_k = keras.layers.Conv1D(
            conv_filters, k, padding="same", activation="relu", name=f"left_conv_{k}"
        )(left)
        right_k = keras.layers.Conv1D(
            conv_filters, k, padding="same", activation="relu", name=f"right_conv_{k}"
        )(embedded)
        attended = keras.layers.Attention(name=f"cross_attention_{k}")(
            [left_k, right_k]
        )  # query = left, value = key = right
        branches.append(
            keras.layers.Concatenate(name=f"concat_{k}")([attended, right_k])
        )
    x = (
        keras.layers.Concatenate(name="concat_branches")(branches)
        if len(branches) > 1
        else branches[0]
    )
    if pooling == "max":
        x = keras.layers.GlobalMaxPooling1D(name="pool")(x)
    else:
        x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    x = keras.layers.Dense(output_units, activation="relu", name="encoding")(x)
    return keras.Model(tokens, x, name=name)


# --- IEMOCAP fusion networks -------------------------------------------------


def _parse_variant(variant):
    builder = "build_iemocap_network"
    names = IEMOCAP_VARIANTS + _STRUCTURES
    if not isinstance(variant, str) or variant.upper() not in names:
        raise ValueError(
            f"{builder}: unknown variant {variant!r}. Expected one of {names} "
            "(NF = concatenation, MBAF = memory-based attentive fusion; a bare "
            "'I', 'II' or 'III' takes the fusion from `fusion`)."
        )
    variant = variant.upper()
    prefix, _, structure = variant.rpartition("-")
    return variant, (prefix or None), structure


def build_iemocap_network(
    variant="MBAF-I",
    vocabulary_size=None,
    fusion=None,
    fusion_kwargs=None,
    audio_encoder=None,
    text_encoder=None,
    audio_encoder_kwargs=None,
    text_encoder_kwargs=None,
    classifier_units=(),
    dropout=0.0,
    num_classes=4,
    name=None,
):
    """An IEMOCAP emotion network of the MBAF paper: AE + TE + fusion.

    The audio encoder (AE, `build_iemocap_audio_encoder`) and the text
    encoder (TE, `build_iemocap_text_encoder`) encode their modality; the
    encodings are fused and classified by a softmax over `num_classes`
    emotions (anger, happiness, neutral, sadness in the paper). The three
    structures of Fig. 2:

    - I: `fusion([a, t])`;
    - II: self-attention after fusion,
      `FeatureSelfAttention(fusion([a, t]))`;
    - III: self-attention on each encoding before fusion,
      `fusion([FeatureSelfAttention(a), FeatureSelfAttention(t)])`.

    NF-x uses naive fusion (concatenation, `"concat"`), MBAF-x the MBAF
    layer (`"mbaf"`). To put another fusion layer into a structure, pass a
    bare structure (`"I"`, `"II"`, `"III"`) and `fusion`.

    The paper trains the encoders first, each on its own, then the fused
    network. Pass the trained encoders as `audio_encoder` / `text_encoder`
    (they are used as nested models named after themselves; set
    `encoder.trainable = False` to freeze them). The paper gives no
    classifier sizes after fusion; by default the fused vector goes
    straight to the softmax layer (`classifier_units=()`).

    Args:
        variant: one of "NF-I", "NF-II", "NF-III", "MBAF-I", "MBAF-II",
            "MBAF-III" (case-insensitive), or a bare "I", "II", "III"
            together with `fusion`. Default "MBAF-I".
        vocabulary_size: int, needed when `text_encoder` is None.
        fusion: a fusion name from `mmfusion_keras.layers.registry` (e.g.
            "concat", "mbaf", "gmu"), a layer class or a layer instance.
            None (default) takes it from the variant's prefix. With a
            prefixed variant, it must be the prefix's layer.
        fusion_kwargs: dict of constructor arguments of the fusion layer
            (e.g. `{"memory_slots": 30}` for MBAF).
        audio_encoder, text_encoder: optional `keras.Model`s (one input,
            `(batch, d)` output) used instead of building new encoders.
        audio_encoder_kwargs, text_encoder_kwargs: dicts of arguments of
            `build_iemocap_audio_encoder` / `build_iemocap_text_encoder`
            used when the encoder is not given.
        classifier_units: tuple of ints, hidden ReLU Dense layers between
            the fusion (or the self-attention) and the softmax. Default ().
        dropout: float in [0, 1), dropout after every hidden Dense layer.
        num_classes: int >= 2. Default 4.
        name: model name. Default `"iemocap_<variant>"`.

    Returns:
        A functional `keras.Model` with inputs named `"audio"` (float
        waveforms) and `"text"` (int32 token ids), and softmax outputs of
        shape `(batch, num_classes)`. Layers: `"audio_encoder"`,
        `"text_encoder"`, `"fusion"` (unless a fusion instance with another
        name is given), `"fused_self_attention"` (II),
        `"audio_self_attention"` and `"text_self_attention"` (III),
        `"predictions"`.

    Example:

    >>> from mmfusion_keras.models.mbaf_networks import build_iemocap_network
    >>> model = build_iemocap_network(
    ...     "MBAF-II", vocabulary_size=50,
    ...     audio_encoder_kwargs=dict(audio_length=400, sinc_filters=2,
    ...         sinc_kernel_size=31, conv_filters=(4,), dense_units=(16,)),
    ...     text_encoder_kwargs=dict(sequence_length=8, embedding_dim=6,
    ...         rnn_units=4, conv_filters=4, output_units=12),
    ...     fusion_kwargs={"memory_slots": 5})
    >>> model.get_layer("fusion").__class__.__name__
    'MemoryBasedAttentiveFusion'
    >>> tuple(model.output.shape)
    (None, 4)

    Reference:
        Priyasad et al., "Memory Based Fusion for Multi-modal Deep
        Learning", Information Fusion 2021, section 4.1, Fig. 2 and Table 1
        (NF-I/II/III, MBAF-I/II/III).
    """
    builder = "build_iemocap_network"
    variant, prefix, structure = _parse_variant(variant)
    classifier_units = _check_int_tuple(
        builder, "classifier_units", classifier_units, allow_empty=True
    )
    dropout = _check_rate(builder, "dropout", dropout)
    num_classes = _check_num_classes(builder, num_classes)

    if fusion is None:
        if prefix is None:
            raise ValueError(
                f"{builder}: the bare variant {variant!r} needs a `fusion` "
                "(e.g. fusion='mbaf'). Received: fusion=None. Or use a "
                f"prefixed variant from {IEMOCAP_VARIANTS}."
            )
        fusion = _PREFIX_FUSION[prefix][0]
    fusion_layer = _make_fusion(fusion, fusion_kwargs)
    if prefix is not None:
        short_name, expected = _PREFIX_FUSION[prefix]
        if not isinstance(fusion_layer, expected):
            raise ValueError(
                f"{builder}: variant {variant!r} fuses with {expected.__name__} "
                f"({short_name!r}). Received: fusion={fusion!r} "
                f"({fusion_layer.__class__.__name__}). Use variant "
                f"{structure!r} to combine structure {structure} with another "
                "fusion layer."
            )

    if audio_encoder is None:
        audio_encoder = build_iemocap_audio_encoder(**(audio_encoder_kwargs or {}))
    elif audio_encoder_kwargs:
        raise ValueError(
            f"{builder}: pass either `audio_encoder` or `audio_encoder_kwargs`, "
            f"not both. Received: audio_encoder_kwargs={audio_encoder_kwargs!r}"
        )
    audio_encoder = _check_encoder(builder, "audio_encoder", audio_encoder)
    if text_encoder is None:
        text_kwargs = dict(text_encoder_kwargs or {})
        if vocabulary_size is not None:
            text_kwargs["vocabulary_size"] = vocabulary_size
        if "vocabulary_size" not in text_kwargs:
            raise ValueError(
                f"{builder}: `vocabulary_size` is required to build the text "
                "encoder (or pass a built `text_encoder`). Received: "
                "vocabulary_size=None"
            )
        text_encoder = build_iemocap_text_encoder(**text_kwargs)
    elif text_encoder_kwargs:
        raise ValueError(
            f"{builder}: pass either `text_encoder` or `text_encoder_kwargs`, "
            f"not both. Received: text_encoder_kwargs={text_encoder_kwargs!r}"
        )
    text_encoder = _check_encoder(builder, "text_encoder", text_encoder)

    audio_spec, text_spec = audio_encoder.inputs[0], text_encoder.inputs[0]
    audio = keras.Input(
        tuple(audio_spec.shape[1:]), dtype=audio_spec.dtype, name="audio"
    )
    text = keras.Input(tuple(text_spec.shape[1:]), dtype=text_spec.dtype, name="text")
    a = audio_encoder(audio)
    t = text_encoder(text)
    if structure == "III":
        a = FeatureSelfAttention(name="audio_self_attention")(a)
        t = FeatureSelfAttention(name="text_self_attention")(t)
    x = fusion_layer([a, t])
    if structure == "II":
        x = FeatureSelfAttention(name="fused_self_attention")(x)
    for i, units in enumerate(classifier_units):
        x = keras.layers.Dense(units, activation="relu", name=f"classifier_{i + 1}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"classifier_{i + 1}_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(
        x
    )
    name = name or "iemocap_" + variant.lower().replace("-", "_")
    return keras.Model([audio, text], outputs, name=name)


# --- PhysioNet-CMEBS ---------------------------------------------------------


def build_physionet_network(
    fusion="concat",
    fusion_kwargs=None,
    chunks=6,
    chunk_length=1000,
    lstm_units=512,
    dense_units=1024,
    dropout=0.5,
    num_classes=3,
    modalities=("ecg", "rs"),
    name="physionet_network",
):
    """The PhysioNet-CMEBS network of the MBAF paper (Fig. 3).

    Every modality (a physiological signal cut into `chunks` consecutive
    chunks of `chunk_length` samples, the chunks being the time steps) goes
    through `LSTM(lstm_units, return_sequences=True)` then
    `LSTM(lstm_units)`; the two final states are fused, and a
    `Dense(dense_units)` layer with `dropout` and a softmax layer classify
    the recording state (3 classes).

    The paper fuses two signals (ECG+RS, ECG+SCG or RS+SCG); any number
    >= 2 of modalities is accepted if the fusion layer takes it. The paper
    does not give the hidden Dense activation; we use ReLU.

    Args:
        fusion: a fusion name from `mmfusion_keras.layers.registry`
            ("concat" for naive fusion, "mbaf" for MBAF, ...), a layer
            class or a layer instance. Default "concat".
        fusion_kwargs: dict of constructor arguments of the fusion layer.
        chunks: int, chunks (time steps) per input. Default 6.
        chunk_length: int, samples per chunk. Default 1000 (200 ms at 5 kHz).
        lstm_units: int, units of both LSTMs. Default 512.
        dense_units: int, units of the hidden Dense layer. Default 1024.
        dropout: float in [0, 1), dropout after it. Default 0.5.
        num_classes: int >= 2. Default 3.
        modalities: tuple of at least two distinct input names. Default
            ("ecg", "rs").
        name: model name. Default "physionet_network".

    Returns:
        A functional `keras.Model` with one `(batch, chunks, chunk_length)`
        input per modality (named after it) and softmax outputs of shape
        `(batch, num_classes)`. Layers: `"<modality>_lstm_1"`,
        `"<modality>_lstm_2"`, `"fusion"` (unless a fusion instance with
        another name is given), `"dense"`, `"dropout"`, `"predictions"`.

    Example:

    >>> from mmfusion_keras.models.mbaf_networks import build_physionet_network
    >>> model = build_physionet_network(
    ...     "mbaf", {"memory_slots": 4}, chunk_length=20, lstm_units=8,
    ...     dense_units=16)
    >>> [tuple(x.shape) for x in model.inputs]
    [(None, 6, 20), (None, 6, 20)]
    >>> model.get_layer("fusion").__class__.__name__
    'MemoryBasedAttentiveFusion'

    Reference:
        Priyasad et al., "Memory Based Fusion for Multi-modal Deep
        Learning", Information Fusion 2021, section 4.2, Fig. 3 and Table 2
        (F-IV, F-V, F-VI).
    """
    builder = "build_physionet_network"
    chunks = _check_positive_int(builder, "chunks", chunks)
    chunk_length = _check_positive_int(builder, "chunk_length", chunk_length)
    lstm_units = _check_positive_int(builder, "lstm_units", lstm_units)
    dense_units = _check_positive_int(builder, "dense_units", dense_units)
    dropout = _check_rate(builder, "dropout", dropout)
    num_classes = _check_num_classes(builder, num_classes)
    if (
        not isinstance(modalities, (list, tuple))
        or len(modalities) < 2
        or not all(isinstance(m, str) and m for m in modalities)
        or len(set(modalities)) != len(modalities)
    ):
        raise ValueError(
            f"{builder}: `modalities` must be a tuple of at least two distinct, "
            f"non-empty names. Received: modalities={modalities!r}"
        )
    fusion_layer = _make_fusion(fusion, fusion_kwargs)

    inputs, encoded = [], []
    for m in modalities:
        x = keras.Input((chunks, chunk_length), name=m)
        inputs.append(x)
        h = keras.layers.LSTM(lstm_units, return_sequences=True, name=f"{m}_lstm_1")(x)
        encoded.append(keras.layers.LSTM(lstm_units, name=f"{m}_lstm_2")(h))
    x = fusion_layer(encoded)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(
        x
    )
    return keras.Model(inputs, outputs, name=name)
