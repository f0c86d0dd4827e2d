"""Several processes (torchrun): who am I, set up and tear down, and the few collectives training needs.

`torchrun --nproc_per_node=G -m diffsvc train --project NAME` sets RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT; without them training runs as one process and every helper here is
a no-op.

No rank waits for ever. A process that is gone (killed, crashed) or stuck (a hung file system, a
stopped process) would otherwise leave the others waiting in a collective with nobody to answer:
- each collective of a training step (gradients, flags) waits at most `peer_timeout`
  (`diffsvc train --dist-timeout`, default PEER_TIMEOUT_S);
- a barrier, where the other ranks wait while rank 0 works alone (creating the project,
  validating, writing a checkpoint), waits at most max(peer_timeout, ALONE_TIMEOUT);
- joining the process group waits at most max(peer_timeout, JOIN_TIMEOUT) for every process to start.
A rank that runs out of patience, or whose connection to a peer breaks, stops with PeerLostError:
one line naming the rank and what it was waiting for (the CLI prints it, no traceback), non-zero
exit; torchrun then stops the other processes. On the CPU (gloo) the timeout reaches the waiting
call as an error (tests/test_distributed.py stops a rank and checks the line). On GPUs (NCCL) the
same bound is set on the group, and TORCH_NCCL_BLOCKING_WAIT=1 (unless set otherwise) makes a
timed-out collective raise in the waiting call instead of NCCL's watchdog aborting the process
with its own report (which it still does, after the same bound, for a collective that does not
come back through these helpers, e.g. inside DDP's constructor).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from diffsvc.errors import DiffSvcError

PEER_TIMEOUT_S = 300.0
ALONE_TIMEOUT = timedelta(minutes=30)  # the longest validation + checkpoint write rank 0 may take
JOIN_TIMEOUT = timedelta(minutes=10)  # the most the processes' start may be spread over

_peer_timeout = timedelta(seconds=PEER_TIMEOUT_S)
_lost = False  # a collective failed: the group must not be waited on again (not even to destroy it)

T = TypeVar("T")
# Errors of this process's own device, which may surface when a collective's result is read.
_NOT_A_PEER = tuple(e for e in (getattr(torch, "OutOfMemoryError", None), getattr(torch, "AcceleratorError", None))
                    if e is not None)


class PeerLostError(DiffSvcError):
    """A collective failed or timed out: another process is gone or stuck."""

    #: the CLI ends the process at once after the line: the backend's threads still wait on the lost
    #: peer, and a normal interpreter exit can abort in their destructors (gloo: "terminate called
    #: without an active exception", exit -6 instead of 2)
    exit_now = True


@contextlib.contextmanager
def peer_timeout(seconds: float) -> Iterator[None]:
    """Bound every collective of training (see the module docstring) to `seconds` inside the block."""
    global _peer_timeout
    if not (seconds > 0 and math.isfinite(seconds)):
        raise DiffSvcError(f"--dist-timeout must be a number of seconds above 0, got {seconds:g}")
    old, _peer_timeout = _peer_timeout, timedelta(seconds=seconds)
    try:
        yield
    finally:
        _peer_timeout = old


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info_from_env(env=None) -> DistInfo:
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=int(env.get("RANK", "0")), local_rank=int(env.get("LOCAL_RANK", "0")), world_size=world)


def _set_group_timeout(timeout: timedelta) -> None:
    """The bound on the default group's collectives from now on (a private torch API, present
    since 2.3; without it the bound set at init stays)."""
    from torch.distributed import distributed_c10d

    setter = getattr(distributed_c10d, "_set_pg_timeout", None)
    if setter is not None:
        setter(timeout)


def _what_went_wrong(error: BaseException, bound: timedelta) -> tuple[str, bool]:
    """torch's message (gloo, NCCL, the store) in a few plain words, and whether it was a timeout."""
    text = str(error)
    seconds = f"{bound.total_seconds():g} s"
    missing = re.search(r"Ranks? ([\d, ]+) failed to pass", text)
    if missing:
        return f"rank(s) {missing.group(1).strip()} did not arrive within {seconds}", True
    if re.search(r"timed? ?out|timeout", text, re.IGNORECASE):
        return f"no answer from the other processes within {seconds}", True
    if re.search(r"connection (reset|closed|refused)|broken pipe|end of file|socket closed", text, re.IGNORECASE):
        return "the connection to another process broke", False
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return re.sub(r"^\[[^\]]*\]\s*", "", first), False


