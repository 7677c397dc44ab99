"""The fusion-depth models of Barnum et al. (2020), Appendix A.2.

Three audio-visual digit classifiers that differ only in where the image
and the audio (spectrogram frames) meet:

- `"initial"`: initial-layer fusion. `MultimodalConvLSTM` (image + audio
  frames from the first layer on) -> 2x2 max pool of every hidden map ->
  `ConvLSTM` (the function of `keras.layers.ConvLSTM2D`, computed so that
  it trains fast on JAX too) -> 2x2 max pool -> Dense 128 ReLU -> Dense 10.
- `"second"`: second-layer fusion. A `Conv2D` on the image and an `LSTM`
  on the audio, then a `MultimodalConvLSTM` on the image features and the
  LSTM's output sequence -> 2x2 max pool -> Dense 128 ReLU -> Dense 10.
- `"fc"`: fully-connected fusion. Two `Conv2D` on the image, two `LSTM` on
  the audio; the flattened image features and the last LSTM output are
  concatenated -> Dense 128 ReLU -> Dense 10.

`zero_input="image"` or `"audio"` multiplies that input by zero inside the
model (a `Rescaling(0)` layer): the paper's unimodal models "without
changing the underlying architecture" (section 5.3).

Models saved before `ConvLSTM` replaced `keras.layers.ConvLSTM2D` still
load (with their `ConvLSTM2D`); their weights also load into a model built
now (same weights in the same order), e.g.
`build_early_fusion_model(...).set_weights(old_model.get_weights())`.

Choices where the paper is silent: convolutions use `"same"` padding (the
8x8 AV-Digits images are too small for `"valid"`), `Conv2D` layers use a
ReLU, the pooling after a recurrent layer with sequence output is applied
to every step, and the image stream of the FC model has no pooling.
"""

import keras
import numpy as np

from mmfusion_keras.layers.conv_lstm import ConvLSTM
from mmfusion_keras.layers.multimodal_conv_lstm import MultimodalConvLSTM

EARLY_FUSION_VARIANTS = ("initial", "second", "fc")
ZERO_INPUTS = (None, "image", "audio")


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            "build_early_fusion_model: received an invalid value for argument "
            f"`{name}`, expected a positive integer. Received: {name}={value!r}"
        )
    return int(value)


def _check_shape(name, value, rank):
    if (
        not isinstance(value, (list, tuple))
        or len(value) != rank
        or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
            for v in value
        )
    ):
        raise ValueError(
            "build_early_fusion_model: received an invalid value for argument "
            f"`{name}`, expected {rank} positive integers (without the batch "
            f"axis). Received: {name}={value!r}"
        )
    return tuple(int(v) for v in value)


