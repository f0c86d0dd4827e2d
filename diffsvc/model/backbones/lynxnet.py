"""LYNXNet: a ConvNeXt-style denoiser with gated (SwiGLU) activations, after DiffSinger's.

openvpi/DiffSinger (modules/backbones/lynxnet.py, itself from CNChTu's Diffusion-SVC naive_v2)
trains this backbone by default. Our own code with the same shape of block:

    x = x + step_proj(step) + cond_proj(cond)                     # [B,C,T]
    y = LayerNorm(x) -> 1x1 conv C -> 2EC -> SwiGLU (out * silu(gate)) -> depthwise conv (kernel K)
        -> PReLU -> 1x1 conv EC -> C
    x = x + y

with a GELU input projection, a final LayerNorm and a zero-initialised output projection (it
starts by predicting zero noise, as DiffNet). Everything is per frame except the depthwise conv,
so zeroing padded frames before it (mask) keeps padded items exactly as they would be alone.
Select it with `diff_decoder_type: lynxnet` (sizes: lynxnet_layers, lynxnet_channels,
lynxnet_expansion, lynxnet_kernel).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from diffsvc.model.backbones.base import BACKBONES, Backbone, SinusoidalStepEmbedding


class SwiGLU(nn.Module):
    """[B, 2D, T] -> [B, D, T]: first half * silu(second half) along `dim` (Shazeer 2020, GLU variants)."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, gate = x.chunk(2, dim=self.dim)
        return out * F.silu(gate)


class LynxBlock(nn.Module):
    """One residual block: conditioning and step added, then LayerNorm, pointwise up (x2 for the
    gate), SwiGLU, depthwise conv over time, PReLU, pointwise down, residual add."""

    def __init__(self, cond_dims: int, channels: int, expansion: int = 2, kernel_size: int = 31):
        super().__init__()
        inner = channels * expansion
        self.diffusion_projection = nn.Conv1d(channels, channels, 1)
        self.conditioner_projection = nn.Conv1d(cond_dims, channels, 1)
        self.norm = nn.LayerNorm(channels)
        self.pointwise_in = nn.Conv1d(channels, 2 * inner, 1)
        self.glu = SwiGLU(dim=1)
        left = kernel_size // 2
        self.padding = (left, left - (kernel_size + 1) % 2)  # "same" length for odd and even kernels
        self.depthwise = nn.Conv1d(inner, inner, kernel_size, groups=inner)
        self.activation = nn.PReLU(inner)
        self.pointwise_out = nn.Conv1d(inner, channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, step: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        y = x + self.diffusion_projection(step) + self.conditioner_projection(cond)
        y = self.norm(y.transpose(1, 2)).transpose(1, 2)
        y = self.glu(self.pointwise_in(y))
        if mask is not None:
            y = y * mask  # padded frames read as the zero padding a lone item would see
        y = self.depthwise(F.pad(y, self.padding))
        y = self.pointwise_out(self.activation(y))
        return x + y


@BACKBONES.register("lynxnet", doc="LYNXNet, ConvNeXt-style blocks with SwiGLU (DiffSinger's default backbone)")
class LYNXNet(Backbone):
    """forward(spec [B,1,M,T], t [B] long, cond [B,H,T], mask [B,1,T] or None) -> noise [B,1,M,T].

    Same contract as DiffNet (see backbones.base); `layers` blocks of `channels` channels,
    `expansion` x wider inside, depthwise kernel `kernel_size` frames. ValueError for sizes that
    cannot work (channels or layers < 1, kernel < 1).
    """

    STATE_KEY = "residual_layers.0.depthwise.weight"

    def __init__(self, in_dims: int = 128, cond_dims: int = 256, layers: int = 6, channels: int = 512,
                 expansion: int = 2, kernel_size: int = 31):
        super().__init__()
        if min(in_dims, cond_dims, layers, channels, expansion, kernel_size) < 1:
            raise ValueError("LYNXNet sizes (in_dims, cond_dims, layers, channels, expansion, kernel_size) "
                             "must all be >= 1")
        self.in_dims, self.cond_dims = int(in_dims), int(cond_dims)
        self.channels, self.expansion, self.kernel_size = int(channels), int(expansion), int(kernel_size)
        self.input_projection = nn.Conv1d(in_dims, channels, 1)
        nn.init.kaiming_normal_(self.input_projection.weight)
        self.diffusion_embedding = nn.Sequential(
            SinusoidalStepEmbedding(channels), nn.Linear(channels, channels * 4), nn.GELU(),
            nn.Linear(channels * 4, channels))
        self.residual_layers = nn.ModuleList(
            LynxBlock(cond_dims, channels, expansion, kernel_size) for _ in range(layers))
        self.norm = nn.LayerNorm(channels)
        self.output_projection = nn.Conv1d(channels, in_dims, 1)
        nn.init.zeros_(self.output_projection.weight)  # starts predicting zero noise

    @classmethod
    def from_config(cls, config) -> "LYNXNet":
        return cls(config.audio_num_mel_bins, config.hidden_size, config.lynxnet_layers, config.lynxnet_channels,
                   config.lynxnet_expansion, config.lynxnet_kernel)

    @property
    def reach_frames(self) -> int:
        return len(self.residual_layers) * (self.kernel_size // 2)

    def activation_floats_per_frame(self) -> int:
        # per block: x, the summed input and its norm ([C] each), the pointwise-up output [2EC],
        # the gated [EC] and depthwise [EC] tensors; plus the conditioning [H] and its projection
        return (4 + 4 * self.expansion) * self.channels + 2 * self.cond_dims

    def forward(self, spec: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        x = F.gelu(self.input_projection(spec[:, 0]))
        step = self.diffusion_embedding(t)[..., None]
        for layer in self.residual_layers:
            x = layer(x, cond, step, mask)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.output_projection(x)[:, None]
