"""The training recipes side by side: the original's against ours, on the offline demo's data, for
the same wall-clock time, in one run.

    python benchmarks/recipe.py [--data PREPARED_RAW_DIR] [--points 500 1000 2000] [--chunk 100]

Both recipes start from configs/demo.yaml (the demo's model, data, lr and sampler); they differ only
in the recipe keys (ema_decay, loss_weighting, min_snr_gamma, prediction). They train interleaved in
this one process: `chunk` steps of one, then `chunk` steps of the other (each chunk a resume of its
project through the real Trainer, which resumes bit-exactly), so that a machine shared with other
work slows both alike; every recipe's wall-clock seconds are recorded. At each point (steps) the
newest checkpoint of each recipe (the weights inference reads) is measured on the validation pieces:
- sampled FROM PURE NOISE with the config's sampler and steps (the demo's default), against the
  real mel: log-mel distance (log10 units) and MCD (dB) as `diffsvc eval` computes them, and the
  frame-to-frame roughness of the sampled mel over the real mel's (1.0: as smooth as the real);
- the noise-prediction MSE averaged over t = 0, 50, ..., 950 with fixed noise (the original's
  objective; for a v or x0 model the noise its output implies, which for x0 is its clean-mel error
  divided by sqrt(1 - a), 100x at t = 0: large even for a model whose samples are good, so compare
  the sampled mels, not this column, across predictions), and the recipe's own validation loss.
Without --data the demo corpus is generated and preprocessed (stand-in features) in --workdir.
Writes benchmarks/results/recipe.md (and .json) and, with --picture, a before/after PNG.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine_line, markdown_table  # noqa: E402
from recipe_diagnose import (logmel_distance, mel_cepstral_distortion, per_t_errors, roughness,  # noqa: E402
                             sample_piece)

from diffsvc.config import DEFAULT_CONFIG, RECIPE_KEYS  # noqa: E402

DEMO_CONFIG = DEFAULT_CONFIG.parent / "demo.yaml"
ORIGINAL = {"ema_decay": 0.0, "loss_weighting": "none", "min_snr_gamma": 5.0, "prediction": "eps"}


def demo_recipe() -> dict:
    """The recipe keys of configs/demo.yaml (ours), the original's where it leaves one out."""
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    return {k: demo.get(k, ORIGINAL[k]) for k in RECIPE_KEYS}


def prepare_data(workdir: Path) -> Path:
    """The demo's corpus of singer B (2 minutes), preprocessed with the stand-in features."""
    import soundfile as sf  # noqa: F401

    from diffsvc.cli.main import main as cli
    from diffsvc.demo.corpus import SINGER_B, write_corpus

    raw = workdir / "raw_singer_b"
    if not (raw / ".diffsvc").exists():
        write_corpus(raw, SINGER_B, 4, 30.0, seed=1)
        code = cli(["preprocess", str(raw), "--config", str(base_config_path(workdir)), "--f0", "parselmouth",
                    "--content", "stand-in", "--yes", "--device", "cpu"])
        if code:
            raise SystemExit(f"preprocess failed ({code})")
    return raw


def base_config_path(workdir: Path) -> Path:
    path = workdir / "demo-base.yaml"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        data = yaml.safe_load(DEMO_CONFIG.read_text())
        data.update(content_encoder="stand-in", vocoder="griffin-lim")
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def recipe_config(workdir: Path, name: str, recipe: dict, chunk: int) -> Path:
    data = yaml.safe_load(base_config_path(workdir).read_text())
    data.update(recipe)
    data.update(val_check_interval=chunk, num_valid_plots=0, num_ckpt_keep=2)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Run:
    """One recipe's training project, trained on in chunks; wall seconds and validation losses kept."""

    def __init__(self, name: str, config: Path, data: Path, models: Path):
        self.name, self.config, self.data, self.models = name, config, data, models
        self.seconds = 0.0
        self.cpu_seconds = 0.0  # this process's CPU time while training (the machine is shared)
        self.val_loss: dict[int, float] = {}

    def train_to(self, steps: int) -> None:
        from diffsvc.training.loop import TrainOptions, train
        from diffsvc.training.project import Project

        def log(msg: str) -> None:
            m = re.match(r"step (\d+): validation loss ([\d.eE+-]+)", msg)
            if m:
                self.val_loss[int(m.group(1))] = float(m.group(2))

        start, cpu = time.perf_counter(), time.process_time()
        train(TrainOptions(project=Project(self.models / self.name), data_dir=self.data, base_config=self.config,
                           max_steps=steps, device="cpu", workers=0, progress=False), log=log)
        self.seconds += time.perf_counter() - start
        self.cpu_seconds += time.process_time() - cpu

    def checkpoint(self) -> Path:
        from diffsvc.checkpoint import latest_checkpoint

        return latest_checkpoint(self.models / self.name)


