"""`--plot`: a PNG beside the output with the input mel, the output mel and the f0 curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffsvc.fileio import atomic_path


def f0_axis(ax) -> None:
    """A log-frequency f0 axis labelled in plain Hz (200, 300; not 2 x 10^2, matplotlib's default
    for a log axis that spans less than a decade, which is what a sung f0 curve does)."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def write_plot(path: Path, mel_in: np.ndarray, mel_out: np.ndarray, f0_in_hz: np.ndarray, f0_out_hz: np.ndarray,
               hop_size: int, sample_rate: int, title: str = "") -> Path:
    """mels [T, M] log10; f0 [T] Hz (0 = unvoiced, drawn as gaps)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    seconds = len(f0_in_hz) * hop_size / sample_rate
    extent = (0, seconds, 0, mel_in.shape[1])
    fig, axes = plt.subplots(3, 1, figsize=(12, 8), sharex=True)
    vmin, vmax = float(np.min(mel_in)), float(np.max(mel_in))
    for ax, mel, label in ((axes[0], mel_in, "input mel (log10)"), (axes[1], mel_out, "output mel (log10)")):
        ax.imshow(mel.T, origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=vmax, cmap="magma")
        ax.set_ylabel("mel bin")
        ax.set_title(label, fontsize=9)
    t = np.arange(len(f0_in_hz)) * hop_size / sample_rate
    axes[2].plot(t, np.where(f0_in_hz > 0, f0_in_hz, np.nan), label="input f0", lw=1)
    axes[2].plot(t, np.where(f0_out_hz > 0, f0_out_hz, np.nan), label="conditioning f0 (after --key)", lw=1)
    f0_axis(axes[2])
    axes[2].set_ylabel("Hz")
    axes[2].set_xlabel("seconds")
    axes[2].legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
