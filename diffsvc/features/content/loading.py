"""Reading the public content-encoder files: HuBERT-soft and fairseq HuBERT/ContentVec.

HuBERT-soft (`hubert-soft-0d54a1f4.pt`, bshall/hubert v0.1) is a flat state dict of tensors, keys
possibly prefixed `module.`; the later v0.2 release nests it under "hubert". It goes through
`diffsvc.modelfile.safe_torch_load` (weights_only=True).

fairseq checkpoints also pickle their config (an argparse.Namespace or an omegaconf DictConfig);
they are read with the restricted unpickler of `diffsvc.modelfile` (nothing from the file runs) and
turned into plain dicts here.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any, Mapping

import torch

from diffsvc.errors import CheckpointError
from diffsvc.features.content.fairseq_hubert import FairseqHubertConfig, build_fairseq_hubert
from diffsvc.features.content.hubert_soft import Hubert, HubertSoft
from diffsvc.modelfile.strict import load_strict, to_legacy_weight_norm
from diffsvc.modelfile.torch_load import restricted_torch_load, safe_torch_load
from diffsvc.modelfile.unpickler import OmegaConfDict, OmegaConfList, OmegaConfNode, StandIn

__all__ = ["restricted_torch_load", "to_plain", "resolve_interpolations", "hubert_soft_state_dict", "load_hubert_soft",
           "fairseq_to_hubert_keys", "fairseq_model_config", "load_fairseq_hubert"]

_INTERPOLATION = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


def to_plain(obj: Any) -> Any:
    """Turn unpickled config objects (stand-ins, Namespace) into dicts, lists and scalars."""
    if isinstance(obj, OmegaConfDict):
        content = (obj.state or {}).get("_content")
        return {str(k): to_plain(v) for k, v in content.items()} if isinstance(content, Mapping) else content
    if isinstance(obj, OmegaConfList):
        content = (obj.state or {}).get("_content")
        return [to_plain(v) for v in content] if isinstance(content, (list, tuple)) else content
    if isinstance(obj, OmegaConfNode):
        return to_plain((obj.state or {}).get("_val"))
    if isinstance(obj, argparse.Namespace):
        return {k: to_plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, StandIn):
        # An enum member is pickled as EnumClass(value): keep the value.
        if len(obj.args) == 1 and isinstance(obj.args[0], (str, int, float, bool)):
            return obj.args[0]
        return obj
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def resolve_interpolations(tree: Any, root: Any = None) -> Any:
    """Replace omegaconf "${a.b}" strings by the value at a.b in `root` (one level deep)."""
    root = tree if root is None else root
    if isinstance(tree, dict):
        return {k: resolve_interpolations(v, root) for k, v in tree.items()}
    if isinstance(tree, list):
        return [resolve_interpolations(v, root) for v in tree]
    if isinstance(tree, str) and (m := _INTERPOLATION.match(tree)):
        node = root
        for part in m.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                return tree
            node = node[part]
        return node
    return tree


# ----------------------------------------------------------------------------------------------
# HuBERT-soft

def hubert_soft_state_dict(raw: Any, source: str) -> dict[str, torch.Tensor]:
    """The HuBERT-soft state dict from a loaded file: unnest v0.2's "hubert", strip "module.",
    and rename the newer parametrization weight-norm keys to the v0.1 names."""
    if isinstance(raw, Mapping) and isinstance(raw.get("hubert"), Mapping):
        raw = raw["hubert"]
    if not isinstance(raw, Mapping) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{source}: not a HuBERT-soft file (expected a state dict of tensors, "
                              "as in hubert-soft-0d54a1f4.pt)")
    state = {}
    for key, value in raw.items():
        key = key[len("module."):] if key.startswith("module.") else key
        state[to_legacy_weight_norm(key)] = value
    return state


def load_hubert_soft(path: str | os.PathLike) -> HubertSoft:
    """HuBERT-soft with the weights of `path`, in eval mode on the CPU."""
    try:
        raw = safe_torch_load(path, allow_unsafe=None, what="HuBERT-soft weights")
    except CheckpointError:
        # A fairseq file (it pickles its config) refused by weights_only: say what it is instead.
        if _is_fairseq_checkpoint(path):
            _refuse_fairseq_as_hubert_soft(path)
        raise
    state = hubert_soft_state_dict(raw, str(path))
    if "post_extract_proj.weight" in state or "encoder.pos_conv.0.bias" in state:
        _refuse_fairseq_as_hubert_soft(path)
    model = HubertSoft()
    load_strict(model, state, str(path), "HuBERT-soft (hubert-soft-0d54a1f4.pt)")
    return model.eval()


def _is_fairseq_checkpoint(path) -> bool:
    try:
        ckpt = restricted_torch_load(path)
    except CheckpointError:
        return False
    return isinstance(ckpt, Mapping) and isinstance(ckpt.get("model"), Mapping) and "post_extract_proj.weight" in ckpt["model"]


def _refuse_fairseq_as_hubert_soft(path) -> None:
    raise CheckpointError(f"{path}: this is a fairseq HuBERT/ContentVec checkpoint, not HuBERT-soft; "
                          "set content_encoder: contentvec and contentvec_path to this file")


# ----------------------------------------------------------------------------------------------
# fairseq HuBERT / ContentVec

_FAIRSEQ_RENAMES = [
    (r"mask_emb", "masked_spec_embed"),
    (r"label_embs_concat", "label_embedding.weight"),
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv\1.\2"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.norm0.\1"),  # GroupNorm
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.norm\1.\2"),  # LayerNorm
    (r"layer_norm\.(weight|bias)", r"feature_projection.norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.(bias|weight_g|weight_v)", r"positional_embedding.conv.\1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.out_proj.\2"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.norm1.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.linear1.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.linear2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.norm2.\2"),
    (r"final_proj\.(weight|bias)", r"proj.\1"),
]
_QKV = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")


def fairseq_to_hubert_keys(state: Mapping[str, torch.Tensor], source: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Rename a fairseq HubertModel state dict onto `Hubert`; q/k/v projections are concatenated
    into nn.MultiheadAttention's in_proj (order q, k, v). Unknown keys raise CheckpointError."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state.items():
        key = to_legacy_weight_norm(key)
        if m := _QKV.fullmatch(key):
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        for pattern, replacement in _FAIRSEQ_RENAMES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, replacement, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} weights that a fairseq HuBERT/ContentVec model does not have "
                              f"(e.g. {unknown[0]}); this checkpoint is a different model")
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{source}: layer {layer} lacks some of its q/k/v projections")
        out[f"encoder.layers.{layer}.self_attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def fairseq_model_config(ckpt: Any, source: str) -> FairseqHubertConfig:
    """The architecture of a fairseq checkpoint: `cfg['model']` (newer) or `args` (legacy)."""
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("model"), Mapping):
        raise CheckpointError(f"{source}: not a fairseq checkpoint (no 'model' state dict); "
                              "ContentVec files are named like checkpoint_best_legacy_500.pt")
    cfg = resolve_interpolations(to_plain(ckpt.get("cfg"))) if ckpt.get("cfg") is not None else None
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        values = cfg["model"]
    elif ckpt.get("args") is not None and isinstance(to_plain(ckpt["args"]), dict):
        values = to_plain(ckpt["args"])
    else:
        raise CheckpointError(f"{source}: fairseq checkpoint without a model config ('cfg' or 'args')")
    if values.get("w2v_args") is not None or values.get("w2v_path") is not None:
        raise CheckpointError(f"{source}: this is a fine-tuned (ASR) fairseq model; use the pretrained "
                              "HuBERT/ContentVec checkpoint")
    return FairseqHubertConfig.from_mapping(values, source)


def load_fairseq_hubert(path: str | os.PathLike) -> tuple[Hubert, FairseqHubertConfig]:
    """A fairseq HuBERT/ContentVec checkpoint as a `Hubert` module (eval, CPU) and its config."""
    source = str(path)
    ckpt = restricted_torch_load(path, what="ContentVec/HuBERT checkpoint")
    config = fairseq_model_config(ckpt, source)
    raw = ckpt["model"]
    if not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{source}: 'model' holds things other than tensors")
    state = fairseq_to_hubert_keys(raw, source)
    if "proj.weight" not in state:
        raise CheckpointError(f"{source}: no final_proj weights; Diff-SVC's ContentVec units need final_proj")
    label_rows = state["label_embedding.weight"].shape[0] if "label_embedding.weight" in state else 1
    model = build_fairseq_hubert(config, label_rows)
    # The training-only tensors may be dropped from slimmed files: keep our init for them.
    for key in ("masked_spec_embed", "label_embedding.weight"):
        state.setdefault(key, model.state_dict()[key])
    load_strict(model, state, source, "the fairseq HuBERT built from its config")
    return model.eval(), config
