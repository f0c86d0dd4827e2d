"""`diffsvc distill --project NAME`: a few-step student of a trained model (consistency distillation).

    diffsvc distill --project alice                        # teacher: models/alice's newest checkpoint
    diffsvc distill --project alice --teacher-steps 30000  # teacher: that checkpoint of models/alice
    diffsvc distill --project alice --ckpt orig/model_ckpt_steps_100000.ckpt   # any checkpoint (ours or the
                                                           # original's), its config.yaml beside it
    diffsvc distill --project alice --steps 20000          # stop once the student has done 20000 steps
    diffsvc distill --project alice --prediction eps       # a student that outputs noise, as its eps teacher
    torchrun --nproc_per_node=4 -m diffsvc distill --project alice

The student goes to models/NAME/student/ (checkpoints, config.yaml, logs); a second run continues it.
`diffsvc infer --project NAME --sampler consistency --sampling-steps 2` converts with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsvc.errors import DiffSvcError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", required=True,
                        help="the teacher's project name; the student goes to MODELS_DIR/NAME/student")
    parser.add_argument("--steps", type=int, default=None,
                        help="stop once the student has done this many steps in total (default: max_updates of "
                             "the student's config, 20000)")
    teacher = parser.add_mutually_exclusive_group()
    teacher.add_argument("--teacher-steps", type=int, default=None,
                         help="the teacher is the project's checkpoint of this training step (default: the newest)")
    teacher.add_argument("--ckpt", type=Path, default=None,
                         help="the teacher is this checkpoint (ours or an original Diff-SVC one; its config.yaml "
                              "beside it)")
    parser.add_argument("--prediction", choices=("v", "x0", "eps"), default=None,
                        help="what a new student's denoiser outputs (default: v for an eps or v teacher, such as an "
                             'original Diff-SVC model, x0 for an x0 one; README section "diffsvc distill")')
    parser.add_argument("--data", default="raw", type=Path,
                        help="prepared data of the teacher's singer (a raw folder with its .diffsvc inside, or the "
                             "prepared folder itself; default: raw)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="where projects live (default: models)")
    parser.add_argument("--reset", action="store_true", help="delete the student and start over (asks first)")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before --reset")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow a teacher file that needs to run code to load (only from sources you trust)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="items per batch (default: the most that fits in free GPU memory; 8 on the CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="as for train: bf16/fp16 autocast on GPUs, fp32 on the CPU unless asked")
    parser.add_argument("--workers", type=int, default=None, help="data loader processes (default: ds_workers)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def teacher_checkpoint(args: argparse.Namespace) -> Path | None:
    """The teacher named on the command line (None: the project's newest, or the one a student records)."""
    from diffsvc.inference.project import choose_checkpoint

    if args.ckpt is not None:
        if not args.ckpt.is_file():
            raise DiffSvcError(f"--ckpt {args.ckpt}: checkpoint not found")
        return args.ckpt
    if args.teacher_steps is None and not (args.models_dir / args.project).is_dir():
        raise DiffSvcError(f"{args.models_dir / args.project}: no such project; train it first, or give the teacher "
                           "with --ckpt PATH")
    return choose_checkpoint(args.models_dir, args.project, args.teacher_steps).path


def run(args: argparse.Namespace) -> int:
    from diffsvc.cli.train import confirm_reset
    from diffsvc.distill.student import student_root
    from diffsvc.distill.trainer import distill
    from diffsvc.training.distributed import dist_info_from_env
    from diffsvc.training.loop import TrainOptions
    from diffsvc.training.project import Project

    teacher_project = Project.named(args.project, args.models_dir)
    student = Project(student_root(teacher_project.root))
    if args.steps is not None and args.steps < 0:
        raise DiffSvcError("--steps must be 0 or more")
    if args.reset:
        if dist_info_from_env().enabled:
            raise DiffSvcError("--reset with several processes: reset once without torchrun, then launch")
        confirm_reset(student.reset_targets(), student.root, yes=args.yes)
        student.reset()
    named = args.ckpt is not None or args.teacher_steps is not None
    teacher = teacher_checkpoint(args) if named or not student.exists() else None
    options = TrainOptions(project=student, data_dir=args.data, trust_checkpoint=args.trust_checkpoint,
                           max_steps=args.steps, batch_size=args.batch_size, device=args.device, workers=args.workers,
                           precision=args.precision, progress=not args.no_progress)
    result = distill(options, teacher, record_options={"prediction": args.prediction})
    return 130 if result.stopped_by_signal else 0
