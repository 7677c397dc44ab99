"""A convolutional LSTM that trains at the same speed on every backend."""

import keras
from keras import ops

from mmfusion_keras.layers.conv_lstm_cell import ConvLSTMCell


def _shape(shape):
    return tuple(None if d is None else int(d) for d in shape)


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class ConvLSTM(keras.layers.Layer):
    """A 2-D convolutional LSTM: `keras.layers.ConvLSTM2D`'s function, faster.

    The same recurrence as `keras.layers.ConvLSTM2D` (stride 1, no dilation,
    no dropout, channels last) with the same weights (`kernel`,
    `recurrent_kernel`, `bias`, same shapes, order and gate order i, f, c,
    o), computed differently:

        z_t = W_x * x_t + W_h * h_{t-1} + b        (Shi et al., Eq. 3)
        i, f, g, o = sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)
        c_t = f . c_{t-1} + i . g
        h_t = o . tanh(c_t)

    The input term `W_x * x_t + b` is computed for all frames in one
    convolution before the loop (the frames stacked along the batch axis);
    inside the `keras.layers.RNN` loop only the hidden-state term
    `W_h * h_{t-1}` remains, written as one matmul over the `kh x kw`
    patches of `h` stacked along the channels (`patch_matmul`). Why: XLA on
    CPU differentiates a convolution inside a `lax.scan` very slowly (the
    kernel gradient; see docs/performance.md), so Keras's `ConvLSTM2D`
    trains several times slower on JAX than on PyTorch; this layer trains
    at about the same speed on TensorFlow, JAX and PyTorch.

    The hidden maps start at zero. The padding of the input convolution is
    `"same"` by default (Keras's `ConvLSTM2D` defaults to `"valid"`); the
    recurrent convolution always uses `"same"`, as in Keras.

    Masks: a boolean `(batch, frames)` mask (explicit, or carried by the
    input, e.g. from `keras.layers.Masking`) skips frames: a masked step
    keeps the previous state.

    Args:
        filters: int, hidden/cell channels.
        kernel_size: int or pair, input and recurrent kernel size. Default 3.
        padding: `"same"` or `"valid"` for the input convolution. Default
            `"same"`.
        activation: default `"tanh"`.
        recurrent_activation: default `"sigmoid"`.
        use_bias: default True.
        unit_forget_bias: start the forget-gate bias at 1. Default True.
        kernel_initializer: initializer of the input kernel.
        recurrent_initializer: initializer of the recurrent kernel.
        bias_initializer: initializer of the bias.
        return_sequences: return all hidden maps `(batch, frames, H', W',
            filters)` instead of the last one. Default False.
        return_state: also return the last hidden and cell maps. Default
            False.
        go_backwards: process the frames in reverse. Default False.
        unroll: unroll the loop (only for short, fixed-length inputs).
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: frames `(batch, frames, H, W, channels)`.
        mask: optional boolean `(batch, frames)` mask (`True` = use the
            frame).
        training: Python bool, passed to the cell.

    Returns:
        The last hidden map `(batch, H', W', filters)` (`H' = H` with
        `"same"` padding), or `(batch, frames, H', W', filters)` with
        `return_sequences=True`; with `return_state=True` a list
        `[output, h_last, c_last]`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import ConvLSTM
    >>> layer = ConvLSTM(4, return_sequences=True)
    >>> frames = np.random.rand(2, 6, 8, 8, 3).astype("float32")
    >>> tuple(layer(frames).shape)
    (2, 6, 8, 8, 4)

    Reference:
        Shi et al., "Convolutional LSTM Network: A Machine Learning Approach
        for Precipitation Nowcasting", NeurIPS 2015, Eq. 3 (without the
        peephole terms, as `keras.layers.ConvLSTM2D`). Used as the
        subsequent C-LSTM layers of Barnum, Talukder, Yue, "On the Benefits
        of Early Fusion in Multimodal Representation Learning", NeurIPS 2020
        SVRHM workshop, Appendix A.2.
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
        self.cell = ConvLSTMCell(
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

    @property
    def filters(self):
        return self.cell.filters

    def _describe(self):
        return f"Layer {self.__class__.__name__} (name={self.name!r})"

    def _validate_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and all(
            isinstance(s, (list, tuple)) for s in input_shape
        ):
            raise ValueError(
                f"{self._describe()} expects one tensor of frames (batch, "
                f"frames, height, width, channels). Received a list of "
                f"{len(input_shape)} tensors."
            )
        shape = _shape(input_shape)
        if len(shape) != 5 or None in shape[2:]:
            raise ValueError(
                f"{self._describe()} expects frames of rank 5 (batch, frames, "
                "height, width, channels) with known height, width and "
                f"channels. Received shape {shape}."
            )
        return shape

    def build(self, input_shape):
        shape = self._validate_shape(input_shape)
        self.cell.build((shape[0],) + shape[2:])
        self.cell.built = True
        _, height, width, filters = self.cell.state_shape()
        # The loop runs over the flattened input gates of each frame.
        self.rnn.build(shape[:2] + (height * width * 4 * filters,))

    def call(self, inputs, mask=None, training=False):
        self._validate_shape(tuple(inputs.shape))
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if "float" not in dtype:
            raise ValueError(
                f"{self._describe()} expects floating-point frames. Received "
                f"dtype {dtype}."
            )
        # Only the hidden-state term stays inside the loop: the input's
        # gates are computed for all frames at once.
        gates = self.cell.input_gates(ops.cast(inputs, self.compute_dtype))
        shape = ops.shape(gates)
        _, height, width, filters = self.cell.state_shape()
        gates = ops.reshape(gates, (shape[0], shape[1], height * width * 4 * filters))
        if mask is not None:
            # As in MultimodalConvLSTM: Keras's RNN masking does not
            # broadcast a (batch,) mask to rank-4 states on every backend,
            # so the cell applies it, as an extra last input column.
            frame_mask = ops.cast(ops.cast(mask, "bool"), gates.dtype)
            gates = ops.concatenate([gates, frame_mask[..., None]], axis=-1)
        initial_state = self.cell.get_initial_state(shape[0])
        output, h, c = self.rnn(gates, initial_state=initial_state, training=training)
        if self.return_state:
            return [output, h, c]
        return output

    def compute_output_shape(self, input_shape):
        shape = self._validate_shape(input_shape)
        height, width = shape[2:4]
        if self.cell.padding == "valid":
            height -= self.cell.kernel_size[0] - 1
            width -= self.cell.kernel_size[1] - 1
        state = (shape[0], height, width, self.cell.filters)
        output = (shape[0], shape[1]) + state[1:] if self.return_sequences else state
        if self.return_state:
            return [output, state, state]
        return output

    def compute_mask(self, inputs, mask=None):
        output_mask = mask if self.return_sequences else None
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
