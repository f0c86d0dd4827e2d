"""Where a project's student lives and what says it is one.

    models/NAME/student/config.yaml                the teacher's config with sampler: consistency,
                                                   sampling_steps: 2 and the `distill` record
    models/NAME/student/model_ckpt_steps_N.ckpt    the student, in the teacher's checkpoint layout (the
                                                   same DiffNet: whatever loads a denoiser loads it),
                                                   with the `distill` record at the top level too
    models/NAME/student/data_stats.json, logs/     as a training project has them

The `distill` record: method ("consistency"), teacher (the checkpoint's path as given), teacher_step,
solver (the teacher's one-step ODE solver: "ddim"), intervals (N), ema (the target network's rate),
sampling_steps (the step counts it is meant for: [1, 2, 4]), prediction (what the student's denoiser
outputs; its config's `prediction` too) and weighting (the loss weight over steps: objective.step_weight).
A record without the last two (an earlier student) predicts what its teacher does, weighted sqrt-alpha.
"""

from __future__ import annotations

import os
from pathlib import Path

from diffsvc.checkpoint import find_checkpoints
from diffsvc.config import Config, load_config
from diffsvc.errors import ConfigError, DiffSvcError

STUDENT_DIR = "student"
METHOD = "consistency"
DISTILL_KEY = "distill"  # the record's key in the student's config and checkpoint
DEFAULT_INTERVALS = 20  # N: the teacher's ODE is cut into this many DDIM steps (benchmarks/distill.py; Song et al.
# 2023 used 18-40, LCM 50: on a short budget fewer intervals learned as well or better, measured 4-50)
DEFAULT_EMA = 0.95  # the target network's rate (Song et al. 2023, consistency distillation)
DEFAULT_LR = 1e-5  # a student that learns a new output (a v student of an eps teacher): 1e-5 and 3e-5 did alike
FINE_TUNE_LR = 1e-6  # a student that predicts what its teacher does starts as it, nearly consistent already, and
# Adam's normalised steps walk it away (benchmarks/distill.py, x0 teacher, 1500 steps; reconstruction at 2 steps:
# 0.422 at the start, 0.422 at 1e-6, 0.452 at 1e-5, 0.478 at 3e-5; DDIM 20 0.459). Earlier, eps students of eps
# teachers, 300 steps: 1e-4 ~ 3e-5, 1e-3 and 3e-4 clearly worse.
DEFAULT_STEPS = 20000
TRAINED_FOR = [1, 2, 4]


def student_root(project_root: str | os.PathLike) -> Path:
    """The student's folder inside a (teacher's) project folder."""
    return Path(project_root) / STUDENT_DIR


def student_prediction(teacher_prediction: str) -> str:
    """What the student's denoiser outputs: v for an eps (original) or v teacher, x0 for an x0 one."""
    return "x0" if teacher_prediction == "x0" else "v"


def default_weighting(prediction: str) -> str:
    return "sqrt-alpha" if prediction == "eps" else "uniform"


def distill_record(teacher_path: Path, teacher_step: int, *, intervals: int = DEFAULT_INTERVALS,
                   ema: float = DEFAULT_EMA, prediction: str = "v", weighting: str | None = None) -> dict:
    return {"method": METHOD, "teacher": str(teacher_path), "teacher_step": int(teacher_step), "solver": "ddim",
            "intervals": int(intervals), "ema": float(ema), "sampling_steps": list(TRAINED_FOR),
            "prediction": prediction, "weighting": weighting or default_weighting(prediction)}


def default_lr(teacher_prediction: str, student_prediction: str) -> float:
    """The student's learning rate: FINE_TUNE_LR when it predicts what its teacher does, else DEFAULT_LR."""
    return FINE_TUNE_LR if teacher_prediction == student_prediction else DEFAULT_LR


def student_config(teacher: Config, record: dict, *, lr: float | None = None,
                   max_updates: int = DEFAULT_STEPS) -> Config:
    """The student's config: the teacher's sizes, schedule, spec_min/spec_max (the student is the same
    model) with the consistency sampler at 2 steps, the masked loss, and the `distill` record."""
    prediction = record.get("prediction", teacher.prediction)
    lr = default_lr(teacher.prediction, prediction) if lr is None else lr
    return teacher.replace(sampler="consistency", sampling_steps=2, loss_mask=True, lr=lr, max_updates=max_updates,
                           prediction=prediction, distill=dict(record))


