"""The cell of `ConvLSTM`: a convolutional LSTM step on precomputed gates."""

import keras
from keras import ops

from mmfusion_keras.layers.multimodal_conv_lstm_cell import _PADDINGS
from mmfusion_keras.layers.multimodal_conv_lstm_cell import _kernel_size
from mmfusion_keras.layers.multimodal_conv_lstm_cell import _positive_int
from mmfusion_keras.layers.multimodal_conv_lstm_cell import patch_matmul


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class ConvLSTMCell(keras.layers.Layer):
    """One step of a convolutional LSTM whose input term is computed outside.

    The gates of a convolutional LSTM (Shi et al., 2015, Eq. 3) are

        z_t = W_x * x_t + W_h * h_{t-1} + b
        i, f, g, o = sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)
        c_t = f . c_{t-1} + i . g
        h_t = o . tanh(c_t)

    The input term `W_x * x_t + b` does not depend on the state: `ConvLSTM`
    computes it for all frames at once (`input_gates`) and feeds the cell
    those gates, so that only the hidden-state convolution `W_h * h_{t-1}`
    runs inside the loop, as one matmul over the stacked patches
    (`patch_matmul`). Weights, their names, shapes and order (`kernel`,
    `recurrent_kernel`, `bias`) and the gate order (i, f, c, o) are those of
    `keras.layers.ConvLSTM2D`'s cell (no peephole connections).

    Args:
        filters: int, number of hidden/cell channels.
        kernel_size: int or pair, size of the input and recurrent
            convolutions. Default 3.
        padding: `"same"` or `"valid"`, padding of the input convolution
            (the recurrent convolution always uses `"same"`). Default
            `"same"`.
        activation: activation of the cell gate and of the output (tanh).
        recurrent_activation: activation of the i, f, o gates (sigmoid).
        use_bias: bool. Default True.
        unit_forget_bias: bool, start the forget-gate bias at 1. Default
            True.
        kernel_initializer: initializer of `kernel`. Default
            `"glorot_uniform"`.
        recurrent_initializer: initializer of `recurrent_kernel`. Default
            `"orthogonal"`.
        bias_initializer: initializer of `bias`. Default `"zeros"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: the step's input gates `W_x * x_t + b` flattened to
            `(batch, H' * W' * 4 * filters)`, optionally with one more last
            column, the frame's mask (1 = use the frame, 0 = keep the
            previous h and c).
        states: `[h_{t-1}, c_{t-1}]`, maps `(batch, H', W', filters)`.
        training: unused (no dropout).

    Returns:
        `(h_t, [h_t, c_t])`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers.conv_lstm_cell import ConvLSTMCell
    >>> cell = ConvLSTMCell(4)
    >>> cell.build((None, 8, 8, 1))
    >>> gates = cell.input_gates(np.ones((2, 3, 8, 8, 1), "float32"))
    >>> tuple(gates.shape)
    (2, 3, 8, 8, 16)
    >>> h, states = cell(np.ones((2, 8 * 8 * 16), "float32"),
    ...                  cell.get_initial_state(batch_size=2))
    >>> tuple(h.shape), len(states)
    ((2, 8, 8, 4), 2)

    Reference:
        Shi et al., "Convolutional LSTM Network: A Machine Learning Approach
        for Precipitation Nowcasting", NeurIPS 2015, Eq. 3 (without the
        peephole terms, as `keras.layers.ConvLSTM2D`).
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = self.__class__.__name__
        self.filters = _positive_int(name, "filters", filters)
        self.kernel_size = _kernel_size(name, kernel_size)
        if padding not in _PADDINGS:
            raise ValueError(
                f"{name}: received an invalid value for argument `padding`, "
                f"expected one of {_PADDINGS}. Received: padding={padding!r}"
            )
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        # h and c; their shapes depend on the frames (see build).
        self.state_size = [-1, -1]
        self.output_size = -1

    def build(self, frame_shape):
        """`frame_shape`: one frame, `(batch, height, width, channels)`."""
        frame_shape = tuple(frame_shape)
        if len(frame_shape) != 4 or None in frame_shape[1:]:
            raise ValueError(
                f"{self.__class__.__name__}: expected a frame shape (batch, "
                "height, width, channels) with known sizes. Received: "
                f"frame_shape={frame_shape}"
            )
        self.frame_shape = frame_shape[1:]
        kh, kw = self.kernel_size
        height, width, channels = self.frame_shape
        if self.padding == "valid" and (height < kh or width < kw):
            raise ValueError(
                f"{self.__class__.__name__}: a frame of {height}x{width} is "
                f"smaller than the kernel {kh}x{kw} with padding='valid'. Use "
                "padding='same' or a smaller kernel."
            )
        gates = 4 * self.filters
        self.kernel = self.add_weight(
            shape=(kh, kw, channels, gates),
            name="kernel",
            initializer=self.kernel_initializer,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(kh, kw, self.filters, gates),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
        )
        if self.use_bias:
            if self.unit_forget_bias:
                base = self.bias_initializer

                def bias_initializer(shape, dtype=None):
                    n = self.filters
                    return ops.concatenate(
                        [
                            base((n,), dtype=dtype),
                            ops.ones((n,), dtype=dtype),
                            base((2 * n,), dtype=dtype),
                        ]
                    )

            else:
                bias_initializer = self.bias_initializer
            self.bias = self.add_weight(
                shape=(gates,), name="bias", initializer=bias_initializer
            )
        else:
            self.bias = None

    def state_shape(self, batch_size=None):
        """Shape of the hidden and cell maps: `(batch, H', W', filters)`."""
        height, width, _ = self.frame_shape
        if self.padding == "valid":
            height -= self.kernel_size[0] - 1
            width -= self.kernel_size[1] - 1
        return (batch_size, height, width, self.filters)

    def get_initial_state(self, batch_size=None):
        """`[h_0, c_0]`: zero maps."""
        zeros = ops.zeros(self.state_shape(batch_size), self.compute_dtype)
        return [zeros, ops.copy(zeros)]

    def input_gates(self, inputs):
        """`W_x * x_t + b` for all frames `(batch, frames, H, W, C)` at once.

        The frames are stacked along the batch axis for one convolution;
        the result is `(batch, frames, H', W', 4 * filters)`.
        """
        shape = ops.shape(inputs)
        batch, frames = shape[0], shape[1]
        height, width, channels = self.frame_shape
        x = ops.reshape(inputs, (-1, height, width, channels))
        z = ops.conv(x, self.kernel, padding=self.padding)
        if self.bias is not None:
            z = z + self.bias
        return ops.reshape(z, (batch, frames) + tuple(self.state_shape()[1:3]) + (-1,))

    def call(self, inputs, states, training=False):
        h_prev, c_prev = states
        _, height, width, filters = self.state_shape()
        step_mask = None
        if inputs.shape[-1] == height * width * 4 * filters + 1:
            # The last column is the frame mask (see ConvLSTM).
            inputs, step_mask = inputs[:, :-1], inputs[:, -1:]
        x_gates = ops.reshape(inputs, (-1, height, width, 4 * filters))
        z = x_gates + patch_matmul(h_prev, self.recurrent_kernel)  # Eq. 3
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        i = self.recurrent_activation(z_i)  # input gate
        f = self.recurrent_activation(z_f)  # forget gate
        g = self.activation(z_c)  # cell gate
        o = self.recurrent_activation(z_o)  # output gate
        c = f * c_prev + i * g  # cell update
        h = o * self.activation(c)  # hidden update
        if step_mask is not None:  # a masked frame keeps the previous state
            keep = step_mask[:, :, None, None] > 0.5
            h = ops.where(keep, h, h_prev)
            c = ops.where(keep, c, c_prev)
        return h, [h, c]

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "padding": self.padding,
            "activation": keras.activations.serialize(self.activation),
            "recurrent_activation": keras.activations.serialize(
                self.recurrent_activation
            ),
            "use_bias": self.use_bias,
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": keras.initializers.serialize(
                self.recurrent_initializer
            ),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
