"""How far the fast CPU runtimes move the output from torch fp32, at full size, against the spread
that nobody hears as a different conversion (another seed). Writes benchmarks/results/cpu-quality.md.

    python benchmarks/cpu_quality.py [--seconds 10] [--tiny]

The same full-size models as benchmarks/pipeline.py (DiffNet 384 x 20, HuBERT-soft, NSF-HiFiGAN;
random weights, except that the denoiser's zero-initialised output projection gets random
weights too, so that its prediction, and with it bf16's rounding, reaches the mel). One song, one
seed, converted with cpu_runtime torch (the reference), onnxruntime and bf16, and with torch
under another seed (the spread). Per stage in isolation, on the reference's own inputs:
- content: relative error of the units (||u - u_ref|| / ||u_ref||);
- denoiser: one call on the reference's windows at a mid step (relative error), and the whole
  DDIM 20 sampling (mean abs(mel - mel_ref) in dB of mel magnitude, 20 x log10 units);
- vocoder: the reference mel vocoded (SNR in dB, and the log-mel distance of the audio in dB).
And the whole pipeline: the output's log-mel distance to the reference (dB).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import machine_line, markdown_table, pick_device, write_result  # noqa: E402

SR = 44100


def log_mel_db(a, b, mel) -> float:
    """Mean |log-mel(a) - log-mel(b)| in dB of magnitude (20 x log10 units), over frames above -60 dB."""
    import torch

    ma, mb = mel(torch.as_tensor(a)), mel(torch.as_tensor(b))
    n = min(len(ma), len(mb))
    ma, mb = ma[:n], mb[:n]
    keep = mb > mb.max() - 3.0
    return float(20 * (ma - mb).abs()[keep].mean())


def snr_db(out, ref) -> float:
    import numpy as np

    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    n = min(len(out), len(ref))
    return float(10 * np.log10((ref[:n] ** 2).sum() / max(((out[:n] - ref[:n]) ** 2).sum(), 1e-30)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args()
    if args.tiny:
        args.seconds = min(args.seconds, 3.0)
    import torch

    from diffsvc.audio.load import load_audio
    from diffsvc.audio.mel import MelExtractor
    from diffsvc.cpu_runtime import autocast_for
    from infer import make_song
    from pipeline import converter_for, make_project

    device = pick_device("cpu")
    cwd = os.getcwd()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_project(root, args.tiny)
        song = make_song(root / "song.wav", args.seconds)
        wav = load_audio(song, SR)
        conv = {}
        for name in ("torch", "onnxruntime", "bf16"):
            conv[name], count, _ = converter_for(root, device, dict(cpu_runtime=name), original=False, student=None)
            count.handle.remove()
        model = conv["torch"].model
        with torch.no_grad():
            torch.manual_seed(1)
            out_proj = model.denoise_fn.output_projection
            out_proj.weight.normal_(0, out_proj.weight.shape[1] ** -0.5)
        mel = MelExtractor.from_config(conv["torch"].config)
        analysis = conv["torch"].analyse(wav)
        results = {}
        for name, seed in (("torch", 0), ("torch", 1), ("onnxruntime", 0), ("bf16", 0)):
            c = conv[name]
            results[(name, seed)] = c.convert(wav, analysis, seed=seed)
        ref = results[("torch", 0)]

        # content, in isolation
        piece = wav[: SR * 5]
        encoder = conv["torch"].encoder
        units_ref = encoder.encode(piece, SR).float()
        with autocast_for("bf16"):
            units_bf = encoder.encode(piece, SR).float()
        content_err = float((units_bf - units_ref).norm() / units_ref.norm())

        # the denoiser: one call at a mid step on a window of the reference's mel
        frames = min(1000, len(ref.mel_out))
        spec = torch.as_tensor(ref.mel_out[:frames]).T[None, None].float()
        cond = torch.randn(1, model.denoise_fn.cond_dims, frames, generator=torch.Generator().manual_seed(2))
        t = torch.tensor([500])
        with torch.no_grad():
            eps_ref = model.denoise_fn(spec, t, cond)
            with autocast_for("bf16"):
                eps_bf = model.denoise_fn(spec, t, cond).float()
        call_err = float((eps_bf - eps_ref).norm() / eps_ref.norm())

        def sampled_db(name):
            return float(20 * abs(results[(name, 0)].mel_out - ref.mel_out).mean())

        # the vocoder on the reference mel and f0
        vocoder = conv["torch"].vocoder
        mel_t = torch.as_tensor(ref.mel_out).float()
        f0_t = torch.as_tensor(ref.f0_cond_hz).float()
        voc = {}
        for name in ("torch", "onnxruntime", "bf16"):
            vocoder.use_cpu_runtime(name)
            torch.manual_seed(0)
            voc[name] = vocoder.vocode(mel_t, f0_t).numpy()
        vocoder.use_cpu_runtime("torch")
        torch.manual_seed(7)  # the vocoder's own noise under another seed: the spread
        voc["seed"] = vocoder.vocode(mel_t, f0_t).numpy()

        def whole_db(key):
            return log_mel_db(results[key].audio, ref.audio, mel)

        rows.append(["torch fp32, another seed (the spread)", "-", "-", f"{float(20 * abs(results[('torch', 1)].mel_out - ref.mel_out).mean()):.3f}",
                     f"{snr_db(voc['seed'], voc['torch']):.1f}", f"{log_mel_db(voc['seed'], voc['torch'], mel):.3f}",
                     f"{whole_db(('torch', 1)):.3f}"])
        rows.append(["onnxruntime (vocoder in ONNX Runtime, fp32)", "0 (torch)", "0 (torch)", f"{sampled_db('onnxruntime'):.3f}",
                     f"{snr_db(voc['onnxruntime'], voc['torch']):.1f}", f"{log_mel_db(voc['onnxruntime'], voc['torch'], mel):.4f}",
                     f"{whole_db(('onnxruntime', 0)):.4f}"])
        rows.append(["bf16 (content, denoiser, vocoder)", f"{content_err:.4f}", f"{call_err:.4f}", f"{sampled_db('bf16'):.3f}",
                     f"{snr_db(voc['bf16'], voc['torch']):.1f}", f"{log_mel_db(voc['bf16'], voc['torch'], mel):.3f}",
                     f"{whole_db(('bf16', 0)):.3f}"])
    os.chdir(cwd)
    text = "\n".join([
        "# CPU runtimes against torch fp32" + (" (tiny check)" if args.tiny else ""), "",
        f"Machine: {machine_line(device)}. Song: {args.seconds:g} s of synthetic singing; models as "
        "benchmarks/pipeline.py (full size, random weights; the denoiser's output projection randomised so "
        "that its prediction reaches the mel). Reference: cpu_runtime torch, seed 0.", "",
        markdown_table(["run", "content units, relative error", "one denoiser call, relative error",
                        "sampled mel (DDIM 20), mean abs diff dB", "vocoder on the same mel, SNR dB",
                        "vocoder on the same mel, log-mel distance dB", "whole pipeline, log-mel distance dB"], rows),
        "",
        "The first row is what changes between two runs of torch fp32 that differ only in the seed (for the "
        "vocoder: its source's noise): a difference of that size is not a different conversion.", "",
        "The tolerance accepted for a runtime that rounds (bf16): each of its differences stays below that "
        "spread, and the whole pipeline's below half of it. onnxruntime only reorders fp32 sums.", "",
    ])
    path = write_result("cpu-quality-tiny.md" if args.tiny else "cpu-quality.md", text)
    print(text)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
