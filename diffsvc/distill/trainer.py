"""DistillTrainer: `train`'s loop (loop.Trainer) run on a student.

Only what differs is here: the project is the student's folder (models/NAME/student), created from
the teacher's config (student.student_config); the model is the teacher's copy
(`make_model`); the objective is consistency distillation (`make_loss`); validation also samples
the teacher and logs student against teacher; each checkpoint carries the `distill` record.
Resume, SIGTERM, checkpoints by step, TensorBoard, the batch size from free memory, mixed
precision and torchrun are the loop's own.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from diffsvc.checkpoint import LoadedModel, load_model
from diffsvc.config import Config
from diffsvc.data.prepared import PreparedData
from diffsvc.distill.objective import ConsistencyDistillationLoss
from diffsvc.distill.student import DISTILL_KEY, check_record, distill_record, student_config, student_prediction
from diffsvc.errors import DiffSvcError
from diffsvc.training.distributed import DistInfo, barrier
from diffsvc.training.loop import StepRecord, Trainer, TrainOptions
from diffsvc.training.project import check_data_matches
from diffsvc.training.randomness import PLOT_STREAM, item_seed
from diffsvc.training.state import TrainState
from diffsvc.training.validate import Validator


class DistillTrainer(Trainer):
    """A distillation run. `options.project` is the student's folder; `teacher` the teacher's
    checkpoint for a new student (its config.yaml beside it); a student that exists already
    continues with the teacher its config records (a different `teacher` is refused)."""

    def __init__(self, options: TrainOptions, teacher: Path | None = None,
                 on_step: Callable[[StepRecord], None] | None = None, log: Callable[[str], None] | None = None,
                 record_options: dict | None = None):
        super().__init__(options, on_step=on_step, log=log, make_model=self._make_student,
                         make_loss=self._make_loss)
        self.teacher_path = Path(teacher) if teacher is not None else None
        self.record_options = {k: v for k, v in (record_options or {}).items() if v is not None}  # distill_record's
        self.teacher: LoadedModel | None = None
        self._created = False  # this run made the student's folder (a failure before its first checkpoint removes it)

    def run(self):
        """Trainer.run; a run that made a new student's folder and fails (or is stopped) before its
        first checkpoint removes that folder again, so no half-made student is left behind (a later
        run would take it for a student to continue)."""
        try:
            return super().run()
        except BaseException:
            self._drop_unfinished_student()
            raise

    def _drop_unfinished_student(self) -> None:
        import shutil

        from diffsvc.checkpoint import find_checkpoints

        root = self.options.project.root
        if self._created and self.dist.is_main and root.is_dir() and not find_checkpoints(root):
            shutil.rmtree(root, ignore_errors=True)

    # --- the pieces the loop takes ---
    def _make_student(self, config: Config) -> torch.nn.Module:
        """The student starts as the teacher (weights, schedule buffers, spec_min/spec_max), its
        output read as the student's config says (student.student_prediction)."""
        student = copy.deepcopy(self.teacher.model).train().requires_grad_(True)
        student.prediction = config.prediction
        return student

    def _make_loss(self, state: TrainState, config: Config, device: torch.device, dist: DistInfo):
        record = check_record(config, str(self.options.project.config_path))
        return ConsistencyDistillationLoss.for_run(state, self.teacher.model, intervals=int(record["intervals"]),
                                                   ema=float(record["ema"]), weighting=record["weighting"],
                                                   seed=config.seed,
                                                   masked=config.loss_mask, device=device, dist=dist)

    def _setup_config(self, data: PreparedData) -> Config:
        project, given = self.options.project, self.teacher_path
        barrier(self.dist)  # every rank looks before rank 0 may create it
        if project.exists():
            config = project.load_config()
            recorded = Path(str(config.distill.get("teacher", "")))
            if not config.distill:
                raise DiffSvcError(f"{project.config_path}: not a student's config (no distill record); "
                                   "distil into an empty folder")
            check_record(config, str(project.config_path))
            if given is not None and given.resolve() != recorded.resolve():
                raise DiffSvcError(f"{project.root} is a student of {recorded}, not of {given}; pass --reset to "
                                   "start a new student from this teacher")
            asked = self.record_options.get("prediction")
            if asked is not None and asked != config.prediction:
                raise DiffSvcError(f"{project.root} is a student that predicts {config.prediction}, not {asked}; "
                                   "pass --reset to start a new student")
            if not recorded.is_file():
                raise DiffSvcError(f"{recorded}: the teacher recorded in {project.config_path} is missing; put it "
                                   "back, or --reset to distil another")
            self.teacher = self._load_teacher(recorded)
        else:
            if given is None:
                raise DiffSvcError(f"{project.root}: no student yet and no teacher given")
            self.teacher = self._load_teacher(given)
            if self.dist.is_main:
                options = {"prediction": student_prediction(self.teacher.model.prediction), **self.record_options}
                lr = options.pop("lr", None)
                record = distill_record(given, self.teacher.global_step, **options)
                config = student_config(self.teacher.config, record, **({} if lr is None else {"lr": float(lr)}))
                project.root.mkdir(parents=True, exist_ok=True)
                self._created = True
                from diffsvc.config import save_config

                save_config(config, project.config_path)
                project.write_data_stats(data)
                self.log(f"new student of {given} (step {self.teacher.global_step}) in {project.root}: consistency "
                         f"distillation over {record['intervals']} intervals, target EMA {record['ema']}")
            barrier(self.dist)
            config = project.load_config()
        check_data_matches(config, data, str(project.config_path))
        return config

    def _load_teacher(self, path: Path) -> LoadedModel:
        teacher = load_model(path, allow_unsafe=self.options.trust_checkpoint, device=self.device)
        teacher.model.requires_grad_(False)
        return teacher

    def build(self) -> TrainState:
        state = super().build()
        self.checkpoint_extra = {DISTILL_KEY: dict(self.config.distill)}
        self.validator = StudentValidator(self.validator, self.teacher)
        return state


