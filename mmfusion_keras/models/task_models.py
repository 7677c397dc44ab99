"""The models of the bundled tasks: speech+text emotion and AV-Digits."""

import keras
from keras import ops

from mmfusion_keras.layers.registry import get_fusion_layer

SAMPLE_RATE = 16000


def build_audio_encoder(
    samples, units=64, num_mel_bins=40, filters=(32, 64), name="audio_encoder"
):
    """A small log-mel + Conv1D encoder of raw 16 kHz waveforms.

    `keras.layers.MelSpectrogram` (25 ms Hann windows, 10 ms hop, log power
    in dB) runs inside the model, so the model takes raw audio on every
    backend. The spectrogram is standardized per utterance, then two
    Conv1D/max-pool blocks and global average + max pooling over time
    give a fixed-size vector, projected to `units`.

    Args:
        samples: number of waveform samples the model takes.
        units: output width.
        num_mel_bins: mel bands.
        filters: Conv1D widths.
        name: model name.

    Returns:
        A functional `keras.Model` mapping `(batch, samples)` to
        `(batch, units)`.
    """
    waveform = keras.Input((samples,), name="waveform")
    mel = keras.layers.MelSpectrogram(
        fft_length=512,
        sequence_length=400,
        sequence_stride=160,
        num_mel_bins=num_mel_bins,
        sampling_rate=SAMPLE_RATE,
        name="log_mel",
    )(waveform)  # (batch, mels, frames), dB
    x = keras.layers.Permute((2, 1), name="frames_first")(mel)
    x = keras.layers.Normalization(
        axis=None, name="db_scale", mean=-40.0, variance=400.0
    )(x)
    for i, f in enumerate(filters):
        x = keras.layers.Conv1D(
            f, 5, padding="same", activation="relu", name=f"conv_{i}"
        )(x)
        x = keras.layers.MaxPooling1D(2, name=f"pool_{i}")(x)
    x = keras.layers.Concatenate(name="stats")(
        [
            keras.layers.GlobalAveragePooling1D(name="mean_over_time")(x),
            keras.layers.GlobalMaxPooling1D(name="max_over_time")(x),
        ]
    )
    x = keras.layers.Dense(units, activation="relu", name="projection")(x)
    return keras.Model(waveform, x, name=name)


def _fusion(fusion, fusion_kwargs):
    if fusion == "late":
        raise ValueError(
            "Late fusion averages class scores and is available for the "
            "digits-views task only; choose a feature fusion such as "
            "'concat' or 'mbaf' here."
        )
    return get_fusion_layer(fusion, name="fusion", **dict(fusion_kwargs or {}))


def _head(fused, num_classes, units, dropout, head_units=None):
    if head_units is None:  # one Dense of `units` (the saved models' layout)
        x = keras.layers.Dense(units, activation="relu", name="head_dense")(fused)
    else:  # e.g. Dual Memory Fusion's 1024 -> 512 (section 2.3)
        x = fused
        for i, width in enumerate(head_units):
            x = keras.layers.Dense(width, activation="relu", name=f"head_dense_{i}")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)


