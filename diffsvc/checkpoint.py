"""Checkpoints in the original Diff-SVC layout, both ways.

A checkpoint is `model_ckpt_steps_N.ckpt`: a dict with epoch, global_step,
checkpoint_callback_best, optimizer_states, lr_schedulers and state_dict, where state_dict holds
GaussianDiffusion's keys prefixed `model.`. The model's sizes live in the `config.yaml` beside it,
so the two are loaded as a pair. Files are read with weights_only=True (diffsvc.modelfile).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from diffsvc.config import Config, load_config
from diffsvc.errors import CheckpointError, ConfigError
from diffsvc.fileio import atomic_torch_save
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.modelfile.strict import compare_state
from diffsvc.modelfile.torch_load import safe_torch_load

CKPT_PATTERN = re.compile(r"model_ckpt_steps_(\d+)\.ckpt$")
PREFIX = "model."
# Present in every original checkpoint, never used by the forward pass: tolerated when absent.
UNUSED_PREFIXES = ("fs2.mel_out.", "fs2.pitch_predictor.")


def checkpoint_name(step: int) -> str:
    return f"model_ckpt_steps_{step}.ckpt"


def find_checkpoints(folder: str | os.PathLike) -> dict[int, Path]:
    """{training step: path} of the checkpoints in a project folder (partial files ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        m = CKPT_PATTERN.match(path.name)
        if m and path.is_file():
            found[int(m.group(1))] = path
    return dict(sorted(found.items()))


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    found = find_checkpoints(folder)
    return found[max(found)] if found else None


@dataclass
class LoadedModel:
    model: GaussianDiffusion
    config: Config
    path: Path
    global_step: int
    raw: dict  # the whole checkpoint dict (optimizer state etc. for resuming)


def _config_for(ckpt_path: Path, config: Config | str | os.PathLike | None) -> Config:
    if isinstance(config, Config):
        return config
    cfg_path = Path(config) if config is not None else ckpt_path.parent / "config.yaml"
    if not cfg_path.exists():
        raise CheckpointError(
            f"{ckpt_path}: no config.yaml beside it; a checkpoint's sizes and spec_min/spec_max live in the "
            f"config.yaml its training wrote. Put that file at {cfg_path} or pass --config"
        )
    return load_config(cfg_path)


def model_state_from_checkpoint(ckpt: dict, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a Diff-SVC checkpoint (no 'state_dict' inside)")
    state = {k[len(PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    if not state:
        raise CheckpointError(f"{path}: not a Diff-SVC checkpoint (no 'model.' weights in its state_dict)")
    return state


def describe_foreign(state: dict[str, torch.Tensor], config: Config) -> str | None:
    """A sentence saying what an incompatible checkpoint is, when we can tell."""
    if any(k.startswith("fs2.encoder.") for k in state):
        return ("it is a legacy Diff-SVC model trained with no_fs2: false (before 2022-11-28, with an FFT "
                "encoder over the content units), which diffsvc does not support")
    from diffsvc.model.backbones import backbone_of_state

    trained = backbone_of_state(state)
    if trained is not None and trained != config.diff_decoder_type:
        return (f"it was trained with diff_decoder_type: {trained} but the config says "
                f"{config.diff_decoder_type}: the config.yaml is not the one this checkpoint was trained with")
    w = state.get("denoise_fn.input_projection.weight")
    if w is not None and w.shape[1] != config.audio_num_mel_bins:
        return (f"its denoiser takes {w.shape[1]} mel bins but the config says {config.audio_num_mel_bins}: "
                "the config.yaml is not the one this checkpoint was trained with")
    return None


def load_model(path: str | os.PathLike, config: Config | str | os.PathLike | None = None, *,
               allow_unsafe: bool = False, device: str | torch.device = "cpu",
               config_is_assumed: bool = False) -> LoadedModel:
    """Load `model_ckpt_steps_N.ckpt` (ours or the original's) with its config into a GaussianDiffusion.

    The schedule buffers and spec_min/spec_max come from the checkpoint (the original's buffers are
    authoritative: its import-time max_beta default made them differ from a fresh build).
    `config_is_assumed`: the config is not the checkpoint's own (another project's, for a file with
    no config.yaml beside it), so what the checkpoint records of itself (its prediction target,
    its singers) replaces the config's. Otherwise a config that disagrees with the checkpoint's
    record is refused (CheckpointError, one line).
    """
    path = Path(path)
    config = _config_for(path, config)
    ckpt = safe_torch_load(path, allow_unsafe=allow_unsafe, what="checkpoint")
    state = model_state_from_checkpoint(ckpt, path)
    config = config_with_singers(config, ckpt, state, path)
    config = config_with_prediction(config, ckpt, path, assumed=config_is_assumed)
    foreign = describe_foreign(state, config)
    if foreign:
        raise CheckpointError(f"{path}: cannot load: {foreign}")
    try:
        model = GaussianDiffusion.from_config(config)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if "spec_min" in state:
        model.resize_spec_stats(state["spec_min"].shape[-1])
    mismatch = compare_state(model.state_dict(), state, optional=UNUSED_PREFIXES)
    if mismatch.missing or mismatch.unexpected:
        raise CheckpointError(f"{path}: keys do not match the Diff-SVC model: {mismatch.keys_part('first:')}")
    if mismatch.reshaped:
        key, got, want = mismatch.reshaped[0]
        raise CheckpointError(
            f"{path}: does not match its config: {key} has shape {got} in the checkpoint "
            f"but {want} from the config (check residual_channels, residual_layers, "
            "hidden_size, audio_num_mel_bins)"
        )
    model.load_state_dict(state, strict=False)
    model.to(device).eval()
    return LoadedModel(model, config, path, int(ckpt.get("global_step") or _step_from_name(path) or 0), ckpt)


def config_with_singers(config: Config, ckpt: dict, state: dict[str, torch.Tensor], path: Path) -> Config:
    """The config with the checkpoint's singer table: a multi-singer checkpoint carries it (spk_map,
    {name: row}), so the checkpoint alone says who it can sing as; a config.yaml that names other
    singers than the checkpoint is refused. A table in the weights without spk_map (another
    tool's use_spk_id model) gets the names singer0, singer1, ..."""
    from diffsvc.model.speakers import CHECKPOINT_KEY, names_from_map

    weight = state.get("fs2.spk_embed_proj.weight")
    saved = ckpt.get(CHECKPOINT_KEY)
    if weight is None:
        if config.speakers:
            raise CheckpointError(f"{path}: a one-singer checkpoint, but its config names the singers "
                                  f"{', '.join(config.speakers)}; use the config.yaml it was trained with")
        return config
    if isinstance(saved, dict) and saved:
        try:
            names = names_from_map(saved)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: damaged singer table ({CHECKPOINT_KEY}: {e})") from None
    else:
        names = config.speakers or [f"singer{i}" for i in range(int(weight.shape[0]))]
    if len(names) != int(weight.shape[0]):
        raise CheckpointError(f"{path}: its singer table names {len(names)} singers but the embedding has "
                              f"{int(weight.shape[0])} rows")
    if config.speakers and config.speakers != names:
        raise CheckpointError(f"{path}: sings as {', '.join(names)} but its config.yaml lists "
                              f"{', '.join(config.speakers)}; use the config.yaml it was trained with")
    return config if config.speakers == names else config.replace(speakers=names)


PREDICTION_KEY = "prediction"  # top-level key: what the denoiser outputs (eps, v, x0); the original ignores it


def checkpoint_prediction(ckpt: dict) -> str | None:
    """The prediction target a checkpoint records (ours since the x0 recipe), or None (the
    original's checkpoints and ours from before: their config.yaml says, the original's is eps)."""
    value = ckpt.get(PREDICTION_KEY)
    return value if isinstance(value, str) else None


def config_with_prediction(config: Config, ckpt: dict, path: Path, *, assumed: bool = False) -> Config:
    """The config with the prediction target the checkpoint was trained for. A checkpoint records it;
    a config.yaml that says otherwise is refused, since reading an x0 model's output as noise (or
    the reverse) gives noise. With an `assumed` config (not the checkpoint's own) the record wins,
    and a checkpoint without a record is taken as the original's eps."""
    recorded = checkpoint_prediction(ckpt)
    if assumed:
        wanted = recorded or "eps"
        return config if config.prediction == wanted else config.replace(prediction=wanted)
    if recorded is not None and recorded != config.prediction:
        raise CheckpointError(f"{path}: trained to predict {recorded} but its config says prediction: "
                              f"{config.prediction}; use the config.yaml it was trained with (or set "
                              f"prediction: {recorded})")
    return config


def _step_from_name(path: Path) -> int | None:
    m = CKPT_PATTERN.search(path.name)
    return int(m.group(1)) if m else None


def save_model(path: str | os.PathLike, model: GaussianDiffusion, global_step: int, *, epoch: int = 0,
               optimizer_states: list | None = None, lr_schedulers: list | None = None,
               extra: dict | None = None) -> Path:
    """Write a checkpoint in the original layout, atomically. `extra` holds our own resume state
    (random states, data order) under keys the original ignores."""
    state = {PREFIX + k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {
        "epoch": epoch,
        "global_step": global_step,
        "checkpoint_callback_best": float("inf"),
        "optimizer_states": optimizer_states or [],
        "lr_schedulers": lr_schedulers or [],
        "state_dict": state,
    }
    from diffsvc.model.speakers import CHECKPOINT_KEY, speaker_embedding_of, speaker_map

    table = speaker_embedding_of(model)
    if table is not None:  # the singer table travels with every multi-singer checkpoint
        ckpt[CHECKPOINT_KEY] = speaker_map(table.names)
    ckpt[PREDICTION_KEY] = model.prediction  # so no other config can misread the denoiser's output
    if extra:
        ckpt.update(extra)
    return atomic_torch_save(ckpt, path)