class StudentValidator(Validator):
    """Validation of a student: the loop's validation (distillation loss on the validation pieces,
    the student's samples against the targets), plus the teacher's sample of each plotted piece
    from the same start noise (its config's sampler and steps), logged above the student's
    (`student_vs_teacher/N`), and their RMS log-mel distance (val/student_teacher_rms). eval's
    figures (eval/*) sample with the student's sampler and steps."""

    def __init__(self, base: Validator, teacher: LoadedModel):
        self.__dict__.update(base.__dict__)
        self.teacher = teacher
        self._teacher_mels: dict[int, torch.Tensor] = {}
        self._distances: list[float] = []

    def __call__(self, model, loss, step: int) -> float | None:
        self._distances = []
        value = super().__call__(model, loss, step)
        if self._distances:
            self.logger.scalars({"val/student_teacher_rms": float(np.mean(self._distances))}, step)
            self.logger.flush()
        return value

    def figures(self, model) -> dict[str, float]:
        """eval's figures (eval/*) as the loop logs them, sampled as the student samples."""
        if self._figures is None:
            try:
                from diffsvc.evaluation.reconstruction import ValidationFigures

                self._pieces = [dict(self.valid_set.data.load(p), speaker=self.valid_set.speaker(i))
                                for i, p in enumerate(self.valid_set.pieces)]
                self._figures = ValidationFigures(self.config, self.device, vocoder=self.vocoder(), log=self.log,
                                                  sampler=self.config.sampler, sampling_steps=self.config.sampling_steps)
            except Exception as e:  # noqa: BLE001 - figures in the logs must never stop training
                self.log(f"validation figures disabled ({e})")
                self._figures = False
        return super().figures(model)

    def render(self, model, index: int, batch, step: int) -> torch.Tensor:
        mel = super().render(model, index, batch, step)
        reference = self.teacher_mel(index, batch)
        c, tc = self.config, self.teacher.config
        self.logger.mel_image(f"student_vs_teacher/{index}", reference.float().cpu().numpy(),
                              mel.float().cpu().numpy(), step, c.mel_vmin, c.mel_vmax,
                              titles=(f"teacher ({tc.sampler} {tc.sampling_steps})",
                                      f"student ({c.sampler} {c.sampling_steps})"))
        self._distances.append(float((mel.float() - reference.float()).pow(2).mean().sqrt()))
        return mel

    def teacher_mel(self, index: int, batch) -> torch.Tensor:
        """The teacher's sample [T,M] of validation piece `index` from the start noise the student gets."""
        if index not in self._teacher_mels:
            from diffsvc.sampling import make_sampler

            tc, teacher = self.teacher.config, self.teacher.model
            self.generator.manual_seed(item_seed(self.config.seed, 0, index, stream=PLOT_STREAM))
            with torch.no_grad():
                mel = teacher.sample(batch.units, batch.mel2ph, batch.f0,
                                     make_sampler(tc.sampler, teacher.schedule(), tc.sampling_steps),
                                     generator=self.generator, speaker=batch.speaker)
            self._teacher_mels[index] = mel[0].clamp(self.config.mel_vmin, self.config.mel_vmax)
        return self._teacher_mels[index]


def distill(options: TrainOptions, teacher: Path | None = None, on_step: Callable[[StepRecord], None] | None = None,
            log: Callable[[str], None] | None = None, record_options: dict | None = None):
    """Create or continue the student in options.project and train it until max_steps (or a signal).
    `record_options`: distill_record's keywords for a new student (intervals, ema, prediction,
    weighting; None or missing: the defaults) and its learning rate (lr)."""
    return DistillTrainer(options, teacher, on_step=on_step, log=log, record_options=record_options).run()
