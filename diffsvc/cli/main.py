"""The `diffsvc` command: one module per subcommand; user-facing errors are printed here only."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from diffsvc import __version__
from diffsvc.errors import DiffSvcError

# subcommand -> (module, one-line help). Modules are imported only when their command runs,
# so `diffsvc --help` stays fast.
COMMANDS = {
    "preprocess": ("diffsvc.cli.preprocess", "slice a folder of recordings into training data and cache f0"),
    "train": ("diffsvc.cli.train", "train (or resume) a project on prepared data"),
    "distill": ("diffsvc.cli.distill", "distil a project's model into a 1-4 step student (consistency distillation)"),
    "infer": ("diffsvc.cli.infer", "convert songs with a trained project"),
    "models": ("diffsvc.cli.models", "list the pretrained weights in models/ and check that they load"),
    "ui": ("diffsvc.cli.ui", "the whole workflow in a local web page (needs the ui extra: pip install diffsvc[ui])"),
    "eval": ("diffsvc.cli.eval", "score checkpoints: reconstruction, pitch, speaker, content, speed"),
    "demo": ("diffsvc.cli.demo", "the whole pipeline offline on a generated corpus (no downloads)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffsvc",
        description="Singing voice conversion with Diff-SVC: preprocess, train, infer.",
    )
    parser.add_argument("--version", action="version", version=f"diffsvc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Each module adds its own arguments lazily through `add_arguments`.
        p.set_defaults(_name=name)
    return parser


# For the commands that run feature extractors and vocoders over inputs of many lengths
# (CAPPED_KERNEL_CACHE): oneDNN (PyTorch's CPU convolutions) caches primitives per input shape, each with its own
# buffers: with the release NSF-HiFiGAN, 13 stretch lengths grew the cache by 2.3 GB at the
# default capacity of 1024 and by 1.2 GB at 256, at the same first-pass speed (10% slower on
# repeated shapes). oneDNN reads the variable when it builds its first primitive, so this works
# until the first CPU convolution of the process; a value in the environment wins.
ONEDNN_CACHE_CAPACITY = "256"


CAPPED_KERNEL_CACHE = ("preprocess", "infer", "eval")


def limit_cpu_kernel_cache() -> None:
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE_CAPACITY)


# For `infer`: torch's CPU threads (GNU OpenMP) spin-wait between parallel regions by default. On
# a machine whose cores are busy with other work, a spinning thread holds the core the thread it
# waits for needs: on 2 shared cores the original way's conversion of a 30 s song cost 4.05 CPU s
# per s of song spinning and 2.13 passive, our bf16 sampling stage 0.72 and 0.26
# (benchmarks/results/pipeline-30s.md). libgomp reads the variable when torch loads, so it is set
# here, before any command imports torch (building a command's arguments does), only for the
# commands listed, only when torch is not loaded yet, and a value in the environment wins. `eval`
# converts songs as infer does and is listed too, so that `auto` picks the same denoiser runtime
# (cpu_runtime.denoiser_runtime: it depends on how torch's threads wait) and eval scores what
# infer ships.
PASSIVE_OPENMP = ("infer", "eval")


def passive_openmp_waits() -> None:
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _parser_with_arguments(argv: list[str]) -> argparse.ArgumentParser:
    """Build the parser; load the arguments of the one subcommand named in argv (or all for help)."""
    parser = build_parser()
    sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    wanted = [a for a in argv if a in COMMANDS][:1] or []
    for name in wanted:
        module = importlib.import_module(COMMANDS[name][0])
        module.add_arguments(sub_action.choices[name])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    named = [a for a in argv if a in COMMANDS][:1]
    if named and named[0] in PASSIVE_OPENMP:
        passive_openmp_waits()  # before the command's arguments are added: that imports torch
    parser = _parser_with_arguments(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if args.command in CAPPED_KERNEL_CACHE:
        limit_cpu_kernel_cache()
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except DiffSvcError as e:
        print(f"diffsvc {args.command}: error: {e}", file=sys.stderr)
        if getattr(e, "exit_now", False):  # e.g. a lost training peer (training/distributed.py)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except KeyboardInterrupt:
        print(f"diffsvc {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"diffsvc {args.command}: error: out of memory; try a smaller batch or shorter input",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
