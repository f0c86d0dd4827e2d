"""The training loop: the original Diff-SVC recipe, plus masking, length buckets, random crops,
mixed precision, a batch size from free memory, exact resume and several processes.

Randomness is a function of the data, not of a stream: each item's diffusion step and noise come
from a generator seeded with (seed, epoch, item index), and the batch order from (seed, epoch).
So a resumed run needs only the epoch and the position within it to continue exactly, a batch
split in two after running out of memory gives the same gradients, and two processes sharing the
batches of one step agree with one process accumulating them.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from diffsvc.checkpoint import checkpoint_name, load_model, save_model
from diffsvc.config import DEFAULT_CONFIG, Config, load_config
from diffsvc.data.dataset import LengthBucketSampler, PieceDataset, collate, padding_fraction
from diffsvc.data.prepared import PreparedData
from diffsvc.errors import CheckpointError, DiffSvcError
from diffsvc.features.align import align_content_to_mel
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.training import batch_size as bs
from diffsvc.training.distributed import (DistInfo, all_reduce_max, all_reduce_min_int, average_gradients,
                                          barrier, dist_info_from_env, init_distributed, shutdown_distributed)
from diffsvc.training.logging import TrainLogger
from diffsvc.training.project import Project, check_data_matches

RESUME_KEY = "diffsvc_resume"  # our resume state inside the checkpoint; the original ignores it
LR_GAMMA = 0.5  # the original hard-codes the halving (SVC_task.py:117), it is not a config key
MAX_BAD_STEPS = 5


class TrainingStopped(DiffSvcError):
    """Training cannot go on (the loss kept being NaN/inf); the last good checkpoint is kept."""


@dataclass
class TrainOptions:
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
    global_step: int
    checkpoint: Path | None
    history: list[StepRecord] = field(default_factory=list)
    plan: bs.BatchPlan | None = None
    stopped_by_signal: bool = False
    peak_memory_bytes: int | None = None  # CUDA peak allocated


# ---------------------------------------------------------------------------------------------
# Per-item randomness


def item_seed(seed: int, epoch: int, index: int, stream: int = 0) -> int:
    """A well-mixed 63-bit seed for one item in one epoch (stream 1: validation)."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index, stream]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def item_randomness(batch: dict, *, seed: int, k_step: int, n_mels: int, masked: bool, device: torch.device,
                    stream: int = 0, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(t [B], noise [B,1,M,T]) where item i's values depend only on (seed, epoch, its index).

    An item's real frames get the same noise however long the batch is padded; padded frames get
    noise only for the original's unmasked loss (where the model is asked to predict it too)."""
    lengths = batch["lengths"].tolist()
    b, t_frames = batch["mel2ph"].shape
    g = generator or torch.Generator(device=device)
    t = torch.empty(b, dtype=torch.long, device=device)
    noise = torch.zeros(b, 1, n_mels, t_frames, device=device)
    for i, (epoch, index, length) in enumerate(zip(batch["epoch"].tolist(), batch["index"].tolist(), lengths)):
        g.manual_seed(item_seed(seed, epoch, index, stream))
        t[i] = torch.randint(0, k_step, (1,), device=device, generator=g)[0]
        # [T, M] then transposed, so frames are drawn in order
        noise[i, 0, :, :length] = torch.randn(length, n_mels, device=device, generator=g).T
        if not masked and length < t_frames:
            noise[i, 0, :, length:] = torch.randn(t_frames - length, n_mels, device=device, generator=g).T
    return t, noise


class LossModule(nn.Module):
    """GaussianDiffusion.loss as a forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: GaussianDiffusion):
        super().__init__()
        self.model = model

    def forward(self, mel, units, mel2ph, f0, lengths, t, noise):
        return self.model.loss(mel, units, mel2ph, f0, lengths, t=t, noise=noise)


def batch_loss(loss_fn: Callable, batch: dict, *, seed: int, k_step: int, n_mels: int, masked: bool,
               device: torch.device, stream: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The loss of one (device-resident) batch with its per-item randomness."""
    t, noise = item_randomness(batch, seed=seed, k_step=k_step, n_mels=n_mels, masked=masked, device=device,
                               stream=stream, generator=generator)
    lengths = batch["lengths"] if masked else None
    return loss_fn(batch["mel"], batch["units"], batch["mel2ph"], batch["f0"], lengths, t, noise)


