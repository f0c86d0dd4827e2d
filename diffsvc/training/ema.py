"""An exponential moving average (EMA) of the model's weights, used for validation, inference and
the weights a checkpoint hands to inference (config `ema_decay`; 0 turns it off).

After every optimizer step, each trained weight w updates its average a:
    a <- d a + (1 - d) w,   d = min(ema_decay, (1 + n) / (10 + n)),  n = updates so far,
the warm-up of the decay (TensorFlow's ExponentialMovingAverage with num_updates) so that early
averages are not dominated by the random initial weights.

How a checkpoint holds it (checkpointing.py): the `state_dict` in the original layout holds the
averaged weights (what `diffsvc infer` and the original Diff-SVC read), the raw weights the
optimizer continues from sit in our resume record, and this module's own state_dict is only the
update count; so a resumed run continues bit-exactly.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

EMA_NAME = "ema"  # its name in TrainState.extras


class WeightAverage(nn.Module):
    """The average of `model`'s trainable parameters. `update(model)` after each step,
    `swapped_into(model)` to use the averages in place of the weights for a while, `reset(model)`
    to start averaging from the model's present weights. The averages live outside this module's
    state_dict (see the module docstring); its state_dict is `num_updates`."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be within (0, 1), got {decay}")
        self.decay = float(decay)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._averages: dict[str, torch.Tensor] = {}
        self.reset(model)

    @staticmethod
    def _trained(model: nn.Module) -> dict[str, torch.Tensor]:
        return {name: p for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Averages := the model's present weights (the update count is kept)."""
        self._averages = {name: p.detach().clone() for name, p in self._trained(model).items()}

    def current_decay(self) -> float:
        n = int(self.num_updates)
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One averaging step towards `model`'s weights (call after each optimizer step)."""
        weight = 1.0 - self.current_decay()
        for name, p in self._trained(model).items():
            self._averages[name].lerp_(p.detach(), weight)
        self.num_updates += 1

    def averages(self) -> dict[str, torch.Tensor]:
        """The averaged parameters by name (the model's parameter names)."""
        return self._averages

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module):
        """Within the block, `model`'s trained parameters hold the averages; afterwards exactly the
        weights they held before."""
        params = self._trained(model)
        saved = {name: p.detach().clone() for name, p in params.items()}
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(self._averages[name])
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(saved[name])


def weight_average(extras: dict[str, nn.Module]) -> WeightAverage | None:
    """The run's weight average (TrainState.extras[EMA_NAME]), or None when averaging is off."""
    average = extras.get(EMA_NAME)
    return average if isinstance(average, WeightAverage) else None


def inference_weights(state) -> contextlib.AbstractContextManager:
    """A context in which state.model holds the weights for validation and inference: the averages
    when the run averages, else the model's own weights."""
    average = weight_average(state.extras)
    return average.swapped_into(state.model) if average is not None else contextlib.nullcontext(state.model)
