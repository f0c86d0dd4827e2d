"""One optimizer step: forward and backward (with autocast and the fp16 loss scaler), a batch
retried in parts when it runs out of memory, gradients averaged over processes, a guard against
non-finite losses, gradient clipping, then the optimizer, the schedule and the weight average."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from diffsvc.data.batch import TrainingBatch
from diffsvc.errors import DiffSvcError
from diffsvc.training import batch_size as bs
from diffsvc.training.devices import autocast
from diffsvc.training.distributed import DistInfo, all_reduce_max, average_gradients
from diffsvc.training.ema import weight_average
from diffsvc.training.objective import LossFunction
from diffsvc.training.state import TrainState


@dataclass
class StepSettings:
    """How steps run: `masked` (the loss mask, which decides how split parts are weighted),
    `clip_grad_norm` (<= 0: no clipping), the autocast dtype (None: fp32), the device, the
    processes, `no_sync` (DDP's, see objective.DiffusionLoss) and where messages go."""

    masked: bool
    clip_grad_norm: float
    amp_dtype: torch.dtype | None
    device: torch.device
    dist: DistInfo = field(default_factory=DistInfo)
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    log: Callable[[str], None] = print


@dataclass
class StepOutcome:
    """`good`: the weights were updated (False: the loss or gradients were not finite and nothing
    changed). `loss` is the step's loss (mean over its batches), `stop`: some process asked to stop."""

    good: bool
    loss: float
    grad_norm: float
    stop: bool = False


def split_batch(batch: TrainingBatch, parts: int, masked: bool) -> list[tuple[TrainingBatch, float]]:
    """Cut a batch into `parts` chunks of items, each with the weight that makes the weighted sum
    of chunk losses equal the whole batch's loss (frames for the masked loss, items otherwise)."""
    b = batch.items
    parts = max(1, min(parts, b))
    if parts == 1:
        return [(batch, 1.0)]
    total = float(batch.lengths.sum()) if masked else float(b)
    chunks = []
    for idx in torch.arange(b).chunk(parts):
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        chunk = batch.select(lo, hi)
        weight = float(chunk.lengths.sum()) / total if masked else (hi - lo) / total
        chunks.append((chunk, weight))
    return chunks


def forward_backward(state: TrainState, batches: list[TrainingBatch], loss: LossFunction,
                     settings: StepSettings) -> torch.Tensor:
    """Accumulate the gradients of `batches` (one optimizer step), each batch in state.split parts,
    and return the step's loss. On running out of memory, double the parts and redo the step from
    clean gradients (the per-item randomness makes the parts add up to the same gradients)."""
    while True:
        state.optimizer.zero_grad(set_to_none=True)
        try:
            total = torch.zeros((), device=settings.device)
            with settings.no_sync():
                for batch in batches:
                    for chunk, weight in split_batch(batch, state.split, settings.masked):
                        with autocast(settings.device, settings.amp_dtype):
                            value = loss(chunk)
                        scaled = value.float() * (weight / len(batches))
                        (state.scaler.scale(scaled) if state.scaler else scaled).backward()
                        total += scaled.detach()
            return total
        except Exception as e:  # noqa: BLE001 - only running out of memory is retried
            if not bs.is_out_of_memory(e):
                raise
            items = max(b.items for b in batches)
            state.optimizer.zero_grad(set_to_none=True)
            value = scaled = None  # noqa: F841 - drop references so the memory can be freed
            if settings.device.type == "cuda":
                torch.cuda.empty_cache()
            if state.split >= items:
                raise DiffSvcError(f"out of memory even with one item per part (batch of {items}); lower "
                                   "crop_frames in the project's config.yaml") from None
            state.split = min(state.split * 2, items)
            settings.log(f"step {state.step + 1}: out of memory with {items} items; retrying it in "
                         f"{state.split} parts (and so on from now)")


def optimizer_step(state: TrainState, batches: list[TrainingBatch], loss: LossFunction, settings: StepSettings,
                   *, stop_requested: bool = False) -> StepOutcome:
    """One optimizer step on `batches` (accumulated). A bad step (loss or gradient norm not finite
    on any process) changes nothing. `stop_requested` (this process got a signal) is shared with
    the other processes in the same all-reduce, so all stop at the same step."""
    total = forward_backward(state, batches, loss, settings)
    params = state.params
    average_gradients(params, settings.dist)
    value = float(total)
    flags = all_reduce_max([float(stop_requested), float(not math.isfinite(value))], settings.dist, settings.device)
    stop = bool(flags[0])
    if state.scaler is not None:
        state.scaler.unscale_(state.optimizer)
    clip = settings.clip_grad_norm if settings.clip_grad_norm > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    if bool(flags[1]) or (state.scaler is None and not math.isfinite(grad_norm)):
        state.optimizer.zero_grad(set_to_none=True)
        return StepOutcome(False, value, grad_norm, stop)
    if state.scaler is not None:
        state.scaler.step(state.optimizer)  # skips by itself when fp16 gradients overflowed
        state.scaler.update()
    else:
        state.optimizer.step()
    state.scheduler.step()
    average = weight_average(state.extras)
    if average is not None:
        average.update(state.model)
    state.step += 1
    return StepOutcome(True, value, grad_norm, stop)
