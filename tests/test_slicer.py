"""Slicing at silence: training pieces and inference segments on audio with known pauses."""

from __future__ import annotations

import numpy as np
import pytest

from audio_synth import synth_voice
from diffsvc.audio.slicer import Piece, Segment, slice_audio, split_for_inference

SR = 16000
SOUND = 1e-3  # noise floor is ~1e-4 peak; voice is ~0.5 peak


def pause(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.RandomState(seed).randn(int(seconds * SR)) * 2e-5).astype(np.float32)


def phrase(seconds: float, hz: float, seed: int) -> np.ndarray:
    return synth_voice(seconds, SR, hz, seed=seed, consonants=False)[0]


def build(parts):
    """parts: ("sound"|"pause", seconds). Returns wav and the sample spans of each part."""
    chunks, spans, pos = [], [], 0
    for i, (kind, seconds) in enumerate(parts):
        x = phrase(seconds, 150.0 + 30 * i, i) if kind == "sound" else pause(seconds, i)
        chunks.append(x)
        spans.append((kind, pos, pos + len(x)))
        pos += len(x)
    return np.concatenate(chunks), spans


def longest_quiet_run(x: np.ndarray) -> float:
    quiet = np.abs(x) < SOUND
    best = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        best = max(best, run)
    return best / SR


def edge_silence(x: np.ndarray) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(x) >= SOUND)
    return loud[0] / SR, (len(x) - 1 - loud[-1]) / SR


@pytest.fixture(scope="module")
def song():
    return build([("pause", 0.8), ("sound", 6.0), ("pause", 2.0), ("sound", 7.0), ("pause", 0.4),
                  ("sound", 6.0), ("pause", 3.0), ("sound", 0.8), ("pause", 1.5)])


def test_pieces_follow_the_pauses(song):
    wav, spans = song
    result = slice_audio(wav, SR)  # defaults: 10-15 s, -40 dB, drop < 2 s, keep 0.5 s
    pieces = result.pieces
    assert len(pieces) == 2 and all(isinstance(p, Piece) for p in pieces)
    assert all(a.end <= b.start for a, b in zip(pieces, pieces[1:]))
    for p in pieces:
        assert p.seconds(SR) <= 15.0
        lead, tail = edge_silence(wav[p.start:p.end])
        assert lead <= 0.56 and tail <= 0.56  # at most ~0.5 s of silence kept at each edge
        assert longest_quiet_run(wav[p.start:p.end]) < 1.05  # long pauses were cut out
    # every sound part except the dropped 0.8 s one lies inside one piece
    for kind, a, b in spans:
        if kind == "sound" and b - a > SR:
            assert any(p.start <= a + 0.03 * SR and b - 0.03 * SR <= p.end for p in pieces), (a, b)
    # 7 s + 0.4 s pause + 6 s stay together (short pause, under max_s)
    assert pieces[1].seconds(SR) > 13.0
    assert len(result.dropped) == 1 and "shorter than 2 s" in result.dropped[0].reason
    dropped = result.dropped[0].piece
    assert dropped.start < spans[7][1] and spans[7][2] < dropped.end + 0.03 * SR


def test_parameters_change_the_cut(song):
    wav, _ = song
    small = slice_audio(wav, SR, min_s=2.0, max_s=5.0, drop_shorter_s=0.5)
    assert all(p.seconds(SR) <= 5.0 for p in small.pieces)
    assert len(small.pieces) > 3
    assert len(small.dropped) == 0  # the 0.8 s phrase (1.8 s with margins) is kept at 0.5 s minimum
    tight = slice_audio(wav, SR, keep_silence_s=0.1)
    for p in tight.pieces:
        lead, tail = edge_silence(wav[p.start:p.end])
        assert lead <= 0.16 and tail <= 0.16