def check_record(config: Config, source: str) -> dict:
    """The student's `distill` record, checked (one ConfigError naming `source` for a hand-edited
    one that is wrong): intervals a whole number >= 1, ema a number in [0, 1), weighting one of
    objective.WEIGHTINGS (missing: an earlier student's sqrt-alpha), prediction (missing: an earlier
    student's) the same as the config's own."""
    from diffsvc.distill.objective import WEIGHTINGS

    record = dict(config.distill)
    intervals, ema = record.get("intervals"), record.get("ema")
    if isinstance(intervals, bool) or not isinstance(intervals, int) or intervals < 1:
        raise ConfigError(f"{source}: distill intervals must be a whole number of 1 or more, not {intervals!r}")
    if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 <= ema < 1:
        raise ConfigError(f"{source}: distill ema (the target network's rate) must be a number from 0 to below 1, "
                          f"not {ema!r}")
    record.setdefault("weighting", "sqrt-alpha")
    if record["weighting"] not in WEIGHTINGS:
        raise ConfigError(f"{source}: distill weighting {record['weighting']!r} is not one of {', '.join(WEIGHTINGS)}")
    if record.setdefault("prediction", config.prediction) != config.prediction:
        raise ConfigError(f"{source}: distill prediction {record['prediction']!r} disagrees with the config's "
                          f"prediction: {config.prediction}; the student predicts one thing, put the same in both")
    return record


def is_student(config: Config) -> bool:
    return bool(config.distill)


def config_beside(ckpt: Path) -> Config | None:
    """The config.yaml beside a checkpoint, or None when there is none (load_model says so later)."""
    path = ckpt.parent / "config.yaml"
    if not path.is_file():
        return None
    return load_config(path)


def find_student(models_dir: str | os.PathLike, project: str | None, steps: int | None,
                 ckpt: str | os.PathLike | None):
    """The student checkpoint infer should convert with for `--sampler consistency`: `--ckpt` itself
    when it is a student, else the newest (or `--steps`) checkpoint of the student beside the named
    checkpoint or in models/NAME/student/. One clear error when there is none."""
    from diffsvc.inference.project import CheckpointChoice, list_projects, pick_step

    if ckpt is not None:
        path = Path(ckpt)
        if not path.is_file():
            raise DiffSvcError(f"{path}: checkpoint not found")
        config = config_beside(path)
        if config is not None and is_student(config):
            step = next((s for s, p in find_checkpoints(path.parent).items() if p.name == path.name), -1)
            return CheckpointChoice(path, path.parent.parent.name or "model", step)
        folder, name = student_root(path.parent), path.parent.name or "model"
    else:
        models_dir = Path(models_dir)
        if project is None:
            projects = sorted(p.name for p in models_dir.iterdir() if find_checkpoints(student_root(p))) \
                if models_dir.is_dir() else []
            if len(projects) != 1:
                which = (f"several projects have one ({', '.join(projects)}); choose with --project NAME" if projects
                         else f"no project in {models_dir} has one ({', '.join(list_projects(models_dir)) or 'none'})")
                raise DiffSvcError(f"--sampler consistency converts with a distilled student: {which}")
            project = projects[0]
        folder, name = student_root(models_dir / project), project
    found = find_checkpoints(folder)
    if not found:
        raise DiffSvcError(f"--sampler consistency needs a distilled student, and {folder.parent} has none "
                           f"(no checkpoint in {folder}); make one with `diffsvc distill --project {name}`")
    return pick_step(found, steps, name, f"the student in {folder}")


def check_sampler_fits(config: Config, sampler: str | None, source: str) -> None:
    """A student samples with the consistency sampler only; a teacher never does. `sampler`: the
    one asked for (None: the config's own)."""
    sampler = sampler or config.sampler
    if not is_student(config) and sampler == METHOD:
        raise ConfigError(f"{source} is not a distilled student (its config.yaml has no distill record), and the "
                          "consistency sampler samples students only; make one with `diffsvc distill`, or choose "
                          "another sampler")
    if is_student(config) and sampler != METHOD:
        raise ConfigError(f"{source} is a distilled student ({config.distill.get('method')} distillation of "
                          f"{config.distill.get('teacher')}); it samples with --sampler consistency "
                          f"(1, 2 or 4 --sampling-steps), not {sampler}")


def untrained_steps_warning(config: Config | None, steps: int | None, source: str) -> str | None:
    """One warning line when a student is asked for a step count its `distill` record does not list
    (`sampling_steps`, the counts it was distilled and measured for: [1, 2, 4]); None otherwise (a
    teacher, a listed count, no record). Not a refusal: multistep consistency sampling (Song et al.
    2023, Algorithm 1) runs at any count, only its quality there is unmeasured. `steps`: the count
    asked for (None: the config's sampling_steps)."""
    if config is None or not is_student(config):
        return None
    trained = config.distill.get("sampling_steps")
    steps = steps or config.sampling_steps
    if not isinstance(trained, (list, tuple)) or not trained or steps in trained:
        return None
    counts = ", ".join(str(n) for n in trained)
    return (f"warning: {source} is a student distilled for {counts} sampling steps; {steps} steps runs (consistency "
            f"sampling works at any count) but its quality there is not measured; choose {counts} for the "
            "quality distill measured")
