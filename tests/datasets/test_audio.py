import io

import numpy as np
import pytest
import soundfile as sf

from mmfusion_keras.datasets.audio import load_audio
from mmfusion_keras.datasets.audio import resample
from mmfusion_keras.testing.conformance import assert_raises_with_message


def _tone(freq, rate, seconds, channels=1, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    wave = amplitude * np.sin(2 * np.pi * freq * t)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def _peak_hz(wave, rate):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.argmax(spectrum) * rate / len(wave)


@pytest.mark.parametrize(
    "fmt, subtype",
    [
        ("WAV", "PCM_16"),
        ("WAV", "PCM_24"),
        ("WAV", "PCM_32"),
        ("WAV", "PCM_U8"),
        ("WAV", "FLOAT"),
        ("WAV", "DOUBLE"),
        ("FLAC", "PCM_16"),
        ("OGG", "VORBIS"),
        ("OGG", "OPUS"),
        ("MP3", "MPEG_LAYER_III"),
    ],
)
def test_formats_decode_to_16k_mono(tmp_path, fmt, subtype):
    rate = 48000 if subtype == "OPUS" else 44100
    stereo = _tone(440, rate, 0.5, channels=2)
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, stereo, rate, format=fmt, subtype=subtype)
    wave, info = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    # Codecs may add priming samples; the length stays near 0.5 s at 16 kHz.
    assert abs(len(wave) - 8000) < 1200
    assert info.sample_rate == 16000 and info.source_sample_rate == rate
    assert info.source_channels == 2 and info.source_format.startswith(fmt)
    assert not info.cropped and not info.padded
    assert abs(_peak_hz(wave, 16000) - 440) < 8
    assert 0.3 < np.max(np.abs(wave)) < 0.75


def test_mixdown_resample_and_values():
    # Left = tone, right = silence: the mono mix is half the tone.
    rate = 22050
    left = _tone(1000, rate, 1.0, amplitude=0.8)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, stereo, rate, format="WAV", subtype="FLOAT")
    wave, info = load_audio(buf.getvalue(), sample_rate=16000)
    assert len(wave) == int(np.ceil(rate * 16000 / rate))  # ceil(n * up / down)
    assert abs(_peak_hz(wave, 16000) - 1000) < 2
    np.testing.assert_allclose(np.abs(wave[2000:14000]).max(), 0.4, atol=0.01)
    assert info.name == "<bytes>"
    # Same rate: no resampling, exact samples.
    buf = io.BytesIO()
    sf.write(buf, stereo, rate, format="WAV", subtype="FLOAT")
    same, _ = load_audio(io.BytesIO(buf.getvalue()), sample_rate=rate)
    np.testing.assert_allclose(same, stereo.mean(axis=1), atol=1e-7)


def test_resample_ratio_and_length():
    x = _tone(300, 44100, 0.3).astype("float32")
    y = resample(x, 44100, 16000)
    assert y.dtype == np.float32 and len(y) == int(np.ceil(len(x) * 160 / 441))
    assert abs(_peak_hz(y, 16000) - 300) < 5
    assert_raises_with_message(
        lambda: resample(x, 0, 16000), r"positive integer sample rates.*source_rate=0"
    )


def test_crop_and_pad(tmp_path):
    path = tmp_path / "ramp.wav"
    ramp = np.linspace(-0.5, 0.5, 16000)
    sf.write(path, ramp, 16000, subtype="FLOAT")
    wave, info = load_audio(str(path), max_samples=4000)
    assert wave.shape == (4000,) and info.cropped and not info.padded
    assert info.num_samples == 4000
    np.testing.assert_allclose(wave, ramp[:4000], atol=1e-6)
    center, info = load_audio(path, max_samples=4000, crop="center")
    np.testing.assert_allclose(center, ramp[6000:10000], atol=1e-6)
    padded, info = load_audio(path, max_samples=20000)
    assert padded.shape == (20000,) and info.padded and not info.cropped
    assert info.num_samples == 16000 and np.all(padded[16000:] == 0)
    unpadded, info = load_audio(path, max_samples=20000, pad=False)
    assert unpadded.shape == (16000,) and not info.padded


