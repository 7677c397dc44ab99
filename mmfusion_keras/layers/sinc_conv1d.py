import math

import keras
import numpy as np
from keras import ops

_PADDINGS = ("valid", "same")


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype="float64") / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype="float64") / 2595.0) - 1.0)


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@keras.saving.register_keras_serializable(package="mmfusion_keras")
class SincConv1D(keras.layers.Layer):
    """SincNet's band-pass convolution on raw waveforms, with learnable bands.

    Each of the `filters` output channels is a band-pass filter whose only
    parameters are a low cut-off and a bandwidth. The kernel of a filter is
    the difference of two ideal low-pass filters (two sinc functions),
    truncated to `kernel_size` taps, smoothed by a Hamming window and
    normalised:

        f1 = min_low + |low|,   f2 = f1 + min_band + |band|         (Eq. 5)
        f2 <- min(f2, fs / 2)              (SincNet's code, see below)
        g[n] = 2 f2 sinc(2 pi f2 n) - 2 f1 sinc(2 pi f1 n)          (Eq. 4)
        h[n] = g[n] / (2 (f2 - f1)) * w[n]                          (Eq. 6)
        w[n] = 0.54 - 0.46 cos(2 pi (n + (K-1)/2) / (K-1))          (Eq. 7)
        y = x * h                                   (convolution, Eq. 2)

    with `sinc(x) = sin(x) / x`, `n = -(K-1)/2 ... (K-1)/2` (`K` =
    `kernel_size`), frequencies in cycles per sample (Hz divided by
    `sample_rate`) and `w` the symmetric Hamming window (equation numbers
    of Ravanelli and Bengio 2018). The kernel is rebuilt from the two
    weights on every call, so the band edges are learned by backprop.

    Choices where the paper leaves room:

    - The weights `low_cutoff` and `bandwidth` (each of shape `(filters,)`)
      are stored in cycles per sample, not in Hz, so that an optimizer's
      usual learning rates move the bands by a useful amount (1e-3 of the
      sample rate is 16 Hz at 16 kHz).
    - Initialisation: the filters tile `[min_low_hz, sample_rate / 2]` with
      band edges equally spaced on the mel scale, as in the paper. The
      learnable parts are floored at 1 Hz so that no weight starts at the
      kink of `|.|`, whose gradient at 0 is 0 on some backends.
    - Normalisation divides by the centre tap `2 (f2 - f1)`, which is the
      largest tap of `g`, so it equals the paper's division by the maximum
      without a `max` in the graph. `min_band_hz` must therefore be
      positive.
    - The upper cut-off is clamped at the Nyquist frequency `fs / 2`, as
      the SincNet reference code does (`high = clamp(low + min_band +
      |band|, min_low, fs / 2)`; the paper's Eq. 5 does not clamp): a band
      cannot reach past what the sampled signal holds (unclamped, a band
      ending at 11.3 kHz at 16 kHz would alias). Where the reference lets
      `f1` pass `fs / 2 - min_band` (the band then empties or flips sign
      and its normalisation divides by zero or a negative width), `f1` is
      also capped at `fs / 2 - min_band`, so every band keeps at least
      `min_band_hz`. Neither cap changes a band inside `[0, fs / 2]`; a
      clamped edge gets no gradient, as in the reference.
    - The kernel is computed in float32 even under a mixed-precision policy
      (the phases `2 pi f n` need more than float16's precision) and cast
      to the compute dtype before the convolution.

    Args:
        filters: int, the number of band-pass filters (output channels).
        kernel_size: odd int >= 3, the number of taps `K`.
        sample_rate: sampling rate of the input in Hz. Default 16000.
        min_low_hz: smallest low cut-off in Hz. Default 50.
        min_band_hz: smallest bandwidth in Hz, positive. Default 50.
        stride: int, the convolution stride. Default 1.
        padding: `"valid"` or `"same"`. Default "valid".
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: waveform of shape `(batch, time, 1)` or `(batch, time)`.

    Returns:
        A tensor of shape `(batch, new_time, filters)`, with `new_time =
        floor((time - K) / stride) + 1` for `"valid"` padding and
        `ceil(time / stride)` for `"same"`.

    Example:

    >>> import numpy as np
    >>> from mmfusion_keras.layers import SincConv1D
    >>> layer = SincConv1D(filters=4, kernel_size=31)
    >>> y = layer(np.zeros((2, 400), "float32"))
    >>> tuple(y.shape)
    (2, 370, 4)
    >>> tuple(layer.get_kernel().shape)
    (31, 1, 4)

    Reference:
        Ravanelli and Bengio, "Speaker Recognition from Raw Waveform with
        SincNet", IEEE SLT 2018, section 2 (Eq. 2-7); used as the audio
        front end in Priyasad et al., "Memory Based Fusion for Multi-modal
        Deep Learning", Information Fusion 2021, section 4.1.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        sample_rate=16000,
        min_low_hz=50,
        min_band_hz=50,
        stride=1,
        padding="valid",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not _positive_int(filters):
            raise ValueError(
                "Received an invalid value for argument `filters`, expected a "
                f"positive integer. Received: filters={filters!r}"
            )
        if not _positive_int(kernel_size) or kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(
                "Received an invalid value for argument `kernel_size`, expected "
                "an odd integer >= 3 (the band-pass kernel is symmetric around "
                f"its centre tap). Received: kernel_size={kernel_size!r}"
            )
        if not isinstance(sample_rate, (int, float)) or sample_rate <= 0:
            raise ValueError(
                "Received an invalid value for argument `sample_rate`, expected "
                f"a positive number (Hz). Received: sample_rate={sample_rate!r}"
            )
        if not isinstance(min_low_hz, (int, float)) or min_low_hz < 0:
            raise ValueError(
                "Received an invalid value for argument `min_low_hz`, expected "
                f"a non-negative number (Hz). Received: min_low_hz={min_low_hz!r}"
            )
        if not isinstance(min_band_hz, (int, float)) or min_band_hz <= 0:
            raise ValueError(
                "Received an invalid value for argument `min_band_hz`, expected "
                "a positive number (Hz), which keeps the kernel normalisation "
                f"finite. Received: min_band_hz={min_band_hz!r}"
            )
        if min_low_hz + min_band_hz >= sample_rate / 2:
            raise ValueError(
                "Received incompatible values: `min_low_hz + min_band_hz` must "
                "be below the Nyquist frequency `sample_rate / 2`. Received: "
                f"min_low_hz={min_low_hz}, min_band_hz={min_band_hz}, "
                f"sample_rate={sample_rate}"
            )
        if not _positive_int(stride):
            raise ValueError(
                "Received an invalid value for argument `stride`, expected a "
                f"positive integer. Received: stride={stride!r}"
            )
        if padding not in _PADDINGS:
            raise ValueError(
                "Received an invalid value for argument `padding`, expected one "
                f"of {_PADDINGS}. Received: padding={padding!r}"
            )
        self.filters = filters
        self.kernel_size = kernel_size
        self.sample_rate = sample_rate
        self.min_low_hz = min_low_hz
        self.min_band_hz = min_band_hz
        self.stride = stride
        self.padding = padding

    def _describe(self):
        return f"Layer {self.__class__.__name__} (name={self.name!r})"

    def _check_shape(self, input_shape):
        shape = tuple(None if d is None else int(d) for d in input_shape)
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[-1] != 1):
            raise ValueError(
                f"{self._describe()} expects a mono waveform of shape "
                f"(batch, time, 1) or (batch, time). Received shape {shape}."
            )
        time = shape[1]
        if self.padding == "valid" and time is not None and time < self.kernel_size:
            raise ValueError(
                f"{self._describe()} with padding='valid' needs at least "
                f"kernel_size={self.kernel_size} time steps. Received shape "
                f"{shape}. Use longer inputs, a smaller `kernel_size` or "
                "padding='same'."
            )
        return shape

    def initial_band_edges(self):
        """Initial `(f1, f2)` in Hz, each of shape `(filters,)` (mel spaced)."""
        edges = _mel_to_hz(
            np.linspace(
                _hz_to_mel(self.min_low_hz),
                _hz_to_mel(self.sample_rate / 2),
                self.filters + 1,
            )
        )
        f1 = self.min_low_hz + np.maximum(edges[:-1] - self.min_low_hz, 1.0)
        band = np.maximum(edges[1:] - f1 - self.min_band_hz, 1.0)
        return f1, f1 + self.min_band_hz + band

    def build(self, input_shape):
        self._check_shape(input_shape)
        f1, f2 = self.initial_band_edges()
        # Stored in cycles per sample; autocast=False keeps them float32 under
        # mixed precision (the kernel is computed in float32, see docstring).
        self.low_cutoff = self.add_weight(
            shape=(self.filters,),
            name="low_cutoff",
            initializer="zeros",
            autocast=False,
        )
        self.bandwidth = self.add_weight(
            shape=(self.filters,),
            name="bandwidth",
            initializer="zeros",
            autocast=False,
        )
        self.low_cutoff.assign((f1 - self.min_low_hz) / self.sample_rate)
        self.bandwidth.assign((f2 - f1 - self.min_band_hz) / self.sample_rate)

    def get_kernel(self):
        """The current `(kernel_size, 1, filters)` float32 kernel `h`."""
        half = (self.kernel_size - 1) // 2
        n = ops.cast(ops.arange(-half, half + 1), "float32")[:, None]  # (K, 1)
        min_low = self.min_low_hz / self.sample_rate
        min_band = self.min_band_hz / self.sample_rate
        low = ops.cast(self.low_cutoff, "float32")
        band = ops.cast(self.bandwidth, "float32")
        # Eq. 5, with the Nyquist clamp of SincNet's code (f1 capped so the
        # band keeps at least min_band; see the class docstring).
        f1 = ops.minimum(min_low + ops.abs(low), 0.5 - min_band)
        f2 = ops.minimum(f1 + min_band + ops.abs(band), 0.5)
        # Eq. 4: 2 f sinc(2 pi f n) = sin(2 pi f n) / (pi n), and 2 f at n = 0.
        is_centre = ops.equal(n, 0.0)
        safe_n = ops.where(is_centre, ops.ones_like(n), n)
        g = (
            ops.sin(2.0 * math.pi * f2 * safe_n) - ops.sin(2.0 * math.pi * f1 * safe_n)
        ) / (math.pi * safe_n)
        g = ops.where(is_centre, 2.0 * (f2 - f1), g)  # (K, filters)
        window = 0.54 - 0.46 * ops.cos(
            2.0 * math.pi * (n + half) / (self.kernel_size - 1)
        )  # Eq. 7 (Hamming)
        h = g / (2.0 * (f2 - f1)) * window  # Eq. 6, normalised by the centre tap
        return h[:, None, :]

    def call(self, inputs):
        self._check_shape(inputs.shape)
        if len(inputs.shape) == 2:
            inputs = ops.expand_dims(inputs, axis=-1)
        kernel = ops.cast(self.get_kernel(), self.compute_dtype)
        return ops.conv(  # Eq. 2
            inputs, kernel, strides=self.stride, padding=self.padding
        )

    def compute_output_shape(self, input_shape):
        shape = self._check_shape(input_shape)
        time = shape[1]
        if time is not None:
            if self.padding == "valid":
                time = (time - self.kernel_size) // self.stride + 1
            else:
                time = -(-time // self.stride)
        return (shape[0], time, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "sample_rate": self.sample_rate,
            "min_low_hz": self.min_low_hz,
            "min_band_hz": self.min_band_hz,
            "stride": self.stride,
            "padding": self.padding,
        }
