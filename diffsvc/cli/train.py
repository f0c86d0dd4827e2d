"""`diffsvc train --project NAME`: create or continue models/NAME on prepared data.

    diffsvc train --project alice                      # data from raw/.diffsvc (diffsvc preprocess raw/)
    diffsvc train --project alice --data songs/        # another raw or prepared folder
    diffsvc train --project alice --reset              # start over (asks first; --yes in scripts)
    diffsvc train --project alice --init-from pretrained/model_ckpt_steps_100000.ckpt
    torchrun --nproc_per_node=4 -m diffsvc train --project alice
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from diffsvc.errors import DiffSvcError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", required=True, help="project name: checkpoints and logs go to MODELS_DIR/NAME")
    parser.add_argument("--data", default="raw", type=Path,
                        help="folder preprocess wrote to (a raw folder with its .diffsvc inside, or the prepared "
                             "folder itself; default: raw)")
    parser.add_argument("--config", type=Path, default=None,
                        help="base config for a new project (default: the built-in diffsvc-44k.yaml, as in configs/); an existing "
                             "project keeps its own config.yaml")
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="where projects live (default: models)")
    parser.add_argument("--reset", action="store_true",
                        help="delete the project's checkpoints, logs and config.yaml and start over (asks first)")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before --reset")
    parser.add_argument("--init-from", type=Path, default=None, metavar="CKPT",
                        help="start a new project from the weights of this checkpoint (ours or the original's)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow an --init-from file that needs to run code to load (only from sources you trust)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop once this many steps in total are done (default: max_updates of the config)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="items per batch (default: the most that fits in free GPU memory; 8 on the CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="auto: bf16 on GPUs that support it, else fp16 with a loss scaler; fp32 on the CPU, "
                             "where bf16/fp16 run only when asked for")
    parser.add_argument("--workers", type=int, default=None,
                        help="data loader processes (default: ds_workers of the config)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--dist-timeout", type=float, default=None, metavar="SECONDS",
                        help="with several processes: the longest a process waits for the others in a training step "
                             "before it stops with an error (default: 300); while rank 0 validates or writes a "
                             "checkpoint the others wait up to 30 minutes or this, whichever is longer")
    parser.add_argument("--progress-file", type=Path, default=None, metavar="CSV",
                        help="append step,loss,lr,grad_norm,seconds to this CSV after every step (for `diffsvc ui` "
                             "or scripts)")


def confirm_reset(targets: list[Path], root: Path, *, yes: bool, stdin=None) -> None:
    """Ask before deleting; without a terminal (or under CI) refuse unless --yes."""
    if yes or not targets:
        return
    stdin = stdin or sys.stdin
    if os.environ.get("CI") or not stdin.isatty():
        raise DiffSvcError(f"--reset would delete {len(targets)} file(s) in {root}; no terminal to ask, so pass --yes "
                           "as well to confirm")
    n_ckpt = sum(1 for p in targets if p.suffix == ".ckpt")
    print(f"--reset deletes {n_ckpt} checkpoint(s), the logs and config.yaml of {root}.", file=sys.stderr)
    answer = input("Start the project over? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise DiffSvcError("--reset cancelled; nothing was deleted")


def run(args: argparse.Namespace) -> int:
    from diffsvc.training.distributed import PEER_TIMEOUT_S, dist_info_from_env, peer_failures, peer_timeout
    from diffsvc.training.project import Project
    from diffsvc.training.trainer import TrainOptions, train

    dist_timeout = PEER_TIMEOUT_S if args.dist_timeout is None else args.dist_timeout
    if not (dist_timeout > 0 and math.isfinite(dist_timeout)):
        raise DiffSvcError(f"--dist-timeout must be a number of seconds above 0, got {dist_timeout:g}")
    project = Project.named(args.project, args.models_dir)
    if args.reset:
        if dist_info_from_env().enabled:
            raise DiffSvcError("--reset with several processes: reset once without torchrun, then launch training")
        confirm_reset(project.reset_targets(), project.root, yes=args.yes)
        project.reset()
    if args.max_steps is not None and args.max_steps < 0:
        raise DiffSvcError("--max-steps must be 0 or more")
    if args.init_from is not None and not args.init_from.exists():
        raise DiffSvcError(f"--init-from {args.init_from}: file not found")
    options = TrainOptions(project=project, data_dir=args.data, base_config=args.config, init_from=args.init_from,
                           trust_checkpoint=args.trust_checkpoint, max_steps=args.max_steps,
                           batch_size=args.batch_size, device=args.device, workers=args.workers,
                           precision=args.precision, progress=not args.no_progress)
    on_step = None
    if args.progress_file is not None:
        from diffsvc.training.progress_file import ProgressFile

        on_step = ProgressFile(args.progress_file)
    try:
        with peer_timeout(dist_timeout), peer_failures(dist_info_from_env()):
            result = train(options, on_step=on_step)
    finally:
        if on_step is not None:
            on_step.close()
    return 130 if result.stopped_by_signal else 0
