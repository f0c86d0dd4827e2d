"""Loading model files from strangers without running their code.

Every .pt/.ckpt goes through `safe_torch_load`: torch.load(weights_only=True), which unpickles
only tensors and plain containers. A file that needs arbitrary code is refused with a clear
message unless the user opts in with `allow_unsafe=True` (the CLI's `--trust-checkpoint`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from diffsvc.errors import CheckpointError


def safe_torch_load(path: str | os.PathLike, *, allow_unsafe: bool = False, what: str = "model file") -> Any:
    import torch

    path = check_model_file(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not allow_unsafe:
            raise CheckpointError(
                f"{path}: this {what} needs to run code to load ({_first_line(e)}); refused for safety. "
                "If you trust its source, pass --trust-checkpoint"
            ) from None
    except Exception as e:  # noqa: BLE001 - a truncated zip or foreign file fails in many ways
        raise CheckpointError(
            f"{path}: not a readable PyTorch {what} (truncated or foreign file: {_first_line(e)})"
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - anything a foreign pickle raises is one line for the user
        raise CheckpointError(f"{path}: could not load {what} ({_first_line(e)})") from None


def check_model_file(path: str | os.PathLike, what: str = "model file") -> Path:
    """The path, or one CheckpointError line if it is missing, a folder or empty."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: {what} not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a {what}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: {what} is empty (0 bytes); copy it again")
    return path


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
