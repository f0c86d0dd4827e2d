"""The training entry points, gathered from the modules that hold them (kept for existing imports):

    loop.py           Trainer, train, TrainOptions, TrainResult, StepRecord, TrainingStopped
    state.py          TrainState, build_state
    step.py           optimizer_step, forward_backward, split_batch
    objective.py      DiffusionLoss, LossModule, batch_loss
    validate.py       Validator
    checkpointing.py  save_checkpoint, resume, init_weights_from, RESUME_KEY
    randomness.py     item_seed, item_randomness
"""

from __future__ import annotations

from diffsvc.training.checkpointing import RESUME_KEY, save_checkpoint
from diffsvc.training.loop import StepRecord, Trainer, TrainingStopped, TrainOptions, TrainResult, train
from diffsvc.training.objective import DiffusionLoss, LossModule, batch_loss
from diffsvc.training.randomness import item_randomness, item_seed
from diffsvc.training.state import TrainState, build_state
from diffsvc.training.step import optimizer_step, split_batch

__all__ = ["TrainOptions", "TrainResult", "StepRecord", "Trainer", "TrainingStopped", "train", "batch_loss",
           "item_randomness", "item_seed", "split_batch", "LossModule", "DiffusionLoss", "TrainState", "build_state",
           "optimizer_step", "save_checkpoint", "RESUME_KEY"]
