"""ContentVec and other fairseq-format HuBERT checkpoints, built without fairseq.

fairseq does not install on current Python, so the architecture is read from the checkpoint's own
config (`ckpt['cfg']['model']`, or `ckpt['args']` in older files) and built from the same `Hubert`
blocks as HuBERT-soft: fairseq's HubertModel with extractor_mode "default", post-LN layers
(layer_norm_first false) and a weight-normed conv positional embedding is that architecture.

How Diff-SVC uses ContentVec (network/hubert/vec_model.py): `extract_features(output_layer=9)`,
then `final_proj` -> 256-d, on the raw 16 kHz waveform with no padding. In fairseq,
`HubertModel.forward(output_layer=9)` passes `layer = output_layer - 1 = 8` to the encoder, which
runs layers i = 0, 1, ... and stops after `i == 8`: the output of the ninth layer (layers[:9]), with
no final layer norm. (Applying final_proj to layer 9 is not what final_proj was trained for, but
ContentVec-based checkpoints were trained on exactly that, so we reproduce it.)
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass, fields
from typing import Any, Mapping

from diffsvc.errors import CheckpointError
from diffsvc.features.content.hubert_soft import Hubert

CONTENTVEC_OUTPUT_LAYER = 9  # fairseq numbering: output of layers[:9]


@dataclass(frozen=True)
class FairseqHubertConfig:
    """The architecture fields of fairseq's HubertConfig, with fairseq's defaults."""

    extractor_mode: str = "default"
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_type: str = "transformer"
    final_dim: int = 0  # 0: encoder_embed_dim
    untie_final_proj: bool = False
    layer_norm_first: bool = False
    conv_feature_layers: str = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
    conv_bias: bool = False
    conv_pos: int = 128
    conv_pos_groups: int = 16
    pos_conv_depth: int = 1

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str) -> "FairseqHubertConfig":
        """Take the fields we know from fairseq's model config; the many training-only ones
        (dropouts, masking, label rate...) are ignored. Raise CheckpointError for what we cannot build."""
        kwargs = {}
        for f in fields(cls):
            if f.name in values and values[f.name] is not None:
                value = values[f.name]
                kwargs[f.name] = str(value) if f.type == "str" else value
        config = cls(**kwargs)
        config.check(source)
        return config

    def check(self, source: str) -> None:
        def refuse(why: str):
            raise CheckpointError(f"{source}: {why}; only fairseq HuBERT/ContentVec base-style models are supported")

        if self.layer_type != "transformer":
            refuse(f"layer_type {self.layer_type!r} (conformer layers)")
        if self.extractor_mode not in ("default", "layer_norm"):
            refuse(f"extractor_mode {self.extractor_mode!r}")
        if self.activation_fn not in ("gelu", "relu"):
            refuse(f"activation_fn {self.activation_fn!r}")
        if self.untie_final_proj:
            refuse("untie_final_proj is true (one projection per label set)")
        if int(self.pos_conv_depth) != 1:
            refuse(f"pos_conv_depth {self.pos_conv_depth}")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            refuse(f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by "
                   f"{self.encoder_attention_heads} heads")
        parse_conv_layers(self.conv_feature_layers, source)

    @property
    def proj_dim(self) -> int:
        return self.final_dim if self.final_dim > 0 else self.encoder_embed_dim


def parse_conv_layers(text: str, source: str = "<checkpoint>") -> list[tuple[int, int, int]]:
    """Evaluate fairseq's `conv_feature_layers` string ("[(512,10,5)] + [(512,3,2)] * 4 + ...").
    fairseq calls eval() on it; we accept only lists/tuples of ints joined by + and *."""

    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            op = operator.add if isinstance(node.op, ast.Add) else operator.mul
            return op(ev(node.left), ev(node.right))
        raise ValueError(ast.dump(node)[:60])

    try:
        layers = ev(ast.parse(str(text), mode="eval").body)
        layers = [tuple(int(v) for v in layer) for layer in layers]
        if not layers or any(len(layer) != 3 or min(layer) < 1 for layer in layers):
            raise ValueError("expected (channels, kernel, stride) triples")
    except (SyntaxError, ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: conv_feature_layers {text!r} is not a list of conv layers ({e})") from None
    return layers


def build_fairseq_hubert(config: FairseqHubertConfig, num_label_embeddings: int) -> Hubert:
    """The module that a fairseq HuBERT state dict (after `loading.fairseq_to_hubert_keys`) loads into."""
    return Hubert(
        conv_layers=parse_conv_layers(config.conv_feature_layers),
        extractor_mode="group_norm" if config.extractor_mode == "default" else "layer_norm",
        conv_bias=bool(config.conv_bias),
        embed_dim=int(config.encoder_embed_dim),
        num_layers=int(config.encoder_layers),
        num_heads=int(config.encoder_attention_heads),
        ffn_dim=int(config.encoder_ffn_embed_dim),
        conv_pos=int(config.conv_pos),
        conv_pos_groups=int(config.conv_pos_groups),
        layer_norm_first=bool(config.layer_norm_first),
        activation=config.activation_fn,
        proj_dim=int(config.proj_dim),
        num_label_embeddings=num_label_embeddings,
    )
