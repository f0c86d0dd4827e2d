"""The interface every sampler shares (the diffusers-scheduler habit): a sampler owns its timestep
list, its update rule and its state, and takes the denoiser as an argument.

`denoise(x, t)` returns the predicted noise for x [B,1,M,T] at integer steps t [B]. `mask`
([B,1,1,T], 1 = real frame) zeroes padded frames after every step so a padded batch stays clean.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch

from diffsvc.registry import Registry

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gather(values: torch.Tensor, t: torch.Tensor, ndim: int = 4) -> torch.Tensor:
    """values[t] shaped [B,1,1,1] for broadcasting (the original's `extract`)."""
    return values.gather(-1, t).reshape(t.shape[0], *((1,) * (ndim - 1)))


SAMPLERS = Registry("sampler", "sampler")


class Sampler(ABC):
    """Draws x_0 from x_{t_start} with a denoiser; every sampler is built by
    `from_options(schedule, steps, speedup=)` (schedule: the buffers of model.schedule.schedule_buffers)."""

    name = "base"
    #: True when the sampler needs random numbers beyond the start noise (ancestral sampling).
    stochastic = False

    def __init__(self, schedule: dict[str, torch.Tensor]):
        self.schedule = schedule
        self.num_timesteps = schedule["alphas_cumprod"].shape[0]

    @classmethod
    def from_options(cls, schedule: dict[str, torch.Tensor], steps: int | None = None, *,
                     speedup: int | None = None) -> "Sampler":
        """The one constructor shape the registry uses: `steps` denoiser calls (samplers that walk
        every step ignore it); `speedup` is PLMS's step interval (the original's pndm_speedup)."""
        return cls(schedule)

    def buf(self, name: str, like: torch.Tensor) -> torch.Tensor:
        return self.schedule[name].to(like.device)

    @abstractmethod
    def timesteps(self, t_start: int) -> list[int]:
        """The steps the denoiser is asked about, from noisiest to cleanest."""

    @abstractmethod
    def sample(self, denoise: Denoiser, x: torch.Tensor, t_start: int, *, mask: torch.Tensor | None = None,
               generator: torch.Generator | None = None, progress: Callable | None = None) -> torch.Tensor:
        """Denoise x (noisy at step t_start - 1, or pure noise when t_start = num_timesteps)."""

    def num_denoiser_calls(self, t_start: int) -> int:
        return len(self.timesteps(t_start))

    @staticmethod
    def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return x if mask is None else x * mask

    @staticmethod
    def _steps(b: int, t: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((b,), t, device=like.device, dtype=torch.long)


class SpacedSampler(Sampler):
    """A deterministic sampler over `steps` evenly spaced steps, clipping its x0 estimates to
    the normalised mel range [-1, 1] (DDIM, DPM-Solver++)."""

    def __init__(self, schedule, steps: int = 20, clip_denoised: bool = True):
        super().__init__(schedule)
        self.steps = steps
        self.clip_denoised = clip_denoised

    @classmethod
    def from_options(cls, schedule, steps: int | None = None, *, speedup: int | None = None) -> "SpacedSampler":
        return cls(schedule, steps=steps or 20)

    def timesteps(self, t_start: int) -> list[int]:
        return spaced_timesteps(t_start, self.steps)


def spaced_timesteps(t_start: int, steps: int) -> list[int]:
    """`steps` integer steps evenly spread from t_start - 1 down to 0 (both ends included)."""
    steps = max(1, min(steps, t_start))
    if steps == 1:
        return [t_start - 1]
    values = torch.linspace(t_start - 1, 0, steps).round().long().tolist()
    out: list[int] = []
    for v in values:  # rounding can repeat a step when steps is close to t_start
        if not out or v < out[-1]:
            out.append(v)
    return out
