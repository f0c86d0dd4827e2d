"""DiffNet: the WaveNet-style denoiser that predicts the noise in a mel spectrogram.

Layer names, split orders and constants follow the original exactly (checkpoints depend on them):
the gated unit splits (gate, filter) with the gate first, the block output splits (residual,
skip) with the residual first, residuals are scaled by 1/sqrt(2) and the skip sum by
1/sqrt(layers), and the step embedding is sinusoidal over the raw integer step.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from diffsvc.model.backbones.base import BACKBONES, Backbone, SinusoidalStepEmbedding


def _conv1d(*args, **kwargs) -> nn.Conv1d:
    conv = nn.Conv1d(*args, **kwargs)
    nn.init.kaiming_normal_(conv.weight)  # the original's init, for training from scratch
    return conv


class ResidualBlock(nn.Module):
    def __init__(self, cond_dim: int, channels: int, dilation: int):
        super().__init__()
        self.dilated_conv = _conv1d(channels, 2 * channels, 3, padding=dilation, dilation=dilation)
        self.diffusion_projection = nn.Linear(channels, channels)
        self.conditioner_projection = _conv1d(cond_dim, 2 * channels, 1)
        self.output_projection = _conv1d(channels, 2 * channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, step: torch.Tensor, mask: torch.Tensor | None = None,
                cond_proj: torch.Tensor | None = None):
        """cond_proj: conditioner_projection(cond), when the caller computed it once for many steps."""
        y = x + self.diffusion_projection(step)[..., None]
        if mask is not None:
            # Zero the padded frames the dilated conv reads, so that an item padded in a batch
            # sees exactly the zero padding it would see alone (ours; the original had no mask).
            y = y * mask
        y = self.dilated_conv(y) + (self.conditioner_projection(cond) if cond_proj is None else cond_proj)
        gate, filter_ = torch.chunk(y, 2, dim=1)
        y = torch.sigmoid(gate) * torch.tanh(filter_)
        residual, skip = torch.chunk(self.output_projection(y), 2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


@BACKBONES.register("wavenet", doc="DiffNet, the original's WaveNet-style denoiser (residual_layers x residual_channels)")
class DiffNet(Backbone):
    """forward(spec [B,1,M,T], t [B] long, cond [B,H,T], mask [B,1,T] or None) -> noise [B,1,M,T].

    mask (1 = real frame) makes a padded batch give the same numbers as its items one at a time;
    None is the original's behaviour. `diff_decoder_type: wavenet` (the default) in the config.
    """

    STATE_KEY = "residual_layers.0.dilated_conv.weight"

    def __init__(self, in_dims: int = 128, residual_channels: int = 384, residual_layers: int = 20,
                 cond_dim: int = 256, dilation_cycle_length: int = 4):
        super().__init__()
        channels = residual_channels
        self.in_dims, self.cond_dims = int(in_dims), int(cond_dim)
        self.channels = int(channels)
        self._dilations = [2 ** (i % dilation_cycle_length) for i in range(residual_layers)]
        self.input_projection = _conv1d(in_dims, channels, 1)
        self.diffusion_embedding = SinusoidalStepEmbedding(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, channels * 4), nn.Mish(), nn.Linear(channels * 4, channels))
        self.residual_layers = nn.ModuleList(
            ResidualBlock(cond_dim, channels, 2 ** (i % dilation_cycle_length)) for i in range(residual_layers)
        )
        self.skip_projection = _conv1d(channels, channels, 1)
        self.output_projection = _conv1d(channels, in_dims, 1)
        nn.init.zeros_(self.output_projection.weight)  # as the original: starts predicting zero noise

    @classmethod
    def from_config(cls, config) -> "DiffNet":
        return cls(config.audio_num_mel_bins, config.residual_channels, config.residual_layers,
                   config.hidden_size, config.dilation_cycle_length)

    @property
    def reach_frames(self) -> int:
        return sum(self._dilations)  # each kernel-3 dilated conv sees `dilation` frames each side

    def activation_floats_per_frame(self) -> int:
        # per residual layer the dilated conv, conditioner projection, their sum ([2C] each), gate,
        # filter, product, residual and skip ([C] each) can be alive at once, plus the conditioning
        # [H] and its projection's input, and the running skip sum
        # [H] and its projection's input, and the running skip sum; plus every layer's conditioner
        # projection ([2C] each), which sampling computes once and keeps for all steps
        return 12 * self.channels + 2 * self.cond_dims + 2 * self.channels * len(self.residual_layers)

    def project_condition(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's conditioner projection of cond [B,H,T] ([B,2C,T] each). The conditioning
        is the same at every sampling step, so GaussianDiffusion.sample computes this once and
        passes it to forward as `cond_proj` (a seventh of the work per step at 384 x 20; the same
        numbers)."""
        return [layer.conditioner_projection(cond) for layer in self.residual_layers]

    def forward(self, spec: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                mask: torch.Tensor | None = None, cond_proj: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = F.relu(self.input_projection(spec[:, 0]))
        step = self.mlp(self.diffusion_embedding(t))
        skips = 0
        for i, layer in enumerate(self.residual_layers):
            x, skip = layer(x, cond, step, mask, None if cond_proj is None else cond_proj[i])
            skips = skips + skip
        x = skips / math.sqrt(len(self.residual_layers))
        x = F.relu(self.skip_projection(x))
        return self.output_projection(x)[:, None]
