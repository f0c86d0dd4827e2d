"""Ancestral DDPM sampling, the original's `p_sample` loop: one denoiser call per step."""

from __future__ import annotations

import torch

from diffsvc.sampling.base import SAMPLERS, Sampler, gather


@SAMPLERS.register("ddpm", doc="ancestral DDPM over every step (slow reference)")
class DDPMSampler(Sampler):
    name = "ddpm"
    stochastic = True

    def __init__(self, schedule, clip_denoised: bool = True):
        super().__init__(schedule)
        self.clip_denoised = clip_denoised

    def timesteps(self, t_start: int) -> list[int]:
        return list(range(t_start - 1, -1, -1))

    def posterior(self, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor):
        """(posterior mean, variance, log variance) of x_{t-1} given x_t and predicted noise."""
        x0 = gather(self.buf("sqrt_recip_alphas_cumprod", x), t) * x - gather(
            self.buf("sqrt_recipm1_alphas_cumprod", x), t) * eps
        if self.clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        mean = gather(self.buf("posterior_mean_coef1", x), t) * x0 + gather(self.buf("posterior_mean_coef2", x), t) * x
        return mean, gather(self.buf("posterior_variance", x), t), gather(self.buf("posterior_log_variance_clipped", x), t)

    def sample(self, denoise, x, t_start, *, mask=None, generator=None, progress=None):
        for i in self.timesteps(t_start):
            t = self._steps(x.shape[0], i, x)
            mean, _, log_var = self.posterior(x, denoise(x, t), t)
            if i > 0:
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = mean + (0.5 * log_var).exp() * noise
            else:
                x = mean
            x = self._masked(x, mask)
            if progress:
                progress(1)
        return x
