"""TensorBoard for a training run (rank 0 only): scalars, mel images, audio.

Logs go to `models/NAME/logs/`; open them with `tensorboard --logdir models/NAME/logs`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class TrainLogger:
    """A thin wrapper over SummaryWriter that does nothing when `enabled` is False (other ranks)."""

    def __init__(self, log_dir: str | Path, enabled: bool = True):
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def mel_image(self, tag: str, target: np.ndarray, predicted: np.ndarray, step: int,
                  vmin: float = -6.0, vmax: float = 1.5) -> None:
        """Target above, sampled mel below (log10, [T, M]), on the same colour scale."""
        if self.writer is None:
            return
        import matplotlib

        matplotlib.use("Agg")  # no display on training machines
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
        for ax, mel, title in zip(axes, (target, predicted), ("target", "sampled")):
            ax.imshow(mel.T, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, interpolation="none")
            ax.set_title(title)
            ax.set_ylabel("mel bin")
        axes[-1].set_xlabel("frame")
        fig.tight_layout()
        self.writer.add_figure(tag, fig, step)
        plt.close(fig)

    def audio(self, tag: str, wav: torch.Tensor, step: int, sample_rate: int) -> None:
        if self.writer is None:
            return
        wav = wav.detach().float().cpu().clamp(-1, 1).reshape(1, -1)
        self.writer.add_audio(tag, wav, step, sample_rate=sample_rate)

    def text(self, tag: str, text: str, step: int) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
