"""`diffsvc models`: what pretrained weights and projects are in models/, and whether each loads.

Each file is loaded into its real architecture (not just found), so a truncated download or a
wrong file shows up here rather than halfway through a song. Nothing is ever downloaded.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from diffsvc.config import load_config
from diffsvc.errors import DiffSvcError


@dataclass
class Check:
    what: str
    path: str
    status: str  # "ok", "missing", "broken"
    detail: str
    required: bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="config whose model paths to check (default: the built-in diffsvc-44k.yaml, as in configs/)")
    parser.add_argument("--models-dir", default="models", help="where trained projects live (default: models)")


def _check(what: str, path: Path, load, required: bool, missing_hint: str) -> Check:
    if not path.exists():
        return Check(what, str(path), "missing", missing_hint, required)
    try:
        detail = load(path)
    except DiffSvcError as e:
        return Check(what, str(path), "broken", str(e), required)
    return Check(what, str(path), "ok", detail, required)


def _resolve(key: str, configured: str, public_name: str | None = None) -> Path:
    """Where the file of config `key` is (the original's checkpoints/ layout, then models/), or the
    configured path when it is nowhere."""
    from diffsvc.modelfile.locate import find_model_file

    return find_model_file(key, configured, public_name) or Path(configured)


def _places(key: str, configured: str) -> str:
    """'A or B': the places looked at for config `key`."""
    from diffsvc.modelfile.locate import model_file_places

    return " or ".join(str(p) for p in model_file_places(key, configured))


def _projects(models_dir: Path) -> list[str]:
    from diffsvc.checkpoint import find_checkpoints

    lines = []
    if not models_dir.is_dir():
        return lines
    for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        steps = find_checkpoints(folder)
        if not steps:
            continue
        try:
            if not (folder / "config.yaml").exists():  # not "one singer": who it sings as is unknown here
                raise DiffSvcError("no config.yaml beside its checkpoints; infer needs the one its training wrote")
            cfg = load_config(folder / "config.yaml")
            # the original's backbone is shown by its size alone (as the README shows it), another one by name
            size = (f"{cfg.residual_layers}x{cfg.residual_channels}" if cfg.diff_decoder_type == "wavenet"
                    else f"{cfg.diff_decoder_type} {cfg.lynxnet_layers}x{cfg.lynxnet_channels}")
            kind = f"{cfg.audio_sample_rate} Hz, {size}, {cfg.content_encoder}"
            if cfg.speakers:  # a multi-singer project: who it sings as (infer --speaker)
                kind += f"; {len(cfg.speakers)} singers: {', '.join(cfg.speakers)}"
        except DiffSvcError as e:
            kind = f"config problem: {e}"
        shown = ", ".join(str(s) for s in list(steps)[-5:])
        lines.append(f"  {folder.name}: steps {shown} ({kind})")
        lines.extend(f"    [BROKEN ] step {step}: {problem}" for step, problem in _broken_checkpoints(steps))
        lines.extend(_student_lines(folder))
    return lines


def _student_lines(project: Path) -> list[str]:
    """The project's distilled student (models/NAME/student, what `infer --sampler consistency`
    converts with): its steps, what it predicts and the step counts it was made for; broken ones."""
    from diffsvc.checkpoint import find_checkpoints
    from diffsvc.distill.student import check_record, student_root

    folder = student_root(project)
    steps = find_checkpoints(folder)
    if not steps:
        return []
    try:
        if not (folder / "config.yaml").exists():
            raise DiffSvcError("no config.yaml beside its checkpoints; distill again with --reset")
        cfg = load_config(folder / "config.yaml")
        if not cfg.distill:
            raise DiffSvcError(f"{folder / 'config.yaml'} has no distill record")
        record = check_record(cfg, str(folder / "config.yaml"))
        counts = "/".join(str(n) for n in record.get("sampling_steps", [])) or "any"
        kind = (f"{record.get('method', 'consistency')} student of step {record.get('teacher_step', '?')}, predicts "
                f"{record['prediction']}, for {counts} steps: infer --sampler consistency")
    except DiffSvcError as e:
        kind = f"config problem: {e}"
    shown = ", ".join(str(s) for s in list(steps)[-5:])
    return [f"    student: steps {shown} ({kind})",
            *(f"    [BROKEN ] student step {step}: {problem}" for step, problem in _broken_checkpoints(steps))]


def _broken_checkpoints(steps: dict) -> list[tuple[int, str]]:
    """(step, why) for each checkpoint that is a placeholder (LFS pointer, web page, text, a zip
    cut short): found from its first bytes and zip directory, without loading it."""
    from diffsvc.modelfile.identify import check_model_file

    broken = []
    for step, path in steps.items():
        try:
            check_model_file(path, "checkpoint")
        except DiffSvcError as e:
            broken.append((step, str(e)))
    return broken


def pretrained_checks(config) -> list[Check]:
    """One check per registered part that needs a weights file (content encoders, vocoders), each file loaded
    into its real architecture (`diffsvc models` and the web page's Models tab show this list)."""
    from diffsvc.features.content import CONTENT_ENCODERS
    from diffsvc.vocoder import VOCODERS

    checks = []
    for name in CONTENT_ENCODERS.names():
        cls = CONTENT_ENCODERS.get(name)
        if cls.weights_key is None:
            continue
        key = cls.weights_key
        configured = getattr(config, key)
        required = config.content_encoder == name
        hint = (f"put {cls.weights_source} at {_places(key, configured)} (config key {key})" if required else
                f"optional; put {cls.public_name} at {_places(key, configured)} to use content_encoder: {name}")
        checks.append(_check(cls.title, _resolve(key, configured, cls.public_name), cls.describe_weights, required,
                             hint))
    for name in VOCODERS.names():
        cls = VOCODERS.get(name)
        if cls.weights_key is None:
            continue
        found = _resolve(cls.weights_key, getattr(config, cls.weights_key))
        where = found if found.is_dir() else found.parent  # NSF-HiFiGAN: the folder of model + config.json
        checks.append(_check(cls.title, where, cls.describe_weights, config.vocoder == name,
                             cls.weights_hint.format(places=_places(cls.weights_key, getattr(config, cls.weights_key)))
                             + f" (config key {cls.weights_key})"))
    return checks


def _parts() -> list[str]:
    """Every registered part, by kind (the names the config and the CLI accept)."""
    from diffsvc.features.content import CONTENT_ENCODERS
    from diffsvc.features.f0 import F0_EXTRACTORS
    from diffsvc.model.backbones import BACKBONES
    from diffsvc.sampling import SAMPLERS
    from diffsvc.vocoder import VOCODERS

    lines = []
    for registry in (BACKBONES, CONTENT_ENCODERS, F0_EXTRACTORS, SAMPLERS, VOCODERS):
        lines.append(f"  {registry.key} ({registry.what}):")
        lines.extend(f"    {name:<14} {registry.doc(name)}" for name in registry.names())
    return lines


def project_lines(models_dir: Path) -> list[str]:
    """'  NAME: steps ... (44100 Hz, 20x384, hubert-soft)' per trained project."""
    return _projects(Path(models_dir))


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    checks = pretrained_checks(config)
    print("Pretrained weights (nothing is downloaded; see models/README.md):")
    for c in checks:
        mark = {"ok": "ok     ", "missing": "MISSING", "broken": "BROKEN "}[c.status]
        need = "" if c.required or c.status == "ok" else " (optional)"
        print(f"  [{mark}] {c.what}{need}: {c.path}\n            {c.detail}")
    print("Parts (config key: name, what it is):")
    for line in _parts():
        print(line)
    projects = project_lines(Path(args.models_dir))
    print("Trained projects:" if projects else f"Trained projects: none in {args.models_dir}/ yet")
    for line in projects:
        print(line)
    problems = [c for c in checks if c.required and c.status != "ok"]
    if problems:
        print("Real conversion needs the files marked above; `diffsvc demo` runs offline with stand-ins meanwhile.")
        return 1
    if any("[BROKEN ]" in line for line in projects):
        print("The project checkpoints marked BROKEN cannot be loaded; copy or download them again.")
        return 1
    return 0
