"""The two denoiser backbones side by side: DiffNet (wavenet, the original's) and LYNXNet.

Both train on the same data (the tests' synthetic prepared fixture at the real 128 mel bins: each
piece's mel is a smooth function of its content units and f0, so a model that learns lowers its
loss) for the same wall-clock time, from the same seed, with the same optimiser, at about the
same number of parameters. Reported per backbone:

    parameters, training steps/s, validation loss (the masked noise loss at fixed steps and noise),
    reconstruction: mean |log10-mel difference| of the validation pieces sampled from pure noise
                    with the default sampler (ddim, 20 steps) against their true mels,
    sampling speed: seconds per 512-frame window (ddim 20, batch 1) and the window planner's
                    memory estimate per frame (from the backbone's own count).

    .venv/bin/python benchmarks/backbones.py                 # ~4 minutes on 2 idle CPU cores
    .venv/bin/python benchmarks/backbones.py --seconds 30    # shorter
    .venv/bin/python benchmarks/backbones.py --device cuda --full-size

Prints a table with LYNXNet / DiffNet ratios and writes benchmarks/results/backbones.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic prepared-data writer
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine_line, markdown_table, pick_device, sync  # noqa: E402

from diffsvc.config import Config  # noqa: E402
from diffsvc.data.dataset import PieceDataset, collate  # noqa: E402
from diffsvc.data.prepared import PreparedData  # noqa: E402
from diffsvc.inference.windows import estimated_bytes_per_frame  # noqa: E402
from diffsvc.model.diffusion import GaussianDiffusion  # noqa: E402
from diffsvc.sampling import make_sampler  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "backbones.md"
# Reduced sizes for a 2-core CPU (about 0.48 M parameters each, so that a minute holds enough
# steps); --full-size uses the defaults (DiffNet 20 x 384 as the original, LYNXNet 6 x 512 as
# DiffSinger's).
SMALL = {"wavenet": dict(residual_layers=6, residual_channels=64),
         "lynxnet": dict(lynxnet_layers=4, lynxnet_channels=96)}
TRAIN_LENGTHS = tuple(60 + (37 * i) % 140 for i in range(24))  # 60-199 frames (0.7-2.3 s)
VALID_LENGTHS = (90, 130, 170, 110)
BATCH = 4
WINDOW = 512


def config_for(name: str, data: PreparedData, full_size: bool) -> Config:
    stats = data.stats
    sizes = {} if full_size else SMALL[name]
    return Config(diff_decoder_type=name, spec_min=stats["spec_min"], spec_max=stats["spec_max"],
                  **sizes).validate(name)


def batches(dataset: PieceDataset, seed: int):
    g = torch.Generator().manual_seed(seed)
    epoch = 0
    while True:
        order = torch.randperm(len(dataset), generator=g).tolist()
        for i in range(0, len(order) - BATCH + 1, BATCH):
            yield collate([dataset[j] for j in order[i:i + BATCH]])
        epoch += 1


def to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def validation_loss(model: GaussianDiffusion, valid: list[dict], device) -> float:
    """Masked noise loss at 8 fixed steps with fixed noise per piece (comparable across models)."""
    g = torch.Generator().manual_seed(7)
    total = []
    for item in valid:
        b = to(collate([item]), device)
        for t in torch.linspace(0, model.K_step - 1, 8).long():
            noise = torch.randn(1, 1, model.n_mels, b["mel"].shape[1], generator=g).to(device)
            total.append(float(model.loss(b["mel"], b["units"], b["mel2ph"], b["f0"], b["lengths"],
                                          t=t[None].to(device), noise=noise)))
    return sum(total) / len(total)


@torch.no_grad()
def reconstruction(model: GaussianDiffusion, valid: list[dict], device) -> float:
    """Mean |log10 mel difference| of validation pieces sampled from pure noise (ddim 20)."""
    errors = []
    for i, item in enumerate(valid):
        b = to(collate([item]), device)
        noise = torch.randn(1, 1, model.n_mels, b["mel"].shape[1], generator=torch.Generator().manual_seed(i))
        mel = model.sample(b["units"], b["mel2ph"], b["f0"], make_sampler("ddim", model.schedule(), 20),
                           noise=noise.to(device))
        errors.append(float((mel - b["mel"]).abs().mean()))
    return sum(errors) / len(errors)


@torch.no_grad()
def seconds_per_window(model: GaussianDiffusion, device, repeats: int = 2) -> float:
    units = torch.randn(1, WINDOW // 3, model.fs2.mel_out.in_features, device=device)
    mel2ph = (torch.arange(WINDOW, device=device) * (WINDOW // 3) // WINDOW + 1)[None]
    f0 = torch.full((1, WINDOW), 8.0, device=device)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        model.sample(units, mel2ph, f0, make_sampler("ddim", model.schedule(), 20))
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def run(name: str, data: PreparedData, seconds: float, device, full_size: bool) -> dict:
    torch.manual_seed(0)
    config = config_for(name, data, full_size)
    model = GaussianDiffusion.from_config(config).to(device)
    train = PieceDataset(data, "train")
    valid = [PieceDataset(data, "valid")[i] for i in range(len(data.pieces("valid")))]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.98))
    start_loss = validation_loss(model, valid, device)
    stream = batches(train, seed=0)
    g = torch.Generator(device=device).manual_seed(0)
    steps, began = 0, time.perf_counter()
    model.train()
    while time.perf_counter() - began < seconds:
        b = to(next(stream), device)
        loss = model.loss(b["mel"], b["units"], b["mel2ph"], b["f0"], b["lengths"], generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps += 1
    sync(device)
    elapsed = time.perf_counter() - began
    model.eval()
    return {"backbone": name, "size": (f"{config.residual_layers} x {config.residual_channels}" if name == "wavenet"
                                       else f"{config.lynxnet_layers} x {config.lynxnet_channels}"),
            "params": sum(p.numel() for p in model.denoise_fn.parameters()),
            "steps": steps, "steps_s": steps / elapsed, "val_start": start_loss,
            "val": validation_loss(model, valid, device), "recon": reconstruction(model, valid, device),
            "window_s": seconds_per_window(model, device),
            "kib_frame": estimated_bytes_per_frame(model) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="training time per backbone (default 90)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full-size", action="store_true", help="the default sizes (a GPU run)")
    parser.add_argument("--note", default="", help="a line added to the results (e.g. the machine was busy)")
    args = parser.parse_args()
    device = pick_device(args.device)
    from prepared_fixture import write_prepared

    with tempfile.TemporaryDirectory() as tmp:
        data = PreparedData(write_prepared(Path(tmp) / "data", lengths=TRAIN_LENGTHS, valid_lengths=VALID_LENGTHS))
        rows = [run(name, data, args.seconds, device, args.full_size) for name in ("wavenet", "lynxnet")]
    headers = ["backbone", "layers x channels", "parameters", "steps in time", "steps/s", "val. loss (start)",
               "val. loss (end)", "log10-mel L1, ddim 20", "s / 512-frame window", "planner KiB/frame"]
    table = [[r["backbone"], r["size"], f"{r['params'] / 1e6:.2f} M", r["steps"], r["steps_s"], r["val_start"],
              r["val"], r["recon"], r["window_s"], r["kib_frame"]] for r in rows]
    w, l = rows
    ratios = (f"LYNXNet / DiffNet: parameters {l['params'] / w['params']:.2f}x, steps/s {l['steps_s'] / w['steps_s']:.2f}x, "
              f"validation loss {l['val'] / w['val']:.2f}x, reconstruction L1 {l['recon'] / w['recon']:.2f}x, "
              f"time per window {l['window_s'] / w['window_s']:.2f}x, planner memory {l['kib_frame'] / w['kib_frame']:.2f}x")
    text = "\n".join([
        "# Denoiser backbones: DiffNet (wavenet) and LYNXNet, same data, same wall-clock time",
        "",
        f"Machine: {machine_line(device)}. Training: {args.seconds:g} s per backbone, AdamW lr 2e-3, batch {BATCH}, "
        f"{len(TRAIN_LENGTHS)} synthetic training pieces (tests/prepared_fixture.py, 128 mel bins), "
        f"{len(VALID_LENGTHS)} validation pieces; 1000-step linear schedule. "
        f"{'Default (full) sizes.' if args.full_size else 'Reduced sizes for the CPU.'}",
        "",
        "Reproduce: `.venv/bin/python benchmarks/backbones.py"
        + (f" --seconds {args.seconds:g}" if args.seconds != 90 else "")
        + (" --full-size" if args.full_size else "") + (f" --device {args.device}" if args.device != "cpu" else "") + "`",
        "",
        markdown_table(headers, table),
        "",
        ratios,
        "",
        "Validation loss: the masked noise-prediction loss at 8 fixed steps with fixed noise per piece. "
        "Reconstruction: validation pieces sampled from pure noise with ddim 20 (the default sampler), mean "
        "absolute log10-mel difference to the true mel (lower is better). Time per window: one 512-frame "
        "window sampled with ddim 20, batch 1, best of 2. Planner KiB/frame: the window planner's estimate "
        "(diffsvc/inference/windows.py) from the backbone's own activation count.",
    ] + ([f"", f"Note: {args.note}"] if args.note else []) + [""])
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = RESULTS.with_suffix(".md.tmp")
    tmp_path.write_text(text, encoding="utf-8")
    os.replace(tmp_path, RESULTS)


if __name__ == "__main__":
    main()
