"""Loading model files from strangers without running their code.

`safe_torch_load`: torch.load(weights_only=True), which unpickles only tensors and plain
containers. A file that needs code is refused: where the command offers `--trust-checkpoint`
(allow_unsafe=False) the message says so, and allow_unsafe=True loads it; where no flag applies
(allow_unsafe=None: public vocoder and encoder files, which never need code) it is refused outright.
`restricted_torch_load`: fairseq files, through the restricted unpickler (unpickler.py).

Every failure is one CheckpointError line naming the file: placeholders are told apart before
torch reads them (identify.py), a pickle cut short is told from one that asks for code, torch's
own advice (weights_only=False, add_safe_globals) is never repeated, and its warnings are silenced.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from diffsvc.errors import CheckpointError
from diffsvc.modelfile.identify import check_model_file
from diffsvc.modelfile.unpickler import Refused, restricted_pickle_module

_ASKED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
# A legacy torch file is 5 pickles in a row (magic, protocol, sys info, the object, storage keys).
_LEGACY_PICKLES = 5
AGAIN = "; download or copy the real file again"


def safe_torch_load(path: str | os.PathLike, *, allow_unsafe: bool | None = False, what: str = "model file") -> Any:
    """The object in `path`, loaded on the CPU with weights_only=True.

    allow_unsafe: True loads a file that needs code (the user passed --trust-checkpoint); False
    refuses it and names --trust-checkpoint; None refuses it without offering a flag.
    Raises CheckpointError (one line naming `path`) for a missing, placeholder, damaged or refused file.
    """
    path = check_model_file(path, what)
    try:
        return _quiet_load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        asked = _asked_global(e)
        if asked is None or _pickle_truncated(path):
            raise CheckpointError(f"{path}: not a readable PyTorch {what} (truncated or foreign file: "
                                  f"{_reason(e, 'its data ends early or is not a torch pickle')}){AGAIN}") from None
        if allow_unsafe is None:
            raise CheckpointError(f"{path}: refused to load this {what}: it asks to run {asked}, which no {what} "
                                  "needs (the file may be malicious or not the right file)") from None
        if not allow_unsafe:
            raise CheckpointError(
                f"{path}: this {what} needs to run code to load (it asks for {asked}); refused for safety. "
                "If you trust its source, pass --trust-checkpoint"
            ) from None
    except Exception as e:  # noqa: BLE001 - a truncated zip or foreign file fails in many ways
        raise CheckpointError(f"{path}: not a readable PyTorch {what} (truncated or foreign file: {_reason(e)}){AGAIN}") from None
    try:
        return _quiet_load(path, weights_only=False)
    except Exception as e:  # noqa: BLE001 - anything a foreign pickle raises is one line for the user
        raise CheckpointError(f"{path}: could not load {what} ({_reason(e)})") from None


def restricted_torch_load(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """torch.load for files that pickle configs (fairseq): tensors, containers, Namespace and
    inert stand-ins only. Raises CheckpointError (one line, naming the file) otherwise."""
    path = check_model_file(path, what)
    try:
        return _quiet_load(path, weights_only=False, pickle_module=restricted_pickle_module)
    except Refused as e:
        if _pickle_truncated(path):
            raise CheckpointError(f"{path}: not a readable PyTorch {what} (truncated or foreign file: "
                                  f"its data ends early){AGAIN}") from None
        raise CheckpointError(
            f"{path}: refused to load this {what}: it asks to run {e.qualified_name}, which no model "
            "checkpoint needs (the file may be malicious or not a fairseq checkpoint)"
        ) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            TypeError, AttributeError, KeyError, IndexError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch {what} (truncated or foreign file: {_reason(e)}){AGAIN}") from None


def _quiet_load(path: Path, **kwargs) -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's warnings would print before our one line
        return torch.load(path, map_location="cpu", **kwargs)


def _asked_global(e: BaseException) -> str | None:
    m = _ASKED_GLOBAL.search(str(e))
    return m.group(1) if m else None


def _pickle_truncated(path: Path) -> bool:
    """True when the file's pickle stream ends before its STOP opcode (read without running anything)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return False
                with archive.open(name) as stream:
                    for _ in pickletools.genops(stream):
                        pass
            return False
        with open(path, "rb") as stream:
            for _ in range(_LEGACY_PICKLES):
                for _ in pickletools.genops(stream):
                    pass
        return False
    except (ValueError, EOFError, zipfile.BadZipFile, OSError):
        return True


def _reason(e: BaseException, fallback: str | None = None) -> str:
    """The first line of an exception, unless it is torch's advice about weights_only."""
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    if "weights_only" in str(e) or "Weights only" in line:
        return fallback or "not a torch file"
    return line[:200]
