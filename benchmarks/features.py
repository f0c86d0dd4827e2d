"""Speed of each f0 method, content encoder and vocoder, and their peak memory on a long input.

    .venv/bin/python benchmarks/features.py [--device auto|cpu|cuda] [--seconds 20] [--quick]
                                            [--only f0,content,vocoder,memory]

Speed is audio seconds processed per wall second on one synthetic voice clip (tests/audio_synth.py)
of --seconds; each component gets a warm-up call on the clip's first 2 s, then one timed call on
the whole clip. HuBERT-soft and NSF-HiFiGAN are the release architectures with random weights (the
cost does not depend on the weights); the vocoder is saved in the release layout and read back
through `load_vocoder`, so the real loading path is timed too. Vocoders get the clip's log10 mel
and its true f0.

Memory: every measurement runs in a fresh process (this script with a hidden --child) on a
1-minute and a 10-minute input (--quick: 20 s and 2 minutes), so one row's peak cannot hide
another's. Long inputs are one 20 s clip tiled with a different gain and offset per repetition.
Writes benchmarks/results/features.md (features-cuda.md on CUDA).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from audio_synth import synth_voice
from common import (
    machine_line,
    markdown_table,
    peak_rss_mib,
    pick_device,
    release_nsf_config,
    timed,
    write_result,
)

SR = 44100
HOP = 512
WARMUP_SECONDS = 2.0
TILE_SECONDS = 20.0
PARTS = ("f0", "content", "vocoder", "memory")
RELEASE_VOCODER = release_nsf_config()


# ---------------------------------------------------------------- inputs

def voice_clip(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(wav float32 at 44.1 kHz, true f0 on the mel grid)."""
    return synth_voice(seconds, SR, None, seed=seed, hop_size=HOP)


