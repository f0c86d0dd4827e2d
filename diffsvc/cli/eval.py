"""`diffsvc eval --project NAME [--steps N ... | --all-steps] [--data DIR] [SONG ...]`: how good is
a checkpoint, and which one to keep.

Prints one row per checkpoint and writes eval.json, eval.csv (and with several checkpoints
eval.png) into the project folder. Inputs are checked (project, steps, data, songs decoded)
before any model loads, with the same one-line errors as infer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffsvc.errors import DiffSvcError


class StepsThenSongs(argparse.Action):
    """--steps N [N ...]: whole numbers are steps; anything after them that is not a number is a
    SONG (so `eval --steps 1000 2000 song.wav` reads as meant, not as a bad step)."""

    def __call__(self, parser, namespace, values, option_string=None):
        steps = [int(v) for v in values if v.lstrip("-").isdigit()]
        rest = [v for v in values if not v.lstrip("-").isdigit()]
        if not steps:
            parser.error(f"{option_string}: expected at least one step number, got {' '.join(values)}")
        setattr(namespace, self.dest, (getattr(namespace, self.dest) or []) + steps)
        namespace.songs_after_steps = getattr(namespace, "songs_after_steps", []) + rest


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("songs", nargs="*", metavar="SONG", help="songs (files or folders) to convert and score (optional)")
    g = p.add_argument_group("model")
    g.add_argument("--project", help="project folder name under --models-dir (optional when there is only one)")
    steps = g.add_mutually_exclusive_group()
    steps.add_argument("--steps", nargs="+", action=StepsThenSongs, metavar="N", help="checkpoints of these steps (default: newest)")
    steps.add_argument("--all-steps", action="store_true", help="every checkpoint of the project")
    g.add_argument("--models-dir", default="models", help="where projects live (default: models)")
    g.add_argument("--trust-checkpoint", action="store_true", help="load checkpoints that need code to unpickle")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    g = p.add_argument_group("data")
    g.add_argument("--data", type=Path, help="prepared data of the singer (raw folder or its .diffsvc); its "
                                             "validation pieces are reconstructed (default: raw, as train)")
    g.add_argument("--max-pieces", type=int, default=8, help="validation pieces reconstructed (default 8)")
    g = p.add_argument_group("conversion")
    g.add_argument("--key", type=float, default=0.0, help="transpose songs by semitones (default 0)")
    g.add_argument("--speaker", help="multi-singer projects: the singer (or blend \"a:0.7,b:0.3\") songs are converted "
                                     "to and compared with; reconstruction uses each piece's own singer")
    from diffsvc.sampling import SAMPLERS

    g.add_argument("--sampler", choices=SAMPLERS.names(),
                   help="default: the project's. consistency: evaluate the project's distilled student (diffsvc "
                        "distill; --steps/--all-steps then pick the student's checkpoints)")
    g.add_argument("--sampling-steps", type=int, help="denoiser steps (default: the project's sampling_steps)")
    g.add_argument("--seed", type=int, default=0, help="start noise seed, the same for every checkpoint (default 0)")


def choose_checkpoints(models_dir: str, project: str | None, steps: list[int] | None, all_steps: bool,
                       sampler: str | None = None) -> list:
    from diffsvc.checkpoint import find_checkpoints
    from diffsvc.distill.student import check_sampler_fits, config_beside, find_student
    from diffsvc.inference.project import CheckpointChoice, choose_checkpoint

    if sampler == "consistency":  # the student's checkpoints (models/NAME/student/)
        if steps:
            return [find_student(models_dir, project, s, None) for s in sorted(set(steps))]
        newest = find_student(models_dir, project, None, None)
        return [newest] if not all_steps else [
            CheckpointChoice(path, newest.project, step) for step, path in sorted(find_checkpoints(newest.path.parent).items())]
    if steps:
        return [choose_checkpoint(models_dir, project, s) for s in sorted(set(steps))]
    newest = choose_checkpoint(models_dir, project, None)
    config = config_beside(newest.path)
    if config is not None:
        check_sampler_fits(config, sampler, str(newest.path))
    if not all_steps:
        return [newest]
    return [CheckpointChoice(path, newest.project, step)
            for step, path in sorted(find_checkpoints(newest.path.parent).items())]


def load_data(data: Path | None):
    """(PreparedData or None, why none). An explicit --data must exist; the default raw/ may not."""
    from diffsvc.data.prepared import MANIFEST, PreparedData, prepared_dir

    if data is not None:
        return PreparedData.find(data), ""
    default = Path("raw")
    if (default / MANIFEST).exists() or (prepared_dir(default) / MANIFEST).exists():
        return PreparedData.find(default), ""
    return None, "no prepared data at raw/; pass --data with the singer's prepared folder"


def run(args: argparse.Namespace) -> int:
    from diffsvc.audio.load import load_audio
    from diffsvc.cli.infer import collect_inputs, pick_device
    from diffsvc.evaluation.report import format_table, write_report
    from diffsvc.evaluation.runner import EvalRequest, evaluate

    for flag, value in (("--sampling-steps", args.sampling_steps), ("--max-pieces", args.max_pieces)):
        if value is not None and value < 1:
            raise DiffSvcError(f"{flag} must be at least 1, got {value}")
    names = list(args.songs) + list(getattr(args, "songs_after_steps", []))
    song_paths = collect_inputs(names) if names else []  # a folder without audio: said before the model's checks
    choices = choose_checkpoints(args.models_dir, args.project, args.steps, args.all_steps, args.sampler)
    if args.sampler in (None, "consistency"):  # a student: the step counts it was distilled for
        from diffsvc.distill.student import config_beside, untrained_steps_warning

        note = untrained_steps_warning(config_beside(choices[0].path), args.sampling_steps,
                                       str(choices[0].path.parent))
        if note:
            print(f"diffsvc eval: {note}", file=sys.stderr)
    data, data_note = load_data(args.data)
    songs = {path: load_audio(path) for path in song_paths}
    if data is None and not songs:
        raise DiffSvcError(f"nothing to evaluate: {data_note}, or give songs to convert")
    device = pick_device(args.device)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    request = EvalRequest(choices, songs=songs, data=data, data_note=data_note, key=args.key, seed=args.seed,
                          sampler=args.sampler, sampling_steps=args.sampling_steps, max_pieces=args.max_pieces,
                          speaker=args.speaker,
                          allow_unsafe=args.trust_checkpoint, log=log)
    result = evaluate(request, device)
    for what in result["unavailable"]:
        log(f"not computed: {what}")
    print(format_table(result["rows"], result["best_step"]))
    if result["best_step"] is not None and len(result["rows"]) > 1:
        print(f"best checkpoint by reconstruction (lowest MCD): step {result['best_step']}")
    for path in write_report(result, choices[0].path.parent):
        log(f"wrote {path}")
    return 0
