"""The figures `diffsvc eval` reports, each a plain function of arrays with a known answer.

Spectral (frames aligned 1:1; both mels are diffsvc's log10 mels [T, M] of equal length):
    log_mel_distance(a, b)        mean |a - b| over frames and bins, log10 units; 0 = identical
    mel_cepstral_distortion(a, b) MCD in dB over c1..c13 of the mel cepstrum; 0 = identical
Pitch (f0 in Hz on the mel frame grid, 0 = unvoiced):
    pitch_scores(reference, estimate) -> PitchScores (median |cents|, RPA, voicing recall, false alarms)
Speaker and content:
    cosine_similarity(a, b)       of two embeddings; 1 = same direction, nan for a zero vector
    content_distance(u, v)        mean cosine distance (1 - cos) of content units frame by frame

Every function handles empty, silent and unvoiced input: a figure whose denominator is empty is
nan (reported as n/a), never a division by zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

LN10 = math.log(10.0)
MCD_COEFFICIENTS = 13  # c1..c13 (c0, the frame's energy, is left out)
MCD_CONSTANT = 10.0 / LN10  # converts a natural-log cepstral distance into dB
RPA_TOLERANCE_CENTS = 50.0


def _pair(a, b, what: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ ({a.shape} vs {b.shape}); frames must be aligned 1:1")
    return a, b


def log_mel_distance(mel_a, mel_b) -> float:
    """Mean absolute difference of two log10 mels [T, M] (diffsvc's mel domain, the training
    loss's L1), in log10 units: 0.1 is a factor of 10^0.1 = 1.26 (2 dB) in mel magnitude.
    Lower is better. nan for zero frames."""
    a, b = _pair(mel_a, mel_b, "log_mel_distance")
    return float(np.mean(np.abs(a - b))) if a.size else float("nan")


def mel_cepstrum(mel_log10, n_coefficients: int = MCD_COEFFICIENTS) -> np.ndarray:
    """Mel cepstrum c1..cN [T, N] of a log10 mel [T, M]: the cosine-series coefficients of the
    natural-log mel magnitude over its M bins,

        ln mel_k = c_0 + 2 * sum_{d>=1} c_d cos(pi d (k + 1/2) / M),  i.e. c = DCT-II(ln mel) / (2M)

    (scipy's unnormalised DCT-II), the scaling of a real cepstrum, for which the factor 2 in the
    MCD formula holds: mean_k (ln mel_k - ln mel'_k)^2 = (c_0 - c'_0)^2 + 2 sum_d (c_d - c'_d)^2
    (Parseval). c0 is dropped."""
    from scipy.fft import dct

    ln_mel = np.asarray(mel_log10, dtype=np.float64) * LN10
    if ln_mel.ndim != 2:
        raise ValueError(f"mel_cepstrum expects a mel [T, M], got shape {ln_mel.shape}")
    m = ln_mel.shape[1]
    if m <= n_coefficients:
        raise ValueError(f"{m} mel bins cannot give {n_coefficients} cepstral coefficients past c0")
    return dct(ln_mel, type=2, norm=None, axis=1)[:, 1:n_coefficients + 1] / (2 * m)


def mel_cepstral_distortion(mel_a, mel_b, n_coefficients: int = MCD_COEFFICIENTS) -> float:
    """MCD in dB between two log10 mels [T, M] of equal length, frames aligned 1:1 (no DTW: the
    two come from the same timeline), averaged over frames:

        MCD = (10 / ln 10) * sqrt(2 * sum_{d=1..13} (c_d - c'_d)^2)

    the mel-cepstral distortion of Kubichek (1993, "Mel-cepstral distance measure for objective
    speech quality assessment", IEEE PACRIM) in the form used for speech synthesis evaluation
    (e.g. Kominek, Schultz & Black 2008, "Synthesizer voice quality of new languages calibrated
    with mean mel cepstral distortion", SLTU), with c0 (energy) excluded. Here c_d are the
    cepstra of `mel_cepstrum` (the DCT-II of the natural-log mel magnitude, scaled as a real
    cepstrum), not SPTK's all-pass mel-cepstrum, so values are in the usual range (a few dB) but
    compare between diffsvc runs rather than with papers' absolute numbers. By Parseval, MCD is
    (10/ln 10) times the RMS over mel bins of the ln-mel difference, counting only its part
    spanned by cosines 1..13: a difference a*cos(pi (k + 1/2) / M) gives (10/ln 10) a / sqrt(2).
    Lower is better; 0 for identical mels; nan for zero frames."""
    a, b = _pair(mel_a, mel_b, "mel_cepstral_distortion")
    if a.ndim != 2 or not a.shape[0]:
        return float("nan")
    diff = mel_cepstrum(a, n_coefficients) - mel_cepstrum(b, n_coefficients)
    return float(np.mean(MCD_CONSTANT * np.sqrt(2.0 * np.sum(diff ** 2, axis=1))))


def cents(f_estimate, f_reference) -> np.ndarray:
    """1200 * log2(estimate / reference) for positive pairs (callers pick voiced frames)."""
    return 1200.0 * np.log2(np.asarray(f_estimate, dtype=np.float64) / np.asarray(f_reference, dtype=np.float64))


@dataclass
class PitchScores:
    """Pitch of an output against the intended f0, on a common frame grid.

    median_abs_cents: median |1200 log2(f_est / f_ref)| over frames voiced in both (lower is better).
    raw_pitch_accuracy: share of reference-voiced frames whose estimate is voiced and within
        50 cents (higher is better; 1 = all).
    voicing_recall: share of reference-voiced frames estimated voiced (higher is better).
    voicing_false_alarm: share of reference-unvoiced frames estimated voiced (lower is better).
    Definitions after the MIREX melody metrics (Poliner et al. 2007, "Melody transcription from
    music audio: approaches and evaluation", IEEE TASLP 15(4); mir_eval.melody). A figure with an
    empty denominator (no voiced / no unvoiced reference frames) is nan."""

    median_abs_cents: float
    raw_pitch_accuracy: float
    voicing_recall: float
    voicing_false_alarm: float
    voiced_frames: int  # reference-voiced frames
    voiced_both: int

    def as_dict(self) -> dict:
        return asdict(self)


def _share(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def pitch_scores(f0_reference, f0_estimate, tolerance_cents: float = RPA_TOLERANCE_CENTS) -> PitchScores:
    """Compare f0 curves [T] in Hz (0 or negative = unvoiced). Lengths may differ by a few frames
    (extractors round differently); the common prefix is compared."""
    ref = np.asarray(f0_reference, dtype=np.float64).reshape(-1)
    est = np.asarray(f0_estimate, dtype=np.float64).reshape(-1)
    n = min(len(ref), len(est))
    ref, est = np.nan_to_num(ref[:n]), np.nan_to_num(est[:n])
    ref_voiced, est_voiced = ref > 0, est > 0
    both = ref_voiced & est_voiced
    error = np.abs(cents(est[both], ref[both]))
    return PitchScores(
        median_abs_cents=float(np.median(error)) if error.size else float("nan"),
        raw_pitch_accuracy=_share(int(np.sum(error <= tolerance_cents)), int(ref_voiced.sum())),
        voicing_recall=_share(int(both.sum()), int(ref_voiced.sum())),
        voicing_false_alarm=_share(int((est_voiced & ~ref_voiced).sum()), int((~ref_voiced).sum())),
        voiced_frames=int(ref_voiced.sum()), voiced_both=int(both.sum()))


def cosine_similarity(a, b) -> float:
    """cos(a, b) of two vectors: 1 same direction, 0 orthogonal; nan when either is all zeros."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else float("nan")


def content_distance(units_a, units_b) -> float:
    """Mean over frames of 1 - cos(u_t, v_t) between two content-unit sequences [Th, D] (the
    same audio length gives the same Th; a frame or two of difference is cut off). 0 = the same
    content, 1 = unrelated (orthogonal); lower is better. Frames where either is all zeros are
    left out; nan when none is left."""
    a = np.asarray(units_a, dtype=np.float64)
    b = np.asarray(units_b, dtype=np.float64)
    n = min(len(a), len(b))
    if n == 0:
        return float("nan")
    a, b = a[:n].reshape(n, -1), b[:n].reshape(n, -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    ok = norms > 0
    if not ok.any():
        return float("nan")
    return float(np.mean(1.0 - np.sum(a[ok] * b[ok], axis=1) / norms[ok]))


def real_time_factor(seconds: float, audio_seconds: float) -> float:
    """Seconds of work per second of audio (below 1 is faster than real time); nan for no audio."""
    return seconds / audio_seconds if audio_seconds > 0 else float("nan")