def _peer_lost(info: DistInfo, error: BaseException, bound: timedelta, what: str = "") -> PeerLostError:
    why, timed_out = _what_went_wrong(error, bound)
    during = f" while {what}" if what else ""
    if timed_out:
        cause = (f"a process has stopped or is stuck (if it is only this slow, raise --dist-timeout, now "
                 f"{_peer_timeout.total_seconds():g} s)")
    else:
        cause = "a process has stopped or crashed"
    return PeerLostError(f"rank {info.rank} of {info.world_size} stops: {why}{during}: {cause}; the project's "
                         "newest checkpoint is kept")


def _collective(info: DistInfo, what: str, fn: Callable[[], T], *, bound: timedelta | None = None) -> T:
    """Run one collective; a failure or timeout becomes PeerLostError naming this rank and `what`.
    `bound` replaces the group's timeout for this call only."""
    global _lost
    if bound is not None:
        _set_group_timeout(bound)
    try:
        return fn()
    except RuntimeError as e:  # gloo raises plain RuntimeError, NCCL DistBackendError (a subclass)
        if isinstance(e, _NOT_A_PEER) and not isinstance(e, dist.DistError):
            raise  # this process's own device failed: not a matter of the others
        _lost = True
        raise _peer_lost(info, e, bound or _peer_timeout, what) from None
    finally:
        if bound is not None and not _lost:
            _set_group_timeout(_peer_timeout)


@contextlib.contextmanager
def peer_failures(info: DistInfo) -> Iterator[None]:
    """Turn an error of torch.distributed that did not come through the helpers here (a collective
    inside DDP's constructor, say) into the same one line."""
    try:
        yield
    except dist.DistError as e:
        if not info.enabled:
            raise
        raise _peer_lost(info, e, _peer_timeout) from None


def init_distributed(info: DistInfo, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo on the CPU) when launched by torchrun; every
    collective after that is bounded (see the module docstring)."""
    global _lost
    if not info.enabled or dist.is_initialized():
        return
    _lost = False
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    if backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")  # a timeout raises in the waiting call
    join = max(_peer_timeout, JOIN_TIMEOUT)
    try:
        dist.init_process_group(backend=backend, timeout=join, **kwargs)
    except RuntimeError as e:
        raise PeerLostError(f"rank {info.rank} of {info.world_size} could not join the others: "
                            f"{_what_went_wrong(e, join)[0]} (all processes must start within "
                            f"{join.total_seconds():g} s of each other)") from None
    _set_group_timeout(_peer_timeout)


def shutdown_distributed() -> None:
    """Leave the process group. After a lost peer the group is not waited on again: NCCL would
    wait for the collective that never finished, so it is aborted instead."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    # Called from a `finally` while an error of torch.distributed is on its way out: lost too.
    lost = _lost or isinstance(sys.exc_info()[1], dist.DistError)
    if lost and dist.get_backend() == "nccl":
        from torch.distributed import distributed_c10d

        abort = getattr(distributed_c10d, "_abort_process_group", None)
        if abort is not None:
            abort()
            return
    dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank, while rank 0 may be working alone (project setup, validation, a
    checkpoint): bounded by max(peer_timeout, ALONE_TIMEOUT)."""
    if info.enabled:
        _collective(info, "waiting for the others at a barrier (rank 0 creates the project, validates or writes a "
                    "checkpoint meanwhile)", dist.barrier, bound=max(_peer_timeout, ALONE_TIMEOUT))


def all_reduce_max(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Element-wise max over ranks (flags such as "stop now" or "loss was not finite")."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)

    def reduce() -> list[float]:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    return _collective(info, "sharing the step's flags", reduce)


def all_reduce_min_int(value: int, info: DistInfo, device: torch.device) -> int:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)

    def reduce() -> int:
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    return _collective(info, "agreeing on the batch size", reduce)


def average_gradients(parameters, info: DistInfo) -> None:
    """Average .grad over ranks with one all-reduce of a flat buffer.

    Why not DDP's own backward hooks: they reduce while backward runs, so a rank that runs out of
    memory mid-step and retries in smaller parts would leave the others waiting forever. Each rank
    accumulates its gradients locally under `no_sync()` (retrying on OOM as it needs) and they meet
    here once per optimizer step. For this model (tens of millions of weights) one flat reduce is
    cheap next to the step itself.
    """
    if not info.enabled:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    _collective(info, "averaging the gradients", lambda: dist.all_reduce(flat))
    flat /= info.world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n