@pytest.mark.parametrize("rate,channels", [(44100, 2), (16000, 1), (22050, 1)])
@pytest.mark.parametrize("crop", ["start", "center"])
def test_long_clips_are_cropped_while_decoding(
    tmp_path, monkeypatch, rate, channels, crop
):
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    clip = 0.3 * rng.standard_normal((rate * 6 + 7, channels))
    sf.write(path, clip, rate, subtype="FLOAT")
    # What cropping after decoding the whole clip gives.
    whole = resample(clip.astype("float32").mean(axis=1), rate, 16000)
    start = 0 if crop == "start" else (len(whole) - 8000) // 2
    read = []
    real_read = sf.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        out = real_read(self, frames, *args, **kwargs)
        read.append(len(out))
        return out

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    wave, info = load_audio(path, max_samples=8000, crop=crop)
    np.testing.assert_allclose(wave, whole[start : start + 8000], atol=1e-6)
    assert info.cropped and info.num_samples == 8000
    assert info.duration_seconds == pytest.approx(6 + 7 / rate)
    # Half a second of 6 s was decoded (plus the resampling filter's reach).
    assert sum(read) < 0.6 * rate, read
    read.clear()
    from_bytes, _ = load_audio(path.read_bytes(), max_samples=8000, crop=crop)
    np.testing.assert_array_equal(from_bytes, wave)
    assert sum(read) < 0.6 * rate


def test_file_like_with_name():
    buf = io.BytesIO()
    sf.write(buf, np.zeros(1600), 16000, format="FLAC")
    buf.name = "upload.flac"
    buf.seek(100)  # a consumed stream is rewound
    wave, info = load_audio(buf)
    assert wave.shape == (1600,) and info.name == "upload.flac"


def test_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.wav"
    assert_raises_with_message(
        lambda: load_audio(missing), r"not found: '.*nope\.wav'", FileNotFoundError
    )

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert_raises_with_message(lambda: load_audio(empty), r"'.*empty\.wav' is empty")

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage garbage garbage")
    assert_raises_with_message(
        lambda: load_audio(corrupt),
        r"Cannot decode audio file '.*corrupt\.wav'.*corrupt",
    )

    junk = b"this is plainly not audio at all " * 10
    assert_raises_with_message(
        lambda: load_audio(junk, name="clip.ogg"),
        r"Cannot decode audio file 'clip\.ogg'",
    )

    # An MP4/M4A container header (soundfile cannot read AAC).
    m4a = tmp_path / "voice.m4a"
    m4a.write_bytes(
        b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A mp42isom" + b"\x00" * 64
    )
    assert_raises_with_message(
        lambda: load_audio(m4a), r"'.*voice\.m4a' is in an unsupported format: M4A"
    )
    assert_raises_with_message(
        lambda: load_audio(b"\xff\xf1\x50\x80" + b"\x00" * 100, name="x.bin"),
        r"'x\.bin' is in an unsupported format: AAC",
    )

    no_samples = io.BytesIO()
    sf.write(no_samples, np.zeros((0,)), 16000, format="WAV")
    assert_raises_with_message(
        lambda: load_audio(no_samples.getvalue(), name="silent.wav"),
        r"'silent\.wav' contains no samples",
    )

    nan_path = tmp_path / "nan.wav"
    bad = np.zeros(100)
    bad[[3, 50]] = [np.nan, np.inf]
    sf.write(nan_path, bad, 16000, subtype="FLOAT")
    assert_raises_with_message(
        lambda: load_audio(nan_path), r"'.*nan\.wav' contains 2 non-finite"
    )

    assert_raises_with_message(
        lambda: load_audio(tmp_path), r"Received a directory: '.*'"
    )
    assert_raises_with_message(
        lambda: load_audio(12), r"file path, bytes or a binary file-like.*Received: int"
    )
    assert_raises_with_message(
        lambda: load_audio(b"x", max_samples=0),
        r"positive integer or None.*max_samples=0",
    )
    assert_raises_with_message(
        lambda: load_audio(b"x", crop="end"), r"'start' or 'center'.*crop='end'"
    )
