"""The distilled students against the teacher's samplers, side by side in one run.

Trains a small teacher on synthetic prepared data (the tests' singer: each piece's mel a smooth
function of its content units and f0; 256 training pieces, so the teacher generalises to the
validation pieces' unseen units), distils consistency students from it with `diffsvc distill`'s code
(by default the student distill makes for this teacher, and an eps student beside it), then samples
the validation pieces from the same start noise with every sampler and reports, per sampler:
denoiser calls, seconds, the RMS distance to the teacher's 1000-step DDIM solution (RMS, normalised
mel units, as benchmarks/sampler.py), the reconstruction error of the validation pieces (the
log-mel distance `diffsvc eval` reports, diffsvc.evaluation.metrics: mean absolute log10-mel
difference to the real mels over real frames, averaged over the pieces) and the roughness (mean
frame-to-frame change, benchmarks/recipe_diagnose.py) over the real mels'. Each figure is the mean
over --seeds start noises; `spread` is the largest minus the smallest reconstruction error over
those seeds (how much the seed alone moves it). The first row is no model at all: each bin's
average over the training mels, the reconstruction any sampler must beat to have learned anything.

"teacher via consistency steps" is the teacher sampled with the student's sampler (before any
distillation a student that predicts what its teacher does is its teacher): what the distillation
itself adds is the difference.

    python benchmarks/distill.py                              # the original's recipe (eps): distill.md
    python benchmarks/distill.py --recipe ours --out distill-x0.md
    python benchmarks/distill.py --distill-steps 5000         # longer distillation

Prints the table and writes benchmarks/results/distill.md (or --out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from common import machine_line, markdown_table, write_result  # noqa: E402
from recipe_diagnose import roughness  # noqa: E402

from diffsvc.checkpoint import load_model  # noqa: E402
from diffsvc.config import Config, save_config  # noqa: E402
from diffsvc.data.batch import collate  # noqa: E402
from diffsvc.data.dataset import PieceDataset  # noqa: E402
from diffsvc.data.prepared import PreparedData  # noqa: E402
from diffsvc.evaluation.metrics import log_mel_distance  # noqa: E402
from diffsvc.distill.objective import WEIGHTINGS  # noqa: E402
from diffsvc.distill.student import student_prediction  # noqa: E402
from diffsvc.distill.trainer import distill  # noqa: E402
from diffsvc.sampling import make_sampler  # noqa: E402
from diffsvc.training.loop import TrainOptions, train  # noqa: E402
from diffsvc.training.project import Project  # noqa: E402

def train_lengths(pieces: int) -> tuple[int, ...]:
    return tuple(40 + (7 * i) % 61 for i in range(pieces))
VALID_LENGTHS = (50, 64, 72, 90)


RECIPES = {  # the training recipe of the teacher (and so of its student): README "The training recipe"
    "original": dict(ema_decay=0.0, loss_weighting="none", prediction="eps"),
    "ours": dict(ema_decay=0.999, loss_weighting="clamped-snr", min_snr_gamma=5.0, prediction="x0"),
    # an eps teacher (as every original checkpoint) with our recipe's EMA and weights: a better-trained eps model
    "eps-ema": dict(ema_decay=0.999, loss_weighting="clamped-snr", min_snr_gamma=5.0, prediction="eps"),
}


def teacher_config(n_mels: int, recipe: str = "original") -> Config:
    return Config(**RECIPES[recipe], audio_num_mel_bins=n_mels, keep_bins=n_mels, residual_layers=4, residual_channels=32,
                  crop_frames=0, ds_workers=0, lr=2e-3, decay_steps=1500, max_sentences=8, val_check_interval=100000,
                  num_ckpt_keep=1, log_interval=100, num_valid_plots=0, sampler="ddim", sampling_steps=20,
                  spec_min=[-5.0], spec_max=[0.0]).validate("<benchmark>")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-steps", type=int, default=4000)
    parser.add_argument("--distill-steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="original",
                        help="the teacher's training recipe: original (eps, as distill.md) or ours (EMA, clamped-SNR, x0)")
    parser.add_argument("--n-mels", type=int, default=32)
    parser.add_argument("--train-pieces", type=int, default=256, help="synthetic training pieces (40-100 frames each)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: small models run faster on one thread of a busy machine)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the data and models here (default: temporary); a second run with the same "
                             "steps reuses the teacher and students and measures again")
    parser.add_argument("--out", default="distill.md", help="result file name in benchmarks/results/")
    parser.add_argument("--students", default="default,eps",
                        help="comma-separated: what each student distilled side by side outputs (default: distill's "
                             "own choice for the teacher, and eps, the teacher's output as the original predicts)")
    parser.add_argument("--weighting", choices=WEIGHTINGS, default=None,
                        help="the distillation loss weight over steps (default: distill's choice for each prediction)")
    parser.add_argument("--lr", type=float, default=None, help="the students' learning rate (default: distill's)")
    parser.add_argument("--ema", type=float, default=None, help="the target network's rate (default: distill's)")
    parser.add_argument("--tag", default="", help="added to the students' folder names (variants in one --workdir)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from prepared_fixture import write_prepared

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        started = time.perf_counter()
        data = write_prepared(work / "prepared", n_mels=args.n_mels, lengths=train_lengths(args.train_pieces),
                              valid_lengths=VALID_LENGTHS)
        save_config(teacher_config(args.n_mels, args.recipe), work / "teacher.yaml")
        project = Project(work / "models" / "singer")
        opts = dict(data_dir=data, device="cpu", workers=0, progress=False)
        teacher = train(TrainOptions(project=project, base_config=work / "teacher.yaml",
                                     max_steps=args.teacher_steps, **opts), log=lambda m: None)
        teacher_s = time.perf_counter() - started
        teacher_model = load_model(teacher.checkpoint).model
        students, notes = [], []
        for wanted in dict.fromkeys(w.strip() for w in args.students.split(",")):
            prediction = student_prediction(teacher_model.prediction) if wanted == "default" else wanted
            if any(label.startswith(f"student ({prediction}") for label, _ in students):
                continue
            losses, began = [], time.perf_counter()
            result = distill(TrainOptions(project=Project(project.root / f"student-{prediction}{args.tag}"),
                                          max_steps=args.distill_steps, **opts), teacher.checkpoint,
                             on_step=lambda r: losses.append(r.loss), log=lambda m: None,
                             record_options=dict(prediction=prediction, weighting=args.weighting, lr=args.lr, ema=args.ema))
            loaded = load_model(result.checkpoint)
            record = loaded.config.distill
            label = f"student ({prediction}{', the default' if wanted == 'default' else ''})"
            students.append((label, loaded.model))
            k = len(losses) // 10 or 1
            trained = (f"distillation loss {sum(losses[:k]) / k:.4g} over the first tenth, "
                       f"{sum(losses[-k:]) / k:.4g} over the last" if losses else "reused from --workdir")
            notes.append(f"{label}: predicts {record['prediction']}, loss weighting {record['weighting']}, "
                         f"lr {loaded.config.lr:g}, target EMA {record['ema']:g}, "
                         f"{args.distill_steps} steps ({time.perf_counter() - began:.0f} s; {trained})")
        rows, summary = measure(teacher_model, students, data, args.seeds)
    size = teacher_config(args.n_mels)
    text = "\n".join([
        "# Distillation benchmark", "",
        f"Machine: {machine_line(torch.device('cpu'))}. Teacher ({args.recipe} recipe: {RECIPES[args.recipe]}): DiffNet "
        f"{size.residual_layers}x{size.residual_channels}, {args.n_mels} mel bins, trained {args.teacher_steps} steps "
        f"({teacher_s:.0f} s) on synthetic prepared data ({args.train_pieces} pieces). Students, consistency "
        f"distillation side by side from the same teacher and data: " + "; ".join(notes) + f". {len(VALID_LENGTHS)} "
        f"validation pieces ({sum(VALID_LENGTHS)} frames), {args.seeds} start noises, each shared by every sampler.", "",
        markdown_table(["sampler", "denoiser calls", "seconds", "distance to DDIM 1000", "reconstruction (log-mel distance)",
                        "spread over seeds", "roughness (real = 1)"], rows), "",
        summary, "",
        "Distance to DDIM 1000: RMS, normalised mel units, to the teacher's own 1000-step solution from the same "
        "noise (how faithfully a sampler follows the teacher, its flaws included). Reconstruction: eval's log-mel "
        "distance to the real validation mels (how close to the singer). Roughness: the mean frame-to-frame change "
        "of the sampled log-mel over the real mels' (1 = as rough as the real ones; above: noise left in, below: "
        "blurred). PLMS is the original's sampler as it ran (no clipping of its x0 estimates): on this model it "
        "diverges, as benchmarks/sampler.py found on the demo's. 'teacher via consistency steps' is the teacher "
        "sampled at the student's steps (999, 100) with the student's update: an eps student before any "
        "distillation; what the distillation adds is the student's rows against it.", "",
        "Command: `" + " ".join(["python benchmarks/distill.py", *(sys.argv[1:] if argv is None else argv)]) + "`",
    ]) + "\n"
    print(text)
    print(f"wrote {write_result(args.out, text)}")
    return 0


def average_mel(data_dir: Path) -> torch.Tensor:
    """[M] each mel bin's mean over the training pieces' frames: what a model that ignored its
    conditioning would do at best (the table's scale: a sampler must reconstruct better than this)."""
    train_set = PieceDataset(PreparedData.find(data_dir), "train")
    return torch.cat([torch.as_tensor(train_set[i].mel) for i in range(len(train_set))]).mean(0)


def measure(teacher, students, data_dir: Path, seeds: int):
    """The table's rows and the goal's line: every teacher sampler, then each (label, student) at
    1, 2 and 4 steps; the goal is judged on the first student (distill's default)."""
    valid = PieceDataset(PreparedData.find(data_dir), "valid")
    batch = collate([valid[i] for i in range(len(valid))])
    mask = (torch.arange(batch.mel2ph.shape[1])[None] < batch.lengths[:, None]).float()[..., None]
    frames_bins = float(mask.sum()) * batch.mel.shape[-1]

    def sample(model, name, steps, noise):
        sampler = make_sampler(name, model.schedule(), steps)
        calls = sampler.num_denoiser_calls(model.K_step)
        start = time.perf_counter()
        with torch.no_grad():
            mel = model.sample(batch.units, batch.mel2ph, batch.f0, sampler, lengths=batch.lengths, noise=noise)
        return mel, calls, time.perf_counter() - start

    def rms(a, b):
        return float((((a - b) ** 2) * mask).sum() / frames_bins) ** 0.5

    def texture(mel):  # roughness (recipe_diagnose.roughness) relative to the real mels': 1 = as rough as real
        pieces = list(enumerate(batch.lengths.tolist()))
        return sum(roughness(mel[i, :n]) for i, n in pieces) / sum(roughness(batch.mel[i, :n]) for i, n in pieces)

    def recon(mel):
        return sum(log_mel_distance(mel[i, :n].numpy(), batch.mel[i, :n].numpy())
                   for i, n in enumerate(batch.lengths.tolist())) / batch.items

    cases = [("PLMS 50 (the original's)", teacher, "plms", 50), ("DDIM 20 (our default)", teacher, "ddim", 20),
             ("DPM-Solver++ 10", teacher, "dpm-solver++", 10), ("DDIM 2", teacher, "ddim", 2),
             ("teacher via consistency steps, 2", teacher, "consistency", 2)]
    for label, student in students:
        cases += [(f"{label}, {n} step{'s' if n > 1 else ''}", student, "consistency", n) for n in (1, 2, 4)]
    results = {name: {"dist": [], "recon": [], "rough": [], "s": [], "calls": 0} for name, *_ in cases}
    for seed in range(seeds):
        noise = torch.randn(batch.items, 1, teacher.n_mels, batch.mel2ph.shape[1],
                            generator=torch.Generator().manual_seed(seed))
        reference, _, _ = sample(teacher, "ddim", 1000, noise)
        ref_norm = teacher.norm_spec(reference)
        for name, model, sampler, steps in cases:
            mel, calls, seconds = sample(model, sampler, steps, noise)
            r = results[name]
            r["calls"] = calls
            r["s"].append(seconds)
            r["dist"].append(rms(teacher.norm_spec(mel), ref_norm))
            r["recon"].append(recon(mel))
            r["rough"].append(texture(mel))
    rows = [["no model: the singer's average mel (each bin's mean over the training pieces)", 0, 0.0, float("nan"),
             recon(average_mel(data_dir).expand_as(batch.mel).clone()), 0.0, 0.0]]
    for name, *_ in cases:
        r = results[name]
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        rows.append([name, r["calls"], mean(r["s"]), mean(r["dist"]), mean(r["recon"]), max(r["recon"]) - min(r["recon"]),
                     mean(r["rough"])])
    by = {row[0]: row for row in rows}
    ddim = by["DDIM 20 (our default)"]
    first = students[0][0]
    best = min((by[f"{first}, 1 step"], by[f"{first}, 2 steps"]), key=lambda row: row[4])
    goal = best[4] <= ddim[4] + ddim[5]
    summary = (f"Goal (student at 2 steps or fewer reconstructs as well as DDIM 20, within the spread between seeds, "
               f"with at least 10x fewer denoiser calls): {best[0]} reconstructs at {best[4]:.4g} against DDIM 20's "
               f"{ddim[4]:.4g} (spread {ddim[5]:.2g}) with {ddim[1] / best[1]:.0f}x fewer calls: "
               f"{'met' if goal else 'NOT met'}.")
    no_model = rows[0][4]
    if ddim[4] >= no_model:
        summary += (f" But this teacher's DDIM 20 reconstructs worse than no model at all ({ddim[4]:.4g} against the "
                    f"average mel's {no_model:.4g}): it has not learned the singer, so beating it says little; "
                    f"{best[0]} reconstructs at {best[4]:.4g} against no model's {no_model:.4g}.")
    return rows, summary


if __name__ == "__main__":
    raise SystemExit(main())
