"""A small synthetic singing corpus for the offline demo: distinct "singers" singing melodies.

Each singer is a source-filter voice: a harmonic source (glottal-like spectral tilt, vibrato,
a little breath noise) through a sequence of vowel formant filters, with consonant-like noise
bursts before phrases and pauses between them. Singer A is dark, singer B
bright (different vocal tract, source slope, vibrato and breathiness) in the same range; the demo
trains both in one model. Singer C, between the two, sings the phrase that is converted to each,
so both conversions change timbre audibly while the melody (the f0 the conversion keeps) is known
exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Vowel formants (F1, F2, F3) in Hz for an adult male voice; singers scale them.
VOWELS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010),
          "o": (570, 840, 2410), "u": (300, 870, 2240)}
SCALE = (0, 2, 4, 5, 7, 9, 11, 12)  # major scale, semitones


@dataclass(frozen=True)
class Singer:
    name: str
    base_hz: float  # tonic of the melodies
    formant_scale: float  # vocal tract length: >1 brighter/shorter
    tilt_db_per_octave: float  # source spectral slope (darker when more negative)
    vibrato_hz: float
    vibrato_cents: float
    breath: float  # aspiration noise level relative to the harmonics


SINGER_A = Singer("singer_a", base_hz=261.6, formant_scale=1.0, tilt_db_per_octave=-13.0,
                  vibrato_hz=5.2, vibrato_cents=35.0, breath=0.02)
SINGER_B = Singer("singer_b", base_hz=261.6, formant_scale=1.22, tilt_db_per_octave=-9.0,
                  vibrato_hz=5.8, vibrato_cents=25.0, breath=0.05)
SINGER_C = Singer("singer_c", base_hz=261.6, formant_scale=1.1, tilt_db_per_octave=-11.0,
                  vibrato_hz=5.5, vibrato_cents=30.0, breath=0.035)


def melody(rng: np.random.Generator, base_hz: float, n_notes: int) -> list[tuple[float, float, str]]:
    """(seconds, Hz, vowel) notes: a random walk on the major scale, one vowel per note."""
    degree = int(rng.integers(0, 5))
    notes = []
    for _ in range(n_notes):
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, len(SCALE) - 1))
        hz = base_hz * 2 ** (SCALE[degree] / 12)
        notes.append((float(rng.uniform(0.25, 0.7)), hz, str(rng.choice(list(VOWELS)))))
    return notes


def _formant_gain(freq: np.ndarray, formants, scale: float) -> np.ndarray:
    gain = np.zeros_like(freq)
    for k, f in enumerate(formants):
        centre, width = f * scale, 60.0 + 40.0 * k
        gain += (0.9 ** k) * np.exp(-0.5 * ((freq - centre) / width) ** 2)
    return 0.05 + gain


def _harmonics(f0, phase, formant_track, singer: Singer, sr: int, block: int = 512,
               chunk_blocks: int = 64) -> np.ndarray:
    """Additive synthesis: harmonic h has amplitude formant_gain(h f0) * tilt(h), the envelope
    evaluated once per block and interpolated linearly, all harmonics at once per chunk (numpy)."""
    n = len(f0)
    n_harm = int(min(16000, sr * 0.45) / f0.min())
    h = np.arange(1, n_harm + 1)[:, None]
    tilt = 10 ** (singer.tilt_db_per_octave * np.log2(h) / 20)
    centres = np.arange(0, n + block, block).clip(max=n - 1)
    env_blocks = np.stack([_formant_gain(h[:, 0] * f0[c], formant_track[c], singer.formant_scale) for c in centres], 1)
    out = np.zeros(n)
    step = block * chunk_blocks
    for a in range(0, n, step):
        b = min(n, a + step)
        idx = np.arange(a, b)
        pos = idx / block
        lo = np.floor(pos).astype(int)
        frac = pos - lo
        env = env_blocks[:, lo] * (1 - frac) + env_blocks[:, np.minimum(lo + 1, len(centres) - 1)] * frac
        audible = (h * f0[idx]) < sr * 0.45
        out[a:b] = np.sum(np.where(audible, env * tilt * np.sin(h * phase[idx]), 0.0), axis=0)
    return out


def sing(singer: Singer, notes: list[tuple[float, float, str]], sr: int = 44100,
         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Render notes -> (wav float32, f0 in Hz per sample, 0 where unvoiced)."""
    rng = np.random.default_rng(seed)
    total = sum(d for d, _, _ in notes)
    n = int(total * sr)
    f0 = np.zeros(n)
    formant_track = np.zeros((n, 3))
    start = 0
    for dur, hz, vowel in notes:
        end = min(n, start + int(dur * sr))
        f0[start:end] = hz
        formant_track[start:end] = VOWELS[vowel]
        start = end
    f0[start:] = notes[-1][1]  # rounding leaves a few samples after the last note
    formant_track[start:] = VOWELS[notes[-1][2]]
    # 40 ms glides between notes (legato) by smoothing log f0 within a phrase.
    k = int(0.04 * sr)

    def smooth(x):  # moving average with the ends held (no fade towards zero at the edges)
        return np.convolve(np.pad(x, (k // 2, k - 1 - k // 2), mode="edge"), np.ones(k) / k, mode="valid")

    log_f0 = smooth(np.log2(f0))
    formant_track = np.stack([smooth(formant_track[:, i]) for i in range(3)], 1)
    t = np.arange(n) / sr
    vibrato = singer.vibrato_cents / 1200 * np.sin(2 * np.pi * singer.vibrato_hz * t) * np.minimum(1, t / 0.3)
    f0 = 2 ** (log_f0 + vibrato)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wav = _harmonics(f0, phase, formant_track, singer, sr)
    breath = rng.standard_normal(n) * singer.breath
    wav += np.convolve(breath, [1, -0.9], mode="same")
    # Phrase envelope: fade in and out; a consonant-like noise burst at the start.
    ramp = int(0.03 * sr)
    env = np.ones(n)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[-ramp:] = np.linspace(1, 0, ramp)
    wav *= env
    burst = int(0.05 * sr)
    noise = rng.standard_normal(burst) * np.hanning(burst)
    wav = np.concatenate([0.15 * np.diff(noise, prepend=0.0), wav])
    f0_samples = np.concatenate([np.zeros(burst), f0])
    wav = 0.5 * wav / max(1e-9, np.abs(wav).max())
    return wav.astype(np.float32), f0_samples.astype(np.float32)


def song(singer: Singer, seconds: float, sr: int = 44100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Phrases of 3-6 notes separated by 0.3-0.8 s pauses, about `seconds` long."""
    rng = np.random.default_rng(seed)
    wavs, f0s = [], []
    length = 0.0
    while length < seconds:
        wav, f0 = sing(singer, melody(rng, singer.base_hz, int(rng.integers(3, 7))), sr, int(rng.integers(1 << 30)))
        pause = np.zeros(int(rng.uniform(0.3, 0.8) * sr), dtype=np.float32)
        pause += rng.standard_normal(len(pause)).astype(np.float32) * 1e-4  # a room's noise floor
        wavs += [wav, pause]
        f0s += [f0, np.zeros(len(pause), dtype=np.float32)]
        length += (len(wav) + len(pause)) / sr
    return np.concatenate(wavs), np.concatenate(f0s)


def write_corpus(folder: Path, singer: Singer, n_files: int, seconds_each: float, seed: int = 0) -> list[Path]:
    """Write `n_files` songs of a singer as 44.1 kHz wav files (atomically)."""
    import soundfile as sf

    from diffsvc.fileio import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = folder / f"{singer.name}_{i:02d}.wav"
        if not path.exists():
            wav, _ = song(singer, seconds_each, seed=seed * 1000 + i)
            atomic_write(path, lambda p, w=wav: sf.write(p, w, 44100, subtype="PCM_16", format="WAV"))
        paths.append(path)
    return paths
