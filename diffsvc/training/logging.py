"""TensorBoard for a training run (rank 0 only): scalars, mel images, audio.

Logs go to `models/NAME/logs/`; open them with `tensorboard --logdir models/NAME/logs`.
A log that cannot be written (a full disk, a read-only folder) stops training with one line
naming the folder and the system's reason (LogWriteError), not a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from pathlib import Path

import numpy as np
import torch

from diffsvc.errors import DiffSvcError


class LogWriteError(DiffSvcError):
    """The TensorBoard log folder cannot be written."""


def _guarded(method):
    """Turn an OSError from TensorBoard's writer into one LogWriteError naming the folder."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as e:
            self.failed = True
            raise LogWriteError(f"cannot write the TensorBoard log in {self.log_dir}: {e.strerror or e}") from None

    return wrapper


def _quiet_writer_thread_errors(previous):
    """A threading.excepthook that leaves out OSErrors of TensorBoard's writer thread: the writer
    raises the same error again in the training thread, where it becomes one line."""

    def hook(args):
        if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
            return
        previous(args)

    hook.previous = previous
    return hook


class TrainLogger:
    """A thin wrapper over SummaryWriter that does nothing when `enabled` is False (other ranks)."""

    def __init__(self, log_dir: str | Path, enabled: bool = True):
        self.enabled = enabled
        self.log_dir = Path(log_dir)
        self.writer = None
        self.failed = False
        self._hook = None
        if enabled:
            self._hook = threading.excepthook = _quiet_writer_thread_errors(threading.excepthook)
            self._open()

    @_guarded
    def _open(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    @_guarded
    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    @_guarded
    def mel_image(self, tag: str, target: np.ndarray, predicted: np.ndarray, step: int,
                  vmin: float = -6.0, vmax: float = 1.5, titles: tuple[str, str] = ("target", "sampled")) -> None:
        """Target above, sampled mel below (log10, [T, M]), on the same colour scale."""
        if self.writer is None:
            return
        import matplotlib

        matplotlib.use("Agg")  # no display on training machines
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
        for ax, mel, title in zip(axes, (target, predicted), titles):
            ax.imshow(mel.T, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, interpolation="none")
            ax.set_title(title)
            ax.set_ylabel("mel bin")
        axes[-1].set_xlabel("frame")
        fig.tight_layout()
        self.writer.add_figure(tag, fig, step)
        plt.close(fig)

    @_guarded
    def audio(self, tag: str, wav: torch.Tensor, step: int, sample_rate: int) -> None:
        if self.writer is None:
            return
        wav = wav.detach().float().cpu().clamp(-1, 1).reshape(1, -1)
        self.writer.add_audio(tag, wav, step, sample_rate=sample_rate)

    @_guarded
    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    @_guarded
    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Close the writer (after a write error, quietly: that error was reported already)."""
        try:
            if self.writer is not None:
                writer, self.writer = self.writer, None
                with contextlib.suppress(LogWriteError) if self.failed else contextlib.nullcontext():
                    self._close(writer)
        finally:
            if self._hook is not None and threading.excepthook is self._hook:
                threading.excepthook = self._hook.previous
            self._hook = None

    @_guarded
    def _close(self, writer) -> None:
        writer.close()
