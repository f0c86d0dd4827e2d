"""The conditioning embedding: content units spread over mel frames plus the coarse-f0 embedding.

cond = (gather([0; units], mel2ph) + pitch_embed(coarse(2^f0))) * (mel2ph > 0)

With `use_pitch_embed: false` the pitch term and its weights are absent, as in the original.

This is the original's FastSpeech2 module with `no_fs2: true`; it keeps the name `fs2` in
checkpoints and carries two modules the forward pass never uses (`mel_out` and the pitch
predictor) only so that original checkpoints load strictly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from diffsvc.features.pitch import denorm_f0, f0_to_coarse


@dataclass
class Conditioning:
    """What the denoiser is conditioned on, per mel frame.

    cond       [B,T,H] from ConditioningEmbedding (content + pitch embedding, 0 at padding);
               GaussianDiffusion.condition hands it over as [B,H,T], the denoiser's layout
    f0_denorm  [B,T] f0 in Hz (2^f0_log2; 0 at padding frames)
    pitch      [B,T] long, coarse f0 bins 1..f0_bin-1 (the original's f0_to_coarse)
    """

    cond: torch.Tensor
    f0_denorm: torch.Tensor
    pitch: torch.Tensor

    def channels_first(self) -> "Conditioning":
        """The same record with cond as [B,H,T]."""
        return dataclasses.replace(self, cond=self.cond.transpose(1, 2))


class _PositionsPlaceholder(nn.Module):
    """Holds the `_float_tensor` buffer of the original's sinusoidal positional embedding."""

    def __init__(self):
        super().__init__()
        self.register_buffer("_float_tensor", torch.zeros(1))


class UnusedPitchPredictor(nn.Module):
    """Shape-compatible stand-in for the original's pitch predictor: it is in every original
    checkpoint but its call is commented out there, so it has no forward here."""

    def __init__(self, channels: int, layers: int = 5, kernel: int = 5, odim: int = 2, dropout: float = 0.5):
        super().__init__()
        self.conv = nn.ModuleList(
            nn.Sequential(nn.Identity(), nn.Conv1d(channels, channels, kernel), nn.ReLU(),
                          nn.LayerNorm(channels), nn.Dropout(dropout))
            for _ in range(layers)
        )
        self.linear = nn.Linear(channels, odim)
        self.embed_positions = _PositionsPlaceholder()
        self.pos_embed_alpha = nn.Parameter(torch.ones(1))


def original_embedding(num: int, dim: int, padding_idx: int | None = None) -> nn.Embedding:
    """nn.Embedding initialised as the original's `Embedding` (DiffSinger/Diff-SVC
    modules/commons/common_layers.py): normal with std dim^-0.5, so a row has norm ~1, and the
    padding row zero. (torch's default, std 1, gives rows of norm sqrt(dim) = 16 at 256, which
    drowns content units of norm ~1-3 so that a fresh model learns the mel from the pitch
    contour: benchmarks/results/recipe-diagnosis.md.)"""
    m = nn.Embedding(num, dim, padding_idx=padding_idx)
    nn.init.normal_(m.weight, mean=0.0, std=dim ** -0.5)
    if padding_idx is not None:
        with torch.no_grad():
            m.weight[padding_idx].zero_()
    return m


class ConditioningEmbedding(nn.Module):
    """forward(units [B,Th,H], mel2ph [B,T] (1-based unit index, 0 = padding), f0_log2 [B,T])
    -> Conditioning (cond [B,T,H], f0_denorm [B,T] Hz, pitch [B,T] coarse bins).

    `extra` [B,H] or [B,T,H], optional: added to every real frame's conditioning (where a
    multi-singer model adds its speaker embedding, as DiffSinger does); None for the original.
    use_pitch_embed=False: no pitch term and no `pitch_embed` weights, as the original."""

    def __init__(self, hidden_size: int = 256, n_mels: int = 128, f0_bin: int = 256, f0_min: float = 40.0,
                 f0_max: float = 1100.0, predictor_layers: int = 5, predictor_kernel: int = 5,
                 predictor_hidden: int = -1, pitch_type: str = "frame", use_pitch_embed: bool = True):
        super().__init__()
        self.f0_bin, self.f0_min, self.f0_max = f0_bin, f0_min, f0_max
        self.mel_out = nn.Linear(hidden_size, n_mels)
        self.pitch_embed = original_embedding(300, hidden_size, padding_idx=0) if use_pitch_embed else None
        channels = hidden_size if predictor_hidden <= 0 else predictor_hidden
        odim = 2 if pitch_type == "frame" else 1
        self.pitch_predictor = UnusedPitchPredictor(channels, predictor_layers, predictor_kernel, odim)

    @classmethod
    def from_config(cls, config) -> "ConditioningEmbedding":
        return cls(config.hidden_size, config.audio_num_mel_bins, config.f0_bin, config.f0_min, config.f0_max,
                   config.predictor_layers, config.predictor_kernel, config.predictor_hidden, config.pitch_type,
                   config.use_pitch_embed)

    def forward(self, units: torch.Tensor, mel2ph: torch.Tensor, f0_log2: torch.Tensor,
                extra: torch.Tensor | None = None) -> Conditioning:
        padding = mel2ph == 0
        # A zero row in front: mel2ph = 0 (padding) gathers zeros.
        units = F.pad(units, (0, 0, 1, 0))
        index = mel2ph[..., None].expand(-1, -1, units.shape[-1])
        content = torch.gather(units, 1, index)
        f0_denorm = denorm_f0(f0_log2, padding)
        pitch = f0_to_coarse(f0_denorm, self.f0_bin, self.f0_min, self.f0_max)
        cond = content + self.pitch_embed(pitch) if self.pitch_embed is not None else content
        if extra is not None:
            cond = cond + (extra[:, None] if extra.dim() == 2 else extra)
        cond = cond * (~padding)[..., None].to(content.dtype)
        return Conditioning(cond=cond, f0_denorm=f0_denorm, pitch=pitch)
