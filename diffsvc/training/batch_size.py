"""The batch size from free GPU memory.

A training step's peak memory grows in a straight line with the padded frames in the batch
(activations and their gradients are per frame; weights, gradients and AdamW's two moments are
fixed). So we run a couple of real steps of this model, with these settings, at two batch sizes,
fit the line, and take the largest batch whose predicted peak fits in the free memory minus a
margin (fragmentation and cuDNN workspaces are not in the line). If a step still runs out of
memory the trainer splits that batch into parts and retries it (see step.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

CPU_DEFAULT_BATCH = 8  # items; CPU steps are slow, and a small batch gives feedback sooner
DEFAULT_MARGIN = 0.15


@dataclass(frozen=True)
class MemoryLine:
    """peak bytes = fixed + per_frame * frames (frames = items x padded length)."""

    fixed: float
    per_frame: float

    def peak(self, frames: int) -> float:
        return self.fixed + self.per_frame * frames


@dataclass(frozen=True)
class BatchPlan:
    """What the length-bucket sampler is told: at most `max_sentences` items and `max_tokens`
    padded frames per batch. `reason` says how it was chosen, for the log."""

    max_sentences: int
    max_tokens: int
    reason: str


def fit_memory_line(samples: list[tuple[int, int]]) -> MemoryLine:
    """Least-squares line through (frames, peak bytes) measurements (two or more)."""
    if len(samples) < 2:
        raise ValueError("need at least two (frames, bytes) measurements")
    n = len(samples)
    mx = sum(f for f, _ in samples) / n
    my = sum(b for _, b in samples) / n
    sxx = sum((f - mx) ** 2 for f, _ in samples)
    if sxx == 0:
        raise ValueError("measurements need different frame counts")
    slope = sum((f - mx) * (b - my) for f, b in samples) / sxx
    slope = max(slope, 1.0)  # measurement noise must not give a free (or negative) cost per frame
    return MemoryLine(fixed=my - slope * mx, per_frame=slope)


def choose_batch_size(available_bytes: float, line: MemoryLine, frames_per_item: int, *,
                      extra_fixed_bytes: float = 0.0, margin: float = DEFAULT_MARGIN, max_items: int = 88) -> int:
    """The most items of `frames_per_item` frames whose predicted peak fits in
    available_bytes * (1 - margin). `extra_fixed_bytes`: memory the measured steps did not hold
    yet (AdamW's moments). Returns 0 when not even one item fits."""
    usable = available_bytes * (1.0 - margin) - line.fixed - extra_fixed_bytes
    if usable <= 0:
        return 0
    items = int(usable // (line.per_frame * frames_per_item))
    return max(0, min(items, max_items))


def plan_for_items(items: int, frames_per_item: int, max_tokens: int, reason: str) -> BatchPlan:
    """A plan allowing `items` items of up to `frames_per_item` frames (shorter items pack more
    densely only up to the same token budget)."""
    return BatchPlan(max_sentences=max(1, items), max_tokens=max(frames_per_item, min(max_tokens, items * frames_per_item)),
                     reason=reason)


def measure_step_memory(step: Callable[[int], None], device: torch.device, items: list[int],
                        frames_per_item: int) -> list[tuple[int, int]]:
    """Run `step(n_items)` (a forward and backward of n_items x frames_per_item) for each count and
    return (frames, peak allocated bytes) pairs. CUDA only."""
    samples = []
    for n in items:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        step(n)
        torch.cuda.synchronize(device)
        samples.append((n * frames_per_item, torch.cuda.max_memory_allocated(device)))
    torch.cuda.empty_cache()
    return samples


def available_cuda_bytes(device: torch.device) -> int:
    """The memory this process can use for its peak: free memory on the GPU plus what PyTorch's
    allocator already holds (the measured peaks include our own weights, so they count too)."""
    free, _total = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device))


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def items_from_memory(step: Callable[[int], None], device: torch.device, frames: int, *, param_bytes: int,
                      several_processes: bool, margin: float, max_items: int,
                      log: Callable[[str], None] = print) -> int:
    """The most items of `frames` frames per batch that fit in this GPU's free memory, from real
    steps of 1, 2 and 4 items (`step(n)`: a forward and backward; it is the caller's to clear the
    gradients after each). Raises DiffSvcError when not even one or two items fit."""
    from diffsvc.errors import DiffSvcError

    samples = []
    for n in (1, 2, 4):
        try:
            samples += measure_step_memory(step, device, [n], frames)
        except Exception as e:  # noqa: BLE001 - only running out of memory is expected here
            if not is_out_of_memory(e):
                raise
            break
    if len(samples) < 2:
        raise DiffSvcError(f"not enough GPU memory for a batch of two items of {frames} frames; lower "
                           "crop_frames in the project's config.yaml or pass --batch-size 1")
    line = fit_memory_line(samples)
    # AdamW keeps two moments per weight; several processes also need a flat buffer of gradients
    extra = 2 * param_bytes + (param_bytes if several_processes else 0)
    available = available_cuda_bytes(device)
    items = choose_batch_size(available, line, frames, extra_fixed_bytes=extra, margin=margin, max_items=max_items)
    log(f"memory: {line.per_frame / 2**20:.2f} MiB per frame + {line.fixed / 2**30:.2f} GiB fixed, "
        f"{available / 2**30:.1f} GiB available -> {items} items of {frames} frames")
    if items < 1:
        raise DiffSvcError(f"not enough GPU memory for one item of {frames} frames; lower crop_frames in the "
                           "project's config.yaml")
    return items
