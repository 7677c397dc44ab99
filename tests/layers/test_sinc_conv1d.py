import keras
import numpy as np
import pytest
from keras import ops

from mmfusion_keras.layers import SincConv1D
from mmfusion_keras.testing import assert_raises_with_message
from mmfusion_keras.testing import run_layer_conformance


def reference_kernel(low, band, kernel_size, sample_rate, min_low_hz, min_band_hz):
    """NumPy SincNet kernel, (K, filters), from weights in cycles per sample.

    Band edges as SincNet's code: `f2` clamped at Nyquist (0.5 cycles per
    sample); `f1` kept at least `min_band` below it (our addition).
    """
    nyquist_hz = sample_rate / 2
    f1_hz = np.minimum(min_low_hz + np.abs(low) * sample_rate, nyquist_hz - min_band_hz)
    f2_hz = np.minimum(f1_hz + min_band_hz + np.abs(band) * sample_rate, nyquist_hz)
    f1, f2 = f1_hz / sample_rate, f2_hz / sample_rate
    half = (kernel_size - 1) // 2
    n = np.arange(-half, half + 1, dtype="float64")[:, None]
    # np.sinc(x) = sin(pi x) / (pi x), so sinc(2 pi f n) = np.sinc(2 f n).
    g = 2 * f2 * np.sinc(2 * f2 * n) - 2 * f1 * np.sinc(2 * f1 * n)
    window = np.hamming(kernel_size)[:, None]
    return g / g[half] * window


def reference_conv(x, kernel, stride=1):
    """Valid cross-correlation of (batch, time) with (K, filters)."""
    k = kernel.shape[0]
    steps = (x.shape[1] - k) // stride + 1
    out = np.zeros((x.shape[0], steps, kernel.shape[1]))
    for t in range(steps):
        out[:, t, :] = x[:, t * stride : t * stride + k] @ kernel
    return out


def _set_bands(layer, low, band):
    layer.low_cutoff.assign(np.asarray(low, "float32"))
    layer.bandwidth.assign(np.asarray(band, "float32"))


def test_kernel_and_output_match_numpy_reference():
    sr, k = 8000, 31
    layer = SincConv1D(
        filters=3, kernel_size=k, sample_rate=sr, min_low_hz=40, min_band_hz=60
    )
    layer.build((None, 200, 1))
    # Fixed weights, including a negative one (|.| is part of Eq. 5).
    low = np.array([0.01, -0.12, 0.3])
    band = np.array([0.02, 0.05, -0.07])
    _set_bands(layer, low, band)
    expected = reference_kernel(low, band, k, sr, 40, 60)
    kernel = ops.convert_to_numpy(layer.get_kernel())
    assert kernel.shape == (k, 1, 3)
    np.testing.assert_allclose(kernel[:, 0, :], expected, atol=2e-6)
    # The centre tap is the maximum and is 1 after normalisation.
    np.testing.assert_allclose(kernel[k // 2, 0, :], 1.0, atol=1e-6)
    assert np.all(np.abs(kernel) <= 1.0 + 1e-6)

    x = np.random.default_rng(0).standard_normal((2, 200)).astype("float32")
    y = ops.convert_to_numpy(layer(x[..., None]))
    np.testing.assert_allclose(y, reference_conv(x, expected), atol=1e-4)
    # (batch, time) inputs give the same result as (batch, time, 1).
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), y, atol=1e-6)


def test_stride_and_same_padding():
    x = np.random.default_rng(1).standard_normal((2, 100)).astype("float32")
    strided = SincConv1D(filters=2, kernel_size=11, stride=3)
    y = ops.convert_to_numpy(strided(x))
    kernel = ops.convert_to_numpy(strided.get_kernel())[:, 0, :]
    np.testing.assert_allclose(y, reference_conv(x, kernel, stride=3), atol=1e-4)
    assert strided.compute_output_shape((None, 100)) == (None, 30, 2)

    same = SincConv1D(filters=2, kernel_size=11, padding="same")
    y = ops.convert_to_numpy(same(x))
    padded = np.pad(x, ((0, 0), (5, 5)))
    kernel = ops.convert_to_numpy(same.get_kernel())[:, 0, :]
    np.testing.assert_allclose(y, reference_conv(padded, kernel), atol=1e-4)
    assert same.compute_output_shape((None, 100, 1)) == (None, 100, 2)


def test_initial_bands_are_mel_spaced_and_cover_the_spectrum():
    layer = SincConv1D(filters=8, kernel_size=31, sample_rate=16000)
    layer.build((None, 400))
    f1, f2 = layer.initial_band_edges()
    # Edges equally spaced on the mel scale from min_low_hz (50 Hz, mel 77.8)
    # to Nyquist; the first edge is 1 Hz higher (floor of the learnable part).
    edges = np.concatenate([[50.0], f1[1:], f2[-1:]])
    mel = 2595 * np.log10(1 + edges / 700)
    np.testing.assert_allclose(np.diff(mel), (mel[-1] - mel[0]) / 8, rtol=1e-6)
    assert f1[0] == pytest.approx(51.0)  # min_low_hz + the 1 Hz floor
    assert f2[-1] == pytest.approx(8000.0)
    np.testing.assert_allclose(f2[:-1], f1[1:], rtol=1e-9)
    low = ops.convert_to_numpy(layer.low_cutoff) * 16000 + 50
    np.testing.assert_allclose(low, f1, rtol=1e-5)


