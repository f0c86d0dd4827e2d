"""Consistency distillation (Song et al. 2023, "Consistency Models", Algorithm 2; CoMoSVC, Lu et al.
2024, distils an SVC diffusion model the same way), as a loss function the training step takes.

The range 0..K_step-1 is cut into N intervals at the grid g_0 = 0 < g_1 < ... < g_N = K_step - 1.
For each item, with its own n in 1..N and noise (randomness.item_randomness, so resume is exact):

    x_hi   = sqrt(a(g_n)) * x0 + sqrt(1 - a(g_n)) * noise          the clean mel noised to g_n
    x_lo   = the teacher's one DDIM step from x_hi at g_n to g_{n-1}  (x0 estimate clipped to [-1, 1],
                                                                     as diffsvc's DDIM sampler steps)
    loss   = w(g_n) * || f_student(x_hi, g_n) - clip(f_target(x_lo, g_{n-1})) ||^2   over real frames and bins

f is the consistency function of diffsvc.sampling.consistency (f(x, 0) = x: the boundary), built on
the student's clean-mel estimate (GaussianDiffusion.x0_from, by what the student predicts); the
target is clipped to the mel range [-1, 1] as the samplers clip, and the target network is an
exponential moving average of the student (rate `ema`) and takes no gradient.

What the student predicts (student.student_prediction): v for an eps teacher (the original's), x0
for an x0 one. An eps student's x0 = (x_t - sqrt(1 - a) * eps) / sqrt(a) magnifies an error in eps by
up to 1 / sqrt(a) = 158 at the last step of the original's schedule, so at the noisiest steps it
can only repeat its teacher (Salimans & Ho 2022, "Progressive distillation", sec. 4, make the same
point and distil into v or x0 students); its loss takes the weight w = sqrt(a) ("sqrt-alpha": unweighted,
those steps swamp the loss and it diverged within 50 steps, measured), a v or x0 student w = 1
("uniform"). benchmarks/distill.py distils both side by side.
One teacher call per training step: the student learns to jump, from anywhere on the
teacher's probability-flow ODE, to where that trajectory ends.

The target network lives in TrainState.extras (checkpointed with the run). It is updated lazily:
the first loss evaluated after an optimizer step (a later step's, or validation's) first moves it
towards the student of that step, so a resumed run updates it exactly when an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from diffsvc.data.batch import TrainingBatch
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.sampling.consistency import consistency_from_x0
from diffsvc.training.distributed import DistInfo
from diffsvc.training.objective import distributed
from diffsvc.training.randomness import TRAIN_STREAM, item_randomness
from diffsvc.training.state import TrainState

TARGET = "target"  # the key of the target network in TrainState.extras


def consistency_grid(k_step: int, intervals: int) -> torch.Tensor:
    """[N+1] long: the integer steps g_0 = 0 < ... < g_N = k_step - 1 that bound the N intervals."""
    intervals = max(1, min(intervals, k_step - 1))
    return torch.linspace(0, k_step - 1, intervals + 1, dtype=torch.float64).round().long()


def ddim_step(x: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor,
              clip: bool = True) -> torch.Tensor:
    """One deterministic DDIM step from x at a_t to a_prev ([B,1,1,1] alphas_cumprod each), the
    x0 estimate clipped to [-1, 1] and the noise re-derived from it (as DDIMSampler steps)."""
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


def teacher_step(teacher: GaussianDiffusion, x_hi: torch.Tensor, t_hi: torch.Tensor, t_lo: torch.Tensor,
                 cond: torch.Tensor, dn_mask: torch.Tensor | None) -> torch.Tensor:
    """The teacher's DDIM step (ddim_step) from x_hi [B,1,M,T] at steps t_hi [B] to t_lo [B], with
    the noise its denoiser implies (GaussianDiffusion.eps_from: a v teacher's output is not the noise)."""
    eps = teacher.eps_from(teacher.denoise_fn(x_hi, t_hi, cond, dn_mask), x_hi, t_hi)
    ac = teacher.alphas_cumprod
    a_hi, a_lo = (ac.gather(-1, t).reshape(-1, 1, 1, 1) for t in (t_hi, t_lo))
    return ddim_step(x_hi.float(), eps.float(), a_hi, a_lo)


WEIGHTINGS = ("sqrt-alpha", "uniform")


def step_weight(weighting: str, a: torch.Tensor) -> torch.Tensor | float:
    """The loss weight of an item noised to alphas_cumprod `a` [B,1,1,1]: sqrt(a) ("sqrt-alpha", for
    an eps student, whose x0 estimate magnifies its errors by 1/sqrt(a)) or 1 ("uniform")."""
    if weighting == "sqrt-alpha":
        return a.sqrt()
    if weighting == "uniform":
        return 1.0
    raise ValueError(f"unknown distillation weighting {weighting!r}; one of {', '.join(WEIGHTINGS)}")


class TargetNetwork(nn.Module):
    """The target network f_{theta^-}: a copy of the student moved towards it after every optimizer
    step (theta^- <- ema * theta^- + (1 - ema) * theta). `updated_at` is the student step it last
    followed (a buffer, so it is checkpointed with the weights)."""

    def __init__(self, student: GaussianDiffusion):
        super().__init__()
        self.model = copy.deepcopy(student)
        self.model.requires_grad_(False)
        self.model.eval()
        self.register_buffer("updated_at", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def follow(self, student: nn.Module, step: int, ema: float) -> None:
        if step <= int(self.updated_at):
            return
        for mine, theirs in zip(self.model.parameters(), student.parameters()):
            mine.lerp_(theirs.detach(), 1.0 - ema)
        self.updated_at.fill_(step)


class StudentModule(nn.Module):
    """The student's consistency function as a forward (so DistributedDataParallel can wrap it):
    f(x_t, t) [B,1,M,T] for conditioning (units, mel2ph, f0), the frame mask [B,1,T] or None, and
    the singers (long [B]; None for a one-singer model)."""

    def __init__(self, model: GaussianDiffusion):
        super().__init__()
        self.model = model

    def forward(self, x, t, units, mel2ph, f0, dn_mask, speaker=None):
        return consistency_function(self.model, x, t, units, mel2ph, f0, dn_mask, speaker)


def consistency_function(model: GaussianDiffusion, x, t, units, mel2ph, f0, dn_mask, speaker=None) -> torch.Tensor:
    """f(x_t, t) of `model`; `speaker`: see GaussianDiffusion.condition (a multi-singer student
    is conditioned on the same singers as its teacher)."""
    cond = model.condition(units, mel2ph, f0, speaker).cond
    return consistency_from_x0(x, t, model.x0_from(model.denoise_fn(x, t, cond, dn_mask), x, t))


@dataclass
class ConsistencyDistillationLoss:
    """`loss(batch, stream=0)`: the consistency distillation loss of a device-resident batch (the
    LossFunction the training step and validation call). `module` is a StudentModule (or that module
    wrapped by DDP), `teacher` the fixed teacher, `state` the run's state (its extras hold the target
    network; its step says when the target follows the student)."""

    module: nn.Module
    teacher: GaussianDiffusion
    state: TrainState
    intervals: int
    ema: float
    weighting: str
    seed: int
    masked: bool
    device: torch.device
    generator: torch.Generator

    @classmethod
    def for_run(cls, state: TrainState, teacher: GaussianDiffusion, *, intervals: int, ema: float, weighting: str,
                seed: int, masked: bool, device: torch.device,
                dist: DistInfo | None = None) -> "ConsistencyDistillationLoss":
        """The loss of `state.model` (the student) against `teacher`; adds the target network
        (a copy of the student as it is now) to state.extras."""
        teacher.requires_grad_(False)
        teacher.eval()
        state.extras[TARGET] = TargetNetwork(state.model).to(device)
        return cls(distributed(StudentModule(state.model), dist, device), teacher, state, intervals=intervals,
                   ema=ema, weighting=weighting, seed=seed, masked=masked, device=device, generator=state.generator)

    @property
    def target(self) -> TargetNetwork:
        return self.state.extras[TARGET]

    def __call__(self, batch: TrainingBatch, stream: int = TRAIN_STREAM) -> torch.Tensor:
        student = self.state.model
        self.target.follow(student, self.state.step, self.ema)
        teacher = self.teacher
        k_step = teacher.K_step
        grid = consistency_grid(k_step, self.intervals).to(self.device)
        n, noise = item_randomness(batch, seed=self.seed, k_step=len(grid) - 1, n_mels=teacher.n_mels,
                                   masked=self.masked, device=self.device, stream=stream, generator=self.generator)
        t_hi, t_lo = grid[n + 1], grid[n]
        lengths = batch.lengths if self.masked else None
        mask = teacher.frame_mask(batch.mel2ph, lengths)
        dn_mask = None if mask is None else mask[:, 0]
        x0 = teacher.norm_spec(batch.mel).transpose(1, 2)[:, None]
        speaker = batch.speaker  # each item's singer (None for one singer): teacher, target and student alike
        x_hi = teacher.q_sample(x0, t_hi, noise)
        if mask is not None:
            x_hi = x_hi * mask
        with torch.no_grad():
            cond = teacher.condition(batch.units, batch.mel2ph, batch.f0, speaker).cond
            x_lo = teacher_step(teacher, x_hi, t_hi, t_lo, cond, dn_mask)
            a_hi = teacher.alphas_cumprod.gather(-1, t_hi).reshape(-1, 1, 1, 1)
            if mask is not None:
                x_lo = x_lo * mask
            target = consistency_function(self.target.model, x_lo, t_lo, batch.units, batch.mel2ph, batch.f0,
                                          dn_mask, speaker).float().clamp(-1.0, 1.0)
        pred = self.module(x_hi, t_hi, batch.units, batch.mel2ph, batch.f0, dn_mask, speaker)
        err = step_weight(self.weighting, a_hi) * (pred.float() - target) ** 2
        if mask is None:
            return err.mean()
        return (err * mask).sum() / (mask.sum() * err.shape[2]).clamp(min=1)

    def local(self) -> "ConsistencyDistillationLoss":
        """The same loss on this process's module alone (no DDP wrapper)."""
        from torch.nn.parallel import DistributedDataParallel

        return replace(self, module=self.module.module) if isinstance(self.module, DistributedDataParallel) else self

    def no_sync(self):
        return self.module.no_sync() if hasattr(self.module, "no_sync") else contextlib.nullcontext()