def long_voice(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`seconds` of voice made by tiling one 20 s clip; each repetition gets its own gain and a
    rotated start, so no two windows are identical (synthesising 10 minutes would take minutes)."""
    clip, clip_f0 = voice_clip(min(seconds, TILE_SECONDS), seed)
    clip_frames = len(clip) // HOP
    clip, clip_f0 = clip[: clip_frames * HOP], clip_f0[:clip_frames]  # whole frames, so wav and f0 rotate together
    n_frames = int(seconds * SR) // HOP
    wav = np.empty(n_frames * HOP, dtype=np.float32)
    f0 = np.empty(n_frames, dtype=np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, n_frames, clip_frames):
        shift = int(rng.integers(clip_frames))
        take = min(clip_frames, n_frames - start)
        wav[start * HOP:(start + take) * HOP] = np.roll(clip, -shift * HOP)[: take * HOP] * rng.uniform(0.6, 1.0)
        f0[start:start + take] = np.roll(clip_f0, -shift)[:take]
    return wav, f0


def log10_mel(wav: np.ndarray) -> torch.Tensor:
    from diffsvc.audio.mel import MelExtractor

    return MelExtractor()(torch.from_numpy(wav))


def tile_mel(wav: np.ndarray) -> torch.Tensor:
    """The mel frames of one tile; a short last tile is zero-padded first (the STFT's reflect
    padding needs more samples than one frame) and cut back to its own frames."""
    frames = len(wav) // HOP
    padded = np.pad(wav, (0, max(0, 4 * HOP - len(wav))))
    return log10_mel(padded)[:frames]


def save_release_vocoder(folder: Path) -> Path:
    """Random-weight NSF-HiFiGAN at the release size, written as the release's model + config.json."""
    from diffsvc.vocoder import Generator, save_vocoder

    torch.manual_seed(0)
    return save_vocoder(Generator.from_config(RELEASE_VOCODER), RELEASE_VOCODER, folder)


# ---------------------------------------------------------------- components

def f0_available(method: str) -> bool:
    if method == "fcpe":
        from diffsvc.features.f0.fcpe import fcpe_available

        return fcpe_available()
    return True


def build(part: str, name: str, device: torch.device, vocoder_dir: Path | None):
    """The component to measure, ready on `device`, as a function of (wav, f0) -> result."""
    if part == "f0":
        from diffsvc.features.f0 import make_f0_extractor

        extractor = make_f0_extractor(name, SR, HOP, 40.0, 1100.0, str(device), 0.05)
        return lambda wav, f0: extractor.extract(wav)
    if part == "content":
        from diffsvc.features.content import StandinContentEncoder, hubert_soft_encoder
        from diffsvc.features.content.hubert_soft import HubertSoft

        if name == "hubert-soft":
            torch.manual_seed(0)
            encoder = hubert_soft_encoder(HubertSoft().eval()).to(device)
        else:
            encoder = StandinContentEncoder().to(device)
        return lambda wav, f0: encoder.encode(wav, SR)
    if part == "vocoder":
        from diffsvc.vocoder import GriffinLimVocoder, load_vocoder

        vocoder = load_vocoder(vocoder_dir, device) if name == "nsf-hifigan" else GriffinLimVocoder().to(device)
        return lambda mel, f0: vocoder.vocode(mel, torch.from_numpy(f0))
    raise ValueError(part)


LABELS = {
    ("f0", "crepe"): "CREPE full (torchcrepe)", ("f0", "crepe-tiny"): "CREPE tiny (torchcrepe)",
    ("f0", "parselmouth"): "Praat (parselmouth)", ("f0", "fcpe"): "FCPE (torchfcpe)",
    ("content", "hubert-soft"): "HuBERT-soft (release size, random weights)",
    ("content", "stand-in"): "stand-in (MFCC)",
    ("vocoder", "nsf-hifigan"): "NSF-HiFiGAN (release size, random weights)",
    ("vocoder", "griffin-lim"): "stand-in (Griffin-Lim, 32 iterations)",
}
SPEED_PLAN = {"f0": ["crepe", "crepe-tiny", "parselmouth", "fcpe"], "content": ["hubert-soft", "stand-in"],
              "vocoder": ["nsf-hifigan", "griffin-lim"]}


def inputs_for(part: str, wav: np.ndarray, f0: np.ndarray):
    """What the component takes: audio for f0 and content, (log10 mel, f0) for vocoders."""
    if part == "vocoder":
        return log10_mel(wav), f0
    return wav, f0


def speed_rows(parts: list[str], device: torch.device, seconds: float, vocoder_dir: Path) -> list[list]:
    wav, f0 = voice_clip(seconds, seed=1)
    warm_wav, warm_f0 = wav[: int(WARMUP_SECONDS * SR)], f0[: int(WARMUP_SECONDS * SR) // HOP]
    rows = []
    for part in parts:
        for name in SPEED_PLAN[part]:
            if part == "f0" and not f0_available(name):
                rows.append([part, LABELS[part, name], f"{seconds:g}", "-", "not installed"])
                continue
            start = time.perf_counter()
            run = build(part, name, device, vocoder_dir)
            run(*inputs_for(part, warm_wav, warm_f0))  # warm-up: lazy model loads, kernels, caches
            load_s = time.perf_counter() - start
            x, y = inputs_for(part, wav, f0)  # the vocoders' mel is made outside the timed call
            with timed(device) as t:
                run(x, y)
            rows.append([part, LABELS[part, name], f"{seconds:g}", f"{load_s:.2f}", seconds / t()])
            print(rows[-1], flush=True)
    return rows


# ---------------------------------------------------------------- memory (one fresh process each)

def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def current_rss_mib() -> float:
    """Resident memory now (VmRSS), unlike peak_rss_mib which is the high-water mark."""
    return _status_mib("VmRSS")


def reset_peak_rss() -> bool:
    """Restart the high-water mark at the current RSS (Linux >= 4.0), so the peak read after a call
    is that call's and not the import's; False where the kernel refuses (then the process peak is used)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def call_peak_rss_mib(was_reset: bool) -> float:
    return _status_mib("VmHWM") if was_reset else peak_rss_mib()


def child(spec: dict) -> None:
    """Measure one component on one input length; print one JSON line."""
    device = torch.device(spec["device"])
    part, name, seconds = spec["part"], spec["name"], spec["seconds"]
    run = build(part, name, device, Path(spec["vocoder_dir"]) if spec.get("vocoder_dir") else None)
    run(*inputs_for(part, *voice_clip(WARMUP_SECONDS, seed=2)))  # lazy loads happen before the baseline
    after_imports = current_rss_mib()
    wav, f0 = long_voice(seconds, seed=3)
    x, y = inputs_for(part, wav, f0) if part != "vocoder" else (None, f0)
    if part == "vocoder":  # the mel of the 20 s tile, tiled: a 10-minute STFT here would be the peak
        tile = int(TILE_SECONDS * SR) // HOP
        x = torch.cat([tile_mel(wav[i * HOP:(i + tile) * HOP]) for i in range(0, len(f0), tile)])
    del wav
    with_input = current_rss_mib()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        cuda_before = torch.cuda.memory_allocated(device)
    was_reset = reset_peak_rss()
    with timed(device) as t:
        out = run(x, y)
    out_mib = (out.numel() * out.element_size() if torch.is_tensor(out) else out.nbytes) / 2**20
    facts = {"after_imports": after_imports, "with_input": with_input,
             "peak": call_peak_rss_mib(was_reset), "peak_of_call": was_reset,
             "seconds": t(), "output_mib": out_mib,
             "input_mib": ((x.numel() * x.element_size() if torch.is_tensor(x) else x.nbytes)
                           + (f0.nbytes if part == "vocoder" else 0)) / 2**20}
    if device.type == "cuda":
        facts["cuda_peak"] = (torch.cuda.max_memory_allocated(device) - cuda_before) / 2**20
    print(json.dumps(facts), flush=True)


def memory_plan(device: torch.device) -> list[tuple[str, str]]:
    f0 = ["parselmouth", "fcpe"] + (["crepe"] if device.type == "cuda" else [])
    return [("f0", m) for m in f0 if f0_available(m)] + [("content", "hubert-soft"), ("vocoder", "nsf-hifigan")]


def memory_rows(device: torch.device, lengths: list[float], vocoder_dir: Path) -> tuple[list[list], list[str]]:
    rows, ratios = [], []
    for part, name in memory_plan(device):
        facts = []
        for seconds in lengths:
            spec = {"part": part, "name": name, "seconds": seconds, "device": str(device),
                    "vocoder_dir": str(vocoder_dir)}
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"child {spec} failed:\n{out.stderr[-3000:]}")
            f = json.loads(out.stdout.strip().splitlines()[-1])
            facts.append(f)
            peak = f["peak"] if f["peak_of_call"] else f"{f['peak']:.4g} (process)"
            row = [LABELS[part, name], duration(seconds), f["after_imports"], f["with_input"], peak,
                   f["peak"] - f["with_input"], f["input_mib"] + f["output_mib"], seconds / f["seconds"]]
            if device.type == "cuda":
                row.insert(-1, f["cuda_peak"])
            rows.append(row)
            print(rows[-1], flush=True)
        short, long = facts[0], facts[-1]
        growth_short, growth_long = short["peak"] - short["with_input"], long["peak"] - long["with_input"]
        line = (f"- {LABELS[part, name]}: peak {long['peak']:.0f} / {short['peak']:.0f} MiB = "
                f"{long['peak'] / short['peak']:.2f}x for {lengths[-1] / lengths[0]:.3g}x the audio; above the "
                f"baseline with input {growth_long:.0f} / {growth_short:.0f} MiB"
                f" (input + output themselves: {long['input_mib'] + long['output_mib']:.0f} / "
                f"{short['input_mib'] + short['output_mib']:.0f} MiB)")
        if device.type == "cuda":
            line += f"; GPU {long['cuda_peak']:.0f} / {short['cuda_peak']:.0f} MiB"
        ratios.append(line)
    return rows, ratios


def duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


# ---------------------------------------------------------------- report

MEMORY_NOTE = (
    "Each row is a fresh process. 'after imports': libraries and the model loaded, one warm-up call made; "
    "'with input': the long input built as well (for the vocoder the log10 mel and f0, for the others the "
    "44.1 kHz waveform); peak: the RSS high-water mark during the measured call (VmHWM, reset just before it; "
    "'(process)' marks a value where the kernel refused the reset, so it is the whole process's). HuBERT-soft runs in windows of 30 s, NSF-HiFiGAN "
    "in windows of 1000 frames (both with context), so their working memory should not grow with the input; "
    "the input and output arrays themselves must (last column but one)."
)
CPU_CREPE_NOTE = (
    "CREPE is left out of the memory rows on the CPU: full CREPE runs at a fraction of real time here "
    "(about an hour for 10 minutes of audio on 2 cores); it is measured on CUDA."
)
GPU_NOTE = "GPU peak: torch.cuda.max_memory_allocated during the call, above what was allocated before it."


def report(args, device, speed, memory, ratios, lengths) -> str:
    lines = ["# Feature extraction and vocoding: speed and memory", "",
             (f"Machine: {machine_line(device)}. Made by `benchmarks/features.py --device {device.type} "
              f"--seconds {args.seconds:g}{' --quick' if args.quick else ''}"
              f"{' --only ' + args.only if args.only != ','.join(PARTS) else ''}`."), ""]
    if speed:
        lines += ["## Audio seconds processed per second", "",
                  (f"One synthetic voice clip of {args.seconds:g} s (tests/audio_synth.py, seed 1); warm-up on its "
                   f"first {WARMUP_SECONDS:g} s, then one timed call on the whole clip. Start-up: seconds to build"),
                  "or load the component and make the warm-up call (f0 models load lazily, on that first call; the",
                  "NSF-HiFiGAN row reads its release-layout files through `load_vocoder`).",
                  "Vocoders are timed from the log10 mel and f0 to the waveform (the mel itself is not timed).", "",
                  markdown_table(["part", "component", "audio (s)", "start-up (s)", "audio s / s"], speed), ""]
    if memory:
        headers = ["component", "input", "RSS after imports (MiB)", "RSS with input (MiB)", "peak RSS (MiB)",
                   "peak - with input (MiB)", "input + output (MiB)", "audio s / s"]
        if device.type == "cuda":
            headers.insert(-1, "GPU peak (MiB)")
        quick = " (--quick: shorter than the 1 and 10 minutes of a full run)" if args.quick else ""
        lines += [f"## Peak memory: {duration(lengths[0])} against {duration(lengths[-1])}{quick}", "",
                  MEMORY_NOTE, GPU_NOTE if device.type == "cuda" else CPU_CREPE_NOTE, "",
                  markdown_table(headers, memory), "", "Growth, long against short input:", "", *ratios, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the speed clip (default 20)")
    parser.add_argument("--quick", action="store_true", help="memory on 20 s and 2 minutes instead of 1 and 10")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {','.join(PARTS)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    device = pick_device(args.device)
    lengths = [20.0, 120.0] if args.quick else [60.0, 600.0]
    speed, memory, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        vocoder_dir = save_release_vocoder(Path(tmp) / "nsf_hifigan") if {"vocoder", "memory"} & set(parts) else None
        speed = speed_rows([p for p in parts if p != "memory"], device, args.seconds, vocoder_dir)
        if "memory" in parts:
            memory, ratios = memory_rows(device, lengths, vocoder_dir)
    text = report(args, device, speed, memory, ratios, lengths)
    path = write_result("features-cuda.md" if device.type == "cuda" else "features.md", text)
    print(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
