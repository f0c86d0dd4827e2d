"""Reading audio files: any format/bit depth/channel count in, float32 mono at one rate out.

Decoding goes through soundfile (libsndfile >= 1.1 reads wav, flac, ogg/vorbis/opus, mp3, aiff...).
Only when soundfile refuses a file do we try librosa's audioread path (which can use ffmpeg or
GStreamer where installed) before giving up with one clear AudioError.

Mono: channels are averaged. The original took channel 0 for the mel but a mono mix for HuBERT
(and averaged for its slicer), so on stereo input the two features saw different signals. We use
the mean everywhere so every feature sees the same audio; for mono recordings (the usual training
data) both choices are identical.

Resampling: soxr's "HQ" quality (what librosa >= 0.10 uses by default as res_type="soxr_hq"),
called directly so one-shot and streaming (`soxr.ResampleStream`) use the same filter.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from diffsvc.errors import AudioError

RESAMPLE_QUALITY = "HQ"  # soxr quality; identical to librosa.resample(res_type="soxr_hq")
SILENT_DB = -60.0  # a peak below this is a silent recording
CLIP_LEVEL = 0.999  # |x| at or above this counts as clipped (int formats top out at 1 - 2^-15)


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read without keeping it in memory."""

    path: Path
    duration: float  # seconds
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str
    peak: float  # max |x| over all channels (linear, 1.0 = full scale)
    clipped_fraction: float  # share of samples at or above full scale

    @property
    def peak_db(self) -> float:
        return _amp_to_db(self.peak)


def _amp_to_db(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0 else -math.inf


def peak_db(wav: np.ndarray) -> float:
    """Peak level in dBFS (-inf for digital silence)."""
    return _amp_to_db(float(np.max(np.abs(wav)))) if wav.size else -math.inf


def is_silent(wav: np.ndarray, db: float = SILENT_DB) -> bool:
    """True when the peak never reaches `db` dBFS."""
    return peak_db(wav) < db


def clipped_fraction(wav: np.ndarray) -> float:
    return float(np.mean(np.abs(wav) >= CLIP_LEVEL)) if wav.size else 0.0


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (soxr HQ); float32 in, float32 out."""
    wav = np.asarray(wav, dtype=np.float32)
    if orig_sr == target_sr:
        return wav
    import soxr

    return soxr.resample(wav, orig_sr, target_sr, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: audio file not found; check the path")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, expected an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); export the audio again")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _unreadable(path: Path, e: BaseException) -> AudioError:
    return AudioError(f"{path}: not a readable audio file ({_first_line(e)}); "
                      "convert it to WAV or FLAC (e.g. with ffmpeg or Audacity)")


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """All samples as float32 [frames, channels] and the native rate."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(sr)
    except Exception as sf_error:  # noqa: BLE001 - any decoder failure gets the fallback, then one line
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # librosa warns that it falls back to audioread
                data, sr = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
            data = np.atleast_2d(data).T  # librosa gives [channels, frames]
            return np.ascontiguousarray(data), int(sr)
        except Exception:  # noqa: BLE001
            raise _unreadable(path, sf_error) from None


def _to_mono(data: np.ndarray) -> np.ndarray:
    return data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)


def _validate(wav: np.ndarray, sr: int, path: Path, min_duration_s: float) -> None:
    if wav.size == 0:
        raise AudioError(f"{path}: holds no audio samples (0 frames); export the audio again")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{path}: contains NaN or infinite samples; re-export it as 16/24-bit PCM")
    if wav.shape[0] < min_duration_s * sr:
        raise AudioError(f"{path}: too short ({wav.shape[0] / sr:.3f} s, need at least {min_duration_s:g} s); "
                         "use a longer recording")


def load_audio(path: str | os.PathLike, target_sr: int | None = 44100, *, min_duration_s: float = 0.1) -> np.ndarray:
    """Decode `path` to float32 mono at `target_sr` (None keeps the file's rate).

    Silent and clipped files load fine (check them with `is_silent` / `probe_audio`); missing,
    empty, corrupt, NaN-holding and too-short files raise AudioError.
    """
    wav, _ = load_audio_with_rate(path, target_sr, min_duration_s=min_duration_s)
    return wav


def load_audio_with_rate(path: str | os.PathLike, target_sr: int | None = 44100, *,
                         min_duration_s: float = 0.1) -> tuple[np.ndarray, int]:
    """Like `load_audio`, also returning the rate of the result."""
    path = Path(path)
    _check_path(path)
    data, sr = _decode(path)
    _validate(data, sr, path, min_duration_s)
    wav = _to_mono(data)
    if target_sr is None:
        return wav, sr
    return resample(wav, sr, target_sr), int(target_sr)


def probe_audio(path: str | os.PathLike, block_seconds: float = 10.0) -> AudioInfo:
    """Header facts plus peak and clipped share, read in blocks so memory stays flat."""
    import soundfile as sf

    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path))
        peak, clipped, total = 0.0, 0, 0
        block = max(1, int(block_seconds * info.samplerate))
        for chunk in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            if chunk.size:
                peak = max(peak, float(np.max(np.abs(chunk))))
                clipped += int(np.count_nonzero(np.abs(chunk) >= CLIP_LEVEL))
                total += chunk.size
        frames = total // max(info.channels, 1)
        return AudioInfo(path, frames / info.samplerate, int(info.samplerate), int(info.channels), frames,
                         info.format, info.subtype, peak, clipped / total if total else 0.0)
    except AudioError:
        raise
    except Exception:  # noqa: BLE001 - fall back to a full decode for formats soundfile cannot stream
        data, sr = _decode(path)
        return AudioInfo(path, data.shape[0] / sr, sr, data.shape[1], data.shape[0], "unknown", "unknown",
                         float(np.max(np.abs(data))) if data.size else 0.0, clipped_fraction(data))


def iter_audio_blocks(path: str | os.PathLike, block_seconds: float = 30.0,
                      target_sr: int | None = 44100) -> Iterator[np.ndarray]:
    """Yield consecutive float32 mono blocks at `target_sr`, reading and resampling as a stream.

    A one-hour file is processed with memory proportional to `block_seconds`. Concatenating the
    blocks gives the same samples as `load_audio` (up to float rounding of the stream filter).
    Block lengths vary slightly around `block_seconds` because the resampler has latency.
    """
    import soundfile as sf

    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001
        raise _unreadable(path, e) from None
    sr = int(info.samplerate)
    stream = None
    if target_sr is not None and target_sr != sr:
        import soxr

        stream = soxr.ResampleStream(sr, target_sr, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    block = max(1, int(block_seconds * sr))
    any_samples = False
    try:
        for chunk in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            if not chunk.size:
                continue
            any_samples = True
            if not np.all(np.isfinite(chunk)):
                raise AudioError(f"{path}: contains NaN or infinite samples; re-export it as 16/24-bit PCM")
            mono = _to_mono(chunk)
            out = mono if stream is None else stream.resample_chunk(mono, last=False)
            if out.size:
                yield np.asarray(out, dtype=np.float32)
    except AudioError:
        raise
    except Exception as e:  # noqa: BLE001
        raise _unreadable(path, e) from None
    if not any_samples:
        raise AudioError(f"{path}: holds no audio samples (0 frames); export the audio again")
    if stream is not None:
        tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if tail.size:
            yield np.asarray(tail, dtype=np.float32)
