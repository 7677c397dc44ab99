"""The cell of the multimodal convolutional LSTM (Barnum et al., 2020)."""

import keras
from keras import ops

_PADDINGS = ("same", "valid")
_GATES = "i, f, c, o"


def _positive_int(layer, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{layer}: received an invalid value for argument `{name}`, expected "
            f"a positive integer. Received: {name}={value!r}"
        )
    return value


def _kernel_size(layer, value):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or min(value) < 1
    ):
        raise ValueError(
            f"{layer}: received an invalid value for argument `kernel_size`, "
            "expected a positive integer or a pair of positive integers. "
            f"Received: kernel_size={value!r}"
        )
    return tuple(value)


def patch_matmul(h, kernel):
    """A "same"-padded, stride-1 convolution of `h` written as one matmul.

    The `kh x kw` patches of `h` `(batch, H, W, C)` are laid side by side
    along the channels (`(batch, H, W, kh * kw * C)`, in the kernel's (row,
    column, channel) order) and multiplied by `kernel` `(kh, kw, C, O)`
    reshaped to `(kh * kw * C, O)`: the same sums as
    `ops.conv(h, kernel, padding="same")`. Used for the hidden-state term
    inside the recurrences: XLA on CPU differentiates a convolution inside a
    loop (the kernel gradient) about 50x slower than outside one, while the
    matmul form trains at the same speed on all backends.
    """
    kh, kw, channels, _ = kernel.shape
    if (kh, kw) != (1, 1):
        top, left = (kh - 1) // 2, (kw - 1) // 2
        padded = ops.pad(
            h, [(0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)]
        )
        height, width = h.shape[1], h.shape[2]
        h = ops.concatenate(
            [
                padded[:, r : r + height, s : s + width, :]
                for r in range(kh)
                for s in range(kw)
            ],
            axis=-1,
        )
    return ops.matmul(h, ops.reshape(kernel, (kh * kw * channels, -1)))


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class MultimodalConvLSTMCell(keras.layers.Layer):
    """One step of the multimodal convolutional LSTM (image + audio frame).

    At every spatial position the four LSTM gates are computed from the
    image patch under the convolution kernel (`v`), the patch of the
    previous hidden map (`h_{t-1}`) and the audio frame of the current time
    step (`a_t`, a vector projected to the gates and broadcast over space):

        z_t = W_v * v + W_h * h_{t-1} + W_a a_t + b         (Fig. 5)
        i, f, g, o = sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)
        c_t = f . c_{t-1} + i . g                            (Fig. 5)
        h_t = o . tanh(c_t)                                  (Fig. 5)

    `*` is a 2-D convolution, `.` the element-wise product. The image `v` is
    the same at every step; time runs over the audio frames. With
    `a_t = 0` the cell is exactly `keras.layers.ConvLSTM2D`'s cell fed the
    image at every step (same gate order i, f, c, o and weight layout in
    `image_kernel`, `recurrent_kernel`, `bias`).

    The cell follows Keras's RNN cell protocol. Since the image is the same
    at every step, its share of the gates, `x_v = W_v * v + b`, is computed
    once (`get_initial_state(image)`) and carried unchanged as a third
    state: `call(a_t, [h, c, x_v])` returns `(h_t, [h_t, c_t, x_v])`.
    Gradients reach `image_kernel` and `bias` through that state. Use the
    cell through `MultimodalConvLSTM`, which builds it and supplies the
    initial state; the layer also computes the audio term `W_a a_t` for all
    frames in one matmul before the loop, so that only the hidden-state
    convolution (done as one matmul over the stacked patches, see
    `recurrent_gates`) runs inside the recurrence.

    The paper's Figure 5 gives one weight matrix per gate and input; here
    the four gates of one input share one kernel (`4 * filters` output
    channels), which is the same function. The audio term is a Dense
    projection of the whole frame (no convolution over frequency): the
    paper feeds "the spectrogram value of the audio input at a given time
    step" to every convolution point, and the issue asks for a projection
    broadcast over space.

    Args:
        filters: int, number of hidden/cell channels (the paper's "units").
        kernel_size: int or pair, size of the image and recurrent
            convolutions. Default 3.
        padding: `"same"` or `"valid"`, padding of the image convolution
            (the recurrent convolution always uses `"same"`). Default
            `"same"`.
        activation: activation of the cell gate and of the output (tanh).
        recurrent_activation: activation of the i, f, o gates (sigmoid).
        use_bias: bool. Default True.
        unit_forget_bias: bool, start the forget-gate bias at 1 (as Keras's
            LSTMs do). Default True.
        kernel_initializer: initializer of `image_kernel` and
            `audio_kernel`. Default `"glorot_uniform"`.
        recurrent_initializer: initializer of `recurrent_kernel`. Default
            `"orthogonal"`.
        bias_initializer: initializer of `bias`. Default `"zeros"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: the audio frame `a_t`, `(batch, audio_features)`, or
            `(batch, audio_features + 1)` whose last column is the frame's
            mask (1 = use the frame, 0 = keep the previous h and c).
        states: `[h_{t-1}, c_{t-1}, x_v]`, maps `(batch, H', W', filters)`
            and the image gates `x_v` `(batch, H', W', 4 * filters)` from
            `get_initial_state(image)`.
        training: unused (no dropout).

    Returns:
        `(h_t, [h_t, c_t, x_v])`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers.multimodal_conv_lstm_cell import (
    ...     MultimodalConvLSTMCell)
    >>> cell = MultimodalConvLSTMCell(4)
    >>> cell.build((None, 8, 8, 1), (None, 5))
    >>> image = np.ones((2, 8, 8, 1), "float32")
    >>> h, states = cell(np.ones((2, 5), "float32"), cell.get_initial_state(image))
    >>> tuple(h.shape), len(states)
    ((2, 8, 8, 4), 3)

    Reference:
        Barnum, Talukder, Yue, "On the Benefits of Early Fusion in
        Multimodal Representation Learning", NeurIPS 2020 SVRHM workshop,
        Appendix A.1 and Figure 5 ("Initial LSTM Gate Values").
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
        # h, c and the image; their shapes depend on the image (see build).
        self.state_size = [-1, -1, -1]
        self.output_size = -1
        # Set by MultimodalConvLSTM, which computes `W_a a_t` for all frames
        # before the loop and feeds the cell those gates instead of a_t.
        self._inputs_are_gates = False

    def build(self, image_shape, audio_shape):
        image_shape = tuple(image_shape)
        audio_shape = tuple(audio_shape)
        if len(image_shape) != 4 or None in image_shape[1:]:
            raise ValueError(
                f"{self.__class__.__name__}: expected an image shape (batch, "
                f"height, width, channels) with known sizes. Received: "
                f"image_shape={image_shape}"
            )
        if len(audio_shape) != 2 or audio_shape[-1] is None:
            raise ValueError(
                f"{self.__class__.__name__}: expected an audio frame shape "
                f"(batch, features) with a known width. Received: "
                f"audio_shape={audio_shape}"
            )
        self.image_shape = image_shape[1:]
        self.audio_features = audio_shape[-1]
        kh, kw = self.kernel_size
        height, width, channels = self.image_shape
        if self.padding == "valid" and (height < kh or width < kw):
            raise ValueError(
                f"{self.__class__.__name__}: an image of {height}x{width} is "
                f"smaller than the kernel {kh}x{kw} with padding='valid'. Use "
                "padding='same' or a smaller kernel."
            )
        gates = 4 * self.filters
        self.image_kernel = self.add_weight(
            shape=(kh, kw, channels, gates),
            name="image_kernel",
            initializer=self.kernel_initializer,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(kh, kw, self.filters, gates),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
        )
        self.audio_kernel = self.add_weight(
            shape=(self.audio_features, gates),
            name="audio_kernel",
            initializer=self.kernel_initializer,
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
        height, width, _ = self.image_shape
        if self.padding == "valid":
            height -= self.kernel_size[0] - 1
            width -= self.kernel_size[1] - 1
        return (batch_size, height, width, self.filters)

    def get_initial_state(self, image=None, batch_size=None):
        """`[h_0, c_0, x_v]`: zero maps (as in the paper) and the image gates."""
        if image is None:
            raise ValueError(
                f"{self.__class__.__name__}.get_initial_state needs the image: "
                "the cell carries it as its third state. Call it as "
                "`cell.get_initial_state(image)` (or use MultimodalConvLSTM)."
            )
        image = ops.cast(image, self.compute_dtype)
        zeros = ops.zeros(self.state_shape(ops.shape(image)[0]), self.compute_dtype)
        return [zeros, ops.copy(zeros), self.image_gates(image)]

    def image_gates(self, image):
        """`W_v * v + b`, the image's (time-constant) share of the gates."""
        z = ops.conv(image, self.image_kernel, padding=self.padding)
        if self.bias is not None:
            z = z + self.bias
        return z

    def audio_gates(self, audio):
        """`W_a a`, the audio's share of the gates, for one or all frames.

        `audio` is `(batch, features)` or `(batch, frames, features)`; the
        result has `4 * filters` channels in place of the features.
        """
        return ops.matmul(audio, self.audio_kernel)

    def recurrent_gates(self, h):
        """`W_h * h`, the "same"-padded recurrent convolution, as one matmul.

        See `patch_matmul`: XLA on CPU differentiates a convolution inside a
        loop (the kernel gradient) about 50x slower than outside one; the
        matmul form trains at the same speed on all backends.
        """
        return patch_matmul(h, self.recurrent_kernel)

    def call(self, inputs, states, training=False):
        h_prev, c_prev, image_gates = states
        step_mask = None
        width = self.audio_features + 1
        if self._inputs_are_gates:
            width = 4 * self.filters + 1
        if inputs.shape[-1] == width:
            # The last column is the frame mask (see MultimodalConvLSTM).
            inputs, step_mask = inputs[:, :-1], inputs[:, -1:]
        if self._inputs_are_gates:  # W_a a_t precomputed for all frames
            audio_gates = inputs
        else:
            audio_gates = self.audio_gates(inputs)
        z = (
            image_gates  # W_v * v + b, constant over time (Fig. 5)
            + self.recurrent_gates(h_prev)  # W_h * h_{t-1} (Fig. 5)
            + audio_gates[:, None, None, :]  # W_a a_t (Fig. 5)
        )
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        i = self.recurrent_activation(z_i)  # input gate (Fig. 5)
        f = self.recurrent_activation(z_f)  # forget gate (Fig. 5)
        g = self.activation(z_c)  # cell gate (Fig. 5)
        o = self.recurrent_activation(z_o)  # output gate (Fig. 5)
        c = f * c_prev + i * g  # cell update (Fig. 5)
        h = o * self.activation(c)  # hidden update (Fig. 5)
        if step_mask is not None:  # a masked frame keeps the previous state
            keep = step_mask[:, :, None, None] > 0.5
            h = ops.where(keep, h, h_prev)
            c = ops.where(keep, c, c_prev)
        return h, [h, c, image_gates]

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
