"""The speech emotion network of Dual Memory Fusion (Priyasad et al. 2023, Fig. 1).

Audio encoder (Wav2Vec2-style, raw 16 kHz waveform) and text encoder (BERT)
-> `DualMemoryFusion` (or concatenation, the naive-fusion twin) -> Dense
1024 -> Dense 512 -> softmax.
"""

import keras

from mmfusion_keras.layers.dual_memory_fusion import DualMemoryFusion

SAMPLE_RATE = 16000


def build_wav2vec2_style_encoder(
    samples,
    hidden_dim=64,
    conv_filters=(32, 32, 32, 32),
    conv_kernels=(10, 3, 3, 3),
    conv_strides=(5, 2, 2, 2),
    num_layers=2,
    num_heads=2,
    intermediate_dim=128,
    positional_kernel=16,
    dropout=0.1,
    freeze_feature_extractor=True,
    name="audio_encoder",
):
    """A small Wav2Vec2-style encoder of raw 16 kHz waveforms, random init.

    The layout of Wav2Vec2 (Baevski et al. 2020, section 2; the "base"
    model has 7 convolutions of 512 filters, 12 transformer layers of
    width 768): a convolutional feature extractor on the waveform
    (GELU, group normalization after the first convolution), a feature
    projection (layer norm + Dense) to `hidden_dim`, a convolutional
    positional embedding added to the frames, transformer encoder layers,
    and mean pooling over the frames. The default is much smaller (4
    convolutions with a total stride of 40, i.e. one frame per 2.5 ms,
    two 64-wide layers). No pretrained Wav2Vec2 weights are available
    offline: the encoder starts from random weights; pass a pretrained
    Keras backbone to `build_dual_memory_network(audio_backbone=...)`
    instead when you have one.

    As in the paper's fine-tuning, the convolutional feature extractor is
    frozen by default (`freeze_feature_extractor`), which with random
    weights makes it a fixed random filter bank.

    Args:
        samples: waveform length the encoder takes.
        hidden_dim: width of the frames and of the output.
        conv_filters / conv_kernels / conv_strides: the convolutions.
        num_layers: transformer encoder layers.
        num_heads: attention heads.
        intermediate_dim: feed-forward width of the transformer layers.
        positional_kernel: kernel size of the positional convolution.
        dropout: dropout of the transformer layers.
        freeze_feature_extractor: freeze the convolutions.
        name: model name.

    Returns:
        A functional `keras.Model` mapping `(batch, samples)` to
        `(batch, hidden_dim)`; its sub-model `feature_extractor` holds the
        convolutions.

    Example:

    >>> from mmfusion_keras.models import build_wav2vec2_style_encoder
    >>> encoder = build_wav2vec2_style_encoder(1600, hidden_dim=16,
    ...     num_layers=1, intermediate_dim=32)
    >>> encoder.output.shape
    (None, 16)
    """
    from keras_hub.layers import TransformerEncoder

    if not (len(conv_filters) == len(conv_kernels) == len(conv_strides) >= 1):
        raise ValueError(
            "Expected `conv_filters`, `conv_kernels` and `conv_strides` of the "
            f"same non-zero length. Received: conv_filters={conv_filters}, "
            f"conv_kernels={conv_kernels}, conv_strides={conv_strides}"
        )
    waveform = keras.Input((samples,), name="waveform")
    x = keras.layers.Reshape((samples, 1), name="channels_last")(waveform)
    extractor_input = keras.Input((samples, 1), name="waveform_channel")
    h = extractor_input
    for i, (f, k, s) in enumerate(zip(conv_filters, conv_kernels, conv_strides)):
        h = keras.layers.Conv1D(f, k, strides=s, use_bias=False, name=f"conv_{i}")(h)
        if i == 0:
            h = keras.layers.GroupNormalization(f, name="conv_0_group_norm")(h)
        h = keras.layers.Activation("gelu", name=f"conv_{i}_gelu")(h)
    feature_extractor = keras.Model(extractor_input, h, name="feature_extractor")
    feature_extractor.trainable = not freeze_feature_extractor
    x = feature_extractor(x)
    x = keras.layers.LayerNormalization(name="feature_norm")(x)
    x = keras.layers.Dense(hidden_dim, name="feature_projection")(x)
    position = keras.layers.Conv1D(
        hidden_dim,
        positional_kernel,
        padding="same",
        activation="gelu",
        name="positional_conv",
    )(x)
    x = keras.layers.Add(name="add_positions")([x, position])
    x = keras.layers.LayerNormalization(name="encoder_norm")(x)
    for i in range(num_layers):
        x = TransformerEncoder(
            intermediate_dim,
            num_heads,
            dropout=dropout,
            activation="gelu",
            name=f"transformer_layer_{i}",
        )(x)
    x = keras.layers.GlobalAveragePooling1D(name="mean_over_frames")(x)
    return keras.Model(waveform, x, name=name)


def build_small_bert_backbone(
    vocabulary_size=1000,
    num_layers=2,
    num_heads=2,
    hidden_dim=64,
    intermediate_dim=128,
    sequence_length=30,
):
    """A small random-init keras-hub `BertBackbone` (tests, no weights).

    Example:

    >>> from mmfusion_keras.models.dual_memory_network import (
    ...     build_small_bert_backbone)
    >>> build_small_bert_backbone(vocabulary_size=50, hidden_dim=16).hidden_dim
    16
    """
    from keras_hub.models import BertBackbone

    return BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim,
        max_sequence_length=sequence_length,
        name="text_encoder",
    )


