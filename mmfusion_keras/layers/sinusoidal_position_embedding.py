import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class SinusoidalPositionEmbedding(keras.layers.Layer):
    """Fixed sinusoidal position embeddings `PE(T, d)` for a sequence.

    Returns the `(batch, time, d)` tensor of the Transformer's sinusoidal
    positions (Vaswani et al. 2017), for a model to add to its sequence as
    in MulT's `Z^[0] = X_hat + PE(T, d)` (Eq. 5). For position `t` and
    channel pair `i < d / 2`:

        PE[t, 2i]     = sin(t / max_wavelength^(2i / d))
        PE[t, 2i + 1] = cos(t / max_wavelength^(2i / d))

    (for odd `d` the last channel is a sine). Positions start at 0 and are
    the same for every sample; padded steps get embeddings too (they are
    masked later by the attention). This is a small stand-alone layer rather
    than keras-hub's `SinePositionEncoding` because importing keras-hub
    imports TensorFlow under every backend. It has no weights.

    Args:
        max_wavelength: the longest wavelength, a positive number.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: a `(batch, time, d)` float tensor (only its shape is used).

    Returns:
        `(batch, time, d)` position embeddings, in the layer's compute dtype.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import SinusoidalPositionEmbedding
    >>> x = np.zeros((2, 4, 6), "float32")
    >>> pe = np.asarray(SinusoidalPositionEmbedding()(x))
    >>> pe.shape, pe[0, 0].round(3).tolist()
    ((2, 4, 6), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0])

    Reference:
        Tsai et al., MulT, ACL 2019, section 3.2; Panchal, Hierarchical
        Delta-Attention Method for Multimodal Fusion, Eq. 5; Vaswani et al.,
        Attention Is All You Need, 2017, section 3.5.
    """

    def __init__(self, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        if (
            isinstance(max_wavelength, bool)
            or not isinstance(max_wavelength, (int, float))
            or max_wavelength <= 0
        ):
            raise ValueError(
                f"Layer {self.__class__.__name__}: received an invalid value "
                "for argument `max_wavelength`, expected a positive number. "
                f"Received: max_wavelength={max_wavelength!r}"
            )
        self.max_wavelength = float(max_wavelength)

    def _check(self, shape):
        shape = tuple(shape)
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(
                f"Layer {self.__class__.__name__} (name={self.name!r}) "
                "expects a sequence of shape (batch, time, features) with a "
                f"known feature width. Received shape {shape}."
            )

    def __call__(self, inputs, *args, **kwargs):
        if hasattr(inputs, "shape"):
            self._check(inputs.shape)
        return super().__call__(inputs, *args, **kwargs)

    def build(self, input_shape):
        self._check(input_shape)

    def call(self, inputs):
        shape = ops.shape(inputs)
        d = inputs.shape[-1]
        positions = ops.cast(ops.arange(shape[1]), "float32")  # t
        channels = ops.arange(d)
        pair = ops.cast(channels // 2, "float32")  # i
        inverse_frequency = ops.power(self.max_wavelength, -2.0 * pair / d)
        angles = positions[:, None] * inverse_frequency[None, :]
        is_even = (channels % 2) == 0
        pe = ops.where(is_even[None, :], ops.sin(angles), ops.cos(angles))  # Eq. 5
        pe = ops.broadcast_to(pe[None], (shape[0], shape[1], d))
        return ops.cast(pe, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}
