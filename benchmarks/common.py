"""Shared bits of the benchmark scripts: device choice, timing, peak memory, result tables."""

from __future__ import annotations

import os
import platform
import resource
import time
from contextlib import contextmanager
from pathlib import Path

import torch

# DIFFSVC_BENCH_RESULTS redirects every table (benchmarks/gpu.sh --dry-run writes to a temporary folder)
RESULTS = Path(os.environ.get("DIFFSVC_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def machine_line(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU ({os.cpu_count()} cores, {platform.machine()}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timed(device: torch.device):
    """with timed(dev) as t: ...; then t() is the elapsed seconds."""
    sync(device)
    start = time.perf_counter()
    box = {}
    yield lambda: box["s"]
    sync(device)
    box["s"] = time.perf_counter() - start


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, text: str) -> Path:
    from diffsvc.fileio import atomic_write_text

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    atomic_write_text(path, text)
    return path


def release_nsf_config() -> dict:
    """The NSF-HiFiGAN 20221211 release's config.json (512 initial channels, 44.1 kHz, hop 512), as
    recorded in tests/fixtures/nsf_hifigan_keys.json: what the release-size vocoders of the
    benchmarks are built from."""
    import json

    path = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nsf_hifigan_keys.json"
    return json.loads(path.read_text())["config_used"]