def split_batch(batch: dict, parts: int, masked: bool) -> list[tuple[dict, float]]:
    """Cut a batch into `parts` chunks of items, each with the weight that makes the weighted sum
    of chunk losses equal the whole batch's loss (frames for the masked loss, items otherwise)."""
    b = batch["mel"].shape[0]
    parts = max(1, min(parts, b))
    if parts == 1:
        return [(batch, 1.0)]
    total = float(batch["lengths"].sum()) if masked else float(b)
    chunks = []
    for idx in torch.arange(b).chunk(parts):
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        chunk = {k: v[lo:hi] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == b else v for k, v in batch.items()}
        weight = float(chunk["lengths"].sum()) / total if masked else (hi - lo) / total
        chunks.append((chunk, weight))
    return chunks


# ---------------------------------------------------------------------------------------------
# Data


class EpochItems(Dataset):
    """PieceDataset items addressed by (epoch, index), so random crops follow the epoch even in
    persistent worker processes (which never see the main process's set_epoch)."""

    def __init__(self, dataset: PieceDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        item = self.dataset[index]
        item["index"] = index
        item["epoch"] = epoch
        return item


def collate_with_index(items: list[dict]) -> dict:
    batch = collate(items)
    batch["index"] = torch.tensor([it["index"] for it in items])
    batch["epoch"] = torch.tensor([it["epoch"] for it in items])
    return batch


class ResumableBatches:
    """The length-bucket batches of one epoch from a given position, as (epoch, index) keys."""

    def __init__(self, sampler: LengthBucketSampler):
        self.sampler = sampler
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.sampler.batches()[self.start:]:
            yield [(self.epoch, i) for i in batch]

    def __len__(self) -> int:
        return max(0, len(self.sampler.batches()) - self.start)


HOST_KEYS = ("index", "epoch")  # read as Python lists only: kept on the CPU


def to_device(batch: dict, device: torch.device) -> dict:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) and k not in HOST_KEYS else v
            for k, v in batch.items()}


