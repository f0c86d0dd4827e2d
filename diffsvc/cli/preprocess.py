"""`diffsvc preprocess RAW_DIR`: slice a folder of recordings into training data and cache f0/units.

The result lands in RAW_DIR/.diffsvc/, where `diffsvc train` finds it. Rerunning costs almost
nothing; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys

from diffsvc.errors import DiffSvcError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diffsvc.features.content import CONTENT_ENCODERS
    from diffsvc.features.f0 import F0_EXTRACTORS

    parser.add_argument("raw_dir", metavar="RAW_DIR", help="folder of recordings (searched recursively)")
    parser.add_argument("--config", help="YAML config (default: the built-in diffsvc-44k.yaml, as in configs/)")
    parser.add_argument("--f0", choices=F0_EXTRACTORS.names(),
                        help="f0 extractor (default: the config's f0_extractor, crepe)")
    parser.add_argument("--content", choices=CONTENT_ENCODERS.names(),
                        help="content encoder (default: the config's content_encoder); stand-in is a "
                             "weight-free offline try, not for real voice conversion")
    parser.add_argument("--min-seconds", type=float, default=10.0, help="shortest piece the slicer aims for (10)")
    parser.add_argument("--max-seconds", type=float, default=15.0, help="longest piece (15)")
    parser.add_argument("--min-piece", type=float, default=2.0, help="pieces shorter than this are dropped (2 s)")
    parser.add_argument("--db", type=float, default=-30.0,
                        help="silence: this many dB below each file's own level (its loud singing; -30), as infer's --slice-db")
    parser.add_argument("--valid", type=int, default=None,
                        help="validation pieces (default: min(5, 2%%), at least 1 when there are 2 or more)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where f0 and content units run (auto: cuda when available)")
    parser.add_argument("--workers", type=int, default=1, help="processes that decode and slice files (1)")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before the work when the check finds problems")


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DiffSvcError("--device cuda: no CUDA device is visible to PyTorch; use --device cpu")
    return name


def _ask(check) -> bool:
    """Interactive only: the check found problems; go on?"""
    try:
        answer = input("The dataset check found problems (see above). Continue? [Y/n] ")
    except EOFError:
        return True
    return answer.strip().lower() in ("", "y", "yes")


def run(args: argparse.Namespace) -> int:
    from diffsvc.config import load_config
    from diffsvc.data.preprocess import (PreprocessOptions, SliceSettings, nothing_usable_reason, preprocess,
                                         summary_table)

    if args.min_piece <= 0 or args.min_seconds <= 0 or args.max_seconds < args.min_seconds:
        raise DiffSvcError("need 0 < --min-seconds <= --max-seconds and --min-piece > 0")
    if args.valid is not None and args.valid < 0:
        raise DiffSvcError("--valid must be 0 or more")
    if args.workers < 1:
        raise DiffSvcError("--workers must be 1 or more")
    config = load_config(args.config)
    options = PreprocessOptions(
        f0_method=args.f0, content=args.content,
        slicing=SliceSettings(db=args.db, min_s=args.min_seconds, max_s=args.max_seconds, drop_shorter_s=args.min_piece),
        valid=args.valid, device=_device(args.device), workers=args.workers)
    interactive = sys.stdin.isatty() and not args.yes
    result = preprocess(args.raw_dir, config, options, confirm=_ask if interactive else None)
    for line in summary_table(result):
        print(line)
    if not result.usable:
        raise DiffSvcError(nothing_usable_reason(result))
    print(f"Next: diffsvc train --project NAME --data {args.raw_dir}")
    failed = result.check.failed
    if failed:  # the rest is prepared, but a script must see that files were left out (as infer does)
        names = ", ".join(str(f["source"]) for f in failed)
        print(f"diffsvc preprocess: error: {len(failed)} file(s) could not be read and were left out: {names} "
              "(reasons above); fix or remove them and run again: only they are redone", file=sys.stderr)
        return 2
    return 0
