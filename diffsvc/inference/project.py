"""Which checkpoint to convert with: `--project NAME` / `--steps N` / `--ckpt PATH`, and its loading.

A project is a folder `models/NAME/` holding `model_ckpt_steps_N.ckpt` files and the `config.yaml`
training wrote beside them (that config describes the checkpoints and wins over any other).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from diffsvc.checkpoint import LoadedModel, find_checkpoints, load_model
from diffsvc.config import Config, load_config
from diffsvc.errors import CheckpointError, ConfigError, DiffSvcError

SUPPORTED_SAMPLE_RATE = 44100
SUPPORTED_MEL_BINS = 128


@dataclass(frozen=True)
class CheckpointChoice:
    path: Path
    project: str  # the project's name (its folder's name), used in output names
    step: int


def list_projects(models_dir: Path) -> list[str]:
    """Names of the folders in models_dir that hold at least one checkpoint."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if p.is_dir() and find_checkpoints(p))


def choose_checkpoint(models_dir: str | os.PathLike = "models", project: str | None = None, steps: int | None = None,
                      ckpt: str | os.PathLike | None = None) -> CheckpointChoice:
    """The checkpoint the user asked for, or one clear error saying what exists."""
    if ckpt is not None:
        path = Path(ckpt)
        if not path.is_file():
            raise CheckpointError(f"{path}: checkpoint not found")
        found = {s: p for s, p in find_checkpoints(path.parent).items() if p.name == path.name}
        step = next(iter(found), None)
        return CheckpointChoice(path, path.parent.name or "model", step if step is not None else -1)
    models_dir = Path(models_dir)
    projects = list_projects(models_dir)
    if project is None:
        if not projects:
            raise DiffSvcError(f"{models_dir}: no trained project found (no folder with model_ckpt_steps_N.ckpt); "
                               "train one with `diffsvc train` or pass --ckpt PATH")
        if len(projects) > 1:
            raise DiffSvcError(f"{models_dir} holds several projects ({', '.join(projects)}); choose one with --project NAME")
        project = projects[0]
    folder = models_dir / project
    checkpoints = find_checkpoints(folder)
    if not checkpoints:
        known = f"projects here: {', '.join(projects)}" if projects else "no trained project there"
        raise DiffSvcError(f"{folder}: no checkpoints for project {project!r} ({known})")
    return pick_step(checkpoints, steps, project, f"project {project!r}")


def pick_step(checkpoints: dict[int, Path], steps: int | None, name: str, owner: str) -> CheckpointChoice:
    """The checkpoint of `steps` (None: the newest) among `checkpoints` {step: path}, else one error
    naming `owner` and the steps it has."""
    if steps is None:
        steps = max(checkpoints)
    elif steps not in checkpoints:
        raise DiffSvcError(f"{owner} has no checkpoint for step {steps}; "
                           f"available steps: {', '.join(map(str, checkpoints))}")
    return CheckpointChoice(checkpoints[steps], name, steps)


def check_supported(config: Config, source: str) -> None:
    """diffsvc converts at 44.1 kHz with 128 mel bins (NSF-HiFiGAN); the original's 24 kHz setup
    needs its 24 kHz HiFiGAN and pitch extractor (PE), which are not supported."""
    if config.audio_sample_rate != SUPPORTED_SAMPLE_RATE or config.audio_num_mel_bins != SUPPORTED_MEL_BINS:
        raise ConfigError(
            f"{source}: a {config.audio_sample_rate / 1000:g} kHz project with {config.audio_num_mel_bins} mel bins needs "
            "the original's 24 kHz HiFiGAN and pitch extractor (PE), which are not supported; diffsvc converts "
            "44.1 kHz / 128-bin NSF-HiFiGAN projects")


def config_path_beside(checkpoint: Path) -> Path:
    """The config.yaml beside `checkpoint`; CheckpointError (one line) when there is none."""
    config_path = Path(checkpoint).parent / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(f"{checkpoint}: no config.yaml beside it; put the config.yaml its training wrote "
                              f"at {config_path}")
    return config_path


def load_checkpoint(choice: CheckpointChoice, device: torch.device, *, allow_unsafe: bool = False) -> LoadedModel:
    config_path = config_path_beside(choice.path)
    config = load_config(config_path)
    check_supported(config, str(config_path))
    loaded = load_model(choice.path, config, allow_unsafe=allow_unsafe, device=device)
    return loaded
