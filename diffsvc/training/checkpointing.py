"""Checkpoints of a training run: write one, resume from one, or start from another project's.

A checkpoint is in the original Diff-SVC layout (epoch, global_step, state_dict with `model.`
keys, optimizer_states, lr_schedulers) and carries our resume record under RESUME_KEY, which the
original ignores: the data epoch and position, the batch plan and split, the loss scaler, the
global random states and the state of any extra modules (TrainState.extras).

With a weight average (ema.py), `state_dict` holds the averaged weights, so `diffsvc infer` and
the original Diff-SVC read those; the raw weights the optimizer goes on from are in the resume
record under RAW_WEIGHTS_KEY.

Writes go to a temporary name and are renamed when complete; old checkpoints are pruned only
after that, so a full disk or a kill mid-write leaves the last good checkpoint as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from diffsvc.checkpoint import checkpoint_name, load_model, save_model
from diffsvc.config import Config, load_config
from diffsvc.errors import CheckpointError, DiffSvcError
from diffsvc.training.batch_size import BatchPlan
from diffsvc.training.ema import inference_weights, weight_average
from diffsvc.training.project import Project
from diffsvc.training.randomness import rng_states, set_rng_states
from diffsvc.training.state import TrainState

RESUME_KEY = "diffsvc_resume"  # our resume state inside the checkpoint; the original ignores it
RAW_WEIGHTS_KEY = "raw_weights"  # in the resume record: the trained (not averaged) weights, with a weight average


class CheckpointWriteError(DiffSvcError):
    """A checkpoint could not be written (full disk, read-only folder); the last good one is kept."""


def resume_record(state: TrainState, *, world_size: int, plan: BatchPlan) -> dict:
    """What RESUME_KEY holds for `state`."""
    record = {
        "data_epoch": state.epoch, "data_position": state.position, "split": state.split,
        "world_size": world_size,
        "batch_plan": {"max_sentences": plan.max_sentences, "max_tokens": plan.max_tokens},
        "scaler": state.scaler.state_dict() if state.scaler is not None else {},
        "rng": rng_states(),
    }
    if state.extras:
        record["extras"] = {name: module.state_dict() for name, module in state.extras.items()}
    if weight_average(state.extras) is not None:
        record[RAW_WEIGHTS_KEY] = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}
    return record


def save_checkpoint(state: TrainState, project: Project, *, world_size: int, plan: BatchPlan, keep: int,
                    extra: dict | None = None) -> Path:
    """Write `model_ckpt_steps_<step>.ckpt` into the project, then prune to the newest `keep`.
    `extra`: more top-level keys for the checkpoint (a distilled student's `distill` record).

    Raises CheckpointWriteError (one line: the path and the system's reason) when the file cannot
    be written; the previous checkpoints are left as they were."""
    path = project.root / checkpoint_name(state.step)
    try:
        record = resume_record(state, world_size=world_size, plan=plan)
        with inference_weights(state):  # state_dict: the averaged weights when the run averages
            save_model(path, state.model, state.step, epoch=state.epoch,
                       optimizer_states=[state.optimizer.state_dict()], lr_schedulers=[state.scheduler.state_dict()],
                       extra={**(extra or {}), RESUME_KEY: record})
    except OSError as e:
        last = project.latest_checkpoint()
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        raise CheckpointWriteError(f"cannot write the checkpoint {path}: {e.strerror or e}; {kept}") from None
    project.prune_checkpoints(keep)
    return path


def resume(state: TrainState, path: Path, config: Config, *, world_size: int, trust: bool = False,
           log: Callable[[str], None] = print) -> None:
    """Restore `state` from a checkpoint of this project: weights, optimizer, schedule, step, data
    position, split, scaler, random states and extras. A run with another number of processes
    restarts the data order at the next epoch (the batches per process differ)."""
    loaded = load_model(path, config, allow_unsafe=trust)
    state.model.load_state_dict(loaded.model.state_dict())
    ckpt = loaded.raw
    if ckpt.get("optimizer_states"):
        state.optimizer.load_state_dict(ckpt["optimizer_states"][0])
    if ckpt.get("lr_schedulers"):
        state.scheduler.load_state_dict(ckpt["lr_schedulers"][0])
    state.step = loaded.global_step
    record = ckpt.get(RESUME_KEY) or {}
    state.resumed = record
    state.epoch = int(record.get("data_epoch", ckpt.get("epoch") or 0))
    state.position = int(record.get("data_position", 0))
    if record and int(record.get("world_size", 1)) != world_size:
        log(f"the checkpoint was trained with {record.get('world_size')} processes and this run has "
            f"{world_size}: the data order restarts at the next epoch")
        state.epoch, state.position = state.epoch + 1, 0
    state.split = int(record.get("split", 1))
    if state.scaler is not None and record.get("scaler"):
        state.scaler.load_state_dict(record["scaler"])
    for name, saved in (record.get("extras") or {}).items():
        if name in state.extras:
            state.extras[name].load_state_dict(saved)
    restore_average(state, record, log)
    set_rng_states(record.get("rng"))
    log(f"resumed from {path} (step {state.step})")


def restore_average(state: TrainState, record: dict, log: Callable[[str], None] = print) -> None:
    """After the checkpoint's `state_dict` was loaded into state.model: with a weight average, those
    were the averages and the raw weights come from the record; a checkpoint without raw weights
    (the original's, or one trained without averaging) starts the average from its weights.
    Without a weight average this run trains on from the checkpoint's weights."""
    average = weight_average(state.extras)
    raw = record.get(RAW_WEIGHTS_KEY)
    if average is None:
        if raw is not None:
            state.model.load_state_dict(raw)
            log("this run keeps no weight average (ema_decay: 0): it trains on from the raw weights")
        return
    average.reset(state.model)
    if raw is not None:
        state.model.load_state_dict(raw)
    else:
        log("the checkpoint holds no weight average: averaging starts from its weights")


def init_weights_from(state: TrainState, path: Path, config: Config, *, trust: bool = False,
                      log: Callable[[str], None] = print) -> None:
    """Fine-tune: take the weights of any Diff-SVC checkpoint (ours or the original's) but keep this
    project's spec_min/spec_max (they describe this project's data); optimizer and step start fresh.
    The checkpoint's own config.yaml is used for its sizes when it sits beside it."""
    beside = path.parent / "config.yaml"
    # Without its own config the sizes are this project's; its singers (if any) come from its
    # spk_map, its prediction target from its record (none: the original's eps).
    source_config = beside if beside.exists() else config.replace(speakers=[], use_spk_id=False)
    try:
        loaded = load_model(path, source_config, allow_unsafe=trust, config_is_assumed=not beside.exists())
    except CheckpointError as e:
        if not beside.exists():
            raise CheckpointError(f"{e} (no config.yaml beside it, so the project's sizes were assumed)") from None
        raise
    if loaded.model.prediction != state.model.prediction:  # Trainer._setup_config makes a new project follow
        raise CheckpointError(f"--init-from: {path} was trained to predict {loaded.model.prediction} and this "
                              f"project predicts {state.model.prediction}; set prediction: "
                              f"{loaded.model.prediction} in the project's config.yaml to fine-tune it")
    weights = {k: v for k, v in loaded.model.state_dict().items() if k not in ("spec_min", "spec_max")}
    singers = carry_singer_table(state.model, loaded.model, weights)
    missing, _unexpected = state.model.load_state_dict(weights, strict=False)
    if [k for k in missing if k not in ("spec_min", "spec_max")]:
        raise CheckpointError(f"{path}: does not fit this project's model ({missing[0]} missing)")
    average = weight_average(state.extras)
    if average is not None:
        average.reset(state.model)
    log(f"initialised from {path} (trained {loaded.global_step} steps); "
        "optimizer and step start fresh, spec_min/spec_max are this data's" + (f"; {singers}" if singers else ""))


def source_prediction(path: Path, *, trust: bool = False) -> str:
    """What an --init-from checkpoint's denoiser outputs: its record, else its config.yaml's (a
    config without the key is the original's recipe), else the original's eps. Errors reading the
    file are left to init_weights_from, which names them."""
    from diffsvc.checkpoint import checkpoint_prediction
    from diffsvc.modelfile import safe_torch_load

    try:
        recorded = checkpoint_prediction(safe_torch_load(path, allow_unsafe=trust, what="checkpoint"))
    except (DiffSvcError, OSError):
        return ""
    if recorded:
        return recorded
    beside = path.parent / "config.yaml"
    if beside.exists():
        try:
            return load_config(beside).prediction
        except DiffSvcError:
            return ""
    return "eps"


def carry_singer_table(model, source, weights: dict) -> str:
    """Put into `weights` the singer table `model` needs, from `source`'s: a singer both know keeps
    its trained row; a new singer starts at the mean of the source's rows, or at zero when the
    source has one singer (so the new model starts out converting exactly as the source did).
    Returns a few words on what happened (empty for one-singer models)."""
    import torch

    from diffsvc.model.speakers import EMBEDDING_NAME, speaker_embedding_of

    key = f"fs2.{EMBEDDING_NAME}.weight"
    mine, theirs = speaker_embedding_of(model), speaker_embedding_of(source)
    weights.pop(key, None)
    if mine is None:
        return f"its singer table ({', '.join(theirs.names)}) is not used: this project has one singer" if theirs else ""
    with torch.no_grad():
        start = theirs.weight.mean(0) if theirs is not None else torch.zeros(mine.embedding_dim)
        rows, kept = [], []
        for name in mine.names:
            if theirs is not None and name in theirs.names:
                rows.append(theirs.weight[theirs.names.index(name)].detach().clone())
                kept.append(name)
            else:
                rows.append(start.detach().clone())
        weights[key] = torch.stack(rows).to(mine.weight.dtype)
    new = [n for n in mine.names if n not in kept]
    return (f"singers kept: {', '.join(kept) or 'none'}; new: {', '.join(new) or 'none'} "
            f"(new rows start at {'the mean of the trained ones' if theirs is not None else 'zero'})")


def restore_or_init(state: TrainState, project: Project, config: Config, *, init_from: Path | None,
                    world_size: int, trust: bool = False, log: Callable[[str], None] = print) -> Path | None:
    """Resume from the project's newest checkpoint, or take the weights of `init_from` for a project
    without checkpoints (refused when it has some). Returns the checkpoint resumed from."""
    latest = project.latest_checkpoint()
    if latest is not None and init_from is not None:
        raise DiffSvcError(f"--init-from: {project.root} already has checkpoints (newest {latest.name}); "
                           "pass --reset to start the project over from the given checkpoint")
    if latest is not None:
        resume(state, latest, config, world_size=world_size, trust=trust, log=log)
    elif init_from is not None:
        init_weights_from(state, Path(init_from), config, trust=trust, log=log)
    return latest
