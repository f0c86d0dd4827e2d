"""PLMS (pseudo linear multistep, from PNDM) exactly as the original Diff-SVC runs it.

Steps are reversed(range(0, t_start, interval)); the first step averages two denoiser calls
(a Heun-like start), later steps use Adams-Bashforth 2/3/4 on the noise history; no clipping.
Kept faithful, including the wasted call at t = 0, because original checkpoints were validated
with it. Unlike the original it works on batches (the original used Python's max() on a tensor,
which crashed beyond batch size 1) and keeps its history on itself, not on the model.
"""

from __future__ import annotations

import torch

from diffsvc.sampling.base import SAMPLERS, Sampler, gather


@SAMPLERS.register("plms", doc="pseudo linear multi-step (the original's, pndm_speedup interval)")
class PLMSSampler(Sampler):
    name = "plms"

    @classmethod
    def from_options(cls, schedule, steps: int | None = None, *, speedup: int | None = None) -> "PLMSSampler":
        return cls(schedule, speedup=speedup, steps=steps)

    def __init__(self, schedule, speedup: int | None = None, steps: int | None = None):
        super().__init__(schedule)
        if speedup is None and steps is None:
            speedup = 20
        self.speedup = speedup
        self.steps = steps

    def interval(self, t_start: int) -> int:
        if self.speedup is not None:
            return max(1, int(self.speedup))
        return max(1, t_start // max(1, self.steps))

    def timesteps(self, t_start: int) -> list[int]:
        return list(reversed(range(0, t_start, self.interval(t_start))))

    def num_denoiser_calls(self, t_start: int) -> int:
        return len(self.timesteps(t_start)) + 1

    def transfer(self, x, eps, t, t_prev):
        """Move x from step t to t_prev along the predicted noise (the PNDM transfer)."""
        ac = self.buf("alphas_cumprod", x)
        a_t, a_prev = gather(ac, t), gather(ac, t_prev)
        a_t_sq, a_prev_sq = a_t.sqrt(), a_prev.sqrt()
        x_delta = (a_prev - a_t) * (
            (1 / (a_t_sq * (a_t_sq + a_prev_sq))) * x
            - 1 / (a_t_sq * (((1 - a_prev) * a_t).sqrt() + ((1 - a_t) * a_prev).sqrt())) * eps
        )
        return x + x_delta

    def sample(self, denoise, x, t_start, *, mask=None, generator=None, progress=None):
        interval = self.interval(t_start)
        history: list[torch.Tensor] = []
        for i in self.timesteps(t_start):
            t = self._steps(x.shape[0], i, x)
            t_prev = (t - interval).clamp(min=0)
            eps = denoise(x, t)
            if not history:
                x_pred = self._masked(self.transfer(x, eps, t, t_prev), mask)
                eps_prime = (eps + denoise(x_pred, t_prev)) / 2
            elif len(history) == 1:
                eps_prime = (3 * eps - history[-1]) / 2
            elif len(history) == 2:
                eps_prime = (23 * eps - 16 * history[-1] + 5 * history[-2]) / 12
            else:
                eps_prime = (55 * eps - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24
            x = self._masked(self.transfer(x, eps_prime, t, t_prev), mask)
            history = (history + [eps])[-3:]
            if progress:
                progress(1)
        return x