def measure(ckpt: Path, data: Path, pieces: int, frames: int) -> dict:
    """Reconstruction from pure noise and noise-prediction error of a checkpoint on validation pieces."""
    from diffsvc.checkpoint import load_model
    from diffsvc.sampling import make_sampler
    from recipe_diagnose import load_piece

    loaded = load_model(ckpt)
    model, config = loaded.model, loaded.config
    sampler = make_sampler(config.sampler, model.schedule(), config.sampling_steps)
    rows, mels = [], []
    for i in range(pieces):
        batch = load_piece(data, "valid", i, frames)
        real = batch.mel[0].float()
        out = sample_piece(model, batch, sampler, seed=i).clamp(config.mel_vmin, config.mel_vmax)
        errs = per_t_errors(model, batch, list(range(0, 1000, 50)), seed=i)
        rows.append({"logmel_db": logmel_distance(out, real), "mcd_db": mel_cepstral_distortion(out, real),
                     "roughness": roughness(out) / roughness(real),
                     "eps_mse": float(np.mean([r["eps_mse"] for r in errs]))})
        mels.append((real.numpy(), out.numpy()))
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    summary["mels"] = mels
    return summary


def valid_pieces(data: Path) -> int:
    from diffsvc.data.prepared import PreparedData

    return len(PreparedData.find(data).pieces("valid"))


