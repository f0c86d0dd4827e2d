"""Voice-like test audio whose f0 is known exactly.

    wav, f0 = synth_voice(3.0, 44100, f0=220.0, seed=0, hop_size=512)

The signal is built from what pitch trackers and slicers meet in real singing:
- harmonic tones: every harmonic below min(0.45*sr, 11 kHz), phase-continuous;
- vibrato: 5.5 Hz, +-`vibrato_cents` on every note, and short glides between adjacent notes;
- a voice-like spectrum: -12 dB/octave tilt with three formant bumps (700, 1200, 2600 Hz);
- consonant-like noise bursts (band-passed noise, 40-70 ms) just before notes that follow a pause;
- pauses (f0 0) with a very low noise floor (about -75 dBFS), so "silence" is not digital zero.

`f0` is a number (one sustained note), a melody [(seconds, hz), ...] (hz 0 = pause; repeated to
fill the duration), or None for a seeded random phrase (notes 150-500 Hz with pauses). The
returned track holds the true f0 at sample i*hop_size + frame_offset for frame i, 0 where
unvoiced (pauses and consonants). `n_frames` defaults to len(wav) // hop_size, the mel grid.
Use `stable_voiced(track, margin)` to keep only frames well inside voiced stretches.
"""

from __future__ import annotations

import numpy as np

FORMANTS_HZ = ((700.0, 130.0, 1.0), (1200.0, 170.0, 0.6), (2600.0, 250.0, 0.35))  # centre, width, gain


def _melody(f0, duration_s: float, rng: np.random.RandomState) -> list[tuple[float, float]]:
    if f0 is None:
        notes, t = [], 0.0
        while t < duration_s:
            for _ in range(rng.randint(2, 5)):
                notes.append((float(rng.uniform(0.3, 0.8)), float(150.0 * 2 ** (rng.randint(0, 21) / 12))))
            notes.append((float(rng.uniform(0.15, 0.4)), 0.0))
            t = sum(d for d, _ in notes)
        return notes
    if np.isscalar(f0):
        return [(duration_s, float(f0))]
    notes = [(float(d), float(h)) for d, h in f0]
    if sum(d for d, _ in notes) <= 0:
        raise ValueError("melody has zero total duration")
    out = []
    while sum(d for d, _ in out) < duration_s:
        out.extend(notes)
    return out


def _spectral_envelope(freq: np.ndarray) -> np.ndarray:
    """Linear gain of a harmonic at `freq` Hz: tilt plus formant bumps."""
    tilt = 1.0 / (1.0 + (freq / 300.0) ** 2)  # about -12 dB/octave above 300 Hz
    bumps = sum(g * np.exp(-0.5 * ((freq - c) / w) ** 2) for c, w, g in FORMANTS_HZ)
    return tilt * (0.3 + bumps)


