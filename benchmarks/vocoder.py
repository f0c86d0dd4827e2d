"""Speed and memory of NSF-HiFiGAN vocoding at the release size (random weights).

    .venv/bin/python benchmarks/vocoder.py --seconds 30 --device cuda --window 1000

Prints the real-time factor (audio seconds per wall second) and, on CUDA, the peak memory, so
that the window length can be chosen for a card.
"""

from __future__ import annotations

import argparse
import time

import torch

from diffsvc.vocoder import Generator, NsfHifiGan
from diffsvc.vocoder.base import MelSettings

RELEASE = {"resblock": "1", "upsample_rates": [8, 8, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4, 4],
           "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11],
           "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "num_mels": 128, "sampling_rate": 44100}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--window", type=int, default=1000, help="window length in frames")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    device = torch.device(args.device)
    generator = Generator.from_config(RELEASE).remove_weight_norm().eval()
    settings = MelSettings(44100, 128, 512, 2048, 2048, 40.0, 16000.0)
    vocoder = NsfHifiGan(generator, settings, window_frames=args.window).to(device)
    frames = int(args.seconds * 44100 / 512)
    mel = torch.randn(frames, 128, device=device) * 0.5 - 2.5
    f0 = torch.full((frames,), 220.0, device=device)
    vocoder.vocode(mel[: min(frames, 50)], f0[: min(frames, 50)])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        vocoder.vocode(mel, f0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    best = min(times)
    line = f"{args.seconds:g} s of audio, window {args.window} frames on {device}: {best:.3f} s, {args.seconds / best:.1f}x real time"
    if device.type == "cuda":
        line += f", peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    print(line)


if __name__ == "__main__":
    main()
