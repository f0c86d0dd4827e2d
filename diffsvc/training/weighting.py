"""Loss weighting over timesteps (config `loss_weighting`, `min_snr_gamma`).

min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy",
eq. 7 and sec. 3.4): with SNR(t) = a_t / (1 - a_t), a_t = alphas_cumprod[t], the loss of an item
drawn at t is weighted by
    min(SNR(t), gamma) / SNR(t)          for noise (eps) prediction,
    min(SNR(t), gamma) / (SNR(t) + 1)    for v prediction,
    min(SNR(t), gamma)                   for x0 prediction (the clean-mel error itself),
so the low-noise steps (huge SNR, a noise target the input barely shows) stop dominating the
gradient, while the high-noise steps keep weight 1 (eps) or SNR/(SNR+1) (v).

All are the weight min(SNR, gamma) on the clean-mel error |x0 - x0_hat|^2 (the noise error is SNR
times it, the v error SNR+1 times it), which is ~SNR, almost 0, at the high-noise steps.
clamped-snr gives those steps the floor of Salimans & Ho 2022's "truncated SNR" weighting,
max(SNR, 1), capped at gamma like min-SNR: clean-mel weight clamp(SNR, 1, gamma), i.e.
    clamp(SNR, 1, gamma) / SNR           for eps (large at high noise: meant for v),
    clamp(SNR, 1, gamma) / (SNR + 1)     for v (about 1 at high noise, gamma/SNR at low noise),
    clamp(SNR, 1, gamma)                 for x0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

WEIGHTINGS = ("none", "min-snr", "clamped-snr")


def snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio a / (1 - a) of each step."""
    return alphas_cumprod / (1.0 - alphas_cumprod)


def min_snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float, prediction: str = "eps",
                    floor: float | None = None) -> torch.Tensor:
    """Weights [B] (float32) of items drawn at steps t [B] (formulas in the module docstring);
    `floor` 1.0 gives clamped-snr."""
    s = snr(alphas_cumprod.double()).gather(-1, t)
    clipped = torch.clamp(s, min=floor, max=gamma)
    weights = {"eps": clipped / s, "v": clipped / (s + 1.0), "x0": clipped}[prediction]
    return weights.float()


@dataclass
class TimestepWeighting:
    """A loss weighting bound to a schedule: `weighting(t)` -> weights [B] on t's device."""

    alphas_cumprod: torch.Tensor
    gamma: float
    prediction: str = "eps"
    floor: float | None = None

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return min_snr_weights(self.alphas_cumprod.to(t.device), t, self.gamma, self.prediction, self.floor)


def weighting_from_config(config, model) -> TimestepWeighting | None:
    """The weighting config.loss_weighting asks for on `model`'s schedule, or None ("none")."""
    if config.loss_weighting == "none":
        return None
    if config.loss_weighting == "min-snr":
        return TimestepWeighting(model.alphas_cumprod.detach(), config.min_snr_gamma, config.prediction)
    if config.loss_weighting == "clamped-snr":
        return TimestepWeighting(model.alphas_cumprod.detach(), config.min_snr_gamma, config.prediction, floor=1.0)
    raise ValueError(f"unknown loss_weighting {config.loss_weighting!r}; choose from {', '.join(WEIGHTINGS)}")
