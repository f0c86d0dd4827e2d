"""The mel spectrogram exactly as NSF-HiFiGAN (and so Diff-SVC) computes it.

reflect pad (n_fft - hop)/2 each side -> STFT(center=False, periodic hann) ->
sqrt(re^2 + im^2 + 1e-9) -> librosa slaney mel basis -> ln(clamp(1e-5)).
Diff-SVC stores the result in log10 by multiplying with 0.434294 (not exactly 1/ln 10), and the
vocoder gets the log10 mel back multiplied by 2.30259: both constants are kept as the original
has them, because trained checkpoints learned those numbers.

torchaudio's MelSpectrogram pads differently (center=True) and has no 1e-9 inside the square
root, so the STFT is called directly and the filterbank comes from librosa (the original's).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import torch

LN_TO_LOG10 = 0.434294  # the original's constant, not 1/ln(10)
LOG10_TO_LN = 2.30259  # the original's constant, not ln(10)
CLAMP = 1e-5
MAG_EPS = 1e-9


@dataclass(frozen=True)
class MelSettings:
    """The one home of the mel settings: what must agree between the mel a model predicts, the
    preprocessed data it learned from and the vocoder it feeds.

    sample_rate Hz, n_mels bins, hop_size / n_fft / win_size samples, fmin / fmax Hz. The Config
    spells them audio_sample_rate, audio_num_mel_bins, hop_size, fft_size, win_size, fmin, fmax
    (CONFIG_KEYS); NSF-HiFiGAN's config.json spells them as HIFIGAN_KEYS; a prepared dataset's
    record stores `to_dict()`.
    """

    sample_rate: int = 44100
    n_mels: int = 128
    hop_size: int = 512
    n_fft: int = 2048
    win_size: int = 2048
    fmin: float = 40.0
    fmax: float = 16000.0

    @classmethod
    def from_config(cls, config) -> "MelSettings":
        """From diffsvc's typed Config (original Diff-SVC key names)."""
        return cls(**{name: getattr(config, key) for name, key in CONFIG_KEYS.items()}).normalised()

    @classmethod
    def from_dict(cls, data: dict) -> "MelSettings":
        """From `to_dict()`'s mapping (a prepared dataset's record). KeyError names a missing key."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)}).normalised()

    @classmethod
    def from_hifigan_json(cls, data: dict) -> "MelSettings":
        """From NSF-HiFiGAN's config.json (sampling_rate, num_mels, ...)."""
        return cls(**{name: data[key] for name, key in HIFIGAN_KEYS.items()}).normalised()

    def normalised(self) -> "MelSettings":
        """Whole numbers as int, frequencies as float (so equal settings compare and hash equal)."""
        return MelSettings(int(self.sample_rate), int(self.n_mels), int(self.hop_size), int(self.n_fft),
                           int(self.win_size), float(self.fmin), float(self.fmax))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def extractor(self) -> "MelExtractor":
        """The MelExtractor computing this mel."""
        return MelExtractor(self.sample_rate, self.n_fft, self.win_size, self.hop_size, self.n_mels,
                            self.fmin, self.fmax)


# diffsvc Config key for each setting, so that an error names the key the user has to edit
CONFIG_KEYS = {"sample_rate": "audio_sample_rate", "n_mels": "audio_num_mel_bins", "hop_size": "hop_size",
               "n_fft": "fft_size", "win_size": "win_size", "fmin": "fmin", "fmax": "fmax"}
# NSF-HiFiGAN config.json key for each setting
HIFIGAN_KEYS = {"sample_rate": "sampling_rate", "n_mels": "num_mels", "hop_size": "hop_size",
                "n_fft": "n_fft", "win_size": "win_size", "fmin": "fmin", "fmax": "fmax"}


@functools.lru_cache(maxsize=8)
def mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's slaney mel filterbank [n_mels, n_fft//2 + 1], float32."""
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


class MelExtractor:
    """Waveform at `sample_rate` -> mel [.., T, n_mels] with T = N // hop."""

    def __init__(self, sample_rate: int = 44100, n_fft: int = 2048, win_size: int = 2048, hop_size: int = 512,
                 n_mels: int = 128, fmin: float = 40.0, fmax: float = 16000.0):
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.win_size = win_size
        self.hop_size = hop_size
        self.n_mels = n_mels
        self.fmin = fmin
        self.fmax = fmax
        self._basis = torch.from_numpy(mel_basis(sample_rate, n_fft, n_mels, float(fmin), float(fmax)))
        self._window = torch.hann_window(win_size)

    @classmethod
    def from_config(cls, config) -> "MelExtractor":
        return MelSettings.from_config(config).extractor()

    @property
    def settings(self) -> MelSettings:
        return MelSettings(self.sample_rate, self.n_mels, self.hop_size, self.n_fft, self.win_size,
                           self.fmin, self.fmax).normalised()

    @property
    def pad(self) -> int:
        return (self.n_fft - self.hop_size) // 2

    def num_frames(self, num_samples: int) -> int:
        return (num_samples + 2 * self.pad - self.n_fft) // self.hop_size + 1

    @torch.no_grad()
    def ln_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Natural-log mel [B, n_mels, T] of wav [B, N] or [N] (float32)."""
        wav = torch.as_tensor(wav, dtype=torch.float32)
        squeeze = wav.dim() == 1
        if squeeze:
            wav = wav[None]
        device = wav.device
        padded = torch.nn.functional.pad(wav[:, None], (self.pad, self.pad), mode="reflect")[:, 0]
        spec = torch.stft(padded, self.n_fft, hop_length=self.hop_size, win_length=self.win_size,
                          window=self._window.to(device), center=False, normalized=False, onesided=True,
                          return_complex=True)
        magnitude = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + MAG_EPS)
        mel = torch.matmul(self._basis.to(device), magnitude)
        mel = torch.log(torch.clamp(mel, min=CLAMP))
        return mel[0] if squeeze else mel

    def __call__(self, wav) -> torch.Tensor:
        """log10 mel as Diff-SVC stores it: [T, n_mels] for [N], [B, T, n_mels] for [B, N]."""
        return self.ln_mel(wav).transpose(-1, -2) * LN_TO_LOG10

    def numpy(self, wav: np.ndarray) -> np.ndarray:
        return self(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))).numpy()


def log10_to_ln(mel_log10: torch.Tensor) -> torch.Tensor:
    """Diff-SVC's log10 mel -> the natural-log mel the vocoder was trained on."""
    return mel_log10 * LOG10_TO_LN
