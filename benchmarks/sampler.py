"""Samplers side by side: PLMS the original way (one clip at a time) against our batched samplers.

For a batch of clips of different lengths this measures wall time, denoiser calls, and how far
each sampler's output lies from a many-step reference solution (DDIM over every step of the
1000-step schedule, deterministic) started from the same noise. The model is the full-size
DiffNet with random weights (no trained checkpoint ships here): the distances measure solver
accuracy on the model's probability-flow ODE, not audio quality. With `--ckpt` (a trained
checkpoint, e.g. the demo's) and `--data` (its prepared data) it uses that model and the
conditioning of real validation/training pieces instead: the meaningful comparison.

    python benchmarks/sampler.py [--lengths 64 96 128] [--device auto]
    python benchmarks/sampler.py --ckpt demo/models/singer_b/model_ckpt_steps_2000.ckpt --data demo/raw_singer_b

Prints a table and writes benchmarks/results/sampler.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, markdown_table, pick_device, timed, write_result  # noqa: E402

from diffsvc.config import Config  # noqa: E402
from diffsvc.model.diffusion import GaussianDiffusion  # noqa: E402
from diffsvc.sampling import make_sampler  # noqa: E402


def build_inputs(lengths, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    t_max = max(lengths)
    b = len(lengths)
    units = torch.randn(b, t_max, 256, generator=g) * 0.5
    mel2ph = torch.zeros(b, t_max, dtype=torch.long)
    for i, n in enumerate(lengths):
        mel2ph[i, :n] = torch.arange(1, n + 1)
    f0 = torch.log2(torch.full((b, t_max), 220.0)) + 0.2 * torch.sin(torch.arange(t_max) / 10.0)
    noise = torch.randn(b, 1, 128, t_max, generator=g)
    return [x.to(device) for x in (units, mel2ph, f0, noise)] + [torch.tensor(lengths, device=device)]


def real_inputs(data_dir, lengths, n_mels, device, seed=0):
    """Content units, mel2ph and f0 of the first pieces of prepared data, cut to `lengths` frames."""
    from diffsvc.data.dataset import collate, make_item
    from diffsvc.data.prepared import PreparedData

    data = PreparedData.find(data_dir)
    pieces = data.pieces("valid") + data.pieces("train")
    items = []
    for piece, n in zip(pieces, lengths):
        arrays = data.load(piece)
        items.append(make_item(arrays["mel"][:n], arrays["f0"][:n], arrays["units"]))
    if len(items) < len(lengths):
        raise SystemExit(f"{data_dir}: only {len(items)} pieces for {len(lengths)} lengths")
    batch = collate(items)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(items), 1, n_mels, batch.mel2ph.shape[1], generator=g)
    return [x.to(device) for x in (batch.units, batch.mel2ph, batch.f0, noise, batch.lengths)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 96, 128], help="clip lengths in mel frames")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--reference-steps", type=int, default=1000)
    parser.add_argument("--ckpt", help="a trained checkpoint (its config.yaml beside it) instead of random weights")
    parser.add_argument("--data", help="prepared data (raw folder or its .diffsvc) for real conditioning; with --ckpt")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    torch.manual_seed(0)
    if args.ckpt:
        from diffsvc.checkpoint import load_model

        model = load_model(args.ckpt).model
        what = f"trained checkpoint {args.ckpt}"
    else:
        model = GaussianDiffusion.from_config(Config(spec_min=[-5.0] * 128, spec_max=[0.0] * 128))
        # Random weights everywhere (the original zero-inits the last layer, which would predict no noise).
        torch.nn.init.normal_(model.denoise_fn.output_projection.weight, std=0.02)
        what = "full-size DiffNet (random weights)"
    model.to(device).eval()
    if args.data:
        units, mel2ph, f0, noise, lengths = real_inputs(args.data, args.lengths, model.n_mels, device)
        what += f", conditioning of pieces from {args.data}"
    else:
        units, mel2ph, f0, noise, lengths = build_inputs(args.lengths, device)
    schedule = model.schedule()

    calls = {"n": 0}
    real_forward = model.denoise_fn.forward

    def counting_forward(*a, **k):
        calls["n"] += 1
        return real_forward(*a, **k)

    model.denoise_fn.forward = counting_forward

    def run_batched(sampler):
        return model.sample(units, mel2ph, f0, sampler, lengths=lengths, noise=noise)

    with torch.no_grad():
        reference = run_batched(make_sampler("ddim", schedule, steps=args.reference_steps))

        def distance(mel):
            errs = [(mel[i, :n] - reference[i, :n]).pow(2).mean().sqrt() for i, n in enumerate(args.lengths)]
            return float(torch.stack(errs).mean())

        rows = []
        # The original way: PLMS, 50 steps (speedup 20), one clip at a time, no mask.
        calls["n"] = 0
        with timed(device) as elapsed:
            outs = []
            for i, n in enumerate(args.lengths):
                outs.append(model.sample(units[i:i + 1], mel2ph[i:i + 1, :n], f0[i:i + 1, :n],
                                         make_sampler("plms", schedule, speedup=20), noise=noise[i:i + 1, ..., :n]))
        original_time = elapsed()
        original_err = float(torch.stack([(o[0] - reference[i, :n]).pow(2).mean().sqrt()
                                           for i, (o, n) in enumerate(zip(outs, args.lengths))]).mean())
        rows.append(["PLMS 50 steps, one clip at a time (original)", calls["n"], original_time, 1.0, original_err])

        settings = [("plms", 50), ("plms", 25), ("ddim", 50), ("ddim", 20), ("dpm-solver++", 30),
                    ("dpm-solver++", 20), ("dpm-solver++", 15), ("dpm-solver++", 10)]
        for name, steps in settings:
            sampler = make_sampler(name, schedule, speedup=1000 // steps) if name == "plms" else \
                make_sampler(name, schedule, steps=steps)
            calls["n"] = 0
            with timed(device) as elapsed:
                mel = run_batched(sampler)
            rows.append([f"{name} {steps} steps, batched", calls["n"], elapsed(), original_time / elapsed(),
                         distance(mel)])

    headers = ["sampler", "denoiser calls", "seconds", "speed-up vs original", "RMS distance to reference"]
    good = [r for r in rows[1:] if r[4] <= original_err]
    cheapest = min(good, key=lambda r: r[1]) if good else None
    text = "\n".join([
        "# Sampler benchmark",
        "",
        f"Machine: {machine_line(device)}. Clips of {args.lengths} mel frames, {what}; "
        f"reference: DDIM over all {args.reference_steps} steps from the same noise.",
        "",
        markdown_table(headers, rows),
        "",
        (f"Cheapest setting at least as close to the reference as the original's PLMS-50: {cheapest[0]} "
         f"({cheapest[1]} denoiser calls)." if cheapest else "No faster setting matched PLMS-50 here."),
        "",
    ])
    print(text)
    name = "sampler" + ("-trained" if args.ckpt else "") + ("" if device.type == "cpu" else "-cuda")
    path = write_result(name + ".md", text)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
