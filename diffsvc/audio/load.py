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
    check_header_length(path)
    check_ogg_end(path)


# --- truncated files: the length the file declares against what it holds
#
# libsndfile reads what is there: a WAV whose header declares 7.5 s over 3.75 s of data decodes
# to 3.75 s without a word (it only logs "data : N (should be M)"), and a FLAC cut at a frame
# boundary decodes fewer frames than its STREAMINFO declares. Both are a copy or export cut
# short, so both are refused: containers with a data-chunk size (RIFF/RIFX WAV, RF64, AIFF/AIFC)
# are checked from their header before decoding; formats whose header gives an exact frame count
# (everything libsndfile decodes except MP3, whose count may be an estimate) are checked again
# after decoding, against the frames that came out.

_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers that never went back to fill the size in
_MAX_CHUNKS = 4096


def declared_and_present_bytes(path: Path) -> tuple[int, int] | None:
    """(data bytes the header declares, data bytes the file holds) for WAV/RF64/AIFF, else None.

    None too when the header leaves the size open (0 or 0xFFFFFFFF: a recorder that never
    finalised the file, which libsndfile reads to the end of the file)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12:
                return None
            kind, form = head[:4], head[8:12]
            if kind in (b"RIFF", b"RIFX", b"RF64") and form == b"WAVE":
                order = "big" if kind == b"RIFX" else "little"
            elif kind == b"FORM" and form in (b"AIFF", b"AIFC"):
                order = "big"
            else:
                return None
            offset, ds64_data = 12, None
            for _ in range(_MAX_CHUNKS):
                f.seek(offset)
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, csize = chunk[:4], int.from_bytes(chunk[4:], order)
                if cid == b"ds64":
                    body = f.read(16)
                    if len(body) == 16:
                        ds64_data = int.from_bytes(body[8:16], "little")
                elif cid == b"data" and kind != b"FORM":
                    if kind == b"RF64" and csize == 0xFFFFFFFF and ds64_data is not None:
                        csize = ds64_data
                    elif csize in _UNKNOWN_SIZES:
                        return None
                    return csize, size - (offset + 8)
                elif cid == b"SSND" and kind == b"FORM":
                    if csize in _UNKNOWN_SIZES:
                        return None
                    return csize, size - (offset + 8)
                offset += 8 + csize + (csize & 1)  # chunks are padded to an even size
                if offset >= size:
                    return None
    except OSError:
        return None
    return None


def _truncated(path: Path, declared: str, present: str) -> AudioError:
    return AudioError(f"{path}: truncated: its header declares {declared} of audio but the file holds "
                      f"only {present} (a copy or export cut short); copy or export it again")


def _seconds(frames: float, sample_rate: int) -> str:
    return f"{frames / sample_rate:.2f} s" if sample_rate > 0 else f"{frames:.0f} frames"


def check_header_length(path: Path) -> None:
    """AudioError when a WAV/RF64/AIFF data chunk declares more bytes than the file holds."""
    sizes = declared_and_present_bytes(path)
    if sizes is None or sizes[0] <= sizes[1]:
        return
    declared, present = sizes
    try:
        import soundfile as sf

        info = sf.info(str(path))  # libsndfile's frame count is what is present
        rate, frames = int(info.samplerate), int(info.frames)
        raise _truncated(path, _seconds(frames * declared / max(present, 1), rate), _seconds(frames, rate))
    except AudioError:
        raise
    except Exception:  # noqa: BLE001 - unreadable anyway; say what is known
        raise _truncated(path, f"{declared} bytes", f"{max(present, 0)} bytes") from None


_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # header, segment table, body


def ogg_ends_cleanly(path: Path) -> bool | None:
    """For an Ogg file (Vorbis, Opus, FLAC in Ogg): True when its last page is whole and carries the
    end-of-stream flag (RFC 3533 §6, header_type bit 0x04), False when the file stops mid-page or
    before that page (a copy or export cut short: Ogg declares no length, libsndfile reads what is
    there). None for other files."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if f.read(4) != b"OggS":
                return None
            start = max(0, size - _OGG_MAX_PAGE)
            f.seek(start)
            tail = f.read()
    except OSError:
        return None
    at = len(tail)
    while (at := tail.rfind(b"OggS", 0, at)) >= 0:  # the page that ends exactly at the end of the file
        head = tail[at:at + 27]
        if len(head) == 27 and head[4] == 0:
            table = tail[at + 27:at + 27 + head[26]]
            if len(table) == head[26] and at + 27 + len(table) + sum(table) == len(tail):
                return bool(head[5] & 0x04)
    return False


def check_ogg_end(path: Path) -> None:
    """AudioError when an Ogg file stops before its end-of-stream page (cut short)."""
    if ogg_ends_cleanly(path) is False:
        raise AudioError(f"{path}: truncated: the Ogg stream stops before its last page (a copy or export cut "
                         "short); copy or export it again")


