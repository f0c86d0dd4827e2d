"""A weight-free stand-in vocoder for the offline demo: mel -> linear magnitude -> Griffin-Lim.

It ignores f0 and sounds phasey; it exists so that the whole pipeline runs (and can be checked
end to end) without the NSF-HiFiGAN release, and says so in its name.

Choices:
- torchaudio's GriffinLim (momentum, runs on any torch device) rather than librosa's
  mel_to_audio (numpy, CPU only, and its NNLS inversion is slow on long songs).
- The mel is inverted with the pseudo-inverse of the exact librosa slaney basis that made it
  (`diffsvc.audio.mel.mel_basis`), clipped at 0. That is what torchaudio's InverseMelScale
  computes (a least-norm lstsq), but torch's lstsq refuses underdetermined systems on CUDA, and
  InverseMelScale would rebuild a filterbank that differs from librosa's in the last digits.
- Frame alignment: our mels come from a reflect pad of (n_fft - hop)/2 and center=False, so
  frame t is centred on sample t*hop + hop/2, while GriffinLim (center=True) centres it on
  t*hop. The output is shifted by hop/2 to line up with the mel it came from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio

from diffsvc.audio.mel import log10_to_ln, mel_basis
from diffsvc.vocoder.base import VOCODERS, MelSettings, Vocoder


@VOCODERS.register("griffin-lim", doc="weight-free Griffin-Lim stand-in (offline demo only)")
class GriffinLimVocoder(Vocoder):
    is_standin = True
    name = "stand-in (Griffin-Lim)"

    def __init__(self, sample_rate: int = 44100, n_fft: int = 2048, win_size: int = 2048, hop_size: int = 512,
                 n_mels: int = 128, fmin: float = 40.0, fmax: float = 16000.0, *, n_iter: int = 32):
        self.settings = MelSettings(sample_rate, n_mels, hop_size, n_fft, win_size, fmin, fmax).normalised()
        basis = torch.from_numpy(mel_basis(sample_rate, n_fft, n_mels, float(fmin), float(fmax))).double()
        self._inverse_basis = torch.linalg.pinv(basis).float()  # [n_fft//2 + 1, n_mels]
        self._griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=n_fft, n_iter=n_iter, win_length=win_size, hop_length=hop_size, power=1.0)

    @classmethod
    def from_settings(cls, mel: MelSettings, *, n_iter: int = 32) -> "GriffinLimVocoder":
        return cls(mel.sample_rate, mel.n_fft, mel.win_size, mel.hop_size, mel.n_mels, mel.fmin, mel.fmax,
                   n_iter=n_iter)

    @classmethod
    def from_config(cls, config, *, n_iter: int = 32) -> "GriffinLimVocoder":
        return cls.from_settings(MelSettings.from_config(config), n_iter=n_iter)

    @classmethod
    def for_config(cls, config, device) -> "GriffinLimVocoder":
        """Weight-free: built from the config's mel settings."""
        return cls.from_config(config).to(device)

    def to(self, device) -> "GriffinLimVocoder":
        self._inverse_basis = self._inverse_basis.to(device)
        self._griffin_lim.to(device)
        return self

    @torch.no_grad()
    def vocode(self, mel_log10: torch.Tensor, f0_hz: torch.Tensor | None = None) -> torch.Tensor:
        """log10 mel [T, M] -> audio [T * hop]; f0 is accepted for the common interface and unused."""
        mel_log10 = torch.as_tensor(mel_log10)
        if f0_hz is None:
            f0_hz = torch.zeros(mel_log10.shape[0])
        self._check_inputs(mel_log10, torch.as_tensor(f0_hz))
        device = self._inverse_basis.device
        mel_magnitude = torch.exp(log10_to_ln(mel_log10.to(device, torch.float32))).T  # [M, T]
        magnitude = torch.relu(self._inverse_basis @ mel_magnitude)
        shift = self.hop_size // 2
        # T frames with center=True means a length in [(T-1)*hop, T*hop); after the shift: T*hop
        self._griffin_lim.length = mel_log10.shape[0] * self.hop_size - shift
        return F.pad(self._griffin_lim(magnitude), (shift, 0))