def _freeze_bert_embeddings(backbone):
    for attr in (
        "token_embedding",
        "position_embedding",
        "segment_embedding",
        "embeddings_layer_norm",
    ):
        layer = getattr(backbone, attr, None)
        if layer is not None:
            layer.trainable = False


def build_dual_memory_network(
    num_classes=4,
    fusion="dual_memory",
    text_backbone=None,
    audio_backbone=None,
    audio_samples=5 * SAMPLE_RATE,
    sequence_length=30,
    fusion_kwargs=None,
    head_units=(1024, 512),
    freeze_text_embeddings=True,
    name=None,
):
    """The Dual Memory Fusion speech emotion network (Fig. 1), or its twin.

    Audio: `audio_backbone` (any Keras model mapping `(batch, samples)` to
    `(batch, d_a)` or `(batch, frames, d_a)`, mean-pooled) or, by default,
    a small random-init `build_wav2vec2_style_encoder` whose width matches
    the text encoder's. Text: a keras-hub `BertBackbone` (e.g.
    `load_minilm(sequence_length=30).backbone`, all-MiniLM-L6-v2, width
    384), its `pooled_output` used as `x_t`; with `text_backbone=None` a
    small random-init BERT (for tests and quick runs). The BERT embedding
    layers are frozen (`freeze_text_embeddings`), as in the paper.

    `fusion="dual_memory"` fuses `[x_a, x_t]` with `DualMemoryFusion`; when
    `d_a != d_t`, `memory_dim=d_t` is passed unless `fusion_kwargs` sets
    it. `fusion="concat"` is the naive-fusion twin: `x_a ⊕ x_t` into the
    same head. The head is Dense 1024 -> Dense 512 (ReLU) -> softmax
    (section 2.3). Train with
    `mmfusion_keras.optimizers.memory_module_optimizer(model)` for the
    paper's two learning rates (SGD 0.01, memory module 0.001).

    Args:
        num_classes: number of classes (paper: 4).
        fusion: `"dual_memory"` or `"concat"`.
        text_backbone: a `keras_hub.models.BertBackbone`, or None.
        audio_backbone: a Keras audio model, or None.
        audio_samples: waveform length (paper: 5 s at 16 kHz).
        sequence_length: tokens per text (paper: 30).
        fusion_kwargs: arguments of `DualMemoryFusion` (paper defaults:
            120 slots; here `output_dim` defaults to 1024).
        head_units: widths of the head's Dense layers.
        freeze_text_embeddings: freeze BERT's embedding layers.
        name: model name; default `dual_memory_network_<fusion>`.

    Returns:
        A functional model with inputs `audio` `(batch, audio_samples)`,
        `token_ids`, `segment_ids`, `padding_mask` `(batch,
        sequence_length)` and softmax outputs `(batch, num_classes)`.

    Example:

    >>> from mmfusion_keras.models import build_dual_memory_network
    >>> model = build_dual_memory_network(audio_samples=1600,
    ...     sequence_length=8, head_units=(32, 16),
    ...     fusion_kwargs={"memory_slots": 4, "output_dim": 32})
    >>> model.output.shape
    (None, 4)

    Reference:
        Priyasad, Fernando, Sridharan, Denman, Fookes, "Dual Memory Fusion
        for Multimodal Speech Emotion Recognition", Interspeech 2023,
        Fig. 1, sections 2.1 and 2.3.
    """
    if fusion not in ("dual_memory", "concat"):
        raise ValueError(
            "Received an invalid value for argument `fusion`, expected "
            f"'dual_memory' or 'concat'. Received: fusion={fusion!r}"
        )
    if text_backbone is None:
        text_backbone = build_small_bert_backbone(sequence_length=sequence_length)
    if freeze_text_embeddings:
        _freeze_bert_embeddings(text_backbone)
    text_width = text_backbone.hidden_dim
    if audio_backbone is None:
        audio_backbone = build_wav2vec2_style_encoder(
            audio_samples, hidden_dim=text_width
        )
    audio = keras.Input((audio_samples,), name="audio")
    text = {
        key: keras.Input((sequence_length,), dtype="int32", name=key)
        for key in ("token_ids", "segment_ids", "padding_mask")
    }
    x_a = audio_backbone(audio)
    if len(x_a.shape) == 3:
        x_a = keras.layers.GlobalAveragePooling1D(name="audio_pool")(x_a)
    x_t = text_backbone(text)["pooled_output"]
    if fusion == "dual_memory":
        kwargs = {"output_dim": 1024, **dict(fusion_kwargs or {})}
        if x_a.shape[-1] != x_t.shape[-1]:
            kwargs.setdefault("memory_dim", x_t.shape[-1])
        fused = DualMemoryFusion(name="fusion", **kwargs)([x_a, x_t])
    else:
        fused = keras.layers.Concatenate(name="fusion")([x_a, x_t])
    x = fused
    for i, units in enumerate(head_units):
        x = keras.layers.Dense(units, activation="relu", name=f"head_dense_{i}")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(
        x
    )
    return keras.Model(
        {"audio": audio, **text},
        outputs,
        name=name or f"dual_memory_network_{fusion}",
    )
