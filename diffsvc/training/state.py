"""The training state: everything a run changes and a checkpoint must carry to resume exactly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from diffsvc.config import Config
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.training.ema import EMA_NAME, WeightAverage
from diffsvc.training.randomness import seed_everything

LR_GAMMA = 0.5  # the original hard-codes the halving (SVC_task.py:117), it is not a config key


@dataclass
class TrainState:
    """The model being trained, its optimizer (AdamW), learning-rate schedule (StepLR), fp16 loss
    scaler (None otherwise), and where the run is: `step` optimizer steps done, the data `epoch`
    and `position` (batches of that epoch already trained on), `split` (each batch runs in this many
    parts since a step ran out of memory). `generator` is the device generator that is reseeded per
    item (see randomness.py).

    `extras`: modules that change with training besides the model (an exponential moving average
    of the weights, say); checkpointing saves and restores their state_dicts by name. Modules that
    stay fixed (a distillation teacher) belong to the loss function instead. `resumed`: the
    resume record read from the checkpoint this state was restored from ({} for a new run)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    generator: torch.Generator
    step: int = 0
    epoch: int = 0
    position: int = 0
    split: int = 1
    extras: dict[str, nn.Module] = field(default_factory=dict)
    resumed: dict = field(default_factory=dict)

    @property
    def params(self) -> list[torch.nn.Parameter]:
        """The weights the optimizer updates, in its order."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]


def build_state(config: Config, device: torch.device, amp_dtype: torch.dtype | None, *,
                make_model: Callable[[Config], nn.Module] = GaussianDiffusion.from_config) -> TrainState:
    """A fresh state: the global generators seeded with config.seed, then the model (its initial
    weights come from them) in train mode on `device`, AdamW with the config's lr, weight decay
    and betas, a StepLR halving every decay_steps, a loss scaler for fp16 only, and a weight
    average (extras["ema"], ema.py) when config.ema_decay > 0.
    `make_model(config)` builds another model (for instance one with a speaker embedding)."""
    seed_everything(config.seed)
    model = make_model(config).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                                  betas=(config.optimizer_adam_beta1, config.optimizer_adam_beta2))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.decay_steps, gamma=LR_GAMMA)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    state = TrainState(model, optimizer, scheduler, scaler, torch.Generator(device=device))
    if config.ema_decay > 0:
        state.extras[EMA_NAME] = WeightAverage(model, config.ema_decay).to(device)
    return state