def build_early_fusion_model(
    fusion="initial",
    image_shape=(8, 8, 1),
    audio_shape=(79, 201),
    units=64,
    kernel_size=3,
    pool_size=2,
    dense_units=128,
    num_classes=10,
    zero_input=None,
    name=None,
):
    """Builds one of the fusion-depth models of Barnum et al. (A.2).

    Args:
        fusion: `"initial"` (multimodal C-LSTM first), `"second"` (separate
            Conv2D / LSTM, then a multimodal C-LSTM) or `"fc"` (separate
            streams fused by concatenation before the Dense layers).
        image_shape: `(height, width, channels)`. Default `(8, 8, 1)`
            (AV-Digits).
        audio_shape: `(frames, features)`. Default `(79, 201)` (AV-Digits's
            `features="stft"`: 400-sample windows, stride 200, 201 bins).
        units: channels / units of every convolutional and recurrent
            layer. Default 64 (the paper's).
        kernel_size: kernel size of every convolution. Default 3.
        pool_size: max-pooling size after each C-LSTM layer. Default 2.
        dense_units: width of the hidden Dense layer. Default 128.
        num_classes: outputs of the softmax layer. Default 10.
        zero_input: `None`, `"image"` or `"audio"`: the modality set to zero
            inside the model (unimodal variants, section 5.3).
        name: model name (default `"<fusion>_fusion"`, with
            `"_no_<modality>"` when an input is zeroed).

    Returns:
        A functional `keras.Model` with inputs `{"image", "audio"}` and a
        `(batch, num_classes)` softmax output.

    Example:

    >>> from mmfusion_keras.models import build_early_fusion_model
    >>> model = build_early_fusion_model("initial", audio_shape=(6, 5),
    ...                                  units=4, dense_units=8)
    >>> tuple(model.output.shape)
    (None, 10)

    Reference:
        Barnum, Talukder, Yue, "On the Benefits of Early Fusion in
        Multimodal Representation Learning", NeurIPS 2020 SVRHM workshop,
        sections 3 and 5.1-5.3, Appendix A.2.
    """
    if fusion not in EARLY_FUSION_VARIANTS:
        raise ValueError(
            "build_early_fusion_model: received an invalid value for argument "
            f"`fusion`, expected one of {EARLY_FUSION_VARIANTS}. "
            f"Received: fusion={fusion!r}"
        )
    if zero_input not in ZERO_INPUTS:
        raise ValueError(
            "build_early_fusion_model: received an invalid value for argument "
            f"`zero_input`, expected one of {ZERO_INPUTS}. "
            f"Received: zero_input={zero_input!r}"
        )
    image_shape = _check_shape("image_shape", image_shape, 3)
    audio_shape = _check_shape("audio_shape", audio_shape, 2)
    units = _check_positive_int("units", units)
    kernel_size = _check_positive_int("kernel_size", kernel_size)
    pool_size = _check_positive_int("pool_size", pool_size)
    dense_units = _check_positive_int("dense_units", dense_units)
    num_classes = _check_positive_int("num_classes", num_classes)
    pools = {"initial": 2, "second": 1, "fc": 0}[fusion]
    if min(image_shape[:2]) < pool_size**pools:
        raise ValueError(
            f"build_early_fusion_model: an image of {image_shape[0]}x"
            f"{image_shape[1]} is too small for {pools} max pooling(s) of size "
            f"{pool_size} in the {fusion!r} model. Use a smaller `pool_size`."
        )
    if name is None:
        name = f"{fusion}_fusion" + (f"_no_{zero_input}" if zero_input else "")

    image_in = keras.Input(image_shape, name="image")
    audio_in = keras.Input(audio_shape, name="audio")
    image, audio = image_in, audio_in
    if zero_input == "image":
        image = keras.layers.Rescaling(0.0, name="zero_image")(image)
    elif zero_input == "audio":
        audio = keras.layers.Rescaling(0.0, name="zero_audio")(audio)

    if fusion == "initial":
        x = MultimodalConvLSTM(
            units, kernel_size, return_sequences=True, name="multimodal_clstm"
        )([image, audio])
        x = keras.layers.TimeDistributed(
            keras.layers.MaxPooling2D(pool_size), name="pool_1"
        )(x)
        x = ConvLSTM(units, kernel_size, padding="same", name="clstm_2")(x)
        x = keras.layers.MaxPooling2D(pool_size, name="pool_2")(x)
        x = keras.layers.Flatten(name="flatten")(x)
    elif fusion == "second":
        v = keras.layers.Conv2D(
            units, kernel_size, padding="same", activation="relu", name="conv_1"
        )(image)
        a = keras.layers.LSTM(units, return_sequences=True, name="lstm_1")(audio)
        x = MultimodalConvLSTM(units, kernel_size, name="multimodal_clstm")([v, a])
        x = keras.layers.MaxPooling2D(pool_size, name="pool_2")(x)
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        v = image
        for i in (1, 2):
            v = keras.layers.Conv2D(
                units, kernel_size, padding="same", activation="relu", name=f"conv_{i}"
            )(v)
        v = keras.layers.Flatten(name="flatten")(v)
        a = keras.layers.LSTM(units, return_sequences=True, name="lstm_1")(audio)
        a = keras.layers.LSTM(units, name="lstm_2")(a)
        x = keras.layers.Concatenate(name="fusion")([v, a])
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="output")(x)
    return keras.Model({"image": image_in, "audio": audio_in}, outputs, name=name)