def test_passband_response():
    # A filter passes a sinusoid in its band and rejects one far outside.
    sr = 16000
    layer = SincConv1D(filters=1, kernel_size=251, sample_rate=sr)
    layer.build((None, 2000))
    _set_bands(layer, [(1000 - 50) / sr], [(500 - 50) / sr])  # 1000-1500 Hz
    t = np.arange(2000) / sr
    inside = np.sin(2 * np.pi * 1250 * t)[None].astype("float32")
    outside = np.sin(2 * np.pi * 4000 * t)[None].astype("float32")
    gain_in = np.abs(ops.convert_to_numpy(layer(inside))).max()
    gain_out = np.abs(ops.convert_to_numpy(layer(outside))).max()
    assert gain_out < 0.01 * gain_in


def test_upper_cutoff_is_clamped_at_nyquist():
    sr, k = 16000, 101
    layer = SincConv1D(filters=3, kernel_size=k, sample_rate=sr)
    layer.build((None, 400))
    # Bands ending at 11.3 kHz (past Nyquist), at 7.9 kHz (inside), and one
    # starting past Nyquist.
    low = np.array([3000 - 50, 3000 - 50, 9000 - 50]) / sr
    band = np.array([11300 - 3000 - 50, 7900 - 3000 - 50, 100]) / sr
    _set_bands(layer, low, band)
    kernel = ops.convert_to_numpy(layer.get_kernel())[:, 0, :]
    reference = reference_kernel(low, band, k, sr, 50, 50)
    np.testing.assert_allclose(kernel[:, :2], reference[:, :2], atol=2e-6)
    # A 50 Hz band: float32 phase errors divided by its small centre tap.
    np.testing.assert_allclose(kernel[:, 2], reference[:, 2], atol=5e-5)
    # The clamped band is exactly the 3000-8000 Hz filter.
    expected = reference_kernel(
        [(3000 - 50) / sr], [(8000 - 3000 - 50) / sr], k, sr, 50, 50
    )[:, 0]
    np.testing.assert_allclose(kernel[:, 0], expected, atol=2e-6)
    # Unclamped, the 11.3 kHz edge would give another kernel.
    f1, f2 = 3000 / sr, 11300 / sr
    n = np.arange(k) - k // 2
    unclamped = 2 * f2 * np.sinc(2 * f2 * n) - 2 * f1 * np.sinc(2 * f1 * n)
    unclamped = unclamped / unclamped[k // 2] * np.hamming(k)
    assert np.abs(kernel[:, 0] - unclamped).max() > 0.1
    # The band starting past Nyquist is the top 50 Hz, finite.
    np.testing.assert_allclose(
        kernel[:, 2],
        reference_kernel([(7950 - 50) / sr], [0.0], k, sr, 50, 50)[:, 0],
        atol=5e-5,
    )


def test_bands_learn():
    layer = SincConv1D(filters=2, kernel_size=31, name="sinc")
    inputs = keras.Input((400,))
    outputs = keras.layers.GlobalAveragePooling1D()(ops.abs(layer(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(1)(outputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    before = ops.convert_to_numpy(layer.low_cutoff).copy()
    x = np.random.default_rng(2).standard_normal((8, 400)).astype("float32")
    model.fit(x, np.ones((8, 1), "float32"), epochs=2, batch_size=4, verbose=0)
    assert np.all(ops.convert_to_numpy(layer.low_cutoff) != before)


def test_conformance():
    wave = np.zeros((2, 20), "float32")
    run_layer_conformance(
        SincConv1D,
        {"filters": 2, "kernel_size": 31, "sample_rate": 16000},
        (None, 400, 1),
        expected_output_shape=(None, 370, 2),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
        save_atol=1e-5,
        error_cases=[
            (
                "stereo input",
                lambda: SincConv1D(2, 31)(np.zeros((2, 400, 2), "float32")),
                r"SincConv1D.*mono waveform of shape \(batch, time, 1\) or "
                r"\(batch, time\). Received shape \(2, 400, 2\)",
            ),
            (
                "rank 4",
                lambda: SincConv1D(2, 31)(np.zeros((2, 4, 400, 1), "float32")),
                r"Received shape \(2, 4, 400, 1\)",
            ),
            (
                "too short",
                lambda: SincConv1D(2, 31)(wave),
                r"padding='valid' needs at least kernel_size=31 time steps.*"
                r"Received shape \(2, 20\)",
            ),
        ],
    )


def test_conformance_rank_2_input():
    run_layer_conformance(
        SincConv1D,
        {"filters": 3, "kernel_size": 15, "stride": 2, "padding": "same"},
        (None, 64),
        expected_output_shape=(None, 32, 3),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
        run_mixed_precision=False,
        save_atol=1e-5,
    )


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"kernel_size": 30}, r"`kernel_size`, expected an odd integer >= 3.*30"),
        ({"kernel_size": 1}, r"`kernel_size`.*Received: kernel_size=1"),
        ({"filters": 0}, r"`filters`, expected a positive integer.*filters=0"),
        ({"sample_rate": 0}, r"`sample_rate`.*sample_rate=0"),
        ({"min_low_hz": -1}, r"`min_low_hz`.*min_low_hz=-1"),
        ({"min_band_hz": 0}, r"`min_band_hz`, expected a positive.*min_band_hz=0"),
        (
            {"sample_rate": 100},
            r"below the Nyquist.*min_low_hz=50, min_band_hz=50, sample_rate=100",
        ),
        ({"stride": 0}, r"`stride`.*stride=0"),
        ({"padding": "causal"}, r"`padding`.*\('valid', 'same'\).*'causal'"),
    ],
)
def test_invalid_arguments(kwargs, pattern):
    args = {"filters": 2, "kernel_size": 31, **kwargs}
    assert_raises_with_message(lambda: SincConv1D(**args), pattern)
