"""DPM-Solver++(2M): the second-order multistep solver in data (x0) prediction
(Lu et al. 2022), as diffusers' DPMSolverMultistepScheduler with solver_order=2,
algorithm_type="dpmsolver++", solver_type="midpoint", lower_order_final=True.

One denoiser call per step (benchmarks/sampler.py compares it with DDIM and the original PLMS).
"""

from __future__ import annotations

import torch

from diffsvc.sampling.base import SAMPLERS, SpacedSampler


@SAMPLERS.register("dpm-solver++", doc="DPM-Solver++(2M), deterministic multistep")
class DPMSolverPlusPlus2M(SpacedSampler):
    name = "dpm-solver++"

    def sample(self, denoise, x, t_start, *, mask=None, generator=None, progress=None):
        ac = self.buf("alphas_cumprod", x).double()
        alpha = ac.sqrt()
        sigma = (1 - ac).sqrt()
        lam = alpha.log() - sigma.log()
        steps = self.timesteps(t_start)
        x = x.double()
        prev_x0 = None
        prev_h = None
        for n, i in enumerate(steps):
            eps = denoise(x.float(), self._steps(x.shape[0], i, x)).double()
            x0 = (x - sigma[i] * eps) / alpha[i]
            if self.clip_denoised:
                x0 = x0.clamp(-1.0, 1.0)
            if n + 1 == len(steps):
                x = x0  # the last step lands on t = 0 exactly: sigma = 0 leaves the data prediction
            else:
                j = steps[n + 1]
                h = lam[j] - lam[i]
                phi = torch.expm1(-h)  # exp(-h) - 1
                if prev_x0 is None:
                    d = x0  # first step: first order (DPM-Solver++ 1 = DDIM)
                else:
                    r = prev_h / h
                    d = x0 + 0.5 / r * (x0 - prev_x0)
                x = (sigma[j] / sigma[i]) * x - alpha[j] * phi * d
                prev_x0, prev_h = x0, h
            x = self._masked(x, mask)
            if progress:
                progress(1)
        return x.float()
