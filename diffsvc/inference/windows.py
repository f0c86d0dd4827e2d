"""Sampling long voiced stretches in overlapping windows, sized from free memory, and joining them.

A voiced stretch of T mel frames is covered by windows whose kept spans overlap by `crossfade`
frames. Each window is sampled with `context` extra frames on both sides (then cut off), so a kept
span sees the same neighbourhood it would see in one pass over the whole stretch (a backbone's
`reach_frames` says how far one denoiser call sees; repeated calls spread that further).

Join: a linear crossfade in the log10-mel domain, before vocoding. Why the mel and why linear:
the two windows estimate the same frames from the same noise and conditioning (they differ only
by what lies beyond their edges), so they are strongly correlated and a linear blend keeps the
level; the blended mel is then vocoded in one continuous pass, so the vocoder's harmonic phase never
jumps at a seam. Crossfading audio from separate vocoder runs would mix two unrelated phases and
comb-filter inside the fade.

Window length and batch size come from the memory free on the device (VRAM via
torch.cuda.mem_get_info, RAM via /proc/meminfo's MemAvailable) and a cost per frame: measured
with one probe denoiser call on CUDA, and on the CPU from the activation count the backbone
reports (`activation_floats_per_frame`) because the CPU allocator offers no peak counter
(benchmarks/infer.py checks the count against the peak resident memory of a sampling run). The
planner asks the backbone (diffsvc.model.backbones.Backbone) and never opens its layers, so it
works for any registered backbone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from diffsvc.vocoder.windowed import balanced_spans, window_spans

MIN_WINDOW_FRAMES = 128  # below this the context overhead dominates
MAX_WINDOW_FRAMES = 1500  # ~17 s: on a GPU longer windows save nothing (the batch fills it) and delay the first result
# On the CPU every window's context is extra work and nothing runs in parallel: a window as long as a
# section (SECTION_MAX_S = 60 s, 5168 frames) samples a whole section in one pass, as the original
# did (~270 MB at release size).
MAX_WINDOW_FRAMES_CPU = 5200
MAX_BATCH = 16
# On the CPU a batch buys no speed at release size (DiffNet per frame on 2 cores, batch 1 -> 4:
# 206 -> 206 us at 384 x 20; 11.2 -> 8.6 us at 64 x 10) and its items are padded to the longest:
# one window at a time (benchmarks/pipeline.py).
MAX_BATCH_CPU = 1
MEMORY_SHARE = 0.5  # of the free memory, leaving room for the vocoder, the encoders and other programs
DEFAULT_CONTEXT_FRAMES = 32
DEFAULT_CROSSFADE_FRAMES = 16


@dataclass(frozen=True)
class Window:
    """Frames [lo, hi) of a stretch are sampled; [start, end) of them are kept."""

    lo: int
    hi: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class WindowPlan:
    window_frames: int
    batch_size: int
    context_frames: int = DEFAULT_CONTEXT_FRAMES
    crossfade_frames: int = DEFAULT_CROSSFADE_FRAMES


kept_spans = window_spans  # one definition of the overlapping spans, shared with the vocoder


def plan_windows(num_frames: int, plan: WindowPlan) -> list[Window]:
    """The windows of one stretch; a stretch that fits in one window is sampled whole. Windows are
    evened out (`balanced_spans`): as many as plan.window_frames needs, of about equal length, so
    a batch pads little and no window is mostly context."""
    if num_frames <= plan.window_frames:
        return [Window(0, num_frames, 0, num_frames)]
    windows = []
    for start, end in balanced_spans(num_frames, plan.window_frames, plan.crossfade_frames):
        lo, hi = max(0, start - plan.context_frames), min(num_frames, end + plan.context_frames)
        windows.append(Window(lo, hi, start, end))
    return windows


def join_windows(parts: list[tuple[Window, torch.Tensor]], num_frames: int) -> torch.Tensor:
    """Kept spans of sampled windows ([hi - lo, M] each, in order) -> [num_frames, M], linear
    crossfades where spans overlap."""
    first = parts[0][1]
    out = first.new_zeros(num_frames, first.shape[-1])
    weight = first.new_zeros(num_frames, 1)
    for i, (w, mel) in enumerate(parts):
        kept = mel[w.start - w.lo:w.end - w.lo]
        ramp = torch.ones(w.end - w.start, 1, dtype=mel.dtype, device=mel.device)
        if i > 0:  # fade in over the overlap with the previous span
            prev_end = parts[i - 1][0].end
            n = max(0, prev_end - w.start)
            ramp[:n, 0] = (torch.arange(n, dtype=mel.dtype, device=mel.device) + 1) / (n + 1)
        if i + 1 < len(parts):
            n = max(0, w.end - parts[i + 1][0].start)
            if n:
                ramp[-n:, 0] = torch.minimum(
                    ramp[-n:, 0], 1 - (torch.arange(n, dtype=mel.dtype, device=mel.device) + 1) / (n + 1))
        out[w.start:w.end] += kept * ramp
        weight[w.start:w.end] += ramp
    # weights sum to 1 inside overlaps already; dividing guards the float rounding
    return out / weight.clamp(min=1e-6)


# --- memory ------------------------------------------------------------------------------------

def free_memory_bytes(device: torch.device) -> int:
    """Memory free for us now: VRAM on CUDA, MemAvailable (RAM the kernel can hand out) on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # other Unixes: free pages (an underestimate: caches are not counted)
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2 * 1024**3  # unknown: assume a modest 2 GiB


