"""Audio front end: decode, mix down, resample, crop or pad to a fixed length.

Decoding uses `soundfile` (libsndfile): WAV in any sample format, FLAC,
OGG Vorbis, OGG Opus, MP3, AIFF. M4A / AAC / MP4 audio cannot be read by
libsndfile: convert such files first (e.g. `ffmpeg -i in.m4a out.wav`).
Resampling uses `scipy.signal.resample_poly` with the reduced rational
ratio `target_rate / source_rate` (polyphase filter with a Kaiser window).
"""

import dataclasses
import io
import math
import os

import numpy as np

_UNSUPPORTED_EXTENSIONS = {
    ".m4a": "M4A (AAC)",
    ".aac": "AAC",
    ".mp4": "MP4",
    ".m4b": "M4B (AAC)",
    ".wma": "WMA",
    ".amr": "AMR",
    ".webm": "WebM",
}


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What `load_audio` did to one clip.

    Attributes:
        name: the file name (or `"<bytes>"`) used in messages.
        sample_rate: sample rate of the returned waveform (Hz).
        num_samples: number of real samples in the returned waveform (the
            rest, if `padded`, is zeros).
        cropped: whether samples past `max_samples` were cut off.
        padded: whether zeros were appended to reach `max_samples`.
        source_sample_rate: sample rate of the file.
        source_channels: channel count of the file (mixed down to mono).
        source_format: libsndfile's format and subtype, e.g. `"WAV/PCM_16"`.
        duration_seconds: duration of the decoded file, before crop or pad.
    """

    name: str
    sample_rate: int
    num_samples: int
    cropped: bool
    padded: bool
    source_sample_rate: int
    source_channels: int
    source_format: str
    duration_seconds: float


def _sniff_container(head):
    """Names the container from the first bytes, or returns None."""
    if head[4:8] == b"ftyp":
        return "M4A/MP4 (AAC)"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0:
        return "AAC (ADTS)"  # sync word, MPEG layer bits 00 = AAC
    if head[:4] == b"0&\xb2u":
        return "WMA/ASF"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "WebM/Matroska"
    if head[:6] == b"#!AMR\n":
        return "AMR"
    return None


def _source_name(source, name):
    if name is not None:
        return str(name)
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(getattr(source, "name", "<file-like object>"))


def _check_path(source, label):
    path = os.fspath(source)
    if os.path.isdir(path):
        raise ValueError(
            f"load_audio expected an audio file. Received a directory: '{label}'"
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"Audio file not found: '{label}'")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ValueError(f"Cannot read audio file '{label}': {e}") from e


def _read_bytes(source, label):
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        _check_path(source, label)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError(f"Cannot read audio file '{label}': {e}") from e
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            try:
                source.seek(0)
            except (OSError, ValueError):
                pass
        data = source.read()
        if isinstance(data, str):
            raise ValueError(
                f"load_audio expected a binary file object for '{label}'. "
                "Received a text-mode file; open it with mode 'rb'."
            )
        return bytes(data)
    raise ValueError(
        "load_audio expected a file path, bytes or a binary file-like object. "
        f"Received: {type(source).__name__}"
    )


def _crop_window(total, source_rate, target_rate, max_samples, crop):
    """Which source frames to decode so that cropping after resampling is exact.

    Returns `(first_frame, last_frame, start, offset)`: decode frames
    `[first_frame, last_frame)`, resample them, and the wanted output
    samples `[start, start + max_samples)` of the whole resampled clip are
    `segment[start - offset : start - offset + max_samples]`. The window
    adds the resampling filter's reach on both sides and begins on a
    multiple of the rate ratio's denominator, so the kept samples equal
    those of resampling the whole clip (up to float rounding). Returns
    `None` when the clip is not longer than `max_samples` after resampling.
    """
    g = math.gcd(int(source_rate), int(target_rate))
    up, down = int(target_rate) // g, int(source_rate) // g
    out_length = -(-total * up // down)
    if max_samples is None or out_length <= max_samples:
        return None
    start = 0 if crop == "start" else (out_length - max_samples) // 2
    # resample_poly's filter has 10 * max(up, down) taps on each side at the
    # upsampled rate, i.e. this many source frames.
    reach = 0 if up == down == 1 else -(-10 * max(up, down) // up) + 2
    first = max(0, (start * down // up - reach) // down * down)
    last = min(total, -(-(start + max_samples) * down // up) + reach)
    return first, last, start, first * up // down


def _fix_length(waveform, max_samples, pad, crop):
    n = len(waveform)
    cropped = padded = False
    if max_samples is not None and n > max_samples:
        start = 0 if crop == "start" else (n - max_samples) // 2
        waveform = waveform[start : start + max_samples]
        cropped = True
    valid = len(waveform)
    if max_samples is not None and pad and valid < max_samples:
        waveform = np.pad(waveform, (0, max_samples - valid))
        padded = True
    return waveform, valid, cropped, padded


def resample(waveform, source_rate, target_rate):
    """Resamples a 1-D float waveform with a rational polyphase filter.

    Args:
        waveform: 1-D float array.
        source_rate: its sample rate (positive integer, Hz).
        target_rate: the wanted sample rate (positive integer, Hz).

    Returns:
        A float32 array of `ceil(len(waveform) * target_rate / source_rate)`
        samples.

    Example:

    >>> import numpy as np
    >>> resample(np.zeros(441, "float32"), 44100, 16000).shape
    (160,)
    """
    from scipy.signal import resample_poly

    source_rate, target_rate = int(source_rate), int(target_rate)
    if source_rate <= 0 or target_rate <= 0:
        raise ValueError(
            "resample expected positive integer sample rates. Received: "
            f"source_rate={source_rate}, target_rate={target_rate}"
        )
    if source_rate == target_rate:
        return np.asarray(waveform, dtype="float32")
    g = math.gcd(source_rate, target_rate)
    up, down = target_rate // g, source_rate // g
    return resample_poly(np.asarray(waveform, "float64"), up, down).astype("float32")


def load_audio(
    source,
    sample_rate=16000,
    max_samples=None,
    pad=True,
    crop="start",
    name=None,
):
    """Decodes an audio file to a mono float32 waveform at `sample_rate`.

    Steps: decode with `soundfile` (values of integer formats scaled to
    [-1, 1)), check that the clip has samples and that they are finite,
    average the channels to mono, resample with `resample_poly` to
    `sample_rate`, then crop to `max_samples` and, if `pad`, zero-pad to
    exactly `max_samples`.

    A clip longer than `max_samples` is cropped while decoding: only the
    source frames the kept samples depend on (plus the resampling filter's
    reach) are read, so a 10-minute file costs no more memory than the
    crop. The result equals decoding, resampling and cropping the whole
    clip (to float rounding). A path is decoded from the file directly;
    bytes and file objects are held in memory whole. The finiteness check
    covers the decoded frames only.

    Args:
        source: a file path, the file's bytes, or a binary file-like object
            (e.g. a Streamlit `UploadedFile`).
        sample_rate: output sample rate in Hz (default 16000).
        max_samples: optional output length in samples (at `sample_rate`);
            longer clips are cropped. `None` keeps the whole clip.
        pad: with `max_samples`, zero-pad shorter clips to `max_samples`.
        crop: which part a cropped clip keeps: `"start"` or `"center"`.
        name: the name used in error messages; defaults to the path, the
            file object's `.name`, or `"<bytes>"`.

    Returns:
        A tuple `(waveform, info)`: a float32 1-D array and an `AudioInfo`
        (`info.cropped` says whether the clip was cut, `info.num_samples`
        how many samples are real).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: unsupported format (M4A/AAC, ...), corrupt or
            unrecognised data, an empty file, a clip without samples, or
            non-finite samples. The message names the file.

    Example:

    >>> import io, numpy as np, soundfile as sf
    >>> buf = io.BytesIO()
    >>> sf.write(buf, np.zeros((8000, 2)), 8000, format="WAV")
    >>> wave, info = load_audio(buf.getvalue(), max_samples=20000)
    >>> wave.shape, wave.dtype, info.num_samples, info.cropped, info.padded
    ((20000,), dtype('float32'), 16000, False, True)
    """
    import soundfile as sf

    label = _source_name(source, name)
    if crop not in ("start", "center"):
        raise ValueError(
            "load_audio expected `crop` to be 'start' or 'center'. "
            f"Received: crop={crop!r}"
        )
    if max_samples is not None and (
        int(max_samples) != max_samples or max_samples <= 0
    ):
        raise ValueError(
            "load_audio expected `max_samples` to be a positive integer or None. "
            f"Received: max_samples={max_samples}"
        )
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(
            "load_audio expected `sample_rate` to be a positive integer. "
            f"Received: sample_rate={sample_rate}"
        )

    if isinstance(source, (str, os.PathLike)):
        # Decode from the file itself: only the frames kept are read.
        _check_path(source, label)
        opened = os.fspath(source)
        with open(opened, "rb") as f:
            head = f.read(16)
    else:
        data = _read_bytes(source, label)
        head, opened = data[:16], io.BytesIO(data)
    if len(head) == 0:
        raise ValueError(f"Audio file '{label}' is empty (0 bytes).")
    extension = os.path.splitext(label)[1].lower()
    unsupported = _sniff_container(head) or _UNSUPPORTED_EXTENSIONS.get(extension)
    window = None
    try:
        with sf.SoundFile(opened) as f:
            source_rate = f.samplerate
            channels = f.channels
            fmt = f"{f.format}/{f.subtype}"
            total = f.frames
            window = _crop_window(total, source_rate, sample_rate, max_samples, crop)
            if window is None:
                frames = f.read(dtype="float32", always_2d=True)
            else:
                first, last = window[:2]
                if first and f.seekable():
                    f.seek(first)
                elif first:
                    f.read(first, dtype="float32", always_2d=True)
                frames = f.read(last - first, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        if unsupported is not None:
            raise ValueError(
                f"Audio file '{label}' is in an unsupported format: {unsupported}. "
                "soundfile (libsndfile) reads WAV, FLAC, OGG Vorbis/Opus, MP3 "
                "and AIFF; convert the file, e.g. `ffmpeg -i in.m4a out.wav`."
            ) from e
        raise ValueError(
            f"Cannot decode audio file '{label}': the data is corrupt or not a "
            "supported audio format (WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF). "
            f"Decoder said: {e}"
        ) from e
    if frames.shape[0] == 0:
        raise ValueError(f"Audio file '{label}' contains no samples ({fmt}).")
    if not np.all(np.isfinite(frames)):
        bad = int(np.size(frames) - np.count_nonzero(np.isfinite(frames)))
        raise ValueError(
            f"Audio file '{label}' contains {bad} non-finite sample value(s) "
            "(NaN or infinity); expected finite samples."
        )
    mono = frames.mean(axis=1)
    duration = (frames.shape[0] if window is None else total) / source_rate
    mono = resample(mono, source_rate, sample_rate)
    if window is not None:
        start = window[2] - window[3]  # the crop, in the segment
        mono = mono[start : start + max_samples]
    waveform, valid, cropped, padded = _fix_length(mono, max_samples, pad, crop)
    cropped = cropped or window is not None
    info = AudioInfo(
        name=label,
        sample_rate=int(sample_rate),
        num_samples=int(valid),
        cropped=cropped,
        padded=padded,
        source_sample_rate=int(source_rate),
        source_channels=int(channels),
        source_format=fmt,
        duration_seconds=float(duration),
    )
    return waveform.astype("float32", copy=False), info
