"""HuBERT-soft (bshall/hubert v0.1, the copy Diff-SVC vendors), and the HuBERT family it belongs to.

One `Hubert` class covers both public formats: bshall's HuBERT-soft (its state-dict keys, exactly)
and fairseq's HuBERT/ContentVec (whose keys `loading.py` maps onto these). Sizes are constructor
arguments with the real ones as defaults, so tests can build the same architecture tiny.

Why hand-written instead of torchaudio's wav2vec2 components:
- bshall builds the encoder from `nn.TransformerEncoderLayer` (fused q/k/v `in_proj_weight`,
  `linear1`, `norm1`...). Using the same torch class gives the v0.1 key set with no key map, and
  fairseq's post-LN layer (attention -> add -> LN -> FFN -> add -> LN) is the same computation, so
  ContentVec needs only a rename plus a q/k/v concatenation.
- torchaudio's positional conv uses the parametrization weight norm (keys `parametrizations...`,
  not the legacy `weight_g`/`weight_v` of both files), and its per-layer GroupNorm cannot be handed
  whole-input statistics, which `windowed.py` needs to make long inputs match a single pass.
- torchaudio is in maintenance mode; the tests still use its wav2vec2 model as an independent
  reference implementation of fairseq HuBERT to check ours numerically.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

# (out_channels, kernel, stride) of the wav2vec2/HuBERT waveform encoder: 400-sample receptive
# field, 320-sample stride (20 ms at 16 kHz).
DEFAULT_CONV_LAYERS: tuple[tuple[int, int, int], ...] = (
    (512, 10, 5), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 2, 2), (512, 2, 2),
)
SAMPLE_RATE = 16000


class FeatureExtractor(nn.Module):
    """Strided convs over the raw waveform, GELU after each.

    mode "group_norm" (fairseq "default", bshall): GroupNorm(C, C) after the first conv only; it
    normalises every channel over the WHOLE input length, so `norm0_stats` can supply whole-signal
    statistics when the input is processed in windows. mode "layer_norm": LayerNorm over channels
    after every conv (fairseq "layer_norm", HuBERT large).
    """

    def __init__(self, conv_layers=DEFAULT_CONV_LAYERS, mode: str = "group_norm", bias: bool = False):
        super().__init__()
        if mode not in ("group_norm", "layer_norm"):
            raise ValueError(f"unknown feature extractor mode {mode!r}")
        self.mode = mode
        self.num_convs = len(conv_layers)
        in_ch = 1
        for i, (out_ch, kernel, stride) in enumerate(conv_layers):
            self.add_module(f"conv{i}", nn.Conv1d(in_ch, out_ch, kernel, stride, bias=bias))
            if mode == "layer_norm":
                self.add_module(f"norm{i}", nn.LayerNorm(out_ch))
            elif i == 0:
                self.add_module("norm0", nn.GroupNorm(out_ch, out_ch))
            in_ch = out_ch
        self.out_channels = in_ch
        self.stride = math.prod(s for _, _, s in conv_layers)
        field = 1
        for _, kernel, stride in reversed(conv_layers):
            field = (field - 1) * stride + kernel
        self.receptive_field = field

    def forward(self, wav: torch.Tensor, norm0_stats: tuple[torch.Tensor, torch.Tensor] | None = None):
        """wav [B, 1, N] -> features [B, C, T]."""
        x = wav
        for i in range(self.num_convs):
            x = getattr(self, f"conv{i}")(x)
            if self.mode == "layer_norm":
                x = getattr(self, f"norm{i}")(x.transpose(1, 2)).transpose(1, 2)
            elif i == 0:
                x = self._group_norm0(x, norm0_stats)
            x = F.gelu(x)
        return x

    def _group_norm0(self, x, stats):
        if stats is None:
            return self.norm0(x)
        # Same maths as GroupNorm(C, C) but with per-channel mean/var measured elsewhere.
        mean, var = (s.to(x.dtype).view(1, -1, 1) for s in stats)
        x = (x - mean) * torch.rsqrt(var + self.norm0.eps)
        return x * self.norm0.weight.view(1, -1, 1) + self.norm0.bias.view(1, -1, 1)


class FeatureProjection(nn.Module):
    def __init__(self, in_dim: int = 512, embed_dim: int = 768):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.projection = nn.Linear(in_dim, embed_dim)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        return self.dropout(self.projection(self.norm(x)))


class WeightNormConv1d(nn.Module):
    """Conv1d with legacy weight norm over dim 2: weight = g * v / ||v||, the norm taken over all
    dims but the kernel dim. Hand-written because `nn.utils.weight_norm` is deprecated and its
    replacement renames the keys; both public files store `weight_g` [1,1,K] and `weight_v`."""

    def __init__(self, channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.padding = kernel_size // 2
        self.groups = groups
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel_size))
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        # fairseq's init (normal, std sqrt(4/(k*C))); g starts at ||v|| as weight_norm does.
        nn.init.normal_(self.weight_v, std=math.sqrt(4.0 / (kernel_size * channels)))
        with torch.no_grad():
            self.weight_g.copy_(self.weight_v.norm(dim=(0, 1), keepdim=True))

    def weight(self) -> torch.Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=(0, 1), keepdim=True)

    def forward(self, x):
        return F.conv1d(x, self.weight(), self.bias, padding=self.padding, groups=self.groups)


class PositionalConvEmbedding(nn.Module):
    """Grouped conv over time, GELU; an even kernel's extra output frame is dropped (SamePad)."""

    def __init__(self, dim: int = 768, kernel_size: int = 128, groups: int = 16):
        super().__init__()
        self.conv = WeightNormConv1d(dim, kernel_size, groups)
        self.trim = 1 if kernel_size % 2 == 0 else 0
        self.half_width = kernel_size // 2  # frames of context each side (used by windowing)

    def forward(self, x):
        """x [B, T, D] -> [B, T, D]."""
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[:, :, : -self.trim]
        return F.gelu(y).transpose(1, 2)


