"""Samplers: one class per method behind one interface (see base.Sampler), in the SAMPLERS registry.

Adding a sampler is one new module here with a `@SAMPLERS.register("name")` class (a Sampler whose
`from_options(schedule, steps, speedup=)` builds it) plus its import below; the CLI's --sampler,
the config's `sampler` and tests/test_registries.py read the registry.
"""

from __future__ import annotations

from diffsvc.sampling.base import SAMPLERS, Sampler, spaced_timesteps
# importing the modules registers their samplers, in this order (the CLI lists them so)
from diffsvc.sampling.plms import PLMSSampler
from diffsvc.sampling.ddim import DDIMSampler
from diffsvc.sampling.dpm_solver import DPMSolverPlusPlus2M
from diffsvc.sampling.ddpm import DDPMSampler
from diffsvc.sampling.consistency import ConsistencySampler


def make_sampler(name: str, schedule, steps: int | None = None, *, speedup: int | None = None) -> Sampler:
    """A sampler by registered name. `steps`: denoiser steps (ignored by ddpm); PLMS also takes the
    original's `speedup` (step interval) instead. Unknown name: UnknownPartError (a ValueError and a
    DiffSvcError) listing the choices. `steps` or `speedup` below 1: DiffSvcError, one line, for every
    sampler alike (ddim and dpm-solver++ took 0 for their default and -3 for 1 step, consistency 0 for
    2, plms 0 for every step, ddpm ignored it)."""
    from diffsvc.errors import DiffSvcError

    sampler = SAMPLERS.get(name)
    for what, value in (("sampling steps", steps), ("speedup", speedup)):
        if value is not None and value < 1:
            raise DiffSvcError(f"{what} must be at least 1, got {value}")
    return sampler.from_options(schedule, steps, speedup=speedup)


__all__ = ["SAMPLERS", "Sampler", "make_sampler", "spaced_timesteps", "DDPMSampler", "PLMSSampler",
           "DDIMSampler", "DPMSolverPlusPlus2M",
           "ConsistencySampler"]
