"""`diffsvc infer song.wav --steps 30000`: convert songs with a trained project.

Everything that can be checked before the work is checked before any model loads, so a mistake
costs one line and no partial output: the checkpoint is chosen, the output folder is written to
(a real test: read-only, full), and every input is decoded once (unreadable, truncated, NaN, too
short, two inputs that would write one output). With several inputs (a folder) all bad ones are
listed at once, the good ones are converted, and the exit code is non-zero when any input was
not converted; outputs that already exist are left alone and named (`--overwrite` redoes them),
so a rerun converts what is missing. A single named song whose output exists is refused instead.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from diffsvc.errors import DiffSvcError

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif", ".aifc", ".wv"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from diffsvc.features.f0 import F0_EXTRACTORS
    from diffsvc.sampling import SAMPLERS

    p.add_argument("inputs", nargs="+", metavar="SONG", help="audio files or folders (every audio file inside)")
    g = p.add_argument_group("model")
    g.add_argument("--project", help="project folder name under --models-dir (optional when there is only one)")
    g.add_argument("--steps", type=int, help="use the checkpoint of this training step (default: the newest)")
    g.add_argument("--ckpt", help="a checkpoint file anywhere (its config.yaml beside it), e.g. an original one")
    g.add_argument("--models-dir", default="models", help="where projects live (default: models)")
    g.add_argument("--trust-checkpoint", action="store_true", help="load checkpoints that need code to unpickle")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    g.add_argument("--speaker", help="multi-singer models: the singer (NAME) or a blend (\"alto:0.7,tenor:0.3\", "
                                     "weights normalised); required when the model has several singers")
    g = p.add_argument_group("pitch")
    g.add_argument("--key", default="0", help="transpose by semitones (e.g. -12, 3), or 'auto' to move the song's "
                                             "median pitch onto the project singer's (default 0)")
    g.add_argument("--f0", dest="f0_method", choices=F0_EXTRACTORS.names(),
                   help="f0 extractor (default: the project's f0_extractor)")
    g.add_argument("--out-of-range", choices=("fold", "clamp", "original"), default="fold",
                   help="voiced f0 outside the model's f0_min..f0_max after --key: fold by octaves into range "
                        "(default), clamp to the limits, or original (the original Diff-SVC: 1 Hz above f0_max)")
    g.add_argument("--f0-out", help="write the extracted f0 as CSV (time_s,f0_hz) to this file")
    g.add_argument("--f0-in", help="use this f0 CSV (time_s,f0_hz; e.g. an edited --f0-out) instead of extracting; "
                                   "it must cover the song's voiced audio")
    g.add_argument("--f0-pad", action="store_true",
                   help="accept an --f0-in curve shorter or longer than the song: hold its first and last values")
    g = p.add_argument_group("sampling")
    g.add_argument("--sampler", choices=SAMPLERS.names(),
                   help="sampler (default: the project's; ddim unless its config says otherwise). consistency: "
                        "convert with the project's distilled student (made by `diffsvc distill`; --steps then "
                        "picks the student's checkpoint) in 1, 2 or 4 --sampling-steps (default 2; other counts run "
                        "with a warning)")
    g.add_argument("--sampling-steps", type=int, help="denoiser steps (default: the project's sampling_steps; ddpm "
                                                      "always runs every step of the schedule, plms one step more)")
    g.add_argument("--shallow", type=int, metavar="K", help="start from the input mel noised to step K (shallow diffusion)")
    g.add_argument("--seed", type=int, help="random seed; the same seed gives the same output (default: a new one, printed)")
    g.add_argument("--slice-db", type=float, default=-30.0,
                   help="silence: this many dB below the song's own level (its loud singing; default -30)")
    g.add_argument("--loudness", choices=("input", "model"), default="input",
                   help="output level: follow the input's (default) or keep the model's own (the original)")
    g.add_argument("--window-frames", type=int, help="sampling window in mel frames (default: from free memory)")
    g.add_argument("--batch-size", type=int, help="windows per batch (default: from free memory)")
    g.add_argument("--cpu-runtime", choices=("auto", "torch", "onnxruntime", "bf16"),
                   help="how the models run on the CPU: torch (fp32, the original's numbers), onnxruntime (the "
                        "denoiser and the vocoder in ONNX Runtime, fp32; diffsvc[fast]), bf16, or auto (default: "
                        "the project's cpu_runtime; auto is bf16 on CPUs with native bf16, else onnxruntime when "
                        "installed)")
    g = p.add_argument_group("output")
    g.add_argument("--out", help="output file (one input) or folder (several); default output/SONG_PROJECT_steps_N.wav "
                                  "(SONG_PROJECT_SINGER_steps_N.wav for a multi-singer model)")
    g.add_argument("--format", choices=("wav", "flac"), help="output format (default: --out's suffix, else wav)")
    g.add_argument("--overwrite", action="store_true", help="replace existing output files")
    g.add_argument("--plot", action="store_true", help="write a PNG beside each output: input/output mel and f0")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--progress", action="store_true",
                   help="progress bars even when stderr is not a terminal (a log file; `diffsvc ui` reads it)")


def collect_inputs(paths: list[str]) -> list[Path]:
    """The songs named and found in the folders named (hidden files skipped). A missing file
    among several is kept: the input check names it with the other bad ones."""
    songs: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."))
            subfolders = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            inside = (f"; its subfolders ({', '.join(subfolders[:5])}{' ...' if len(subfolders) > 5 else ''}) are "
                      "not searched: name them to convert their songs") if subfolders else ""
            if not found:
                raise DiffSvcError(f"{path}: no audio files in this folder ({', '.join(sorted(AUDIO_SUFFIXES))})"
                                   + (inside or "; name the songs, or a folder that holds them"))
            if inside:
                print(f"{path}: {len(found)} audio file(s){inside}", file=sys.stderr)
            songs.extend(found)
        elif not path.exists() and len(paths) == 1:
            raise DiffSvcError(f"{path}: audio file not found; check the path")
        else:
            songs.append(path)
    unique: dict[str, Path] = {}
    for song in songs:  # a song named twice (songs/ and songs/a.wav) is converted once
        unique.setdefault(os.path.abspath(song), song)
    return list(unique.values())


def output_paths(songs: list[Path], out: str | None, fmt: str, tag: str) -> tuple[list[Path], dict[Path, str]]:
    """One output per song: --out as the file (one song) or folder (several), else output/.

    Also returns, per song, why it cannot be converted when two or more inputs would write the
    same output (take.wav and take.flac in one folder, or the same name in two folders)."""
    asked, fmt = fmt, fmt or "wav"

    def name(song: Path) -> str:
        return f"{song.stem}_{tag}.{fmt}"

    if out is None:
        paths = [Path("output") / name(s) for s in songs]
    elif len(songs) == 1 and not (Path(out).is_dir() or out.endswith(("/", "\\"))):
        path = Path(out)
        suffix = path.suffix.lower().lstrip(".")
        if suffix in ("wav", "flac") and asked not in (None, suffix):  # the writer follows the name
            raise DiffSvcError(f"--out {out} names a .{suffix} file but --format {asked} was asked; name it "
                               f".{asked} or leave --format out")
        paths = [path if suffix in ("wav", "flac") else path.with_name(path.name + f".{fmt}")]
    else:
        paths = [Path(out) / name(s) for s in songs]
    by_output: dict[Path, list[Path]] = {}
    for song, path in zip(songs, paths):
        by_output.setdefault(path, []).append(song)
    clashes: dict[Path, str] = {}
    for path, group in by_output.items():
        if len(group) > 1:
            names = " and ".join(str(s) for s in group)
            other = group[-1]
            example = other.with_name(f"{other.stem}-{other.suffix.lstrip('.').lower()}{other.suffix}")
            for song in group:
                clashes[song] = (f"{song}: {names} would write the same output {path}; rename one of them "
                                 f"(e.g. {other} to {example.name}) or convert it on its own with "
                                 "--out FILE")
    inputs = {os.path.realpath(s): s for s in songs}
    for song, path in zip(songs, paths):  # --overwrite replaces outputs, never a song given as input
        hit = inputs.get(os.path.realpath(path))
        if hit is not None:
            whose = "the song itself" if hit == song else f"the input {hit}"
            clashes[song] = (f"{song}: its output {path} would replace {whose}; choose another --out "
                             "(inputs are never overwritten)")
    return paths, clashes


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DiffSvcError(f"--device {name!r}: not a device name (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DiffSvcError("--device cuda: no CUDA GPU is available here; use --device cpu")
    return device


def run(args: argparse.Namespace) -> int:
    from diffsvc.audio.load import check_audio
    from diffsvc.inference.keyshift import auto_key_choice, parse_key, read_singer_median_hz
    from diffsvc.inference.output import check_output
    from diffsvc.inference.singers import singers_beside, speaker_median_hz
    from diffsvc.model.speakers import parse_speaker

    key = parse_key(args.key)
    if args.ckpt and (args.project or args.steps is not None):
        raise DiffSvcError("--ckpt names the checkpoint itself; leave out --project and --steps")
    for flag, value in (("--sampling-steps", args.sampling_steps), ("--window-frames", args.window_frames),
                        ("--batch-size", args.batch_size), ("--shallow", args.shallow)):
        if value is not None and value < 1:
            raise DiffSvcError(f"{flag} must be at least 1, got {value}")
    songs = collect_inputs(args.inputs)
    if (args.f0_in or args.f0_out) and len(songs) > 1:
        raise DiffSvcError("--f0-in / --f0-out take one song at a time; give a single input file")
    from diffsvc.inference.f0_io import load_f0_csv

    args.f0_curve = load_f0_csv(args.f0_in) if args.f0_in else None  # a bad file: one line before any model loads
    choice = _choose_model(args)
    if args.sampler in (None, "consistency"):  # a student (chosen, or a --ckpt whose config says so)
        from diffsvc.distill.student import config_beside, untrained_steps_warning

        note = untrained_steps_warning(config_beside(choice.path), args.sampling_steps, str(choice.path))
        if note:
            print(f"diffsvc infer: {note}", file=sys.stderr)
    speaker = parse_speaker(getattr(args, "speaker", None), singers_beside(choice.path))
    project = choice.project if speaker is None else f"{choice.project}_{speaker.label}"
    tag = f"{project}_steps_{choice.step}" if choice.step >= 0 else f"{project}_{choice.path.stem}"
    if args.sampler == "consistency":
        tag = tag.replace(f"{choice.project}_", f"{choice.project}_student_", 1)
    outputs, problems = output_paths(songs, args.out, args.format, tag)
    kept = _without_earlier_outputs(songs, outputs)
    if len(kept) < len(songs):  # plan again without them (they are no inputs to protect either)
        songs = kept
        outputs, problems = output_paths(songs, args.out, args.format, tag)
    if len(songs) == 1 and not Path(args.inputs[0]).is_dir():  # one named song: its output is what was asked
        if songs[0] in problems:
            raise DiffSvcError(problems[songs[0]])
        check_output(outputs[0], args.overwrite)
        check_audio(songs[0])  # AudioError: one line
        pairs = list(zip(songs, outputs))
    else:
        pairs = _plan_several(args, songs, outputs, problems)
        if not pairs:
            return _report_failures(problems, len(songs), converted=0)
    singer_median = None
    if key == "auto":
        singer_median = (read_singer_median_hz(choice.path.parent) if speaker is None
                         else speaker_median_hz(choice.path.parent, speaker))

    device = pick_device(args.device)
    args.speaker_choice = speaker
    rc = _convert_all(args, [s for s, _ in pairs], [o for _, o in pairs], choice, device, key, singer_median,
                      auto_key_choice, problems)
    return _report_failures(problems, len(songs), converted=sum(s not in problems for s, _ in pairs)) if problems else rc


def _without_earlier_outputs(songs: list[Path], outputs: list[Path]) -> list[Path]:
    """Leave out every input that is another input's output (a folder converted with --out into
    itself, run again): it is an earlier result of this model, not a song; each is named once."""
    made_from = {os.path.abspath(o): s for s, o in zip(songs, outputs)}
    keep = []
    for song in songs:
        source = made_from.get(os.path.abspath(song))
        if source is not None and source != song:
            print(f"{song}: left out: it is the output of {source} (an earlier run of this model)", file=sys.stderr)
        else:
            keep.append(song)
    return keep


def _check_inputs(songs: list[Path], problems: dict[Path, str]) -> None:
    """Decode every song once (memory flat) and add what is wrong with each to `problems`."""
    from diffsvc.audio.load import check_audio
    from diffsvc.errors import AudioError

    for song in songs:
        if song in problems:
            continue
        try:
            check_audio(song)
        except AudioError as e:
            problems[song] = str(e)


def _plan_several(args, songs: list[Path], outputs: list[Path], problems: dict[Path, str]) -> list[tuple[Path, Path]]:
    """Several inputs: the output folders must be writable (else one error line before any work);
    existing outputs are left alone and named; every other input is checked, the bad ones listed."""
    from diffsvc.inference.output import check_writable_folder

    for folder in dict.fromkeys(o.parent for o in outputs):
        check_writable_folder(folder)
    todo, left = [], []
    for song, out in zip(songs, outputs):
        if song in problems:
            continue
        if out.is_dir():
            problems[song] = f"{song}: its output {out} is a folder; move it away or choose --out elsewhere"
        elif out.exists() and not args.overwrite:
            left.append(out)
        else:
            todo.append((song, out))
    for out in left:
        print(f"{out}: exists, left alone (--overwrite redoes it)", file=sys.stderr)
    _check_inputs([s for s, _ in todo], problems)
    for song in songs:
        if song in problems:
            print(f"diffsvc infer: error: {problems[song]}", file=sys.stderr)
    ordered = {song: problems[song] for song in songs if song in problems}  # listed in input order
    problems.clear()
    problems.update(ordered)
    todo = [(s, o) for s, o in todo if s not in problems]
    if not todo and not problems:
        print(f"nothing to convert: all {len(left)} output(s) exist (--overwrite redoes them)", file=sys.stderr)
    elif problems and todo:
        print(f"converting the other {len(todo)} input(s)", file=sys.stderr)
    return todo


def _report_failures(problems: dict[Path, str], total: int, converted: int) -> int:
    """The last line: how many inputs were not converted (each was named above); non-zero exit."""
    if not problems:
        return 0
    names = ", ".join(str(s) for s in list(problems)[:8]) + (f" and {len(problems) - 8} more" if len(problems) > 8 else "")
    raise DiffSvcError(f"{len(problems)} of {total} input(s) not converted ({names}; see above), "
                       f"{converted} converted")


def _choose_model(args):
    """The checkpoint to convert with: a distilled student for --sampler consistency, else the
    teacher (which a student's --ckpt must not be asked to sample as)."""
    from diffsvc.distill.student import check_sampler_fits, config_beside, find_student
    from diffsvc.inference.project import choose_checkpoint

    if args.sampler == "consistency":
        return find_student(args.models_dir, args.project, args.steps, args.ckpt)
    choice = choose_checkpoint(args.models_dir, args.project, args.steps, args.ckpt)
    config = config_beside(choice.path)
    if config is not None:
        check_sampler_fits(config, args.sampler, str(choice.path))
    return choice


def _convert_all(args, songs, outputs, choice, device, key, singer_median, auto_key,
                 problems: dict | None = None) -> int:
    import numpy as np
    import torch

    from diffsvc.audio.spool import spool_audio
    from diffsvc.errors import AudioError
    from diffsvc.inference.components import load_content_encoder_for, load_vocoder_for
    from diffsvc.inference.f0_io import write_f0_csv
    from diffsvc.inference.output import audio_writer
    from diffsvc.inference.pipeline import InferenceSettings, SongConverter
    from diffsvc.inference.plot import write_plot
    from diffsvc.inference.project import load_checkpoint

    loaded = load_checkpoint(choice, device, allow_unsafe=args.trust_checkpoint)
    config = loaded.config
    speaker = args.speaker_choice
    if config.speakers and (speaker is None or list(speaker.names) != config.speakers):
        from diffsvc.model.speakers import parse_speaker  # a table only the checkpoint knew (bare config.yaml)

        speaker = parse_speaker(args.speaker, config.speakers)
    if args.shallow is not None and not 1 <= args.shallow <= loaded.model.K_step:
        raise DiffSvcError(f"--shallow {args.shallow}: must be within 1..{loaded.model.K_step} (the model's K_step)")
    if args.shallow is None and loaded.model.K_step < loaded.model.num_timesteps:
        # A model trained only on steps below K_step (the original's shallow-diffusion setting)
        # cannot start from pure noise: start from the input mel noised to K_step.
        args.shallow = loaded.model.K_step
        print(f"K_step {loaded.model.K_step} < timesteps {loaded.model.num_timesteps}: shallow diffusion from the "
              f"input mel at step {args.shallow}")
    if args.cpu_runtime:
        config = config.replace(cpu_runtime=args.cpu_runtime)
    vocoder = load_vocoder_for(config, device)
    encoder = load_content_encoder_for(config, device)
    settings = InferenceSettings(
        sampler=args.sampler or config.sampler, sampling_steps=args.sampling_steps or config.sampling_steps,
        shallow_step=args.shallow, f0_method=args.f0_method or config.f0_extractor, slice_db=args.slice_db,
        window_frames=args.window_frames, batch_size=args.batch_size, out_of_range=args.out_of_range,
        follow_loudness=args.loudness == "input",
        progress=not args.quiet and (args.progress or sys.stderr.isatty()),
        speaker=None if speaker is None else speaker.tensor()[0], cpu_runtime=config.cpu_runtime)
    converter = SongConverter(loaded, encoder, vocoder, device, settings)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    sr = config.audio_sample_rate
    standin = [n for n, part in (("content encoder", encoder), ("vocoder", vocoder)) if part.is_standin]
    total_audio = 0.0
    for song, out in zip(songs, outputs):
        try:
            with converter.timer("load"):
                # decoded once to a temporary file and read back by the stretch: memory stays flat
                wav = spool_audio(song, sr)
        except AudioError as e:  # changed since the check: name it, go on with the others
            if problems is None or len(songs) == 1:
                raise
            problems[song] = str(e)
            print(f"diffsvc infer: error: {e}", file=sys.stderr)
            continue
        with wav:
            total_audio += len(wav) / sr
            curve = getattr(args, "f0_curve", None)
            f0_given = curve.on_grid(converter.num_frames(len(wav)), config.hop_size, sr) if curve else None
            analysis = converter.analyse(wav, f0_given)
            quiet = analysis.level.warning(str(song), "--slice-db")
            if quiet:
                print(quiet, file=sys.stderr)
            span = analysis.voiced_span(sr)
            if curve is not None and span is not None:
                curve.require_covers(*span, song_s=len(wav) / sr, pad=args.f0_pad)
            if args.f0_out:
                write_f0_csv(args.f0_out, analysis.f0_hz, config.hop_size, sr)
            note = ""
            shift = key
            if key == "auto":
                shift, wanted = auto_key(analysis.f0_hz, singer_median, config.f0_min, config.f0_max)
                voiced = analysis.f0_hz[analysis.f0_hz > 0]
                median = f"{float(np.median(voiced)):.1f} Hz" if voiced.size else "no voiced frames"
                limited = (f"; {wanted:+d} would leave the model's f0 range {config.f0_min:g}-{config.f0_max:g} Hz"
                           if shift != wanted else "")
                note = f" (--key auto: song median {median}, singer median {singer_median:.1f} Hz{limited})"
            with audio_writer(out, sr) as write:
                result = converter.convert_to(write, wav, analysis, key=float(shift), seed=seed, keep_mels=args.plot)
            if args.plot:
                write_plot(out.with_suffix(".png"), result.mel_in, result.mel_out, result.f0_hz, result.f0_cond_hz,
                           config.hop_size, sr, title=f"{song.name} -> {out.name}, key {shift:+g}")
            silent = " (silent input: silent output)" if analysis.level.silent else ""
            range_line = result.f0_range.line(str(song)) if result.f0_range is not None else None
            if range_line:
                print(range_line, file=sys.stderr)
        print(f"{out}: key {shift:+g} semitones{note}{silent}", file=sys.stderr)
        del result
        if device.type == "cuda":
            torch.cuda.empty_cache()  # give the next file (and other programs) the memory back
    plan = converter._last_plan
    layout = f", windows of {plan.window_frames} frames x {plan.batch_size} per batch" if plan else ""
    sings = f", singer {speaker.text}" if speaker is not None else ""
    print(f"{choice.path.name} step {loaded.global_step}{sings}, {settings.sampler} {converter.denoiser_calls()} steps, "
          f"seed {seed}, {device}" + (f" ({converter.runtime_text()})" if device.type == "cpu" else "")
          + layout + (f"; stand-in {' and '.join(standin)} (offline demo quality)"
                                            if standin else ""), file=sys.stderr)
    print(converter.timer.summary(total_audio), file=sys.stderr)
    return 0