def build_speech_text_model(
    vocabulary_size,
    sequence_length=16,
    audio_samples=4 * SAMPLE_RATE,
    num_classes=4,
    fusion="mbaf",
    fusion_kwargs=None,
    units=64,
    embedding_dim=32,
    dropout=0.3,
    head_units=None,
    text_shape=None,
):
    """Speech + text emotion classifier: audio and text encoders, fusion, head.

    The text input is one of (`text_shape`):

    - `None`: int token ids `(sequence_length,)` of a fitted vocabulary
      (the model card kind `"tokens"`), embedded, Conv1D, max-pooled;
    - `(d,)`: one frozen sentence vector per text (kind
      `"minilm_sentence"`, d = 384), through dropout and a Dense layer;
    - `(length, d)`: one frozen vector per word (kind `"glove_words"`,
      d = 50; zeros for padding and unknown words), Conv1D, max-pooled.

    The frozen encoders run outside the model (`tasks.prepare_inputs`), so
    the saved model holds only the small trainable part.

    Args:
        vocabulary_size: size of the token vocabulary (index 0 = padding);
            used with `text_shape=None` only.
        sequence_length: number of text tokens (`text_shape=None`).
        audio_samples: waveform length at 16 kHz.
        num_classes: number of classes.
        fusion: fusion name, class or instance (see
            `mmfusion_keras.layers.registry`); "concat" is the naive twin.
        fusion_kwargs: constructor arguments of the fusion layer.
        units: width of each modality encoding and of the head.
        embedding_dim: word embedding width.
        dropout: dropout rate of the head.
        head_units: None (one Dense of `units`) or the widths of the head's
            Dense layers (e.g. `(1024, 512)`, Dual Memory Fusion's head).
        text_shape: None (token ids) or the shape of the frozen text
            features, see above.

    Returns:
        A functional model with inputs `audio` `(batch, audio_samples)` and
        `text` (`(batch, sequence_length)` int token ids, or float features
        of `text_shape`), softmax outputs.

    Example:

    >>> from mmfusion_keras.models.task_models import build_speech_text_model
    >>> model = build_speech_text_model(50, sequence_length=8,
    ...     audio_samples=8000, fusion="concat")
    >>> [t.shape for t in model.inputs]
    [(None, 8000), (None, 8)]
    """
    audio = keras.Input((audio_samples,), name="audio")
    a = build_audio_encoder(audio_samples, units=units)(audio)
    if text_shape is None:
        text = keras.Input((sequence_length,), dtype="int32", name="text")
        t = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")(
            text
        )
    else:
        text = keras.Input(tuple(text_shape), name="text")
        t = keras.layers.Dropout(0.1, name="text_dropout")(text)
    if text_shape is None or len(text_shape) == 2:
        t = keras.layers.Conv1D(
            units, 3, padding="same", activation="relu", name="text_conv"
        )(t)
        t = keras.layers.GlobalMaxPooling1D(name="text_pool")(t)
    t = keras.layers.Dense(units, activation="relu", name="text_projection")(t)
    fused = _fusion(fusion, fusion_kwargs)([a, t])
    outputs = _head(fused, num_classes, units, dropout, head_units)
    return keras.Model([audio, text], outputs, name=f"speech_text_{fusion}")


def build_av_digits_model(
    audio_samples=SAMPLE_RATE,
    num_classes=10,
    fusion="mbaf",
    fusion_kwargs=None,
    units=64,
    dropout=0.3,
):
    """AV-Digits classifier: 8x8 image and spoken-digit encoders, fusion, head.

    Args:
        audio_samples: waveform length at 16 kHz (AV-Digits: 1 s).
        num_classes: number of classes.
        fusion: fusion name, class or instance.
        fusion_kwargs: constructor arguments of the fusion layer.
        units: width of each modality encoding and of the head.
        dropout: dropout rate of the head.

    Returns:
        A functional model with inputs `image` `(batch, 8, 8, 1)` and
        `audio` `(batch, audio_samples)`, softmax outputs.

    Example:

    >>> from mmfusion_keras.models.task_models import build_av_digits_model
    >>> model = build_av_digits_model(audio_samples=8000, fusion="concat")
    >>> [t.shape for t in model.inputs]
    [(None, 8, 8, 1), (None, 8000)]
    """
    image = keras.Input((8, 8, 1), name="image")
    audio = keras.Input((audio_samples,), name="audio")
    i = keras.layers.Conv2D(
        32, 3, padding="same", activation="relu", name="image_conv_0"
    )(image)
    i = keras.layers.Conv2D(
        32, 3, padding="same", activation="relu", name="image_conv_1"
    )(i)
    i = keras.layers.MaxPooling2D(2, name="image_pool")(i)
    i = keras.layers.Flatten(name="image_flatten")(i)
    i = keras.layers.Dense(units, activation="relu", name="image_projection")(i)
    a = build_audio_encoder(audio_samples, units=units)(audio)
    fused = _fusion(fusion, fusion_kwargs)([i, a])
    outputs = _head(fused, num_classes, units, dropout)
    return keras.Model([image, audio], outputs, name=f"av_digits_{fusion}")


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class _NonPaddingSteps(keras.layers.Layer):
    """Boolean `(batch, T)` mask of the real steps of a padded sequence.

    Token ids: id != 0. Vector sequences: a row that is not all zeros (the
    frozen text features give zero rows to padding).
    """

    def call(self, x):
        if len(x.shape) == 2:
            return ops.not_equal(x, 0)
        return ops.any(ops.not_equal(x, 0), axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2])

    def compute_output_spec(self, x):
        return keras.KerasTensor(tuple(x.shape[:2]), dtype="bool")


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class _FrameMask(keras.layers.Layer):
    """`(batch, frames)`: True where a block of `frame_step` samples of the
    waveform holds a non-zero sample (clips are zero-padded at the back)."""

    def __init__(self, frame_step, frames, **kwargs):
        super().__init__(**kwargs)
        self.frame_step = int(frame_step)
        self.frames = int(frames)

    def call(self, waveform):
        needed = self.frame_step * self.frames
        have = waveform.shape[-1]
        if have < needed:
            waveform = ops.pad(waveform, [[0, 0], [0, needed - have]])
        blocks = ops.reshape(waveform[:, :needed], (-1, self.frames, self.frame_step))
        return ops.greater(ops.max(ops.abs(blocks), axis=-1), 0.0)

    def compute_output_spec(self, waveform):
        return keras.KerasTensor((waveform.shape[0], self.frames), dtype="bool")

    def get_config(self):
        return {
            **super().get_config(),
            "frame_step": self.frame_step,
            "frames": self.frames,
        }


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class _MaskedMean(keras.layers.Layer):
    """Mean over the real steps `(batch, T, d) -> (batch, d)`."""

    def call(self, x, mask):
        weights = ops.cast(mask, x.dtype)[..., None]
        total = ops.sum(x * weights, axis=1)
        return total / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def compute_output_shape(self, x_shape, mask_shape=None):
        return (x_shape[0], x_shape[2])


