"""The multimodal convolutional LSTM layer (Barnum et al., 2020)."""

import keras
from keras import ops

from mmfusion_keras.layers.multimodal_conv_lstm_cell import MultimodalConvLSTMCell


def _shape(shape):
    return tuple(None if d is None else int(d) for d in shape)


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class MultimodalConvLSTM(keras.layers.Layer):
    """Early audio-visual fusion: a ConvLSTM over audio frames on one image.

    Runs `MultimodalConvLSTMCell` over the frames of an audio sequence
    (e.g. a spectrogram) with a still image as the constant spatial input:
    at every time step and spatial position the LSTM gates see the image
    patch, the hidden-state patch and the current audio frame, so the two
    modalities are mixed from the first layer on ("initial-layer fusion").
    The hidden maps start at zero. The result is the last hidden map, or
    the sequence of hidden maps (`return_sequences=True`) for a following
    `keras.layers.ConvLSTM2D` (the paper's subsequent layers, which are
    ordinary C-LSTMs on the previous layer's hidden maps).

    The loop is a `keras.layers.RNN` (it trains under TensorFlow with XLA,
    JAX and PyTorch). Before it, the image's gates (`W_v * v + b`) and the
    audio's gates for all frames (`W_a a_t`) are computed at once; inside
    it only the hidden-state convolution, as one matmul over the stacked
    patches (see `MultimodalConvLSTMCell.recurrent_gates`: XLA on CPU
    differentiates a convolution inside a loop very slowly).

    Masks: a boolean `(batch, frames)` mask (explicit, or carried by the
    audio tensor, e.g. from `keras.layers.Masking`) skips frames: a masked
    step keeps the previous state. With front-padded audio the padding
    frames at the start are thus skipped and the state stays zero until the
    first real frame; the result equals running on the unpadded audio.

    The image convolution's padding is `"same"` by default: the paper uses
    28x28 MNIST digits and does not state it; with the 8x8 digits of
    AV-Digits, `"valid"` 3x3 convolutions and 2x2 pooling in two layers
    would shrink the maps to nothing.

    Args:
        filters: int, hidden/cell channels (the paper's "units", 64).
        kernel_size: int or pair, image and recurrent kernel size. Default 3.
        padding: `"same"` or `"valid"` for the image convolution. Default
            `"same"`.
        activation: default `"tanh"`.
        recurrent_activation: default `"sigmoid"`.
        use_bias: default True.
        unit_forget_bias: start the forget-gate bias at 1. Default True.
        kernel_initializer: initializer of the image and audio kernels.
        recurrent_initializer: initializer of the recurrent kernel.
        bias_initializer: initializer of the bias.
        return_sequences: return all hidden maps `(batch, frames, H', W',
            filters)` instead of the last one. Default False.
        return_state: also return the last hidden and cell maps. Default
            False.
        go_backwards: process the audio frames in reverse. Default False.
        unroll: unroll the loop (only for short, fixed-length audio).
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a list `[image, audio]`: the image `(batch, H, W, channels)`
            and the audio `(batch, frames, features)`.
        mask: optional boolean `(batch, frames)` mask of the audio frames
            (`True` = use the frame), or a list `[None, audio_mask]`.
        training: Python bool, passed to the cell.

    Returns:
        The last hidden map `(batch, H', W', filters)` (`H' = H` with
        `"same"` padding), or `(batch, frames, H', W', filters)` with
        `return_sequences=True`; with `return_state=True` a list
        `[output, h_last, c_last]`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import MultimodalConvLSTM
    >>> layer = MultimodalConvLSTM(4, return_sequences=True)
    >>> image = np.random.rand(2, 8, 8, 1).astype("float32")
    >>> audio = np.random.rand(2, 6, 5).astype("float32")
    >>> tuple(layer([image, audio]).shape)
    (2, 6, 8, 8, 4)

    Reference:
        Barnum, Talukder, Yue, "On the Benefits of Early Fusion in
        Multimodal Representation Learning", NeurIPS 2020 SVRHM workshop,
        section 3, Appendix A.1-A.2, Figure 5.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        padding="same",
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        unit_forget_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        unroll=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.cell = MultimodalConvLSTMCell(
            filters,
            kernel_size=kernel_size,
            padding=padding,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            unit_forget_bias=unit_forget_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            dtype=self.dtype_policy,
            name="cell",
        )
        self.cell._inputs_are_gates = True
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.unroll = bool(unroll)
        self.rnn = keras.layers.RNN(
            self.cell,
            return_sequences=self.return_sequences,
            return_state=True,
            go_backwards=self.go_backwards,
            unroll=self.unroll,
            dtype=self.dtype_policy,
            name="rnn",
        )
        self.supports_masking = True

    # --- input checks --------------------------------------------------------

    def _describe(self):
        return f"Layer {self.__class__.__name__} (name={self.name!r})"

    def _validate_shapes(self, input_shape):
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) != 2
            or not all(isinstance(s, (list, tuple)) for s in input_shape)
        ):
            if isinstance(input_shape, (list, tuple)) and all(
                isinstance(s, (list, tuple)) for s in input_shape
            ):
                received = f"a list of {len(input_shape)} tensors"
            else:
                received = f"a single tensor of shape {_shape(input_shape)}"
            raise ValueError(
                f"{self._describe()} expects a list of exactly 2 tensors "
                "[image, audio]: the image (batch, height, width, channels) "
                f"and the audio (batch, frames, features). Received {received}."
            )
        image_shape, audio_shape = (_shape(s) for s in input_shape)
        if len(image_shape) != 4 or None in image_shape[1:]:
            raise ValueError(
                f"{self._describe()} expects the image (first input) to have "
                "rank 4 (batch, height, width, channels) with known sizes. "
                f"Received image shape {image_shape}."
            )
        if len(audio_shape) != 3 or audio_shape[-1] is None:
            raise ValueError(
                f"{self._describe()} expects the audio (second input) to have "
                "rank 3 (batch, frames, features) with a known number of "
                f"features. Received audio shape {audio_shape}."
            )
        if None not in (image_shape[0], audio_shape[0]) and (
            image_shape[0] != audio_shape[0]
        ):
            raise ValueError(
                f"{self._describe()} expects the image and the audio to have "
                f"the same batch size. Received image shape {image_shape} and "
                f"audio shape {audio_shape}."
            )
        return image_shape, audio_shape

    # --- layer API -----------------------------------------------------------

    def build(self, input_shape):
        image_shape, audio_shape = self._validate_shapes(input_shape)
        self.cell.build(image_shape, (audio_shape[0], audio_shape[2]))
        self.cell.built = True
        # The loop runs over the audio's gates (4 * filters per frame).
        self.rnn.build(audio_shape[:2] + (4 * self.cell.filters,))

    def _audio_mask(self, mask):
        if isinstance(mask, (list, tuple)):
            if len(mask) != 2:
                raise ValueError(
                    f"{self._describe()} expects `mask` to be a (batch, frames) "
                    "mask of the audio or a list [image_mask, audio_mask]. "
                    f"Received a list of {len(mask)} masks."
                )
            mask = mask[1]
        return mask

    def call(self, inputs, mask=None, training=False):
        self._validate_shapes([tuple(x.shape) for x in inputs])
        image, audio = inputs
        for name, x in (("image", image), ("audio", audio)):
            dtype = keras.backend.standardize_dtype(x.dtype)
            if "float" not in dtype:
                raise ValueError(
                    f"{self._describe()} expects floating-point inputs. "
                    f"Received the {name} with dtype {dtype}."
                )
        # Only the hidden-state term stays inside the loop: the image's gates
        # are computed once (the initial state) and the audio's for all
        # frames at once, and the cell adds them per step.
        audio = self.cell.audio_gates(ops.cast(audio, self.compute_dtype))
        audio_mask = self._audio_mask(mask)
        if audio_mask is not None:
            # Keras's RNN masking does not broadcast a (batch,) mask to
            # rank-4 states on every backend: the cell applies the mask,
            # which comes in as an extra last audio feature.
            frame_mask = ops.cast(ops.cast(audio_mask, "bool"), audio.dtype)
            audio = ops.concatenate([audio, frame_mask[..., None]], axis=-1)
        initial_state = self.cell.get_initial_state(image)
        output, h, c, _ = self.rnn(
            audio, initial_state=initial_state, training=training
        )
        if self.return_state:
            return [output, h, c]
        return output

    def compute_output_shape(self, input_shape):
        image_shape, audio_shape = self._validate_shapes(input_shape)
        if not self.cell.built:
            # State shape without weights: the same arithmetic as the cell.
            height, width = image_shape[1:3]
            if self.cell.padding == "valid":
                height -= self.cell.kernel_size[0] - 1
                width -= self.cell.kernel_size[1] - 1
            state = (image_shape[0], height, width, self.cell.filters)
        else:
            state = self.cell.state_shape(image_shape[0])
        batch = image_shape[0] if image_shape[0] is not None else audio_shape[0]
        state = (batch,) + tuple(state[1:])
        output = (batch, audio_shape[1]) + state[1:] if self.return_sequences else state
        if self.return_state:
            return [output, state, state]
        return output

    def compute_mask(self, inputs, mask=None):
        audio_mask = self._audio_mask(mask)
        output_mask = audio_mask if self.return_sequences else None
        if self.return_state:
            return [output_mask, None, None]
        return output_mask

    def get_config(self):
        # The cell's own arguments, without its Layer base keys.
        cell_config = {
            k: v
            for k, v in self.cell.get_config().items()
            if k not in ("name", "trainable", "dtype")
        }
        return {
            **super().get_config(),
            **cell_config,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "unroll": self.unroll,
        }
