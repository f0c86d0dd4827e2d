"""Training throughput: the original Diff-SVC recipe against ours, on the CPU and (when present) a GPU.

    original: a fixed batch, whole items (no crop), the unmasked loss, fp32
    ours:     the batch chosen by diffsvc (from free GPU memory; the CPU default on the CPU),
              random crops to crop_frames, the masked loss, bf16/fp16 on CUDA

Both train on the same synthetic prepared data (pieces of 2 to 20 seconds, like a sliced
dataset) through `diffsvc.training.train`, each in its own process so that peak memory is its
own. Steps per second leave out the first steps (warm-up); frames per second count real
(unpadded) mel frames, the figure that says how fast the model learns from the data.

    .venv/bin/python benchmarks/train.py            # CPU (a reduced model, ~2 minutes) and GPU if any
    .venv/bin/python benchmarks/train.py --cpu-only

Prints a table and writes it to benchmarks/results/train.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic prepared-data writer

RESULTS = ROOT / "benchmarks" / "results" / "train.md"
WARMUP = 2
# On the CPU the full denoiser (20 x 384) takes many seconds a step; a reduced one keeps the run
# short while the comparison (batching, padding, masking) stays the same.
CPU_MODEL = dict(residual_layers=4, residual_channels=64)
CPU_STEPS, GPU_STEPS = 16, 30
CPU_ORIGINAL_BATCH, GPU_ORIGINAL_BATCH = 8, 32
LENGTHS = [172 + (i * 97) % 1550 for i in range(48)]  # 2 to 20 s of mel frames at 86 frames/s


def recipe_config(recipe: str, device: str) -> dict:
    values = dict(val_check_interval=10**6, num_valid_plots=0, log_interval=10**6, ds_workers=2)
    if device == "cpu":
        values.update(CPU_MODEL)
    if recipe == "original":
        values.update(crop_frames=0, loss_mask=False)
    return values


def run_one(recipe: str, device: str, steps: int, workdir: Path) -> dict:
    """Train `steps` steps in this process and return the figures."""
    import torch

    from diffsvc.config import DEFAULT_CONFIG, load_config, save_config
    from diffsvc.training.project import Project
    from diffsvc.training.trainer import TrainOptions, train
    from prepared_fixture import write_prepared

    data = workdir / "data"
    if not (data / "manifest.json").exists():
        write_prepared(data, lengths=LENGTHS, valid_lengths=(200,))
    base = workdir / f"{recipe}-{device}.yaml"
    save_config(load_config(DEFAULT_CONFIG).replace(**recipe_config(recipe, device)), base)
    fixed = (CPU_ORIGINAL_BATCH if device == "cpu" else GPU_ORIGINAL_BATCH) if recipe == "original" else None
    options = TrainOptions(project=Project(workdir / "models" / f"{recipe}-{device}"), data_dir=data, base_config=base,
                           max_steps=steps, batch_size=fixed, device=device, progress=False,
                           precision="fp32" if recipe == "original" else "auto")
    messages = []
    result = train(options, log=messages.append)
    timed = result.history[WARMUP:]
    seconds = sum(r.seconds for r in timed)
    peak = result.peak_memory_bytes if device != "cpu" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "recipe": recipe, "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "batch": result.plan.max_sentences, "how": result.plan.reason,
        "mean_items": sum(r.batch_items for r in timed) / len(timed),
        "steps_per_s": len(timed) / seconds, "frames_per_s": sum(r.real_frames for r in timed) / seconds,
        "padding": 1 - sum(r.real_frames for r in timed) / sum(r.padded_frames for r in timed),
        "peak_gib": peak / 2**30, "peak_kind": "RSS" if device == "cpu" else "allocated",
        "steps": len(timed),
    }


def run_in_child(recipe: str, device: str, steps: int, workdir: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, __file__, "--child", recipe, device, str(steps), str(workdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{recipe} on {device} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| recipe | device | batch (items) | chosen by | mean items/step | steps/s | real frames/s | padding | peak memory |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['device']} | {r['batch']} | {r['how']} | {r['mean_items']:.1f} | "
                     f"{r['steps_per_s']:.2f} | {r['frames_per_s']:.0f} | {r['padding']:.0%} | "
                     f"{r['peak_gib']:.2f} GiB {r['peak_kind']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        recipe, device, steps, workdir = args.child
        print(json.dumps(run_one(recipe, device, int(steps), Path(workdir))))
        return

    import torch

    devices = [("cpu", CPU_STEPS)]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(("cuda", GPU_STEPS))
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for device, steps in devices:
            for recipe in ("original", "ours"):
                rows.append(run_in_child(recipe, device, steps + WARMUP, Path(tmp)))
                print(f"  {recipe} on {device}: {rows[-1]['steps_per_s']:.2f} steps/s", file=sys.stderr)
    text = table(rows)
    notes = [
        "",
        f"Data: {len(LENGTHS)} synthetic pieces of {min(LENGTHS)} to {max(LENGTHS)} mel frames (2 to 20 s). "
        f"Steps timed after {WARMUP} warm-up steps. CPU rows use a reduced denoiser "
        f"({CPU_MODEL['residual_layers']} layers x {CPU_MODEL['residual_channels']} channels) to stay short; "
        "GPU rows the full 20 x 384 one.",
        "original: fixed batch, whole items, unmasked loss, fp32. ours: batch chosen by diffsvc, random crops "
        "to crop_frames (1000), masked loss, bf16/fp16 on CUDA.",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}; "
        f"the whole benchmark took {time.perf_counter() - start:.0f} s.",
    ]
    print(text)
    print("\n".join(notes))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("# Training throughput: the original recipe against ours\n\n"
                       "Made by `benchmarks/train.py`.\n\n" + text + "\n" + "\n".join(notes) + "\n", encoding="utf-8")
    print(f"written to {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
