"""The training device and its precision (fp32, or bf16/fp16 autocast)."""

from __future__ import annotations

import contextlib

import torch

from diffsvc.errors import DiffSvcError
from diffsvc.training.distributed import DistInfo

PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16 with a loss scaler"}


def pick_device(name: str, info: DistInfo) -> torch.device:
    """`auto`: CUDA when visible, else the CPU; `cuda` without an index: this process's local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DiffSvcError("--device cuda: no CUDA GPU is visible to PyTorch (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return device


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. `auto` is mixed precision on CUDA only; on the CPU,
    bf16 and fp16 autocast are there when asked for (fast on CPUs with AMX / AVX-512 BF16, slow
    elsewhere), and they run the same autocast and loss-scaler code as CUDA."""
    if device.type != "cuda":
        if name in ("bf16", "fp16") and device.type != "cpu":
            raise DiffSvcError(f"--precision {name}: mixed precision is for CUDA and the CPU; on the {device.type} "
                               "train in fp32")
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for `dtype` on `device`, or nothing for fp32 (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
