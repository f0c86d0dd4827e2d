"""Reading the public content-encoder files: HuBERT-soft and fairseq HuBERT/ContentVec.

HuBERT-soft (`hubert-soft-0d54a1f4.pt`, bshall/hubert v0.1) is a flat state dict of tensors, keys
possibly prefixed `module.`; the later v0.2 release nests it under "hubert". It goes through
`diffsvc.safe_load.safe_torch_load` (weights_only=True).

fairseq checkpoints also pickle their config: an `argparse.Namespace` (`args`) or an omegaconf
`DictConfig` (`cfg`), whose metadata names fairseq's config classes and typing objects. torch's
weights_only unpickler refuses these. We read them with a restricted unpickler of our own, passed
to `torch.load(pickle_module=...)` (so torch still handles the zip container and tensor storages).
Why not `torch.serialization.safe_globals`: it allows exact names only, while a fairseq config
names classes from fairseq modules we cannot list in advance (and fairseq is not installed). Our
`find_class` returns real objects only for an allow-list of harmless callables (tensor rebuild
functions, containers, argparse.Namespace); omegaconf, fairseq, typing and numpy names become
inert stand-in classes that only store what the pickle hands them. Any other global (os.system,
subprocess, builtins.eval...) is refused before it is ever looked up, so no code from the file runs.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import collections
import copyreg
import os
import pickle
import re
import types
import zipfile
from typing import Any, Mapping

import torch

from diffsvc.errors import CheckpointError
from diffsvc.features.content.fairseq_hubert import FairseqHubertConfig, build_fairseq_hubert
from diffsvc.features.content.hubert_soft import Hubert, HubertSoft
from diffsvc.safe_load import check_model_file, safe_torch_load

# ----------------------------------------------------------------------------------------------
# Restricted unpickling


class Refused(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""

    def __init__(self, qualified_name: str):
        super().__init__(qualified_name)
        self.qualified_name = qualified_name


class StandIn:
    """An inert object for a class we do not import: keeps constructor args and pickled state."""

    _qualified_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<stand-in {self._qualified_name}>"


class OmegaConfDict(StandIn):
    """omegaconf.DictConfig: state {'_content': {key: node}, '_metadata', '_parent', ...}."""


class OmegaConfList(StandIn):
    """omegaconf.ListConfig: state {'_content': [node, ...], ...}."""


class OmegaConfNode(StandIn):
    """omegaconf value nodes (AnyNode, StringNode, IntegerNode, EnumNode...): state {'_val': ...}."""


class OmegaConfMetadata(StandIn):
    """omegaconf Metadata / ContainerMetadata (types, flags): never read."""


_stand_in_types: dict[str, type] = {}


def _stand_in(qualified_name: str, base: type = StandIn) -> type:
    """One inert class per foreign name, so repeated references stay identical."""
    cls = _stand_in_types.get(qualified_name)
    if cls is None:
        cls = type(qualified_name.rsplit(".", 1)[-1], (base,), {"_qualified_name": qualified_name})
        _stand_in_types[qualified_name] = cls
    return cls


def _inert_call(*args, **kwargs):
    return _stand_in("operator.getitem")(*args, **kwargs)


def _allowed_globals() -> dict[str, Any]:
    allowed = {
        "collections.OrderedDict": collections.OrderedDict,
        # defaultdict only ever calls its factory, and factories pass this same allow-list.
        "collections.defaultdict": collections.defaultdict,
        "argparse.Namespace": argparse.Namespace,
        "copyreg._reconstructor": copyreg._reconstructor,
        "_codecs.encode": __import__("_codecs").encode,  # how protocol 2 stores bytes
        "torch._utils._rebuild_tensor": torch._utils._rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
        "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": torch._utils._rebuild_parameter_with_state,
        "torch._tensor._rebuild_from_type_v2": torch._tensor._rebuild_from_type_v2,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "torch.nn.parameter.Parameter": torch.nn.Parameter,
        "torch.Tensor": torch.Tensor,
        "torch._tensor.Tensor": torch.Tensor,
        # typing generics are pickled as operator.getitem(List, int): answer with a stand-in.
        "operator.getitem": _inert_call,
    }
    for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str",
                 "bytes", "bytearray", "bool", "object", "slice", "range"):
        allowed[f"builtins.{name}"] = getattr(__import__("builtins"), name)
    for name in dir(torch):
        value = getattr(torch, name, None)
        if isinstance(value, (torch.dtype, torch.layout, torch.memory_format)):
            allowed[f"torch.{name}"] = value
    return allowed


_ALLOWED = _allowed_globals()
_OMEGACONF = {
    "omegaconf.dictconfig.DictConfig": OmegaConfDict,
    "omegaconf.listconfig.ListConfig": OmegaConfList,
    "omegaconf.base.Metadata": OmegaConfMetadata,
    "omegaconf.base.ContainerMetadata": OmegaConfMetadata,
}
# Names only ever used as type tags or training bookkeeping in a fairseq checkpoint.
_INERT_MODULES = ("fairseq", "typing", "numpy", "omegaconf")


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        # Protocol 2 (torch.save's default) writes Python 2 names (__builtin__.unicode...); map
        # them as pickle itself does. The allow-list below is checked on the mapped name.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        qualified = f"{module}.{name}"
        if qualified in _ALLOWED:
            return _ALLOWED[qualified]
        if qualified in _OMEGACONF:
            return _OMEGACONF[qualified]
        if module.startswith("omegaconf.nodes"):
            return _stand_in(qualified, OmegaConfNode)
        if module.split(".")[0] in _INERT_MODULES:
            return _stand_in(qualified)
        raise Refused(qualified)


_restricted_pickle = types.ModuleType("diffsvc_restricted_pickle")
_restricted_pickle.Unpickler = RestrictedUnpickler
_restricted_pickle.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()
_restricted_pickle.__name__ = "diffsvc_restricted_pickle"


def restricted_torch_load(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """torch.load for files that pickle configs (fairseq): tensors, containers, Namespace and
    inert stand-ins only. Raises CheckpointError (one line, naming the file) otherwise."""
    path = check_model_file(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle)
    except Refused as e:
        raise CheckpointError(
            f"{path}: refused to load this {what}: it asks to run {e.qualified_name}, which no model "
            "checkpoint needs (the file may be malicious or not a fairseq checkpoint)"
        ) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            TypeError, AttributeError, KeyError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a readable PyTorch {what} (truncated or foreign file: {first})") from None


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

_LEGACY_WEIGHT_NORM = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}


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
        for new, old in _LEGACY_WEIGHT_NORM.items():
            key = key.replace(new, old)
        state[key] = value
    return state


def load_hubert_soft(path: str | os.PathLike) -> HubertSoft:
    """HuBERT-soft with the weights of `path`, in eval mode on the CPU."""
    try:
        raw = safe_torch_load(path, what="HuBERT-soft weights")
    except CheckpointError:
        # A fairseq file (it pickles its config) refused by weights_only: say what it is instead.
        if _is_fairseq_checkpoint(path):
            _refuse_fairseq_as_hubert_soft(path)
        raise
    state = hubert_soft_state_dict(raw, str(path))
    if "post_extract_proj.weight" in state or "encoder.pos_conv.0.bias" in state:
        _refuse_fairseq_as_hubert_soft(path)
    model = HubertSoft()
    _load_strict(model, state, str(path), "HuBERT-soft (hubert-soft-0d54a1f4.pt)")
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


def _load_strict(model: torch.nn.Module, state: dict, source: str, kind: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        detail = (f"{len(missing)} missing (e.g. {missing[0]})" if missing else "") + (
            ("; " if missing else "") + f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "")
        raise CheckpointError(f"{source}: keys do not match {kind}: {detail}")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{source}: {key} has shape {tuple(state[key].shape)}, "
                                  f"{kind} needs {tuple(value.shape)}")
        if state[key].is_floating_point() and not torch.isfinite(state[key]).all():
            raise CheckpointError(f"{source}: {key} holds NaN or infinite values; the file is damaged")
    model.load_state_dict(state, strict=True)


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
    (r"encoder\.pos_conv\.0\.parametrizations\.weight\.original0", r"positional_embedding.conv.weight_g"),
    (r"encoder\.pos_conv\.0\.parametrizations\.weight\.original1", r"positional_embedding.conv.weight_v"),
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
    _load_strict(model, state, source, "the fairseq HuBERT built from its config")
    return model.eval(), config
