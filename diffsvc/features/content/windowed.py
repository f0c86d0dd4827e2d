"""Content units for inputs of any length with memory that does not grow with it.

A single pass costs memory linear in length for the convs and quadratic for attention (a 5-minute
song is 15,000 frames: ~11 GB of attention scores per layer). Inputs up to `window_frames` (30 s by
default) therefore get the single pass the original did, and nothing changes. Longer inputs are cut
into overlapping windows on the 320-sample frame grid; each window keeps only its central
frames, and `context_frames` on each side are computed and thrown away.

What is exact and what is not:
- The conv stack is local, so a window cut at frame a on the padded signal gives the same conv
  features as the full pass, except for one global operation: the first conv's GroupNorm(C, C)
  normalises each channel over the whole input. We measure those per-channel statistics over the
  whole signal first (a cheap streaming pass of the first conv) and hand them to every window, so
  the conv features match the single pass exactly.
- The positional conv sees +-64 frames; with context_frames >= 64 every kept frame sees the same
  neighbours as in the single pass. A model without attention layers is therefore reproduced to
  float precision (tested).
- Self-attention sees the whole input in a single pass but only its window here. That part is an
  approximation whose error shrinks as the context grows (HuBERT's attention is mostly local in
  practice, but nothing guarantees it). The defaults give every kept frame at least 5 s of audio on
  each side.
"""

from __future__ import annotations

import torch

from diffsvc.features.content.hubert_soft import Hubert

DEFAULT_WINDOW_FRAMES = 1500  # 30 s at 50 frames/s
DEFAULT_CONTEXT_FRAMES = 250  # 5 s each side
_STATS_CHUNK_OUTPUTS = 32000  # first-conv outputs per chunk of the statistics pass (~32 MB at 512 ch)


def first_norm_statistics(model: Hubert, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-channel mean and (biased) variance of the first conv's output over the whole padded
    waveform `wav` [N], computed chunk by chunk; None when the model has no GroupNorm there."""
    extractor = model.feature_extractor
    if extractor.mode != "group_norm":
        return None
    conv = extractor.conv0
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    total = (wav.shape[-1] - kernel) // stride + 1
    sums = torch.zeros(conv.out_channels, dtype=torch.float64, device=wav.device)
    squares = torch.zeros_like(sums)
    for first in range(0, total, _STATS_CHUNK_OUTPUTS):
        count = min(_STATS_CHUNK_OUTPUTS, total - first)
        piece = wav[first * stride: (first + count - 1) * stride + kernel]
        y = conv(piece.view(1, 1, -1))[0].double()
        sums += y.sum(dim=1)
        squares += (y * y).sum(dim=1)
    mean = sums / total
    var = (squares / total - mean * mean).clamp_min(0.0)
    return mean.float(), var.float()


def window_plan(num_frames: int, window_frames: int, context_frames: int) -> list[tuple[int, int, int, int]]:
    """(start, end, keep_start, keep_end) frame ranges: the model runs on frames [start, end) and
    frames [keep_start, keep_end) of the output are kept. Kept ranges tile [0, num_frames)."""
    core = window_frames - 2 * context_frames
    if core < 1:
        raise ValueError(f"window_frames ({window_frames}) must exceed 2 * context_frames ({context_frames})")
    if num_frames <= window_frames:
        return [(0, num_frames, 0, num_frames)]
    plan = []
    for keep_start in range(0, num_frames, core):
        keep_end = min(num_frames, keep_start + core)
        start, end = max(0, keep_start - context_frames), min(num_frames, keep_end + context_frames)
        if end - start < window_frames:  # at either end of the input: use the spare room as context
            start = max(0, end - window_frames)
            end = min(num_frames, start + window_frames)
        plan.append((start, end, keep_start, keep_end))
    return plan


@torch.inference_mode()
def encode_windowed(
    model: Hubert,
    wav: torch.Tensor,
    output_layer: int | None = None,
    window_frames: int = DEFAULT_WINDOW_FRAMES,
    context_frames: int = DEFAULT_CONTEXT_FRAMES,
) -> torch.Tensor:
    """Units `model.proj(model.encode(wav, output_layer))` for an already padded 16 kHz waveform
    `wav` [N] on the model's device, in windows when long. Returns [T, proj_dim] float32 on the CPU."""
    total = model.num_frames(wav.shape[-1])
    plan = window_plan(total, window_frames, context_frames)
    if len(plan) == 1:
        return model.proj(model.encode(wav.view(1, -1), output_layer))[0].float().cpu()
    stats = first_norm_statistics(model, wav)
    stride, field = model.frame_stride, model.receptive_field
    out = torch.empty(total, model.proj.out_features, dtype=torch.float32)
    for start, end, keep_start, keep_end in plan:
        piece = wav[start * stride: (end - 1) * stride + field]
        units = model.proj(model.encode(piece.view(1, -1), output_layer, stats))[0]
        out[keep_start:keep_end] = units[keep_start - start: keep_end - start].float().cpu()
    return out
