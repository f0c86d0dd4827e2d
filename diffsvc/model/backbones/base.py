"""What every denoiser backbone offers GaussianDiffusion, the trainer and the window planner.

A backbone predicts the noise in a normalised mel:

    eps = backbone(spec [B,1,M,T], t [B] long, cond [B,H,T], mask [B,1,T] or None)  # -> [B,1,M,T]

mask (1 = real frame) makes a padded batch give the same numbers as its items one at a time;
None is the original's behaviour. Besides the forward pass a backbone *tells* its sizes
(`in_dims` = M, `cond_dims` = H), how far one call reaches along time (`reach_frames`) and its
activation memory per frame (`activation_floats_per_frame`), so that nothing outside opens it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diffsvc.registry import Registry

BACKBONES = Registry("denoiser backbone", "diff_decoder_type")


class Backbone(nn.Module):
    """Base class of the registered denoisers; subclasses build themselves with `from_config(config)`
    (the registry's one constructor shape) and set `in_dims` and `cond_dims`."""

    in_dims: int
    cond_dims: int
    STATE_KEY: str = ""  # a parameter name only this backbone has (tells checkpoints apart)

    @classmethod
    def from_config(cls, config) -> "Backbone":
        raise NotImplementedError

    @property
    def reach_frames(self) -> int:
        """Frames on each side one forward call can see (its receptive field's half width)."""
        raise NotImplementedError

    def activation_floats_per_frame(self) -> int:
        """Floats per mel frame of one batch item that can be alive at once in a no-grad forward
        (the conditioning [H] included), for sizing sampling windows; an estimate from the layer
        shapes (benchmarks/infer.py compares such estimates with measured peaks)."""
        raise NotImplementedError


class SinusoidalStepEmbedding(nn.Module):
    """[B] integer steps -> [B, dim]: concat(sin(t f_k), cos(t f_k)), f_k = 10000^(-k/(half-1))."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        angles = t.float()[:, None] * freqs[None, :]
        return torch.cat((angles.sin(), angles.cos()), dim=-1)