@dataclass(frozen=True)
class _Declared:
    format: str
    frames: int
    samplerate: int


def _exact_frame_count(info) -> bool:
    return info.format not in ("MPEG", "MP3") and info.frames > 0


def check_decoded_length(path: Path, info, decoded_frames: int) -> None:
    """AudioError when fewer frames decoded than the header declares (FLAC cut short...)."""
    if _exact_frame_count(info) and decoded_frames < info.frames:
        raise _truncated(path, _seconds(info.frames, info.samplerate), _seconds(decoded_frames, info.samplerate))


def _broken(path: Path, info, decoded_frames: int, e: BaseException) -> AudioError:
    """Decoding failed part-way through a file whose header was fine."""
    declared = _seconds(info.frames, info.samplerate) if _exact_frame_count(info) else "?"
    where = (f"decoding failed after {_seconds(decoded_frames, info.samplerate)} of the {declared} its header declares"
             if decoded_frames else f"the {declared} of audio its header declares do not decode")
    return AudioError(f"{path}: damaged or cut short: {where} ({_first_line(e)}); copy or export it again")


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
        f = sf.SoundFile(str(path))
    except Exception as sf_error:  # noqa: BLE001 - not for soundfile: the fallback decoder, then one line
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
    with f:
        info = _Declared(f.format, f.frames, f.samplerate)
        try:
            data = f.read(dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001 - the header was fine, the data is not
            raise _broken(path, info, 0, e) from None
        sr = f.samplerate
    check_decoded_length(path, info, data.shape[0])
    return data, int(sr)


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
    except Exception:  # noqa: BLE001 - not for soundfile: the fallback decoder reads it whole
        data, sr = _decode(path)
        if not np.all(np.isfinite(data)):
            raise AudioError(f"{path}: contains NaN or infinite samples; re-export it as 16/24-bit PCM") from None
        return AudioInfo(path, data.shape[0] / sr, sr, data.shape[1], data.shape[0], "unknown", "unknown",
                         float(np.max(np.abs(data))) if data.size else 0.0, clipped_fraction(data))
    peak, clipped, total = 0.0, 0, 0
    block = max(1, int(block_seconds * info.samplerate))
    try:
        for chunk in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            if chunk.size:
                if not np.all(np.isfinite(chunk)):
                    raise AudioError(f"{path}: contains NaN or infinite samples; re-export it as 16/24-bit PCM")
                peak = max(peak, float(np.max(np.abs(chunk))))
                clipped += int(np.count_nonzero(np.abs(chunk) >= CLIP_LEVEL))
                total += chunk.size
    except AudioError:
        raise
    except Exception as e:  # noqa: BLE001
        raise _broken(path, info, total // max(info.channels, 1), e) from None
    frames = total // max(info.channels, 1)
    check_decoded_length(path, info, frames)
    return AudioInfo(path, frames / info.samplerate, int(info.samplerate), int(info.channels), frames,
                     info.format, info.subtype, peak, clipped / total if total else 0.0)


def check_audio(path: str | os.PathLike, min_duration_s: float = 0.1) -> AudioInfo:
    """Decode the whole file once without keeping it (memory flat) and refuse it with one
    AudioError if anything is wrong: missing, empty, unreadable, truncated (header against bytes
    present, and against frames decoded), NaN/infinite samples, no samples, shorter than
    `min_duration_s`. What `diffsvc infer` runs on every input before any model loads."""
    info = probe_audio(path)
    if info.frames == 0:
        raise AudioError(f"{info.path}: holds no audio samples (0 frames); export the audio again")
    if info.duration < min_duration_s:
        raise AudioError(f"{info.path}: too short ({info.duration:.3f} s, need at least {min_duration_s:g} s); "
                         "use a longer recording")
    return info


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
    decoded = 0
    try:
        for chunk in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            if not chunk.size:
                continue
            any_samples = True
            decoded += chunk.shape[0]
            if not np.all(np.isfinite(chunk)):
                raise AudioError(f"{path}: contains NaN or infinite samples; re-export it as 16/24-bit PCM")
            mono = _to_mono(chunk)
            out = mono if stream is None else stream.resample_chunk(mono, last=False)
            if out.size:
                yield np.asarray(out, dtype=np.float32)
    except AudioError:
        raise
    except Exception as e:  # noqa: BLE001
        raise _broken(path, info, decoded, e) from None
    if not any_samples:
        raise AudioError(f"{path}: holds no audio samples (0 frames); export the audio again")
    check_decoded_length(path, info, decoded)
    if stream is not None:
        tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if tail.size:
            yield np.asarray(tail, dtype=np.float32)
