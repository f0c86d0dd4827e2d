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

RESULTS = Path(os.environ.get("DIFFSVC_BENCH_RESULTS") or ROOT / "benchmarks" / "results")
OOM_LIMIT_GIB = 6  # the OOM check caps this process's CUDA memory here, so the full batch cannot fit
WARMUP = 2
# On the CPU the full denoiser (20 x 384) takes many seconds a step; a reduced one keeps the run
# short while the comparison (batching, padding, masking) stays the same.
CPU_MODEL = dict(residual_layers=4, residual_channels=64)
CPU_STEPS, GPU_STEPS = 16, 30
CPU_ORIGINAL_BATCH, GPU_ORIGINAL_BATCH = 8, 32
LENGTHS = [172 + (i * 97) % 1550 for i in range(48)]  # 2 to 20 s of mel frames at 86 frames/s


def recipe_config(recipe: str, device: str) -> dict:
    values = dict(val_check_interval=10**6, num_valid_plots=0, log_interval=10**6, ds_workers=2)
    if device == "cpu" or os.environ.get("DIFFSVC_BENCH_TINY"):
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
    if recipe == "oom":  # every piece in one batch, in less memory than that needs: split and retried
        fixed = len(LENGTHS)
        if device != "cpu":
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, OOM_LIMIT_GIB * 2**30 / total))
    free_before = None
    if device != "cpu":
        free_before = torch.cuda.mem_get_info(0)[0]
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
        "free_share": (result.peak_memory_bytes or 0) / free_before if free_before else None,
        "free_gib": free_before / 2**30 if free_before else None,
        "oom_messages": [m for m in messages if "out of memory" in m],
    }


def run_in_child(recipe: str, device: str, steps: int, workdir: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, __file__, "--child", recipe, device, str(steps), str(workdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{recipe} on {device} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| recipe | device | batch (items) | chosen by | mean items/step | steps/s | real frames/s | padding | "
             "peak memory | share of free memory |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        share = "-" if r.get("free_share") is None else f"{r['free_share']:.0%} of {r['free_gib']:.1f} GiB"
        lines.append(f"| {r['recipe']} | {r['device']} | {r['batch']} | {r['how']} | {r['mean_items']:.1f} | "
                     f"{r['steps_per_s']:.2f} | {r['frames_per_s']:.0f} | {r['padding']:.0%} | "
                     f"{r['peak_gib']:.2f} GiB {r['peak_kind']} | {share} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true", help="only the CUDA rows (benchmarks/gpu.sh)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default 16 CPU, 30 GPU)")
    parser.add_argument("--oom-check", action="store_true",
                        help=f"also train every piece in one batch with CUDA memory capped at {OOM_LIMIT_GIB} GiB: "
                             "the step must be split and retried, not fail")
    parser.add_argument("--dry-run", action="store_true", help="the CPU in place of CUDA, a tiny model (a check "
                        "that the GPU rows' code runs, not a measurement)")
    parser.add_argument("--out", default=None, help="result file name (train.md; train-cuda.md with --gpu-only)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        recipe, device, steps, workdir = args.child
        print(json.dumps(run_one(recipe, device, int(steps), Path(workdir))))
        return

    import torch

    devices = [] if args.gpu_only else [("cpu", args.steps or CPU_STEPS)]
    if (torch.cuda.is_available() and not args.cpu_only) or args.gpu_only:
        devices.append(("cpu" if args.dry_run else "cuda", args.steps or GPU_STEPS))
    if args.dry_run:
        os.environ["DIFFSVC_BENCH_TINY"] = "1"  # the children read it: the reduced model
    rows, oom_rows = [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for device, steps in devices:
            for recipe in ("original", "ours"):
                rows.append(run_in_child(recipe, device, steps + WARMUP, Path(tmp)))
                print(f"  {recipe} on {device}: {rows[-1]['steps_per_s']:.2f} steps/s", file=sys.stderr)
        if args.oom_check:
            device = devices[-1][0]
            oom_rows.append(run_in_child("oom", device, WARMUP + 3, Path(tmp)))
            print(f"  oom check on {device}: {oom_rows[-1]['oom_messages']}", file=sys.stderr)
    text = table(rows)
    if oom_rows:
        r = oom_rows[0]
        said = "; ".join(r["oom_messages"]) or "(no out-of-memory: nothing was split)"
        text += ("\n\n## Out of memory: split and retried\n\n"
                 f"Every one of the {len(LENGTHS)} pieces in one batch (fixed), on {r['device']}"
                 + (f" with this process's CUDA memory capped at {OOM_LIMIT_GIB} GiB" if "cpu" not in r["device"] else
                    " (the CPU: a dry run, nothing is capped)")
                 + f": {r['steps']} steps trained at {r['steps_per_s']:.2f} steps/s, peak {r['peak_gib']:.2f} GiB. "
                 f"The trainer said: {said}\n")
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
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (args.out or ("train-cuda.md" if args.gpu_only and not args.dry_run else "train.md"))
    if args.dry_run and not args.out:
        path = RESULTS / "train-dry-run.md"
    path.write_text("# Training throughput: the original recipe against ours\n\n"
                    "Made by `benchmarks/train.py`.\n\n" + text + "\n" + "\n".join(notes) + "\n", encoding="utf-8")
    print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