def _feed_forward(x, width, dropout, name):
    """Pre-norm position-wise feed-forward block with a residual."""
    h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm")(x)
    h = keras.layers.Dense(2 * width, activation="relu", name=f"{name}_dense_0")(h)
    h = keras.layers.Dropout(dropout, name=f"{name}_dropout")(h)
    h = keras.layers.Dense(width, name=f"{name}_dense_1")(h)
    return keras.layers.Add(name=f"{name}_residual")([x, h])


def build_speech_text_sequence_model(
    text_shape=None,
    audio_samples=3 * SAMPLE_RATE,
    num_classes=4,
    vocabulary_size=None,
    width=32,
    num_heads=4,
    delta_window=4,
    dropout=0.1,
    num_mel_bins=40,
    head_units=None,
    seed=0,
    name="speech_text_sequence",
):
    """Word x audio-frame cross-modal attention model for speech + text.

    A two-modality, one-layer MulT-style model (Tsai et al. 2019) whose
    attention maps can be shown: text is a sequence of word (piece) states
    and audio a sequence of ~80 ms frames.

    1. Audio: log-mel frames (25 ms windows, 10 ms hop), standardized, two
       Conv1D + max-pool blocks (pool 2, then 4: one frame per 8 hops,
       80 ms), projected to `width`, plus sinusoidal positions. Frames of
       the zero padding after the clip are masked (`_FrameMask`).
       `DeltaSelfAttention` over the frames (Panchal, Eq. 9-12; a window
       of `delta_window` frames on both sides) models how the audio
       changes over time, added as a residual.
    2. Text: the frozen word-piece states (`text_shape=(length, d)`; rows
       of zeros are padding) or token ids (`text_shape=None`, embedded),
       projected to `width`, plus sinusoidal positions.
    3. Cross-modal attention in both directions (MulT Eq. 1-3 and 7, pre-
       norm, residual): `audio_to_text` (target words, source audio frames:
       the word x frame map) and `text_to_audio` (target frames, source
       words), each followed by a feed-forward block (Eq. 8).
    4. The masked mean over words and over frames, concatenated, a Dense
       head and softmax.

    The attention layers are top-level layers of the functional model
    (`CrossModalAttention` named `audio_to_text` / `text_to_audio`,
    `DeltaSelfAttention` named `audio_delta_attention`), called with the
    explicit `mask` argument, so a caller can find them by type and call
    them with `return_attention_scores=True`.

    Args:
        text_shape: `(length, d)` float text features, or None for token ids
            (then `vocabulary_size` is needed; length 16).
        audio_samples: waveform length at 16 kHz.
        num_classes: number of classes.
        vocabulary_size: token vocabulary (only with `text_shape=None`).
        width: model width `d`.
        num_heads: attention heads (must divide `width`).
        delta_window: frames on each side the delta self-attention sees.
        dropout: attention, feed-forward and head dropout.
        num_mel_bins: mel bands.
        head_units: widths of the head's Dense layers (default `(width*2,)`).
        seed: seed of the attention dropouts.
        name: model name.

    Returns:
        A functional model with inputs `audio` `(batch, audio_samples)` and
        `text`, softmax outputs `(batch, num_classes)`.

    Example:

    >>> from mmfusion_keras.models.task_models import (
    ...     build_speech_text_sequence_model)
    >>> model = build_speech_text_sequence_model((6, 10), audio_samples=8000,
    ...     width=8, num_heads=2)
    >>> [tuple(t.shape) for t in model.inputs]
    [(None, 8000), (None, 6, 10)]

    Reference:
        Tsai et al., Multimodal Transformer for Unaligned Multimodal
        Language Sequences (MulT), ACL 2019, section 3; Panchal,
        Hierarchical Delta-Attention Method for Multimodal Fusion, Eq. 9-12.
    """
    from mmfusion_keras.layers.cross_modal_attention import CrossModalAttention
    from mmfusion_keras.layers.delta_self_attention import DeltaSelfAttention
    from mmfusion_keras.layers.sinusoidal_position_embedding import (
        SinusoidalPositionEmbedding,
    )

    if width % num_heads:
        raise ValueError(
            "build_speech_text_sequence_model expects `num_heads` to divide "
            f"`width`. Received width={width}, num_heads={num_heads}."
        )
    if text_shape is None and not vocabulary_size:
        raise ValueError(
            "build_speech_text_sequence_model needs `vocabulary_size` for token "
            "ids (text_shape=None). Received: vocabulary_size="
            f"{vocabulary_size!r}"
        )
    hop, pools = 160, (2, 4)

    # === Audio frames ===
    audio = keras.Input((audio_samples,), name="audio")
    mel = keras.layers.MelSpectrogram(
        fft_length=512,
        sequence_length=400,
        sequence_stride=hop,
        num_mel_bins=num_mel_bins,
        sampling_rate=SAMPLE_RATE,
        name="log_mel",
    )(audio)
    x = keras.layers.Permute((2, 1), name="frames_first")(mel)
    x = keras.layers.Normalization(
        axis=None, name="db_scale", mean=-40.0, variance=400.0
    )(x)
    for i, (filters, pool) in enumerate(zip((32, 64), pools)):
        x = keras.layers.Conv1D(
            filters, 5, padding="same", activation="relu", name=f"audio_conv_{i}"
        )(x)
        x = keras.layers.MaxPooling1D(pool, name=f"audio_pool_{i}")(x)
    frames = x.shape[1]
    a_mask = _FrameMask(hop * pools[0] * pools[1], frames, name="audio_mask")(audio)
    a = keras.layers.Dense(width, name="audio_projection")(x)
    a = keras.layers.Add(name="audio_positions")(
        [a, SinusoidalPositionEmbedding(name="audio_position_embedding")(a)]
    )
    delta = DeltaSelfAttention(
        num_heads,
        filters=width // num_heads,
        output_dim=width,
        kernel_size=3,
        delta_window=delta_window,
        key_range="both",
        dropout=dropout,
        seed=seed,
        name="audio_delta_attention",
    )
    a_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="audio_delta_norm")(a)
    a = keras.layers.Add(name="audio_delta_residual")([a, delta(a_norm, mask=a_mask)])

    # === Text steps ===
    if text_shape is None:
        text = keras.Input((16,), dtype="int32", name="text")
        t_mask = _NonPaddingSteps(name="text_mask")(text)
        t = keras.layers.Embedding(vocabulary_size, width, name="embedding")(text)
    else:
        text = keras.Input(tuple(text_shape), name="text")
        t_mask = _NonPaddingSteps(name="text_mask")(text)
        t = keras.layers.Dropout(dropout, name="text_dropout")(text)
        t = keras.layers.Dense(width, name="text_projection")(t)
    t = keras.layers.Add(name="text_positions")(
        [t, SinusoidalPositionEmbedding(name="text_position_embedding")(t)]
    )

    # === Cross-modal attention, both directions (MulT Eq. 7-8) ===
    t_in = keras.layers.LayerNormalization(epsilon=1e-5, name="text_norm")(t)
    a_in = keras.layers.LayerNormalization(epsilon=1e-5, name="audio_norm")(a)
    to_text = CrossModalAttention(
        num_heads, dropout=dropout, seed=seed + 1, name="audio_to_text"
    )([t_in, a_in], mask=[t_mask, a_mask])
    to_audio = CrossModalAttention(
        num_heads, dropout=dropout, seed=seed + 2, name="text_to_audio"
    )([a_in, t_in], mask=[a_mask, t_mask])
    t = keras.layers.Add(name="text_cross_residual")([t, to_text])
    a = keras.layers.Add(name="audio_cross_residual")([a, to_audio])
    t = _feed_forward(t, width, dropout, "text_feed_forward")
    a = _feed_forward(a, width, dropout, "audio_feed_forward")

    # === Pooling and head ===
    pooled = keras.layers.Concatenate(name="pooled")(
        [
            _MaskedMean(name="text_mean")(t, t_mask),
            _MaskedMean(name="audio_mean")(a, a_mask),
        ]
    )
    h = pooled
    for i, units in enumerate(head_units or (2 * width,)):
        h = keras.layers.Dense(units, activation="relu", name=f"head_dense_{i}")(h)
    h = keras.layers.Dropout(dropout, name="head_dropout")(h)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(
        h
    )
    return keras.Model([audio, text], outputs, name=name)
