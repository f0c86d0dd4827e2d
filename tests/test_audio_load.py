"""Audio loading: formats, bit depths, rates, channel counts, bad files, probing and streaming."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from diffsvc.audio.load import (AudioInfo, is_silent, iter_audio_blocks, load_audio, load_audio_with_rate, peak_db,
                                probe_audio, resample)
from diffsvc.errors import AudioError


def tone(sr: int, seconds: float = 1.0, hz: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(wav: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.argmax(spectrum) * sr / len(wav))


@pytest.mark.parametrize("name,subtype,tol", [
    ("pcm16.wav", "PCM_16", 1e-4), ("pcm24.wav", "PCM_24", 1e-6), ("float.wav", "FLOAT", 1e-7),
    ("lossless.flac", "PCM_16", 1e-4),
])
def test_lossless_formats_match_the_source(tmp_path, name, subtype, tol):
    x = tone(48000)
    path = tmp_path / name
    sf.write(path, x, 48000, subtype=subtype)
    wav = load_audio(path, 44100)
    assert wav.dtype == np.float32 and wav.ndim == 1
    np.testing.assert_allclose(wav, resample(x, 48000, 44100), atol=tol * 4)


@pytest.mark.parametrize("name", ["lossy.ogg", "lossy.mp3"])
def test_lossy_formats_decode(tmp_path, name):
    x = tone(48000, 2.0)
    path = tmp_path / name
    sf.write(path, x, 48000)
    wav = load_audio(path, 44100)
    assert abs(len(wav) - 88200) < 0.05 * 88200  # codecs may pad a frame
    assert dominant_hz(wav, 44100) == pytest.approx(440.0, abs=2.0)
    assert 0.3 < np.max(np.abs(wav)) < 0.7


@pytest.mark.parametrize("sr", [8000, 22050, 48000, 192000])
def test_rates_are_resampled(tmp_path, sr):
    path = tmp_path / f"r{sr}.wav"
    sf.write(path, tone(sr, 1.0, 440.0), sr, subtype="PCM_16")
    wav = load_audio(path, 44100)
    assert abs(len(wav) - 44100) <= 1
    assert dominant_hz(wav, 44100) == pytest.approx(440.0, abs=1.5)
    native, rate = load_audio_with_rate(path, None)
    assert rate == sr and len(native) == sr


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_channels_are_averaged(tmp_path, channels):
    x = tone(44100, 0.5)
    data = np.stack([x * (c + 1) / (channels + 1) for c in range(channels)], axis=1)
    path = tmp_path / f"c{channels}.wav"
    sf.write(path, data, 44100, subtype="FLOAT")
    wav = load_audio(path, 44100)
    np.testing.assert_allclose(wav, data.mean(axis=1), atol=1e-6)
    info = probe_audio(path)
    assert info.channels == channels and info.sample_rate == 44100


def test_path_with_spaces_and_non_ascii(tmp_path):
    folder = tmp_path / "my sóngs 歌"
    folder.mkdir()
    path = folder / "vöice take 1 – 歌.flac"
    sf.write(path, tone(44100, 0.5), 44100)
    assert len(load_audio(path)) == 22050
    assert probe_audio(path).duration == pytest.approx(0.5)


def test_missing_empty_and_corrupt_files(tmp_path):
    with pytest.raises(AudioError, match="not found") as e:
        load_audio(tmp_path / "nope.wav")
    assert "\n" not in str(e.value)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    with pytest.raises(AudioError, match="corrupt.wav: not a readable audio file") as e:
        load_audio(tmp_path / "corrupt.wav")
    assert "\n" not in str(e.value)
    (tmp_path / "text.flac").write_text("this is not audio")
    with pytest.raises(AudioError, match="text.flac"):
        probe_audio(tmp_path / "text.flac")
    with pytest.raises(AudioError, match="folder"):
        load_audio(tmp_path)


def test_zero_frames_nan_and_too_short(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 44100)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(tmp_path / "zero.wav")
    x = tone(44100, 0.5)
    x[1000] = np.nan
    sf.write(tmp_path / "nan.wav", x, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(tmp_path / "nan.wav")
    with pytest.raises(AudioError, match="NaN"):
        list(iter_audio_blocks(tmp_path / "nan.wav", 0.1))
    sf.write(tmp_path / "short.wav", tone(44100, 0.05), 44100)
    with pytest.raises(AudioError, match="too short"):
        load_audio(tmp_path / "short.wav")
    assert len(load_audio(tmp_path / "short.wav", min_duration_s=0.01)) == 2205


def test_silent_and_clipped_files_load(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(44100, np.float32), 44100)
    wav = load_audio(tmp_path / "silent.wav")
    assert is_silent(wav) and peak_db(wav) == -np.inf
    assert probe_audio(tmp_path / "silent.wav").peak == 0.0

    loud = tone(44100, 1.0, amp=4.0)  # a float file far above full scale
    sf.write(tmp_path / "loud.wav", loud, 44100, subtype="FLOAT")
    wav = load_audio(tmp_path / "loud.wav")
    assert not is_silent(wav) and peak_db(wav) == pytest.approx(20 * np.log10(4.0), abs=0.01)
    info = probe_audio(tmp_path / "loud.wav")
    assert isinstance(info, AudioInfo)
    assert info.peak == pytest.approx(4.0, rel=1e-4)
    assert 0.7 < info.clipped_fraction < 0.9  # |4 sin| >= 1 for ~84% of samples
    sf.write(tmp_path / "clipped16.wav", np.clip(loud, -1, 1), 44100, subtype="PCM_16")
    assert probe_audio(tmp_path / "clipped16.wav").clipped_fraction > 0.7
    assert probe_audio(tmp_path / "silent.wav").clipped_fraction == 0.0


def test_probe_reports_header_facts(tmp_path):
    sf.write(tmp_path / "p.wav", tone(22050, 2.0, amp=0.25), 22050, subtype="PCM_24")
    info = probe_audio(tmp_path / "p.wav", block_seconds=0.3)
    assert (info.sample_rate, info.channels, info.frames, info.subtype) == (22050, 1, 44100, "PCM_24")
    assert info.duration == pytest.approx(2.0)
    assert info.peak == pytest.approx(0.25, rel=1e-3) and info.peak_db == pytest.approx(-12.04, abs=0.02)


@pytest.mark.parametrize("sr,target", [(48000, 44100), (44100, 44100), (22050, 16000), (44100, None)])
def test_streaming_blocks_equal_the_whole_file(tmp_path, sr, target):
    x = np.random.RandomState(0).randn(int(sr * 3.3)).astype(np.float32) * 0.1
    stereo = np.stack([x, -0.5 * x], 1)
    sf.write(tmp_path / "long.wav", stereo, sr, subtype="FLOAT")
    blocks = list(iter_audio_blocks(tmp_path / "long.wav", block_seconds=0.5, target_sr=target))
    whole = load_audio(tmp_path / "long.wav", target)
    joined = np.concatenate(blocks)
    assert len(joined) == len(whole)
    np.testing.assert_allclose(joined, whole, atol=1e-6)
    rate = target or sr
    # memory stays flat: no block is much longer than asked (resampler latency aside)
    assert len(blocks) >= 6
    assert max(len(b) for b in blocks) <= 0.5 * rate * 1.1 + 2048
