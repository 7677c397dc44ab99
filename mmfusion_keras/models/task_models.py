"""The models of the bundled tasks: speech+text emotion and AV-Digits."""

import keras

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
):
    """Speech + text emotion classifier: audio and text encoders, fusion, head.

    Args:
        vocabulary_size: size of the token vocabulary (index 0 = padding).
        sequence_length: number of text tokens.
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

    Returns:
        A functional model with inputs `audio` `(batch, audio_samples)` and
        `text` `(batch, sequence_length)` int token ids, softmax outputs.

    Example:

    >>> from mmfusion_keras.models.task_models import build_speech_text_model
    >>> model = build_speech_text_model(50, sequence_length=8,
    ...     audio_samples=8000, fusion="concat")
    >>> [t.shape for t in model.inputs]
    [(None, 8000), (None, 8)]
    """
    audio = keras.Input((audio_samples,), name="audio")
    text = keras.Input((sequence_length,), dtype="int32", name="text")
    a = build_audio_encoder(audio_samples, units=units)(audio)
    t = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")(text)
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