class TransformerEncoder(nn.Module):
    def __init__(self, layer: nn.TransformerEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])

    def forward(self, x, output_layer: int | None = None):
        """Run the first `output_layer` layers (all when None)."""
        for layer in self.layers[:output_layer]:
            x = layer(x)
        return x


class Hubert(nn.Module):
    """HuBERT: conv waveform encoder -> projection -> conv positional embedding -> transformer -> proj.

    Defaults are HuBERT-soft's (94,594,176 parameters). `masked_spec_embed` and `label_embedding`
    are only used in training; they exist so the public files load strictly.
    """

    def __init__(
        self,
        conv_layers=DEFAULT_CONV_LAYERS,
        extractor_mode: str = "group_norm",
        conv_bias: bool = False,
        embed_dim: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        ffn_dim: int = 3072,
        conv_pos: int = 128,
        conv_pos_groups: int = 16,
        layer_norm_first: bool = False,
        activation: str = "gelu",
        proj_dim: int = 256,
        num_label_embeddings: int = 100,
    ):
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.feature_extractor = FeatureExtractor(conv_layers, extractor_mode, conv_bias)
        self.feature_projection = FeatureProjection(self.feature_extractor.out_channels, embed_dim)
        self.positional_embedding = PositionalConvEmbedding(embed_dim, conv_pos, conv_pos_groups)
        self.norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(0.1)
        self.encoder = TransformerEncoder(
            nn.TransformerEncoderLayer(
                embed_dim, num_heads, ffn_dim, activation=activation, batch_first=True,
                norm_first=layer_norm_first,
            ),
            num_layers,
        )
        self.proj = nn.Linear(embed_dim, proj_dim)
        self.masked_spec_embed = nn.Parameter(torch.empty(embed_dim).uniform_())
        self.label_embedding = nn.Embedding(num_label_embeddings, proj_dim)

    @property
    def frame_stride(self) -> int:
        return self.feature_extractor.stride

    @property
    def receptive_field(self) -> int:
        return self.feature_extractor.receptive_field

    @property
    def num_layers(self) -> int:
        return len(self.encoder.layers)

    def num_frames(self, num_samples: int) -> int:
        """Frames the conv stack gives for an (already padded) input of `num_samples`."""
        if num_samples < self.receptive_field:
            return 0
        return (num_samples - self.receptive_field) // self.frame_stride + 1

    def encode(self, wav: torch.Tensor, output_layer: int | None = None, norm0_stats=None) -> torch.Tensor:
        """wav [B, N] or [B, 1, N] at 16 kHz -> hidden states [B, T, embed_dim] after `output_layer`
        transformer layers (all when None). No masking: this is the inference path."""
        if wav.dim() == 2:
            wav = wav.unsqueeze(1)
        x = self.feature_extractor(wav, norm0_stats)
        x = self.feature_projection(x.transpose(1, 2))
        x = x + self.positional_embedding(x)
        if not self.layer_norm_first:
            x = self.norm(x)
        x = self.encoder(self.dropout(x), output_layer)
        # fairseq: a pre-LN encoder normalises once more after its last layer, but only when no
        # output layer was asked for (extract_features(output_layer=N) never applies it).
        if self.layer_norm_first and output_layer is None:
            x = self.norm(x)
        return x


class HubertSoft(Hubert):
    """bshall's HuBERT-soft: all 12 layers, then proj 768 -> 256 ("soft" speech units)."""

    @property
    def input_padding(self) -> int:
        """(400 - 320) // 2 = 40 samples each side: centres the receptive field on each hop, so
        N samples give floor(N / 320) frames."""
        return (self.receptive_field - self.frame_stride) // 2

    @torch.inference_mode()
    def units(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, N] or [B, N] at 16 kHz -> units [B, floor(N/320), 256] (bshall's `units`)."""
        if wav.dim() == 2:
            wav = wav.unsqueeze(1)
        wav = F.pad(wav, (self.input_padding, self.input_padding))
        return self.proj(self.encode(wav))
