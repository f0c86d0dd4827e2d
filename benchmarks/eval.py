"""How the `diffsvc eval` figures move with training, on the offline demo project.

    python benchmarks/eval.py [--workdir bench_eval] [--steps 2000] [--every 250] [--device auto]

1. The demo's corpus (synthetic singer B, a phrase of singer A), preprocessed like `diffsvc demo`.
2. `diffsvc train` with configs/demo.yaml, keeping a checkpoint every --every steps (all kept).
3. `diffsvc eval --all-steps` on singer A's phrase: one row per checkpoint.
4. Writes benchmarks/results/eval.md (the table, the chosen checkpoint, the eval cost).

Stages already done in --workdir are reused (delete it to start over). The demo uses stand-ins
(MFCC content features, Griffin-Lim) unless the public weights are in models/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_line, pick_device  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("bench_eval"))
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--hook-only", action="store_true", help="re-measure the validation hook only (eval.md kept)")
    args = p.parse_args()

    import soundfile as sf

    from diffsvc.cli.demo import DEMO_CONFIG, _stand_ins
    from diffsvc.cli.main import main as cli
    from diffsvc.config import DEFAULT_CONFIG, load_config
    from diffsvc.demo.corpus import SINGER_A, SINGER_B, song, write_corpus
    from diffsvc.fileio import atomic_write, atomic_write_text

    work = args.workdir
    raw, models = work / "raw_singer_b", work / "models"
    phrase = work / "input" / "singer_a_phrase.wav"
    content, vocoder, notes = _stand_ins()
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    base = load_config(DEFAULT_CONFIG)
    config.update(content_encoder=content, vocoder=vocoder, val_check_interval=args.every,
                  num_ckpt_keep=max(1, args.steps // args.every + 1),
                  hubert_path=str(Path(base.hubert_path).resolve()), vocoder_ckpt=str(Path(base.vocoder_ckpt).resolve()))
    work.mkdir(parents=True, exist_ok=True)
    config_path = work / "config.yaml"
    atomic_write_text(config_path, yaml.safe_dump(config, sort_keys=False))
    stages = {}

    def stage(name, fn):
        start = time.perf_counter()
        code = fn()
        stages[name] = time.perf_counter() - start
        if code:
            raise SystemExit(f"benchmark stage {name} failed (exit {code})")

    if not (raw / ".diffsvc" / "manifest.json").exists():
        def corpus():
            write_corpus(raw, SINGER_B, max(2, int(round(args.minutes * 2))), 30.0, seed=1)
            return 0
        stage("corpus", corpus)
        stage("preprocess", lambda: cli(["preprocess", str(raw), "--config", str(config_path), "--f0", "parselmouth",
                                         "--content", content, "--yes", "--device", args.device]))
    if not phrase.exists():
        wav, _ = song(SINGER_A, 8.0, seed=7)
        atomic_write(phrase, lambda p: sf.write(p, wav, 44100, subtype="PCM_16", format="WAV"))
    if not (models / "singer_b" / f"model_ckpt_steps_{args.steps}.ckpt").exists():
        stage("train", lambda: cli(["train", "--project", "singer_b", "--data", str(raw), "--config", str(config_path),
                                    "--models-dir", str(models), "--max-steps", str(args.steps),
                                    "--device", args.device]))
    if args.train_only:
        return 0
    if args.hook_only:  # the eval rows from the last run's eval.json, the hook measured again
        import re

        took = re.search(r"checkpoints took (\d+) s", (RESULTS / "eval.md").read_text())
        result = json.loads((models / "singer_b" / "eval.json").read_text())
        hook = measure_validation_hook(models / "singer_b", raw, pick_device(args.device))
        write_results(result, notes, float(took.group(1)) if took else float("nan"), hook,
                      pick_device(args.device), args)
        return 0
    start = time.perf_counter()
    stage("eval", lambda: cli(["eval", "--project", "singer_b", "--models-dir", str(models), "--data", str(raw),
                               "--all-steps", "--device", args.device, "--seed", "0", str(phrase)]))
    eval_seconds = time.perf_counter() - start
    result = json.loads((models / "singer_b" / "eval.json").read_text())
    hook = measure_validation_hook(models / "singer_b", raw, pick_device(args.device))
    write_results(result, notes, eval_seconds, hook, pick_device(args.device), args)
    return 0


def measure_validation_hook(project: Path, raw: Path, device) -> list[tuple[str, float, dict]]:
    """What training's validation would pay per validation for reconstruction_figures on the
    validation pieces: mels only (ddim 4 steps), and with vocoder + re-tracked pitch."""
    import torch

    from diffsvc.data.prepared import PreparedData
    from diffsvc.evaluation.pitch_track import retrack_extractor
    from diffsvc.evaluation.reconstruction import reconstruction_figures
    from diffsvc.inference.components import load_vocoder_for
    from diffsvc.inference.project import choose_checkpoint, load_checkpoint

    choice = choose_checkpoint(project.parent, project.name)
    loaded = load_checkpoint(choice, device)
    model, config = loaded.model.eval(), loaded.config
    data = PreparedData.find(raw)
    pieces = [data.load(p) for p in data.pieces("valid")]
    vocoder = load_vocoder_for(config, device)
    retracker, _ = retrack_extractor(config, config.f0_extractor, str(device))
    from diffsvc.evaluation.reconstruction import ValidationFigures

    out = []
    for label, kwargs in (("mels only, ddim 4 steps", {}),
                          ("+ vocoder and re-tracked pitch, ddim 4 steps",
                           dict(vocoder=vocoder, f0_extractor=retracker, mel_range=(config.mel_vmin, config.mel_vmax))),
                          ("mels only, ddim 20 steps", dict(sampling_steps=20))):
        kwargs = {"sampler": "ddim", "sampling_steps": 4, **kwargs}
        reconstruction_figures(model, pieces[:1], **kwargs)  # warm-up
        start = time.perf_counter()
        figures = reconstruction_figures(model, pieces, **kwargs).figures
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append((label, time.perf_counter() - start, figures))
    seconds = sum(p.seconds for p in data.pieces("valid"))
    out = [(f"{label} (all {len(pieces)} pieces, {seconds:.1f} s of audio)", t, f) for label, t, f in out]
    hook = ValidationFigures(config, device, vocoder=vocoder, log=lambda m: None)
    hook(model, pieces)  # warm-up: the first call also makes the re-tracking extractor (once per run)
    start = time.perf_counter()
    figures = {k[len("eval/"):]: v for k, v in hook(model, pieces).items()}
    out.append((f"training's ValidationFigures as wired (first {hook.max_frames} frames of at most "
                f"{hook.max_pieces} pieces, vocoder and pitch, ddim {hook.sampling_steps})",
                time.perf_counter() - start, figures))
    return out


def hook_lines(hook) -> list[str]:
    lines = ["Cost of the reconstruction figures on the newest checkpoint per validation (what training's "
             "validation adds; the figures come from `reconstruction_figures`):", "",
             "| what | seconds | MCD dB | RPA |", "|---|---|---|---|"]
    lines += [f"| {label} | {t:.2f} | {f['recon_mcd_db']:.2f} | "
              + (f"{f['recon_rpa']:.3f} |" if "recon_rpa" in f else "- |") for label, t, f in hook]
    return lines + [""]


def write_results(result: dict, notes: list[str], eval_seconds: float, hook, device, args) -> None:
    from diffsvc.evaluation.report import format_table

    rows = result["rows"]
    lines = ["# `diffsvc eval` over the demo project's checkpoints", "",
             f"Machine: {machine_line(device)}. Command: `python benchmarks/eval.py --steps {args.steps} "
             f"--every {args.every}`.", ""]
    lines += [f"- {n}" for n in notes] or ["- real HuBERT-soft and NSF-HiFiGAN weights"]
    lines += ["", "Reconstruction: the project's validation pieces sampled from pure noise "
              f"({result['settings']['sampler']} {result['settings']['sampling_steps']} steps, seed "
              f"{result['settings']['seed']}) from their own content units and f0, against their real mels. "
              "Pitch, speaker and content figures are on singer A's phrase converted to singer B.", "",
              "```", format_table(rows, result["best_step"]), "```", "",
              f"Best checkpoint by reconstruction (lowest MCD): step {result['best_step']}.",
              f"Not computed: {', '.join(result['unavailable']) or 'nothing'}.", "",
              f"The whole eval of {len(rows)} checkpoints took {eval_seconds:.0f} s.", "",
    ]
    lines += hook_lines(hook)
    RESULTS.mkdir(exist_ok=True)
    from diffsvc.fileio import atomic_write_text

    atomic_write_text(RESULTS / "eval.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