def synth_voice(duration_s: float, sr: int, f0=None, seed: int = 0, *, hop_size: int = 512,
                frame_offset: int = 0, n_frames: int | None = None, vibrato_cents: float = 30.0,
                level_db: float = -6.0, consonants: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return (wav float32 [N], f0 track float32 [n_frames] in Hz, 0 = unvoiced)."""
    rng = np.random.RandomState(seed)
    n = int(round(duration_s * sr))
    t = np.arange(n) / sr
    notes = _melody(f0, duration_s, rng)

    # Sample-wise target pitch (0 in pauses), with 30 ms glides between adjacent voiced notes.
    f0_samples = np.zeros(n)
    voiced = np.zeros(n, dtype=bool)
    consonant = np.zeros(n, dtype=bool)
    start = 0.0
    prev_hz = 0.0
    for dur, hz in notes:
        a, b = int(round(start * sr)), min(n, int(round((start + dur) * sr)))
        if a >= n:
            break
        if hz > 0:
            seg = np.full(b - a, hz)
            if prev_hz > 0:
                glide = min(b - a, int(0.03 * sr))
                seg[:glide] = prev_hz * (hz / prev_hz) ** (np.arange(glide) / max(glide, 1))
            elif consonants and a > 0:
                # the consonant takes the note's first 40-70 ms; the vowel (voicing) starts after it
                c = min(b - a, int(rng.uniform(0.04, 0.07) * sr))
                consonant[a:a + c] = True
                seg[:c] = 0.0
            f0_samples[a:b] = seg
            voiced[a:b] = seg > 0
        prev_hz = hz
        start += dur

    vibrato = 2.0 ** (vibrato_cents / 1200.0 * np.sin(2 * np.pi * 5.5 * t + rng.uniform(0, 2 * np.pi)))
    f0_true = np.where(voiced, f0_samples * vibrato, 0.0)

    # Harmonics with phase continuity through pauses (the phase keeps running at the last pitch).
    running_f0 = np.where(voiced, f0_true, 0.0)
    last = np.maximum.accumulate(np.where(voiced, np.arange(n), 0))
    running_f0 = np.where(voiced, running_f0, f0_true[last] if voiced.any() else 0.0)
    phase = 2 * np.pi * np.cumsum(running_f0) / sr
    f_top = min(0.45 * sr, 11000.0)
    wav = np.zeros(n)
    max_k = int(f_top / max(np.min(f0_true[voiced]) if voiced.any() else f_top, 1.0)) + 1
    for k in range(1, max_k + 1):
        fk = k * running_f0
        gain = np.where(fk < f_top, _spectral_envelope(fk), 0.0)
        if not gain.any():
            break
        wav += gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi))

    # 15 ms attack/release on voiced stretches avoids clicks (clicks look like consonants).
    ramp = max(1, int(0.015 * sr))
    env = np.convolve(voiced.astype(float), np.ones(ramp) / ramp, mode="same")
    wav *= env

    if consonants and consonant.any():
        noise = rng.randn(n)
        # crude band-pass 2-8 kHz (fricative-like): difference of two moving averages
        lo, hi = max(1, int(sr / 8000)), max(2, int(sr / 2000))
        band = np.convolve(noise, np.ones(lo) / lo, "same") - np.convolve(noise, np.ones(hi) / hi, "same")
        wav += np.where(consonant, band, 0.0) * 0.15 / max(np.std(band), 1e-9)

    peak = np.max(np.abs(wav))
    if peak > 0:
        wav *= 10 ** (level_db / 20) / peak
    wav += rng.randn(n) * 10 ** (-75 / 20) * 0.5  # noise floor, so pauses are not digital zero

    frames = len(wav) // hop_size if n_frames is None else n_frames
    idx = np.clip(np.arange(frames) * hop_size + frame_offset, 0, n - 1)
    track = np.where(voiced[idx], f0_true[idx], 0.0)
    return wav.astype(np.float32), track.astype(np.float32)


def stable_voiced(track: np.ndarray, margin: int = 3) -> np.ndarray:
    """Frames voiced with `margin` voiced frames on each side (skip onsets, offsets and glides)."""
    voiced = np.asarray(track) > 0
    out = voiced.copy()
    for s in range(1, margin + 1):
        out[s:] &= voiced[:-s]
        out[:-s] &= voiced[s:]
        # a glide is a jump of more than a semitone between neighbours: not a stable frame
    ratio = np.ones_like(track, dtype=float)
    both = voiced[1:] & voiced[:-1]
    ratio[1:][both] = track[1:][both] / track[:-1][both]
    jumpy = np.abs(np.log2(np.where(ratio > 0, ratio, 1.0))) * 1200 > 20
    for s in range(-margin, margin + 1):
        out &= ~np.roll(jumpy, s)
    return out


def cents_error(estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """|1200 log2(est/true)| over `mask`; unvoiced estimates count as 1200 cents (an octave)."""
    est, ref = np.asarray(estimate)[mask], np.asarray(truth)[mask]
    err = np.full(est.shape, 1200.0)
    ok = est > 0
    err[ok] = np.abs(1200.0 * np.log2(est[ok] / ref[ok]))
    return err
