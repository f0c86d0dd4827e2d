"""A CSV of training progress, one row per step (`step,loss,lr,grad_norm,seconds`), written as it goes.

`diffsvc train --progress-file F` passes a ProgressFile as the trainer's `on_step` callback; the
web page (`diffsvc ui`) draws its live loss curve from it. TensorBoard's event files hold the same
scalars but are flushed only every two minutes or at validation, too late for a live curve.
A resumed run appends to the same file; readers keep the last row of each step.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

HEADER = ("step", "loss", "lr", "grad_norm", "seconds")


class ProgressFile:
    """on_step callback: appends a row and flushes it, so another process can read it at once."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")
        if new:
            self._writer.writerow(HEADER)
            self._file.flush()

    def __call__(self, record) -> None:
        """record: a diffsvc.training.trainer.StepRecord."""
        self._writer.writerow((record.step, f"{record.loss:.6g}", f"{record.lr:.6g}", f"{record.grad_norm:.6g}",
                               f"{record.seconds:.4g}"))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_progress(path: str | os.PathLike) -> tuple[list[int], list[float]]:
    """(steps, losses) from a progress file, the last row of each step, in step order; empty when
    the file is missing. A half-written last line (the trainer is writing) is skipped."""
    path = Path(path)
    if not path.is_file():
        return [], []
    latest: dict[int, float] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            if len(row) < 2 or row[0] == HEADER[0]:
                continue
            try:
                step, loss = int(row[0]), float(row[1])
            except ValueError:
                continue
            if math.isfinite(loss):
                latest[step] = loss
    steps = sorted(latest)
    return steps, [latest[s] for s in steps]
