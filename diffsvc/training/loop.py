"""The training loop: the original Diff-SVC recipe, plus masking, length buckets, random crops,
mixed precision, a batch size from free memory, exact resume and several processes.

A run builds or resumes its state (state.py, checkpointing.py), then repeats: take the next
batches from the resumable stream (batches.py), make one optimizer step on them (step.py), log
it, and every val_check_interval steps validate (validate.py) and save a checkpoint
(checkpointing.py), until max_steps or a signal; a run that stops saves where it stopped.
Randomness is a function of the data (randomness.py), so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from diffsvc.config import DEFAULT_CONFIG, Config, load_config
from diffsvc.data.batch import TrainingBatch
from diffsvc.data.dataset import padding_fraction
from diffsvc.data.prepared import PreparedData
from diffsvc.errors import DiffSvcError
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.training import batch_size as bs
from diffsvc.training.batches import BatchStream, TrainingData, choose_plan, synthetic_batch
from diffsvc.training.checkpointing import restore_or_init, save_checkpoint, source_prediction
from diffsvc.training.devices import PRECISION_NAMES, autocast, pick_device, pick_precision
from diffsvc.training.distributed import (DistInfo, all_reduce_min_int, barrier, dist_info_from_env,
                                          init_distributed, shutdown_distributed)
from diffsvc.training.ema import inference_weights
from diffsvc.training.logging import TrainLogger
from diffsvc.training.objective import DiffusionLoss, LossFunction
from diffsvc.training.project import Project, check_data_matches
from diffsvc.training.state import TrainState, build_state
from diffsvc.training.step import StepOutcome, StepSettings, optimizer_step
from diffsvc.training.validate import Validator
from diffsvc.training.weighting import weighting_from_config

MAX_BAD_STEPS = 5


class TrainingStopped(DiffSvcError):
    """Training cannot go on (the loss kept being NaN/inf); the last good checkpoint is kept."""


@dataclass
class TrainOptions:
    """What `diffsvc train` was asked for (the project's config.yaml holds the recipe)."""

    project: Project
    data_dir: Path
    base_config: Path | None = None  # used when the project is created; the project's config wins after
    init_from: Path | None = None
    trust_checkpoint: bool = False
    max_steps: int | None = None  # stop once this many steps in total are done (default: max_updates)
    batch_size: int | None = None  # items per batch; None: from free GPU memory (CUDA) or a CPU default
    device: str = "auto"
    workers: int | None = None  # data loader processes (default: config ds_workers)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    progress: bool = True
    max_bad_steps: int = MAX_BAD_STEPS
    memory_margin: float = bs.DEFAULT_MARGIN


@dataclass
class StepRecord:
    """One good optimizer step, as the loop reports it to `on_step` and in TrainResult.history."""

    step: int  # global step after this update
    loss: float
    items: list[int]  # dataset indices trained on (this rank), in batch order
    epoch: int
    grad_norm: float
    lr: float
    batch_items: int
    real_frames: int
    padded_frames: int
    seconds: float


@dataclass
class TrainResult:
    """Where a run ended: the step, the newest checkpoint, the good steps it made, its batch plan,
    whether a signal stopped it and (CUDA) its peak memory."""

    global_step: int
    checkpoint: Path | None
    history: list[StepRecord] = field(default_factory=list)
    plan: bs.BatchPlan | None = None
    stopped_by_signal: bool = False
    peak_memory_bytes: int | None = None  # CUDA peak allocated


LossFactory = Callable[[TrainState, Config, torch.device, DistInfo], LossFunction]


def diffusion_loss(state: TrainState, config: Config, device: torch.device, dist: DistInfo) -> LossFunction:
    """The default objective: the original's noise-prediction loss (masked when config.loss_mask),
    weighted over timesteps as config.loss_weighting says (weighting.py)."""
    return DiffusionLoss.for_model(state.model, seed=config.seed, masked=config.loss_mask, device=device,
                                   generator=state.generator, dist=dist,
                                   weighting=weighting_from_config(config, state.model))


class StopSignals:
    """SIGINT and SIGTERM ask the run to finish its step, save and stop (`requested`); a second
    Ctrl-C quits at once. Installed only in the main thread, and put back afterwards."""

    def __init__(self, log: Callable[[str], None]):
        self.requested = False
        self.count = 0
        self.log = log

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            self.count += 1
            if self.count > 1 and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.requested = True
            self.log(f"{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
                     "(Ctrl-C again to quit at once)")

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


class Trainer:
    """One training run of a project: `build()` creates the project (or reads its config),
    builds the state and resumes it from the newest checkpoint (or --init-from), `run()` trains
    until max_steps or a signal and returns a TrainResult; `validate()` validates the current
    weights.

    `make_model(config)` and `make_loss(state, config, device, dist)` swap the model and the
    objective (a speaker embedding, a distillation loss against a teacher) without another loop;
    modules in `state.extras` are checkpointed with the run."""

    def __init__(self, options: TrainOptions, on_step: Callable[[StepRecord], None] | None = None,
                 log: Callable[[str], None] | None = None, *,
                 make_model: Callable[[Config], nn.Module] = GaussianDiffusion.from_config,
                 make_loss: LossFactory = diffusion_loss):
        self.options = options
        self.on_step = on_step
        self.make_model = make_model
        self.make_loss = make_loss
        self.dist = dist_info_from_env()
        self._print = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.signals = StopSignals(self.log)
        self.stop_requested = False  # agreed by every process at each step
        self._bar = None
        self.state: TrainState | None = None
        self.logger: TrainLogger | None = None
        self.checkpoint_extra: dict = {}  # more top-level keys for each checkpoint (see save_checkpoint)

    # --- messages (rank 0 only) ---
    def log(self, message: str) -> None:
        if self.dist.is_main:
            if self._bar is not None:
                from tqdm import tqdm

                tqdm.write(message, file=sys.stderr)
            else:
                self._print(message)

    # --- building or resuming ---
    def build(self) -> TrainState:
        """Set up the device and processes, the project's config, the state (resumed from the
        newest checkpoint, or initialised from --init-from), the data stream, the logs and
        validation. Returns the state (also `self.state`)."""
        opts = self.options
        self.device = pick_device(opts.device, self.dist)
        init_distributed(self.dist, self.device)
        prepared = PreparedData.find(opts.data_dir)
        self.config = config = self._setup_config(prepared)
        self.amp_dtype = pick_precision(opts.precision, self.device)
        state = build_state(config, self.device, self.amp_dtype, make_model=self.make_model)
        self.loss = self.make_loss(state, config, self.device, self.dist)
        restore_or_init(state, opts.project, config, init_from=opts.init_from, world_size=self.dist.world_size,
                        trust=opts.trust_checkpoint, log=self.log)
        self.state = state
        self.step_settings = StepSettings(masked=config.loss_mask, clip_grad_norm=config.clip_grad_norm,
                                          amp_dtype=self.amp_dtype, device=self.device, dist=self.dist,
                                          no_sync=getattr(self.loss, "no_sync", contextlib.nullcontext), log=self.log)
        self.data = TrainingData.load(prepared, config)
        self.plan = choose_plan(longest=max(self.data.lengths), config=config, device=self.device,
                                batch_size=opts.batch_size, saved=state.resumed.get("batch_plan"),
                                items_from_memory=self._items_from_memory)
        workers = config.ds_workers if opts.workers is None else opts.workers
        self.stream = BatchStream(self.data, self.plan, seed=config.seed, dist=self.dist, workers=workers,
                                  pin_memory=self.device.type == "cuda")
        self.max_steps = opts.max_steps if opts.max_steps is not None else config.max_updates
        self.logger = TrainLogger(opts.project.logs_dir, enabled=self.dist.is_main)
        self.validator = Validator(self.data.valid_set, config, self.device, self.amp_dtype, self.logger,
                                   state.generator, log=self.log)
        return state

    def _setup_config(self, data: PreparedData) -> Config:
        project, opts = self.options.project, self.options
        barrier(self.dist)  # every rank looks before rank 0 may create it, so all take the same branch
        if project.exists():
            config = project.load_config()
            if opts.base_config is not None:
                self.log(f"using {project.config_path} (a project's own settings win; --reset to start over "
                         f"with {opts.base_config})")
        else:
            if self.dist.is_main:
                base = load_config(opts.base_config or DEFAULT_CONFIG)
                base = self._follow_source_prediction(base)
                project.root.mkdir(parents=True, exist_ok=True)
                project.create_config(base, data)
                self.log(f"created project {project.root} (config.yaml from {opts.base_config or DEFAULT_CONFIG} "
                         "with the data's spec_min/spec_max)")
            barrier(self.dist)
            config = project.load_config()
        check_data_matches(config, data, str(project.config_path))
        return config

    def _follow_source_prediction(self, base: Config) -> Config:
        """A new project started --init-from a checkpoint predicts what that checkpoint's denoiser
        was trained to output (an original model: eps), not the config's default: its output layer
        would otherwise be retrained from scratch. Said in one line when it differs."""
        if self.options.init_from is None:
            return base
        source = source_prediction(Path(self.options.init_from), trust=self.options.trust_checkpoint)
        if not source or source == base.prediction:
            return base
        self.log(f"--init-from: {self.options.init_from} predicts {source}, so this project predicts {source} too "
                 f"(not the config's {base.prediction}: that would retrain its output from scratch); the rest of "
                 "the recipe is the config's")
        return base.replace(prediction=source)

    def _local_loss(self) -> LossFunction:
        """The loss on this process's module alone (for validation and memory measurement)."""
        local = getattr(self.loss, "local", None)
        return local() if local is not None else self.loss

    def _items_from_memory(self, frames: int) -> int:
        state, loss = self.state, self._local_loss()

        def step(n: int) -> None:
            with autocast(self.device, self.amp_dtype):
                value = loss(synthetic_batch(n, frames, self.config, self.device))
            (state.scaler.scale(value) if state.scaler else value).backward()
            state.optimizer.zero_grad(set_to_none=True)

        param_bytes = sum(p.numel() * p.element_size() for p in state.params)
        try:
            items = bs.items_from_memory(step, self.device, frames, param_bytes=param_bytes,
                                         several_processes=self.dist.enabled, margin=self.options.memory_margin,
                                         max_items=self.config.max_sentences, log=self.log)
        finally:
            state.optimizer.zero_grad(set_to_none=True)
        return all_reduce_min_int(items, self.dist, self.device)  # every rank must cut the same batches

    # --- validation and checkpoints ---
    def validate(self) -> float | None:
        """The validation loss of the current weights (logged with pictures and audio of the first
        num_valid_plots pieces); None on other processes or without validation pieces."""
        if not self.dist.is_main:
            return None
        with inference_weights(self.state):  # the weight average when the run keeps one
            return self.validator(self.state.model, self._local_loss(), self.state.step)

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current state (main process only; None on the others)."""
        if not self.dist.is_main:
            return None
        path = save_checkpoint(self.state, self.options.project, world_size=self.dist.world_size, plan=self.plan,
                               keep=self.config.num_ckpt_keep, extra=self.checkpoint_extra)
        self.last_checkpoint = path
        return path

    def _validate_and_save(self, validate: bool = True) -> None:
        if validate:
            value = self.validate()
            if value is not None:
                self.log(f"step {self.state.step}: validation loss {value:.4f}")
        path = self.save_checkpoint()
        self.saved_step = self.state.step
        barrier(self.dist)  # nobody runs ahead while rank 0 validates and writes
        if path is not None:
            self.log(f"saved {path}")

    # --- the loop ---
    def run(self) -> TrainResult:
        try:
            if self.state is None:  # a caller may have built it already (to look before training)
                self.build()
            with self.signals.installed():
                return self._loop()
        finally:
            if self.logger is not None:
                self.logger.close()
            shutdown_distributed()

    def _loop(self) -> TrainResult:
        state, config = self.state, self.config
        self.last_checkpoint = self.options.project.latest_checkpoint()
        self.saved_step = state.step if self.last_checkpoint is not None else None
        result = TrainResult(state.step, self.last_checkpoint, plan=self.plan)
        self._report_start()
        if state.step >= self.max_steps:
            self.log(f"already at step {state.step} (>= {self.max_steps}); nothing to do")
            return result
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        batches = self.stream.from_position(state.epoch, state.position)
        bad_in_a_row = 0
        with self._progress_bar():
            while state.step < self.max_steps and not self._should_stop():
                started = time.perf_counter()
                taken = self._next_batches(batches, config.accumulate_grad_batches)
                if taken is None:
                    break
                group, epoch, position = taken
                outcome = optimizer_step(state, group, self.loss, self.step_settings,
                                         stop_requested=self.signals.requested)
                self.stop_requested = outcome.stop
                state.epoch, state.position = epoch, position
                if not outcome.good:
                    bad_in_a_row += 1
                    self._refuse_bad_step(outcome, bad_in_a_row)
                    continue
                bad_in_a_row = 0
                record = self._record(outcome, group, epoch, time.perf_counter() - started)
                result.history.append(record)
                self._report_step(record)
                if state.step % config.val_check_interval == 0:
                    self._validate_and_save()
            result.stopped_by_signal = self.stop_requested
            if self.saved_step != state.step:  # the same on every rank
                self._validate_and_save(validate=False)
        if self.device.type == "cuda":
            result.peak_memory_bytes = int(torch.cuda.max_memory_allocated(self.device))
        result.global_step = state.step
        result.checkpoint = self.last_checkpoint
        self.log(f"{'stopped' if result.stopped_by_signal else 'done'} at step {state.step}; "
                 f"checkpoint {self.last_checkpoint}")
        return result

    def _next_batches(self, batches: Iterator, count: int) -> tuple[list[TrainingBatch], int, int] | None:
        """The next `count` batches on the device with the epoch and position after the last one;
        None when a signal interrupted the data loader."""
        group, epoch, position = [], 0, 0
        for _ in range(count):
            try:
                batch, epoch, position = next(batches)
            except RuntimeError:
                if self.signals.requested:  # a Ctrl-C also reaches the loader's workers
                    return None
                raise
            group.append(batch.to(self.device))
        return group, epoch, position

    def _should_stop(self) -> bool:
        # One process stops at once; several stop together at the step after the signal, when
        # they have all seen the flag (an all-reduce in the step), so none waits for the others.
        if not self.dist.enabled and self.signals.requested:
            self.stop_requested = True
        return self.stop_requested

    def _refuse_bad_step(self, outcome: StepOutcome, bad_in_a_row: int) -> None:
        self.log(f"step {self.state.step + 1}: loss {outcome.loss} / gradient norm {outcome.grad_norm}: not finite; "
                 f"step skipped ({bad_in_a_row} in a row)")
        if bad_in_a_row >= self.options.max_bad_steps:
            where = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                     else "no checkpoint was written yet")
            raise TrainingStopped(
                f"training stopped: the loss was not finite for {bad_in_a_row} steps in a row at step "
                f"{self.state.step}; {where}. Check the data, or lower lr in "
                f"{self.options.project.config_path}, or train with --precision fp32")

    def _record(self, outcome: StepOutcome, group: list[TrainingBatch], epoch: int, seconds: float) -> StepRecord:
        return StepRecord(step=self.state.step, loss=outcome.loss, items=[i for b in group for i in b.index.tolist()],
                          epoch=epoch, grad_norm=outcome.grad_norm, lr=self.state.lr,
                          batch_items=sum(b.items for b in group),
                          real_frames=int(sum(int(b.lengths.sum()) for b in group)),
                          padded_frames=int(sum(b.mel2ph.numel() for b in group)), seconds=seconds)

    # --- reporting ---
    @contextlib.contextmanager
    def _progress_bar(self):
        self._bar = None
        self._window = (time.perf_counter(), 0)  # steps per second since the last scalars
        if self.options.progress and self.dist.is_main:
            from tqdm import tqdm

            self._bar = tqdm(total=self.max_steps, initial=self.state.step, unit="step", dynamic_ncols=True,
                             file=sys.stderr)
        try:
            yield
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _report_step(self, record: StepRecord) -> None:
        start, steps = self._window
        steps += 1
        if record.step % self.config.log_interval == 0:
            now = time.perf_counter()
            self.logger.scalars({"train/loss": record.loss, "train/lr": record.lr, "train/grad_norm": record.grad_norm,
                                 "train/batch_size": record.batch_items,
                                 "train/steps_per_sec": steps / max(now - start, 1e-9)}, record.step)
            start, steps = now, 0
        self._window = (start, steps)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{record.loss:.4f}", lr=f"{record.lr:.2e}", batch=record.batch_items,
                                  refresh=False)
        if self.on_step is not None:
            self.on_step(record)

    def _report_start(self) -> None:
        plan, lengths = self.plan, self.data.lengths
        batches = self.stream.epoch_batches()
        pad = padding_fraction(lengths, batches) if batches else 0.0
        precision = PRECISION_NAMES[self.amp_dtype]
        procs = f", {self.dist.world_size} processes" if self.dist.enabled else ""
        split = f", each in {self.state.split} parts" if self.state.split > 1 else ""
        self.log(f"batch: up to {plan.max_sentences} items / {plan.max_tokens} frames ({plan.reason}){split}; "
                 f"{len(batches)} batches per epoch{procs}, {pad:.0%} padding; {precision} on {self.device}; "
                 f"loss {'masked' if self.config.loss_mask else 'unmasked (original)'}")
        self.logger.text("run", f"batch {plan.max_sentences} items ({plan.reason}); {precision}; "
                         f"world size {self.dist.world_size}", self.state.step)


def train(options: TrainOptions, on_step: Callable[[StepRecord], None] | None = None,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Create or continue the project and train until max_steps (or a signal)."""
    return Trainer(options, on_step=on_step, log=log).run()
