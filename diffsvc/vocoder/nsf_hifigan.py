"""The NSF-HiFiGAN generator exactly as Diff-SVC uses it (modules/nsf_hifigan/models.py, the NSF
`Generator`): a harmonic-plus-noise source driven by f0, injected through `noise_convs` into every
stage of a HiFiGAN upsampling stack.

Module names, shapes and the order of random draws follow the original, so the public
nsf_hifigan_20221211 weights load strictly and a seeded forward gives the original's numbers.
Weight norm uses torch's modern parametrization; torch's own load hook accepts the checkpoint's
legacy `weight_g`/`weight_v` names, and `remove_weight_norm()` folds g*v/||v|| for inference.

This file holds the model only: reading config.json and the weight file is in `loading.py`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

LRELU_SLOPE = 0.1


def _padding(kernel_size: int, dilation: int = 1) -> int:
    return int((kernel_size * dilation - dilation) / 2)


def _remove_weight_norms(module: nn.Module) -> None:
    for child in module.modules():
        if parametrize.is_parametrized(child, "weight"):
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)


class ResBlock1(nn.Module):
    """Three (dilated conv, conv) pairs with residual adds; dilations (1, 3, 5) in the release."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=_padding(kernel_size, d)))
            for d in dilation[:3]
        ])
        self.convs2 = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=_padding(kernel_size, 1)))
            for _ in range(3)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            for c1, c2 in zip(self.convs1, self.convs2):
                xt = c1(F.leaky_relu(x, LRELU_SLOPE))
                xt = c2(F.leaky_relu(xt, LRELU_SLOPE))
                x = xt + x
            return x
        # inference: the same operations in place on the convs' fresh outputs (the same numbers;
        # no new tensor per activation, which on the CPU is a fifth of the vocoder's time)
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c2(F.leaky_relu_(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = xt.add_(x)
        return x


class ResBlock2(nn.Module):
    """The lighter block of config resblock "2" (not used by the public release, kept for parity)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3)):
        super().__init__()
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=_padding(kernel_size, d)))
            for d in dilation[:2]
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = c(F.leaky_relu(x, LRELU_SLOPE)) + x
        return x


class SineGen(nn.Module):
    """Sines at f0 and its overtones, plus noise; unvoiced samples (f0 <= threshold) get noise only.

    Random draws, in this order, are the original's: initial phases `rand(B, harmonics)` with the
    fundamental's zeroed, then `randn_like(sines)`. `initial_phase` replaces the first draw (in
    cycles) so that a long signal cut into windows keeps one continuous phase.
    """

    def __init__(self, sample_rate: int, harmonic_num: int = 0, sine_amp: float = 0.1,
                 noise_std: float = 0.003, voiced_threshold: float = 0.0):
        super().__init__()
        self.sample_rate = sample_rate
        self.harmonic_num = harmonic_num
        self.dim = harmonic_num + 1
        self.sine_amp = sine_amp
        self.noise_std = noise_std
        self.voiced_threshold = voiced_threshold

    def harmonic_step(self, f0: torch.Tensor) -> torch.Tensor:
        """Phase advance per sample, in cycles mod 1: [..., 1] Hz -> [..., dim] (float32 as the original)."""
        harmonics = torch.arange(1, self.dim + 1, device=f0.device, dtype=f0.dtype)
        return (f0 * harmonics / self.sample_rate) % 1

    def draw_initial_phase(self, batch: int, device) -> torch.Tensor:
        phase = torch.rand(batch, self.dim, device=device)
        phase[:, 0] = 0  # the fundamental starts at phase 0, overtones at random phases
        return phase

    def sines(self, f0: torch.Tensor, initial_phase: torch.Tensor | None = None) -> torch.Tensor:
        rad_values = self.harmonic_step(f0)
        if initial_phase is None:
            initial_phase = self.draw_initial_phase(f0.shape[0], f0.device)
        rad_values[:, 0, :] = rad_values[:, 0, :] + initial_phase.to(rad_values)
        # The original subtracts 1 wherever the running phase wraps, to limit the float32 cumsum's
        # growth; kept as is because it decides the exact samples.
        tmp_over_one = torch.cumsum(rad_values, 1) % 1
        wrapped = torch.diff(tmp_over_one, dim=1) < 0
        cumsum_shift = torch.zeros_like(rad_values)
        cumsum_shift[:, 1:, :] = wrapped * -1.0
        return torch.sin(torch.cumsum(rad_values + cumsum_shift, dim=1) * 2 * np.pi)

    @torch.no_grad()
    def forward(self, f0: torch.Tensor, initial_phase: torch.Tensor | None = None):
        """f0 [B, L, 1] Hz at the sample rate -> (sine_waves [B, L, dim], uv [B, L, 1], noise)."""
        sine_waves = self.sines(f0, initial_phase) * self.sine_amp
        uv = torch.ones_like(f0) * (f0 > self.voiced_threshold)
        # voiced: a little noise; unvoiced: noise about as loud as the sines (std amp/3 -> peak ~amp)
        noise_amp = uv * self.noise_std + (1 - uv) * self.sine_amp / 3
        noise = noise_amp * torch.randn_like(sine_waves)
        sine_waves = sine_waves * uv + noise
        return sine_waves, uv, noise


class SourceModuleHnNSF(nn.Module):
    """SineGen's harmonics merged into one excitation by Linear(dim -> 1) and tanh."""

    def __init__(self, sample_rate: int, harmonic_num: int = 0, sine_amp: float = 0.1,
                 add_noise_std: float = 0.003, voiced_threshold: float = 0.0):
        super().__init__()
        self.sine_amp = sine_amp
        self.l_sin_gen = SineGen(sample_rate, harmonic_num, sine_amp, add_noise_std, voiced_threshold)
        self.l_linear = nn.Linear(harmonic_num + 1, 1)
        self.l_tanh = nn.Tanh()

    def forward(self, f0: torch.Tensor, initial_phase: torch.Tensor | None = None):
        """f0 [B, L, 1] -> (sine_merge [B, L, 1], noise [B, L, 1], uv [B, L, 1])."""
        sine_waves, uv, _ = self.l_sin_gen(f0, initial_phase)
        sine_merge = self.l_tanh(self.l_linear(sine_waves))
        # The original's noise branch is computed and never used; it is still drawn so the global
        # random stream after a forward is the original's (seeded pipelines stay comparable).
        noise = torch.randn_like(uv) * self.sine_amp / 3
        return sine_merge, noise, uv


class Generator(nn.Module):
    """Natural-log mel [B, num_mels, T] and f0 [B, T] (Hz, 0 = unvoiced) -> audio [B, 1, T * hop]."""

    def __init__(self, *, num_mels: int, sampling_rate: int, upsample_rates: Sequence[int],
                 upsample_kernel_sizes: Sequence[int], upsample_initial_channel: int,
                 resblock_kernel_sizes: Sequence[int], resblock_dilation_sizes: Sequence[Sequence[int]],
                 resblock: str = "1", harmonic_num: int = 8):
        super().__init__()
        if str(resblock) not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {resblock!r}")
        self.sampling_rate = int(sampling_rate)
        self.hop_size = int(np.prod(upsample_rates))
        self.num_kernels = len(resblock_kernel_sizes)
        self.num_upsamples = len(upsample_rates)
        self.m_source = SourceModuleHnNSF(sample_rate=self.sampling_rate, harmonic_num=harmonic_num)
        self.noise_convs = nn.ModuleList()
        self.conv_pre = weight_norm(nn.Conv1d(num_mels, upsample_initial_channel, 7, 1, padding=3))
        block = ResBlock1 if str(resblock) == "1" else ResBlock2

        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)):
            c_cur = upsample_initial_channel // (2 ** (i + 1))
            self.ups.append(weight_norm(nn.ConvTranspose1d(
                upsample_initial_channel // (2 ** i), c_cur, k, u, padding=(k - u) // 2)))
            if i + 1 < len(upsample_rates):
                # the excitation (at the sample rate) is strided down to this stage's rate
                stride_f0 = int(np.prod(upsample_rates[i + 1:]))
                self.noise_convs.append(nn.Conv1d(1, c_cur, kernel_size=stride_f0 * 2, stride=stride_f0,
                                                  padding=stride_f0 // 2))
            else:
                self.noise_convs.append(nn.Conv1d(1, c_cur, kernel_size=1))

        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for _ in range(len(self.ups)):
            ch //= 2
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(ch, k, d))
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, 1, padding=3))

    @classmethod
    def from_config(cls, config: Mapping) -> "Generator":
        """Build from the release's config.json values (extra training keys are ignored)."""
        return cls(
            num_mels=config["num_mels"],
            sampling_rate=config["sampling_rate"],
            upsample_rates=config["upsample_rates"],
            upsample_kernel_sizes=config["upsample_kernel_sizes"],
            upsample_initial_channel=config["upsample_initial_channel"],
            resblock_kernel_sizes=config["resblock_kernel_sizes"],
            resblock_dilation_sizes=config["resblock_dilation_sizes"],
            resblock=str(config.get("resblock", "1")),
        )

    def excitation(self, f0: torch.Tensor, initial_phase: torch.Tensor | None = None) -> torch.Tensor:
        """f0 [B, T] at frame rate -> harmonic source [B, 1, T * hop]."""
        # nearest-neighbour upsampling, as the original's nn.Upsample(scale_factor=hop)
        f0_samples = F.interpolate(f0[:, None], scale_factor=self.hop_size, mode="nearest").transpose(1, 2)
        har_source, _, _ = self.m_source(f0_samples, initial_phase)
        return har_source.transpose(1, 2)

    def decode(self, mel: torch.Tensor, har_source: torch.Tensor) -> torch.Tensor:
        """The deterministic body: ln-mel [B, M, T] and excitation [B, 1, T * hop] -> [B, 1, T * hop]."""
        if torch.is_grad_enabled():
            x = self.conv_pre(mel)
            for i in range(self.num_upsamples):
                x = F.leaky_relu(x, LRELU_SLOPE)
                x = self.ups[i](x)
                x = x + self.noise_convs[i](har_source)
                xs = None
                for j in range(self.num_kernels):
                    y = self.resblocks[i * self.num_kernels + j](x)
                    xs = y if xs is None else xs + y
                x = xs / self.num_kernels
            x = F.leaky_relu(x)  # the original's default slope 0.01 here, not LRELU_SLOPE
            x = self.conv_post(x)
            return torch.tanh(x)
        # inference: the same operations, in place where a tensor is used once (see ResBlock1)
        x = self.conv_pre(mel)
        for i in range(self.num_upsamples):
            x = self.ups[i](F.leaky_relu_(x, LRELU_SLOPE))
            x.add_(self.noise_convs[i](har_source))
            xs = None
            for j in range(self.num_kernels):
                y = self.resblocks[i * self.num_kernels + j](x)
                xs = y if xs is None else xs.add_(y)
            x = xs.div_(self.num_kernels)
        return torch.tanh_(self.conv_post(F.leaky_relu_(x)))

    def forward(self, mel: torch.Tensor, f0: torch.Tensor, initial_phase: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(mel, self.excitation(f0, initial_phase))

    def remove_weight_norm(self) -> "Generator":
        """Fold every weight-norm parametrization into a plain weight (inference speed)."""
        _remove_weight_norms(self)
        return self
