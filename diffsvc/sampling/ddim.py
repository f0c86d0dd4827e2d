"""DDIM (eta = 0): deterministic, one denoiser call per step, any number of steps."""

from __future__ import annotations

import torch

from diffsvc.sampling.base import SAMPLERS, SpacedSampler


@SAMPLERS.register("ddim", doc="DDIM, deterministic, evenly spaced steps (the default)")
class DDIMSampler(SpacedSampler):
    name = "ddim"

    def sample(self, denoise, x, t_start, *, mask=None, generator=None, progress=None):
        ac = self.buf("alphas_cumprod", x).double()
        steps = self.timesteps(t_start)
        for n, i in enumerate(steps):
            a_t = ac[i]
            a_prev = ac[steps[n + 1]] if n + 1 < len(steps) else torch.ones((), dtype=ac.dtype, device=ac.device)
            eps = denoise(x, self._steps(x.shape[0], i, x))
            x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            if self.clip_denoised:
                x0 = x0.clamp(-1.0, 1.0)
                # Re-derive the noise from the clipped x0 so the step stays on the DDIM path.
                eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
            x = (a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps).to(x.dtype)
            x = self._masked(x, mask)
            if progress:
                progress(1)
        return x
