"""The restricted unpickler: what a fairseq checkpoint's pickled config needs, and nothing that runs.

fairseq checkpoints also pickle their config: an `argparse.Namespace` (`args`) or an omegaconf
`DictConfig` (`cfg`), whose metadata names fairseq's config classes and typing objects. torch's
weights_only unpickler refuses these. This unpickler is passed to `torch.load(pickle_module=...)`
(so torch still handles the zip container and tensor storages).
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
import pickle
import types
from typing import Any

import torch


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


restricted_pickle_module = types.ModuleType("diffsvc_restricted_pickle")
restricted_pickle_module.Unpickler = RestrictedUnpickler
restricted_pickle_module.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()
restricted_pickle_module.__name__ = "diffsvc_restricted_pickle"
