"""Samplers: one class per method behind one interface (see base.Sampler)."""

from __future__ import annotations

from diffsvc.sampling.base import Sampler, spaced_timesteps
from diffsvc.sampling.ddim import DDIMSampler
from diffsvc.sampling.ddpm import DDPMSampler
from diffsvc.sampling.dpm_solver import DPMSolverPlusPlus2M
from diffsvc.sampling.plms import PLMSSampler

SAMPLERS = {
    "ddpm": DDPMSampler,
    "plms": PLMSSampler,
    "ddim": DDIMSampler,
    "dpm-solver++": DPMSolverPlusPlus2M,
}


def make_sampler(name: str, schedule, steps: int | None = None, *, speedup: int | None = None) -> Sampler:
    """A sampler by name. `steps`: denoiser steps (ignored by ddpm); PLMS also takes the
    original's `speedup` (step interval) instead."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    if name == "ddpm":
        return DDPMSampler(schedule)
    if name == "plms":
        return PLMSSampler(schedule, speedup=speedup, steps=steps)
    return SAMPLERS[name](schedule, steps=steps or 20)


__all__ = ["SAMPLERS", "Sampler", "make_sampler", "spaced_timesteps", "DDPMSampler", "PLMSSampler",
           "DDIMSampler", "DPMSolverPlusPlus2M"]