def synthetic_batch(items: int, frames: int, config: Config, device: torch.device) -> dict:
    """A batch of the given size with plausible values (for measuring a step's memory)."""
    n_units = max(1, frames * config.hop_size * 16000 // config.audio_sample_rate // 320)
    mel2ph = torch.from_numpy(align_content_to_mel(n_units, frames)).long()
    return {
        "mel": torch.full((items, frames, config.audio_num_mel_bins), -3.0, device=device),
        "units": torch.randn(items, n_units, config.hidden_size, device=device),
        "mel2ph": mel2ph[None].expand(items, -1).contiguous().to(device),
        "f0": torch.full((items, frames), math.log2(220.0), device=device),
        "lengths": torch.full((items,), frames, device=device),
        "index": torch.arange(items),
        "epoch": torch.zeros(items, dtype=torch.long),
    }


# ---------------------------------------------------------------------------------------------
# Devices and precision


def pick_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DiffSvcError("--device cuda: no CUDA GPU is visible to PyTorch (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return device


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. `auto` is mixed precision on CUDA only; on the CPU,
    bf16 and fp16 autocast are there when asked for (fast on CPUs with AMX / AVX-512 BF16, slow
    elsewhere), and they run the same autocast and loss-scaler code as CUDA."""
    if device.type != "cuda":
        if name in ("bf16", "fp16") and device.type != "cpu":
            raise DiffSvcError(f"--precision {name}: mixed precision is for CUDA and the CPU; on the {device.type} "
                               "train in fp32")
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


# ---------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    def __init__(self, options: TrainOptions, on_step: Callable[[StepRecord], None] | None = None,
                 log: Callable[[str], None] | None = None):
        self.options = options
        self.on_step = on_step
        self.dist = dist_info_from_env()
        self._print = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.stop_requested = False  # agreed by every process at each step
        self._signal_flag = False  # set by this process's signal handler
        self._signals = 0
        self._bar = None
        self.logger = None
        self._vocoder_state: object = "unloaded"
        self._gt_audio_logged: set[int] = set()

    # --- messages (rank 0 only) ---
    def log(self, message: str) -> None:
        if self.dist.is_main:
            if getattr(self, "_bar", None) is not None:
                from tqdm import tqdm

                tqdm.write(message, file=sys.stderr)
            else:
                self._print(message)

    # --- setup ---
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
                project.root.mkdir(parents=True, exist_ok=True)
                project.create_config(base, data)
                self.log(f"created project {project.root} (config.yaml from {opts.base_config or DEFAULT_CONFIG} "
                         "with the data's spec_min/spec_max)")
            barrier(self.dist)
            config = project.load_config()
        check_data_matches(config, data, str(project.config_path))
        return config

    def _build(self) -> None:
        opts = self.options
        self.device = pick_device(opts.device, self.dist)
        init_distributed(self.dist, self.device)
        self.data = PreparedData.find(opts.data_dir)
        self.config = config = self._setup_config(self.data)
        self.amp_dtype = pick_precision(opts.precision, self.device)
        self.masked = config.loss_mask
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)

        self.model = GaussianDiffusion.from_config(config).to(self.device)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay,
                                           betas=(config.optimizer_adam_beta1, config.optimizer_adam_beta2))
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=config.decay_steps, gamma=LR_GAMMA)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.generator = torch.Generator(device=self.device)

        self.loss_module = LossModule(self.model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # Broadcasts rank 0's weights and checks every rank built the same model. Gradients are
            # averaged by average_gradients() (see its docstring for why not DDP's backward hooks);
            # every forward runs under no_sync().
            self.loss_fn = DistributedDataParallel(
                self.loss_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)
        else:
            self.loss_fn = self.loss_module

        self.global_step = 0
        self.epoch = 0
        self.position = 0  # batches of the current epoch already trained on
        self.split = 1  # each batch runs in this many parts (raised when a step runs out of memory)
        self.resume_state: dict = {}
        self._restore()

        self.train_set = PieceDataset(self.data, "train", crop_frames=config.crop_frames, seed=config.seed,
                                      max_frames=config.max_frames, max_input_tokens=config.max_input_tokens)
        if len(self.train_set) == 0:
            raise DiffSvcError(f"{self.data.root}: no training pieces in the prepared data; "
                               "run `diffsvc preprocess` on a folder of recordings")
        self.valid_set = PieceDataset(self.data, "valid", crop_frames=0, seed=config.seed, max_frames=config.max_frames,
                                      max_input_tokens=config.max_input_tokens)
        self.lengths = [self.train_set.frames(i) for i in range(len(self.train_set))]
        self.plan = self._batch_plan()
        self.sampler = LengthBucketSampler(self.lengths, self.plan.max_tokens, self.plan.max_sentences, shuffle=True,
                                           seed=config.seed, rank=self.dist.rank, world_size=self.dist.world_size)
        self.batches = ResumableBatches(self.sampler)
        workers = config.ds_workers if opts.workers is None else opts.workers
        self.loader = DataLoader(EpochItems(self.train_set), batch_sampler=self.batches, num_workers=workers,
                                 collate_fn=collate_with_index, pin_memory=self.device.type == "cuda",
                                 persistent_workers=workers > 0)
        self.max_steps = opts.max_steps if opts.max_steps is not None else config.max_updates
        self.logger = TrainLogger(self.options.project.logs_dir, enabled=self.dist.is_main)

    # --- resume / init ---
    def _restore(self) -> None:
        opts, project = self.options, self.options.project
        latest = project.latest_checkpoint()
        if latest is not None and opts.init_from is not None:
            raise DiffSvcError(f"--init-from: {project.root} already has checkpoints (newest {latest.name}); "
                               "pass --reset to start the project over from the given checkpoint")
        if latest is not None:
            loaded = load_model(latest, self.config, allow_unsafe=opts.trust_checkpoint)
            self.model.load_state_dict(loaded.model.state_dict())
            ckpt = loaded.raw
            if ckpt.get("optimizer_states"):
                self.optimizer.load_state_dict(ckpt["optimizer_states"][0])
            if ckpt.get("lr_schedulers"):
                self.scheduler.load_state_dict(ckpt["lr_schedulers"][0])
            self.global_step = loaded.global_step
            state = ckpt.get(RESUME_KEY) or {}
            self.resume_state = state
            self.epoch = int(state.get("data_epoch", ckpt.get("epoch") or 0))
            self.position = int(state.get("data_position", 0))
            if state and int(state.get("world_size", 1)) != self.dist.world_size:
                self.log(f"the checkpoint was trained with {state.get('world_size')} processes and this run has "
                         f"{self.dist.world_size}: the data order restarts at the next epoch")
                self.epoch, self.position = self.epoch + 1, 0
            self.split = int(state.get("split", 1))
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            _set_rng_states(state.get("rng"))
            self.log(f"resumed from {latest} (step {self.global_step})")
        elif opts.init_from is not None:
            self._init_from(Path(opts.init_from))

    def _init_from(self, path: Path) -> None:
        """Fine-tune: take the weights and schedule of any Diff-SVC checkpoint (ours or the original's)
        but keep this project's spec_min/spec_max (they describe this project's data)."""
        beside = path.parent / "config.yaml"
        config = beside if beside.exists() else self.config
        try:
            loaded = load_model(path, config, allow_unsafe=self.options.trust_checkpoint)
        except CheckpointError as e:
            if config is self.config:
                raise CheckpointError(f"{e} (no config.yaml beside it, so the project's sizes were assumed)") from None
            raise
        state = {k: v for k, v in loaded.model.state_dict().items() if k not in ("spec_min", "spec_max")}
        missing, _unexpected = self.model.load_state_dict(state, strict=False)
        if [k for k in missing if k not in ("spec_min", "spec_max")]:
            raise CheckpointError(f"{path}: does not fit this project's model ({missing[0]} missing)")
        self.log(f"initialised from {path} (trained {loaded.global_step} steps); "
                 "optimizer and step start fresh, spec_min/spec_max are this data's")

    # --- batch size ---
    def _batch_plan(self) -> bs.BatchPlan:
        config, opts = self.config, self.options
        longest = max(self.lengths)
        if opts.batch_size is not None:
            if opts.batch_size < 1:
                raise DiffSvcError("--batch-size must be at least 1")
            return bs.plan_for_items(opts.batch_size, longest, opts.batch_size * longest, "--batch-size")
        saved = self.resume_state.get("batch_plan")
        if saved:
            return bs.BatchPlan(int(saved["max_sentences"]), int(saved["max_tokens"]), "kept from the checkpoint")
        if self.device.type != "cuda":
            items = min(bs.CPU_DEFAULT_BATCH, config.max_sentences)
            return bs.plan_for_items(items, longest, config.max_tokens, f"{self.device.type} default")
        items = self._items_from_memory(longest)
        items = all_reduce_min_int(items, self.dist, self.device)  # every rank must cut the same batches
        return bs.plan_for_items(items, longest, items * longest, "from free GPU memory")

    def _items_from_memory(self, frames: int) -> int:
        config = self.config

        def step(n: int) -> None:
            batch = synthetic_batch(n, frames, config, self.device)
            with self._autocast():
                loss = batch_loss(self.loss_module, batch, seed=config.seed, k_step=self.model.K_step,
                                  n_mels=self.model.n_mels, masked=self.masked, device=self.device,
                                  generator=self.generator)
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            del loss, batch

        samples = []
        for n in (1, 2, 4):
            try:
                samples += bs.measure_step_memory(step, self.device, [n], frames)
            except Exception as e:  # noqa: BLE001 - only running out of memory is expected here
                if not bs.is_out_of_memory(e):
                    raise
                break
            finally:
                self.model.zero_grad(set_to_none=True)
        if len(samples) < 2:
            raise DiffSvcError(f"not enough GPU memory for a batch of two items of {frames} frames; lower "
                               "crop_frames in the project's config.yaml or pass --batch-size 1")
        line = bs.fit_memory_line(samples)
        param_bytes = sum(p.numel() * p.element_size() for p in self.params)
        # AdamW keeps two moments per weight; several processes also need a flat buffer of gradients
        extra = 2 * param_bytes + (param_bytes if self.dist.enabled else 0)
        available = bs.available_cuda_bytes(self.device)
        items = bs.choose_batch_size(available, line, frames, extra_fixed_bytes=extra,
                                     margin=self.options.memory_margin, max_items=config.max_sentences)
        self.log(f"memory: {line.per_frame / 2**20:.2f} MiB per frame + {line.fixed / 2**30:.2f} GiB fixed, "
                 f"{available / 2**30:.1f} GiB available -> {items} items of {frames} frames")
        if items < 1:
            raise DiffSvcError(f"not enough GPU memory for one item of {frames} frames; lower crop_frames in the "
                               "project's config.yaml")
        return items

    # --- one optimizer step ---
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _no_sync(self):
        return self.loss_fn.no_sync() if self.dist.enabled else contextlib.nullcontext()

    def _forward_backward(self, batches: list[dict]) -> torch.Tensor:
        """Accumulate the gradients of `batches` (one optimizer step), each batch in self.split parts;
        on running out of memory, double the parts and redo the step from clean gradients."""
        while True:
            self.optimizer.zero_grad(set_to_none=True)
            try:
                total = torch.zeros((), device=self.device)
                with self._no_sync():
                    for batch in batches:
                        for chunk, weight in split_batch(batch, self.split, self.masked):
                            with self._autocast():
                                loss = batch_loss(self.loss_fn, chunk, seed=self.config.seed, k_step=self.model.K_step,
                                                  n_mels=self.model.n_mels, masked=self.masked, device=self.device,
                                                  generator=self.generator)
                            scaled = loss.float() * (weight / len(batches))
                            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
                            total += scaled.detach()
                return total
            except Exception as e:  # noqa: BLE001 - only running out of memory is retried
                if not bs.is_out_of_memory(e):
                    raise
                items = max(b["mel"].shape[0] for b in batches)
                self.optimizer.zero_grad(set_to_none=True)
                loss = scaled = None  # noqa: F841 - drop references so the memory can be freed
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.split >= items:
                    raise DiffSvcError(f"out of memory even with one item per part (batch of {items}); lower "
                                       "crop_frames in the project's config.yaml") from None
                self.split = min(self.split * 2, items)
                self.log(f"step {self.global_step + 1}: out of memory with {items} items; retrying it in "
                         f"{self.split} parts (and so on from now)")

    def _step(self, batches: list[dict]) -> tuple[bool, float, float]:
        """One optimizer step. Returns (good, loss, grad norm); a bad step changes nothing."""
        total = self._forward_backward(batches)
        average_gradients(self.params, self.dist)
        loss = float(total)
        flags = all_reduce_max([float(self._signal_flag), float(not math.isfinite(loss))], self.dist, self.device)
        self.stop_requested = bool(flags[0])
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        clip = self.config.clip_grad_norm if self.config.clip_grad_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
        bad = bool(flags[1]) or (self.scaler is None and not math.isfinite(grad_norm))
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            return False, loss, grad_norm
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips by itself when fp16 gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.global_step += 1
        return True, loss, grad_norm

    # --- the data stream ---
    def _stream(self) -> Iterator[tuple[dict, int, int]]:
        """Batches forever, as (batch, epoch, position after it), starting at the saved position."""
        epoch, start = self.epoch, self.position
        while True:
            self.batches.set_position(epoch, start)
            position = start
            for batch in self.loader:
                position += 1
                yield batch, epoch, position
            epoch, start = epoch + 1, 0

    # --- checkpoints ---
    def save_checkpoint(self) -> Path | None:
        if not self.dist.is_main:
            return None
        state = {
            "data_epoch": self.epoch, "data_position": self.position, "split": self.split,
            "world_size": self.dist.world_size,
            "batch_plan": {"max_sentences": self.plan.max_sentences, "max_tokens": self.plan.max_tokens},
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": _rng_states(),
        }
        path = self.options.project.root / checkpoint_name(self.global_step)
        save_model(path, self.model, self.global_step, epoch=self.epoch,
                   optimizer_states=[self.optimizer.state_dict()], lr_schedulers=[self.scheduler.state_dict()],
                   extra={RESUME_KEY: state})
        self.options.project.prune_checkpoints(self.config.num_ckpt_keep)
        self.last_checkpoint = path
        return path

    # --- validation ---
    def validate(self) -> float | None:
        """Loss on the validation pieces (fixed noise per piece, so values compare across steps),
        and mel images (and audio when a vocoder is found) of the first num_valid_plots pieces."""
        if not self.dist.is_main or len(self.valid_set) == 0:
            return None
        self.model.eval()
        losses = []
        with torch.no_grad():
            for index in range(len(self.valid_set)):
                item = self.valid_set[index]
                item["index"], item["epoch"] = index, 0
                batch = to_device(collate_with_index([item]), self.device)
                with self._autocast():
                    loss = batch_loss(self.loss_module, batch, seed=self.config.seed, k_step=self.model.K_step,
                                      n_mels=self.model.n_mels, masked=self.masked, device=self.device, stream=1,
                                      generator=self.generator)
                losses.append(float(loss))
                if index < self.config.num_valid_plots:
                    self._plot(index, batch)
        self.model.train()
        value = float(np.mean(losses))
        self.logger.scalars({"val/loss": value}, self.global_step)
        self.logger.flush()
        return value

    def _plot(self, index: int, batch: dict) -> None:
        from diffsvc.sampling import make_sampler

        sampler = make_sampler("plms", self.model.schedule(), speedup=self.config.pndm_speedup)
        self.generator.manual_seed(item_seed(self.config.seed, 0, index, stream=2))
        mel = self.model.sample(batch["units"], batch["mel2ph"], batch["f0"], sampler, generator=self.generator)
        mel = mel.clamp(self.config.mel_vmin, self.config.mel_vmax)
        target = batch["mel"][0].float().cpu().numpy()
        self.logger.mel_image(f"mel/{index}", target, mel[0].float().cpu().numpy(), self.global_step,
                              self.config.mel_vmin, self.config.mel_vmax)
        vocoder = self._vocoder()
        if vocoder is None:
            return
        try:
            f0_hz = torch.pow(2.0, batch["f0"][0])  # interpolated f0, as the original vocoded with
            if index not in self._gt_audio_logged:
                self.logger.audio(f"audio/{index}_target", vocoder.vocode(batch["mel"][0], f0_hz), self.global_step,
                                  vocoder.sample_rate)
                self._gt_audio_logged.add(index)
            self.logger.audio(f"audio/{index}_sampled", vocoder.vocode(mel[0], f0_hz), self.global_step,
                              vocoder.sample_rate)
        except Exception as e:  # noqa: BLE001 - audio in the logs must never stop training
            self.log(f"validation audio disabled: the vocoder failed ({e})")
            self._vocoder_state = None

    def _vocoder(self):
        if self._vocoder_state == "unloaded":
            self._vocoder_state = None
            path = Path(self.config.vocoder_ckpt)
            if path.exists():
                try:
                    from diffsvc.vocoder import load_vocoder

                    vocoder = load_vocoder(path, self.device)
                    vocoder.check_config(self.config)
                    self._vocoder_state = vocoder
                except Exception as e:  # noqa: BLE001 - audio in the logs must never stop training
                    self.log(f"validation audio disabled: cannot use the vocoder at {path} ({e})")
        return self._vocoder_state

    # --- signals ---
    @contextlib.contextmanager
    def _signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            self._signals += 1
            if self._signals > 1 and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._signal_flag = True
            self.log(f"{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
                     "(Ctrl-C again to quit at once)")

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    # --- the loop ---
    def run(self) -> TrainResult:
        try:
            if not hasattr(self, "model"):  # a caller may have built it already (to look before training)
                self._build()
            with self._signal_handlers():
                return self._loop()
        finally:
            if self.logger is not None:
                self.logger.close()
            shutdown_distributed()

    def _loop(self) -> TrainResult:
        config = self.config
        self.last_checkpoint = self.options.project.latest_checkpoint()
        self.saved_step = self.global_step if self.last_checkpoint is not None else None
        result = TrainResult(self.global_step, self.last_checkpoint, plan=self.plan)
        self._report_start()
        if self.global_step >= self.max_steps:
            self.log(f"already at step {self.global_step} (>= {self.max_steps}); nothing to do")
            return result
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._bar = None
        if self.options.progress and self.dist.is_main:
            from tqdm import tqdm

            self._bar = tqdm(total=self.max_steps, initial=self.global_step, unit="step", dynamic_ncols=True,
                             file=sys.stderr)
        stream = self._stream()
        bad_in_a_row = 0
        window_start, window_steps = time.perf_counter(), 0
        try:
            while self.global_step < self.max_steps and not self._should_stop():
                t0 = time.perf_counter()
                group = []
                for _ in range(config.accumulate_grad_batches):
                    try:
                        batch, epoch, position = next(stream)
                    except RuntimeError:
                        if self._signal_flag:  # a Ctrl-C also reaches the loader's workers
                            break
                        raise
                    group.append(to_device(batch, self.device))
                if len(group) < config.accumulate_grad_batches:
                    break
                good, loss, grad_norm = self._step(group)
                self.epoch, self.position = epoch, position
                if not good:
                    bad_in_a_row += 1
                    self.log(f"step {self.global_step + 1}: loss {loss} / gradient norm {grad_norm}: not finite; "
                             f"step skipped ({bad_in_a_row} in a row)")
                    if bad_in_a_row >= self.options.max_bad_steps:
                        where = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                                 else "no checkpoint was written yet")
                        raise TrainingStopped(
                            f"training stopped: the loss was not finite for {bad_in_a_row} steps in a row at step "
                            f"{self.global_step}; {where}. Check the data, or lower lr in "
                            f"{self.options.project.config_path}, or train with --precision fp32")
                    continue
                bad_in_a_row = 0
                record = StepRecord(
                    step=self.global_step, loss=loss, items=[i for b in group for i in b["index"].tolist()],
                    epoch=epoch, grad_norm=grad_norm, lr=self.scheduler.get_last_lr()[0],
                    batch_items=sum(b["mel"].shape[0] for b in group),
                    real_frames=int(sum(int(b["lengths"].sum()) for b in group)),
                    padded_frames=int(sum(b["mel2ph"].numel() for b in group)), seconds=time.perf_counter() - t0)
                result.history.append(record)
                window_steps += 1
                if self.global_step % config.log_interval == 0:
                    now = time.perf_counter()
                    self.logger.scalars({"train/loss": loss, "train/lr": record.lr, "train/grad_norm": grad_norm,
                                         "train/batch_size": record.batch_items,
                                         "train/steps_per_sec": window_steps / max(now - window_start, 1e-9)},
                                        self.global_step)
                    window_start, window_steps = now, 0
                if self._bar is not None:
                    self._bar.update(1)
                    self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record.lr:.2e}", batch=record.batch_items,
                                          refresh=False)
                if self.on_step is not None:
                    self.on_step(record)
                if self.global_step % config.val_check_interval == 0:
                    self._validate_and_save()
            if self.stop_requested:
                result.stopped_by_signal = True
            if self.saved_step != self.global_step:  # the same on every rank
                self._validate_and_save(validate=False)
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        if self.device.type == "cuda":
            result.peak_memory_bytes = int(torch.cuda.max_memory_allocated(self.device))
        result.global_step = self.global_step
        result.checkpoint = self.last_checkpoint
        self.log(f"{'stopped' if result.stopped_by_signal else 'done'} at step {self.global_step}; "
                 f"checkpoint {self.last_checkpoint}")
        return result

    def _should_stop(self) -> bool:
        # One process stops at once; several stop together at the step after the signal, when
        # they have all seen the flag (an all-reduce in _step), so none waits for the others.
        if not self.dist.enabled and self._signal_flag:
            self.stop_requested = True
        return self.stop_requested

    def _validate_and_save(self, validate: bool = True) -> None:
        if validate:
            value = self.validate()
            if value is not None:
                self.log(f"step {self.global_step}: validation loss {value:.4f}")
        path = self.save_checkpoint()
        self.saved_step = self.global_step
        barrier(self.dist)  # nobody runs ahead while rank 0 validates and writes
        if path is not None:
            self.log(f"saved {path}")

    def _report_start(self) -> None:
        plan, lengths = self.plan, self.lengths
        batches = self.sampler.batches()
        pad = padding_fraction(lengths, batches) if batches else 0.0
        precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16 with a loss scaler"}[self.amp_dtype]
        procs = f", {self.dist.world_size} processes" if self.dist.enabled else ""
        split = f", each in {self.split} parts" if self.split > 1 else ""
        self.log(f"batch: up to {plan.max_sentences} items / {plan.max_tokens} frames ({plan.reason}){split}; "
                 f"{len(batches)} batches per epoch{procs}, {pad:.0%} padding; {precision} on {self.device}; "
                 f"loss {'masked' if self.masked else 'unmasked (original)'}")
        self.logger.text("run", f"batch {plan.max_sentences} items ({plan.reason}); {precision}; "
                         f"world size {self.dist.world_size}", self.global_step)


def _rng_states() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    np_state = np.random.get_state()
    state["numpy"] = [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                      int(np_state[3]), float(np_state[4])]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_states(state: dict | None) -> None:
    """Restore the global generators (the loop itself draws from per-item seeds, but code we call
    may use the globals)."""
    if not state:
        return
    with contextlib.suppress(Exception):  # a checkpoint from another machine may lack some of them
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if torch.cuda.is_available() and state.get("cuda"):
            torch.cuda.set_rng_state_all(state["cuda"])


def train(options: TrainOptions, on_step: Callable[[StepRecord], None] | None = None,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Create or continue the project and train until max_steps (or a signal)."""
    return Trainer(options, on_step=on_step, log=log).run()


__all__ = ["TrainOptions", "TrainResult", "StepRecord", "Trainer", "TrainingStopped", "train", "batch_loss",
           "item_randomness", "item_seed", "split_batch", "LossModule"]