def estimated_bytes_per_frame(model) -> int:
    """Peak bytes per mel frame of one batch item while sampling: the activations the backbone
    reports alive at once (`activation_floats_per_frame`, conditioning included) plus the
    sampler's history of a few [M] tensors; float32, x2 for the allocator's slack. For DiffNet
    that is 12 C + 2 H + 10 M floats and 2 C per layer for the conditioner projections it keeps
    over all steps; measured peaks of whole sampling runs on the CPU were 0.8-1.3x this before they
    were kept (benchmarks/infer.py prints the ratio)."""
    floats = model.denoise_fn.activation_floats_per_frame() + 10 * model.n_mels
    return 2 * 4 * floats


@torch.no_grad()
def measured_bytes_per_frame(model, device: torch.device, probe_frames: int = 256) -> int:
    """On CUDA: the peak allocation of one denoiser call on a probe window, per frame (x1.5 for
    the sampler's state and fragmentation). Other devices: estimated_bytes_per_frame."""
    device = torch.device(device)
    if device.type != "cuda":
        return estimated_bytes_per_frame(model)
    m = model.n_mels
    hidden = model.denoise_fn.cond_dims
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    x = torch.zeros(1, 1, m, probe_frames, device=device)
    cond = torch.zeros(1, hidden, probe_frames, device=device)
    t = torch.zeros(1, dtype=torch.long, device=device)
    # what sampling computes once and keeps for all steps (GaussianDiffusion.sample) is in the peak too
    project = getattr(model.denoise_fn, "project_condition", None)
    kept = {"cond_proj": project(cond)} if project is not None else {}
    model.denoise_fn(x, t, cond, None, **kept)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del x, cond, kept
    return int(1.5 * peak / probe_frames) + 4 * (6 * m + hidden)


def plan_for_memory(bytes_per_frame: int, free_bytes: int, longest_stretch: int, *,
                    context_frames: int = DEFAULT_CONTEXT_FRAMES, crossfade_frames: int = DEFAULT_CROSSFADE_FRAMES,
                    max_window_frames: int = MAX_WINDOW_FRAMES, max_batch: int = MAX_BATCH) -> WindowPlan:
    """The longest window that fits (up to max_window_frames), then as many windows per batch as fit."""
    budget = max(0, int(free_bytes * MEMORY_SHARE))
    frames_that_fit = budget // max(1, bytes_per_frame)
    window = min(max_window_frames, frames_that_fit - 2 * context_frames)
    window = max(MIN_WINDOW_FRAMES, window)
    window = max(crossfade_frames + 1, min(window, max(longest_stretch, crossfade_frames + 1)))
    item_frames = window + 2 * context_frames
    batch = max(1, min(max_batch, frames_that_fit // max(1, item_frames)))
    return WindowPlan(window, batch, context_frames, crossfade_frames)