def test_threshold_decides_what_is_silence():
    quiet = (np.random.RandomState(3).randn(2 * SR) * 0.006).astype(np.float32)  # about -44 dB RMS
    wav = np.concatenate([phrase(5.0, 200.0, 0), quiet, phrase(5.0, 250.0, 1)])
    at_40 = slice_audio(wav, SR, db=-40.0, min_s=3.0, max_s=15.0)
    at_50 = slice_audio(wav, SR, db=-50.0, min_s=3.0, max_s=15.0)
    assert len(at_40.pieces) == 2
    assert len(at_50.pieces) == 1 and at_50.pieces[0].seconds(SR) == pytest.approx(12.0, abs=0.05)


def test_stretch_without_silence_is_cut_at_its_quietest_window():
    wav = phrase(40.0, 220.0, 7)
    dips = [12.3, 26.0, 36.5]  # 60 ms dips to -30 dB below the voice: quiet, but not silence
    for d in dips:
        a = int(d * SR)
        wav[a - int(0.03 * SR):a + int(0.03 * SR)] *= 0.03
    result = slice_audio(wav, SR)
    pieces = result.pieces
    assert not result.dropped
    assert pieces[0].start == 0 and pieces[-1].end == len(wav)
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))  # nothing lost
    assert all(p.seconds(SR) <= 15.0 for p in pieces)
    assert all(p.seconds(SR) >= 10.0 for p in pieces[:-1]) and pieces[-1].seconds(SR) >= 2.0
    for p in pieces[:-1]:
        assert min(abs(p.end / SR - d) for d in dips) < 0.04, p.end / SR


def test_silent_file_gives_no_pieces_and_says_why():
    result = slice_audio(pause(5.0), SR)
    assert result.pieces == []
    assert len(result.dropped) == 1 and "silent" in result.dropped[0].reason
    assert slice_audio(np.zeros(0, np.float32), SR).pieces == []


def test_inference_segments_cover_everything(song):
    wav, spans = song
    segments = split_for_inference(wav, SR, db=-40.0, max_len_s=8.0)
    assert all(isinstance(s, Segment) for s in segments)
    assert segments[0].start == 0 and segments[-1].end == len(wav)
    assert all(a.end == b.start for a, b in zip(segments, segments[1:]))
    assert all(s.seconds(SR) <= 8.0 for s in segments if s.voiced)
    for s in segments:
        if not s.voiced:
            assert np.max(np.abs(wav[s.start:s.end])) < SOUND
    silent_seconds = sum(s.seconds(SR) for s in segments if not s.voiced)
    assert silent_seconds > 0.8 + 2.0 + 3.0 + 1.5 - 6 * 0.25  # the long pauses minus kept context
    # every sound sample is in a voiced segment
    voiced_mask = np.zeros(len(wav), bool)
    for s in segments:
        voiced_mask[s.start:s.end] |= s.voiced
    assert voiced_mask[np.abs(wav) >= SOUND].all()


def test_inference_on_silence_and_continuous_sound():
    assert split_for_inference(pause(3.0), SR) == [Segment(0, 3 * SR, voiced=False)]
    wav = phrase(20.0, 180.0, 2)
    segments = split_for_inference(wav, SR, max_len_s=6.0)
    assert all(s.voiced for s in segments) and segments[-1].end == len(wav)
    assert all(s.seconds(SR) <= 6.0 for s in segments)


@pytest.mark.parametrize("n", [1, 441, 1764, 132_317])
def test_frame_energy_equals_librosa_rms_in_chunks(n):
    import librosa

    from diffsvc.audio.slicer import frame_energy_db

    rng = np.random.default_rng(n)
    wav = (rng.standard_normal(n) * np.linspace(0, 1, n) ** 3).astype(np.float32)
    rms = librosa.feature.rms(y=wav, frame_length=1764, hop_length=441, center=True, pad_mode="constant")[0]
    energy = frame_energy_db(wav, 44100, chunk_frames=37)  # chunks that do not divide the frames
    assert energy.hop == 441
    np.testing.assert_allclose(energy.db, 20 * np.log10(np.maximum(rms, 1e-10)), atol=1e-3)
