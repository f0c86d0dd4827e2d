"""A weight-free stand-in for HuBERT, so the offline demo runs when no HuBERT/ContentVec file exists.

Feature, per 20 ms frame of 16 kHz audio (the HuBERT-soft frame grid: 40 samples of padding each
side, 400-sample window, 320-sample hop, so N samples give floor(N / 320) frames like HuBERT-soft):
- 129-band log-mel power spectrum (40 Hz - 8 kHz, Hann window, 1024-point FFT);
- its DCT (MFCCs); coefficient 0, the frame's overall level, is dropped, so a change of gain
  (loudness) leaves the others unchanged (except where the log floor is reached);
- only coefficients 1-24 are kept: they describe the spectral envelope (vowels, consonants),
  while the higher ones carry the harmonic ripple, i.e. the pitch, which must come from the f0
  conditioning alone (with them, a model learns pitch from the content and ignores --key);
- the 24 coefficients, scaled by a fixed constant to about unit size, then their frame-to-frame
  differences (np.gradient) scaled the same way, zero-padded to HuBERT-soft's 256 dims.
Deterministic, no learned weights, no randomness.

This is NOT HuBERT and NOT speaker-independent: MFCCs describe the spectral envelope, which carries
the singer's timbre as much as the phonetic content, so a model trained on it converts voices
poorly. It exists so that the pipeline (preprocess, train, infer) can be exercised end to end
without any downloaded weights; results made with it are marked as stand-in results.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import torch

from diffsvc.features.content.encoder import ContentEncoder
from diffsvc.features.content.hubert_soft import SAMPLE_RATE

HOP = 320
WINDOW = 400
PADDING = (WINDOW - HOP) // 2
N_FFT = 1024
N_MELS = 129  # 129 bands -> 129 MFCCs -> 128 after dropping the level coefficient
LOG_FLOOR = 1e-8
N_COEFFS = 24  # envelope only: higher quefrencies hold the harmonics (pitch) of f0 above ~100 Hz
SCALE = 0.1  # MFCCs of natural-log mel power are O(10): bring them to O(1)
LOUD_RANGE = np.log(1e4)  # frames within 40 dB of the loudest count towards the cepstral mean
MIN_LOUD_FRAMES = 25  # half a second of 20 ms frames


def cepstral_mean(mfcc: np.ndarray, level: np.ndarray) -> np.ndarray:
    """[N_COEFFS]: the mean of `mfcc` [T, N_COEFFS] over the frames whose `level` [T] (mean log
    mel power, natural log) lies within LOUD_RANGE of the loudest frame's; zeros when there are
    fewer than MIN_LOUD_FRAMES of them (too little audio to estimate a voice's average)."""
    if mfcc.shape[0] == 0:
        return np.zeros(mfcc.shape[1], dtype=mfcc.dtype)
    loud = level >= level.max() - LOUD_RANGE
    if loud.sum() < MIN_LOUD_FRAMES:
        return np.zeros(mfcc.shape[1], dtype=mfcc.dtype)
    return mfcc[loud].mean(axis=0)


class StandinContentEncoder(ContentEncoder):
    name = "stand-in (MFCC, not HuBERT)"
    dim = 256
    frame_rate = SAMPLE_RATE / HOP
    is_standin = True
    revision = 2  # 2: cepstral mean normalisation

    def __init__(self, *, res_type: str = "soxr_hq", **_ignored):
        # window_frames, context_frames, legacy_22050: HuBERT options that mean nothing here
        super().__init__(res_type=res_type)
        import librosa

        self._mel_basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=40.0, fmax=8000.0)
        self._window = np.hanning(WINDOW + 1)[:-1].astype(np.float32)  # periodic Hann

    def frames_at_16k(self, num_samples: int) -> int:
        padded = num_samples + 2 * PADDING
        return 0 if padded < WINDOW else (padded - WINDOW) // HOP + 1

    def _encode_16k(self, wav16: np.ndarray) -> torch.Tensor:
        wav = np.pad(wav16, (PADDING, PADDING))
        frames = np.lib.stride_tricks.sliding_window_view(wav, WINDOW)[::HOP]  # [T, 400]
        spectrum = np.abs(np.fft.rfft(frames * self._window, n=N_FFT, axis=1)) ** 2  # [T, 513]
        log_mel = np.log(spectrum @ self._mel_basis.T + LOG_FLOOR)  # [T, 129]
        mfcc = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=1)[:, 1:N_COEFFS + 1] * SCALE  # drop level
        mfcc = mfcc - cepstral_mean(mfcc, log_mel.mean(axis=1))
        delta = np.gradient(mfcc, axis=0) if mfcc.shape[0] > 1 else np.zeros_like(mfcc)
        units = np.zeros((mfcc.shape[0], self.dim), dtype=np.float32)
        units[:, :N_COEFFS] = mfcc
        units[:, N_COEFFS:2 * N_COEFFS] = delta
        return torch.from_numpy(units)