def picture(path: Path, real: np.ndarray, before: np.ndarray, after: np.ndarray, titles: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    for ax, mel, title in zip(axes, (real, before, after), titles):
        ax.imshow(mel.T, origin="lower", aspect="auto", vmin=-6.0, vmax=1.5, cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mel bin")
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def report(args, recipes: dict, results: list[dict], pieces: int) -> None:
    """Write the table (benchmarks/results/<out>.md and .json), the sampled mels and the picture."""
    others = [n for n in recipes if n != "original"]
    headers = ["steps", "recipe", "train s", "train CPU s", "log-mel (log10)", "MCD dB", "roughness (x real)",
               "eps MSE (mean over t)",
               "val loss (own objective)"]
    rows = [[r["steps"], r["recipe"], round(r["seconds"]), round(r["cpu_seconds"]), r["logmel_db"], r["mcd_db"],
             r["roughness"], r["eps_mse"],
             r["val_loss"]] for r in results]
    ratio_rows = []
    for point in sorted({r['steps'] for r in results}):
        o = next(r for r in results if r["steps"] == point and r["recipe"] == "original")
        for name in others:
            n = next(r for r in results if r["steps"] == point and r["recipe"] == name)
            ratio_rows.append([point, name, n["logmel_db"] / o["logmel_db"], n["mcd_db"] / o["mcd_db"],
                               n["roughness"], n["seconds"] / o["seconds"], n["cpu_seconds"] / o["cpu_seconds"]])
    text = "\n".join([
        "# Training recipes: the original's against ours (benchmarks/recipe.py)", "",
        f"Machine: {machine_line(torch.device('cpu'))}; shared with other work, so both recipes trained "
        f"interleaved in one process ({args.chunk}-step turns) and each one's wall-clock and CPU seconds are shown.",
        f"Data: the offline demo's corpus (singer B, stand-in content features); model and lr of configs/demo.yaml. "
        f"Measured on {pieces} validation pieces ({args.frames} frames each), sampled from pure noise with the "
        "demo's sampler (dpm-solver++ 20).",
        "Recipes: " + "; ".join(f"{n}: {r}" for n, r in recipes.items()) + ".", "",
        markdown_table(headers, rows), "",
        "New over original at the same step (and so about the same wall-clock time):", "",
        markdown_table(["steps", "recipe", "log-mel ratio", "MCD ratio", "roughness (x real)", "time ratio",
                        "CPU time ratio"], ratio_rows),
        "",
    ])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text(text)
    (RESULTS / f"{args.out}.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "mels"}
                                                          for r in results], indent=1))
    print(text)
    last = max(r['steps'] for r in results)
    np.savez(args.workdir / f"{args.out}_mels.npz", **{f"{r['recipe']}_{r['steps']}_{i}_{kind}": mel
                                                       for r in results for i, pair in enumerate(r["mels"])
                                                       for kind, mel in zip(("real", "sampled"), pair)})
    if args.picture:
        shown = args.picture_recipe or others[0]
        o = next(r for r in results if r["steps"] == last and r["recipe"] == "original")
        n = next(r for r in results if r["steps"] == last and r["recipe"] == shown)
        real, before = o["mels"][0]
        picture(args.picture, real, before, n["mels"][0][1],
                ["real mel (validation piece of singer B)",
                 f"original recipe, {last} steps, from pure noise (roughness {o['roughness']:.1f}x)",
                 f"{shown} recipe, {last} steps, from pure noise (roughness {n['roughness']:.1f}x)"])



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("bench_recipe"))
    p.add_argument("--data", type=Path, default=None, help="a preprocessed demo corpus (default: make one)")
    p.add_argument("--points", type=int, nargs="+", default=[500, 1000, 2000], help="steps at which to measure")
    p.add_argument("--chunk", type=int, default=100, help="steps of one recipe before the other's turn")
    p.add_argument("--pieces", type=int, default=2, help="validation pieces measured")
    p.add_argument("--frames", type=int, default=400, help="frames of each piece measured")
    p.add_argument("--recipe", action="append", default=[], metavar="NAME=JSON",
                   help="a recipe to compare with the original (repeatable; default: new=configs/demo.yaml's)")
    p.add_argument("--picture", type=Path, default=None, help="write the before/after PNG here")
    p.add_argument("--picture-recipe", default=None, help="the recipe shown in the picture (default: the first)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared CPU more threads spin and slow every step several times)")
    p.add_argument("--out", default="recipe", help="results file stem in benchmarks/results/")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    data = args.data or prepare_data(args.workdir)
    recipes = {"original": ORIGINAL}
    for spec in args.recipe or ["new=" + json.dumps(demo_recipe())]:
        name, _, text = spec.partition("=")
        recipes[name] = {**ORIGINAL, **json.loads(text)}
    others = [n for n in recipes if n != "original"]
    runs = {name: Run(name, recipe_config(args.workdir, name, r, args.chunk), data, args.workdir / "models")
            for name, r in recipes.items()}
    pieces = min(args.pieces, valid_pieces(data))
    results, done = [], 0
    for point in sorted(args.points):
        while done < point:
            done = min(point, done + args.chunk)
            for run in runs.values():  # interleaved: the same machine load for both
                run.train_to(done)
            print(f"step {done}: " + ", ".join(f"{n} {r.seconds:.0f} s" for n, r in runs.items()), flush=True)
        for name, run in runs.items():
            m = measure(run.checkpoint(), data, pieces, args.frames)
            m.update(recipe=name, steps=point, seconds=run.seconds, cpu_seconds=run.cpu_seconds,
                     val_loss=run.val_loss.get(point, float("nan")))
            results.append(m)
            print(f"  {name} @ {point}: log-mel {m['logmel_db']:.3f}, MCD {m['mcd_db']:.2f} dB, roughness "
                  f"{m['roughness']:.2f}x, eps MSE {m['eps_mse']:.4f}, val loss {m['val_loss']:.4f}", flush=True)

        report(args, recipes, results, pieces)  # after every point: a cut-short run keeps its table


if __name__ == "__main__":
    main()
