"""Inference benchmark: real-time factor per stage, ours against the original way, and peak memory
for a 1-minute against a 10-minute song. Writes benchmarks/results/infer.md.

    python benchmarks/infer.py [--device auto|cpu|cuda] [--seconds 30] [--full-size]

- Ours: the default sampler (DDIM, 20 steps), windows sized from free memory, batched, the song
  spooled to disk and the output written a stretch at a time.
- Original way: the same stretches one at a time in one pass each, PLMS 50 steps (speedup 20),
  the song and its output whole in memory. Both in one process, on the same song, the same model
  and the same encoders.
- Memory: `diffsvc infer` itself, for each song length in a fresh subprocess that reports its own
  peak RSS (CPU) or peak CUDA allocation, so the two figures do not mix. On the CPU, also the
  window planner's bytes-per-frame count against a measured sampling run.

No pretrained weights exist here: the diffusion model has random weights, the content encoder is
the MFCC stand-in and f0 comes from parselmouth (CREPE-full on 2 CPU cores would dominate every
figure). On the CPU the denoiser is reduced (64 channels x 10 layers, not 384 x 20; 16 x 2 for the memory runs) and the
vocoder is a small random NSF-HiFiGAN (32 initial channels) so the whole run stays under ~5 minutes;
`--full-size` uses the release-size denoiser (do that on a GPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import machine_line, markdown_table, peak_rss_mib, pick_device, write_result  # noqa: E402

SR = 44100


def make_song(path: Path, seconds: float, pauses: bool = False) -> Path:
    """A sung-like phrase of 30 s (tests/audio_synth.py), tiled to `seconds`. Its breaths are short, so
    the slicer sees one continuous voiced stretch. With `pauses`, pieces of 3 to 12 s of it
    alternate with 1.5 s of silence: many stretches, each of another length."""
    import soundfile as sf

    from audio_synth import synth_voice

    phrase, _ = synth_voice(min(30.0, seconds), SR, f0=None, seed=0)
    total = int(seconds * SR)
    if not pauses:
        reps = int(np.ceil(total / len(phrase)))
        sf.write(path, np.tile(phrase, reps)[:total], SR)
        return path
    rng = np.random.default_rng(0)
    parts, length, pos = [], 0, 0
    while length < total:
        n = int(rng.uniform(3.0, 12.0) * SR)
        piece = np.take(phrase, np.arange(pos, pos + n), mode="wrap")
        pos = (pos + n) % len(phrase)
        parts += [piece, np.zeros(int(1.5 * SR), dtype=np.float32)]
        length += n + int(1.5 * SR)
    sf.write(path, np.concatenate(parts)[:total], SR)
    return path


def make_project(root: Path, full_size: bool, name: str = "bench", tiny: bool = False) -> None:
    from infer_fixture import write_project

    if tiny:  # the memory runs on the CPU: what grows with song length, not the model, is measured
        sizes = dict(residual_channels=16, residual_layers=2)
    elif full_size:
        sizes = dict(residual_channels=384, residual_layers=20)
    else:
        sizes = dict(residual_channels=64, residual_layers=10)
    write_project(root / name, "bench", vocoder="nsf-hifigan", timesteps=1000, K_step=1000, sampling_steps=20,
                  **sizes)


def convert(root: Path, song: Path, device, streamed: bool, **settings) -> tuple[dict, float]:
    """Stage seconds and song seconds for one conversion with the project in `root`, written to a file.
    Streamed (ours): the song spooled to disk and the output written a stretch at a time.
    Not streamed (the original way): the whole song in memory, the whole output written at the end."""
    import os

    import torch

    from diffsvc.audio.load import load_audio
    from diffsvc.audio.spool import spool_audio
    from diffsvc.inference.components import load_content_encoder_for, load_vocoder_for
    from diffsvc.inference.output import audio_writer
    from diffsvc.inference.pipeline import InferenceSettings, SongConverter
    from diffsvc.inference.project import choose_checkpoint, load_checkpoint

    loaded = load_checkpoint(choose_checkpoint(root / "models", "bench"), device)
    os.chdir(root)  # the project's config names the vocoder relative to the working folder
    c = loaded.config
    conv = SongConverter(loaded, load_content_encoder_for(c, device), load_vocoder_for(c, device), device,
                         InferenceSettings(f0_method="parselmouth", **settings))
    out = root / ("out_streamed.wav" if streamed else "out_whole.wav")
    if streamed:
        with conv.timer("load"):
            wav = spool_audio(song, SR)
        with wav, audio_writer(out, SR) as write:
            conv.convert_to(write, wav, conv.analyse(wav), seed=0)
    else:
        with conv.timer("load"):
            wav = load_audio(song, SR)
        result = conv.convert(wav, conv.analyse(wav), seed=0)
        with audio_writer(out, SR) as write:
            write(result.audio)
    plan = conv._last_plan
    info = dict(conv.timer.seconds)
    info["plan"] = f"{plan.window_frames} frames x {plan.batch_size}" if plan else "-"
    if device.type == "cuda":
        info["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return info, len(wav) / SR


def child(args) -> None:
    """One memory run through the `diffsvc infer` command itself: print a JSON line with its
    peak memory (this process's peak RSS on the CPU, the peak CUDA allocation on a GPU)."""
    import contextlib
    import io
    import os
    import re

    from diffsvc.cli.main import main as diffsvc_main

    # torch is left for the command to load, so it starts as it does for a user (its CPU kernel
    # cache settings are made before torch loads)
    root = Path(args.root)
    os.chdir(root)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = diffsvc_main(["infer", args.song, "--project", "bench", "--f0", "parselmouth", "--seed", "0",
                           "--device", args.device, "--out", str(root / "memory_out.wav"), "--overwrite", "--quiet"])
    text = err.getvalue()
    if rc != 0:
        raise SystemExit(text)
    import torch

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    total = re.search(r"real-time factor: .*total ([0-9.e+-]+)", text)
    plan = re.search(r"windows of (\d+) frames x (\d+)", text)
    info = {"rtf": float(total.group(1)) if total else float("nan"),
            "plan": f"{plan.group(1)} frames x {plan.group(2)}" if plan else "-",
            "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mib()}
    print("RESULT " + json.dumps(info))


PROBE = """
import sys, torch
from diffsvc.config import Config
from diffsvc.inference.windows import estimated_bytes_per_frame
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.sampling import make_sampler
ch, layers, frames, b = map(int, sys.argv[1:5])
m = GaussianDiffusion.from_config(Config(residual_channels=ch, residual_layers=layers)).eval()
units = torch.randn(b, frames // 2, 256)
mel2ph = (torch.arange(frames) // 2 + 1).clamp(max=frames // 2)[None].repeat(b, 1)
f0 = torch.full((b, frames), 8.0)
def rss(field):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(field))
with torch.inference_mode():
    open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
    base = rss("VmRSS:")
    m.sample(units, mel2ph, f0, make_sampler("ddim", m.schedule(), 3))
    print((rss("VmHWM:") - base) / (b * frames), estimated_bytes_per_frame(m))
"""


def memory_model_rows() -> list[list]:
    """The CPU window planner's bytes-per-frame count against the measured peak RSS growth of a
    first sampling run (fresh process each: the allocator's caches would hide the growth)."""
    rows = []
    for ch, layers, frames, batch in ((64, 10, 1500, 1), (64, 10, 1500, 4), (384, 20, 1500, 1), (384, 20, 750, 4)):
        out = subprocess.run([sys.executable, "-c", PROBE, str(ch), str(layers), str(frames), str(batch)],
                             capture_output=True, text=True, check=True).stdout.split()
        measured, estimate = float(out[0]), float(out[1])
        rows.append([f"{ch} x {layers}", f"{frames} x {batch}", round(measured), round(estimate),
                     measured / estimate])
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto")
    p.add_argument("--seconds", type=float, default=30.0, help="song length for the speed comparison")
    p.add_argument("--full-size", action="store_true", help="release-size denoiser and vocoder")
    p.add_argument("--long-minutes", type=float, default=10.0, help="the long song of the memory comparison")
    p.add_argument("--short-minutes", type=float, default=1.0, help="the short song of the memory comparison")
    p.add_argument("--no-probe", action="store_true", help="skip the CPU planner's memory-count check")
    p.add_argument("--out", default=None, help="result file under benchmarks/results/ (infer.md; infer-cuda.md on CUDA)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--song", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_project(root, args.full_size)
        memory_root = root / "bench"
        if device.type != "cuda" and not args.full_size:
            make_project(root, False, "bench-tiny", tiny=True)
            memory_root = root / "bench-tiny"
        song = make_song(root / "song.wav", args.seconds)
        stages = ["load", "f0", "content", "sampling", "vocoder"]
        rows = []
        runs = [("ours: ddim 20 steps (the default), windows batched, streamed", True,
                 dict(sampler="ddim", sampling_steps=20)),
                ("original way: PLMS 50 steps, one stretch at a time, in memory", False,
                 dict(sampler="plms", sampling_steps=50, batch_size=1, window_frames=10**6))]
        totals = {}
        for _label, streamed, settings in runs:  # untimed: first calls build per-shape kernels (oneDNN, cuDNN)
            convert(root / "bench", song, device, streamed, **settings)
        for label, streamed, settings in runs:
            info, seconds = convert(root / "bench", song, device, streamed, **settings)
            total = sum(info[s] for s in stages)
            totals[label] = total
            rows.append([label] + [info[s] / seconds for s in stages] + [total / seconds, info["plan"]])
            print(label, {s: round(info[s], 2) for s in stages}, file=sys.stderr)
        mem_rows = []
        for pauses in (False, True):
            for minutes in (args.short_minutes, args.long_minutes):
                kind = "phrases and pauses" if pauses else "continuous"
                long_song = make_song(root / f"song_{minutes}min_{int(pauses)}.wav", 60 * minutes, pauses)
                out = subprocess.run([sys.executable, __file__, "--child", "--device", str(device), "--root",
                                      str(memory_root), "--song", str(long_song)], capture_output=True, text=True,
                                     check=True)
                info = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
                mem_rows.append([f"{minutes:g} min, {kind}", info["peak_mib"], info["rtf"], info["plan"]])
                print(minutes, "min", kind, info, file=sys.stderr)
        model_rows = memory_model_rows() if device.type != "cuda" and not args.no_probe else []
    size = "release size (384 x 20)" if args.full_size else "reduced (64 channels x 10 layers)"
    speedup = totals[runs[1][0]] / totals[runs[0][0]]
    growth = [mem_rows[1][1] / mem_rows[0][1], mem_rows[3][1] / mem_rows[2][1]]
    text = "\n".join([
        "# Inference benchmark", "",
        f"Machine: {machine_line(device)}. Song: {args.seconds:g} s of synthetic singing with pauses "
        f"(tests/audio_synth.py). Denoiser: {size}, random weights; content: MFCC stand-in; f0: parselmouth; "
        "vocoder: small random NSF-HiFiGAN (windowed)." if not args.full_size else
        f"Machine: {machine_line(device)}. Song: {args.seconds:g} s. Denoiser at release size, random weights; "
        "content: MFCC stand-in; f0: parselmouth; vocoder: small random NSF-HiFiGAN.", "",
        "## Real-time factor per stage (seconds of work per second of song; lower is faster)", "",
        markdown_table(["run"] + stages + ["total", "windows"], rows), "",
        f"Ours is {speedup:.2f}x faster in total than the original way.", "",
        f"## Peak memory of `diffsvc infer`, {args.short_minutes:g}-minute against {args.long_minutes:g}-minute song",
        "",
        "Each run is the command itself in a fresh process (process peak RSS on the CPU, peak CUDA allocation "
        "on a GPU). " + ("On the CPU these runs use a 16-channel x 2-layer denoiser so that 10 minutes finish in "
                         "minutes: they measure what grows with the song's length."
                         if device.type != "cuda" and not args.full_size else ""), "",
        markdown_table(["song", "peak MiB", "total RTF", "windows"], mem_rows), "",
        f"The {args.long_minutes:g}-minute song peaks at {growth[0]:.2f}x the {args.short_minutes:g}-minute song's memory when the "
        f"singing is continuous (converted in 60 s sections) and at {growth[1]:.2f}x with phrases and pauses "
        "(many stretches of different lengths).", "",
    ] + ([
        "## The CPU window planner's memory count against measurement", "",
        "Bytes per mel frame of one batch item while sampling: measured as the peak RSS growth of a first DDIM run "
        "in a fresh process, against `estimated_bytes_per_frame` (which window sizes and batches are planned with).",
        "",
        markdown_table(["denoiser", "frames x batch", "measured B/frame", "estimate B/frame", "measured / estimate"],
                       model_rows), "",
    ] if model_rows else []))
    path = write_result(args.out or ("infer-cuda.md" if device.type == "cuda" else "infer.md"), text + "\n")
    print(text)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
