"""The f0 curve as a CSV of `time_s,f0_hz` (0 Hz = unvoiced), written for editing and read back.

Reading accepts any time grid (a pitch editor may thin or resample the rows): the curve is
interpolated onto the mel frame grid, linearly between voiced rows; a frame whose nearest row is
unvoiced stays unvoiced, so editing a note never smears pitch into a pause.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from diffsvc.errors import DiffSvcError
from diffsvc.fileio import atomic_write_text

HEADER = ("time_s", "f0_hz")


def frame_times(n_frames: int, hop_size: int, sample_rate: int) -> np.ndarray:
    """Time of mel frame i: the start of its hop (the grid the f0 extractors use)."""
    return np.arange(n_frames) * hop_size / sample_rate


def write_f0_csv(path: str | Path, f0_hz: np.ndarray, hop_size: int, sample_rate: int) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for t, f in zip(frame_times(len(f0_hz), hop_size, sample_rate), np.asarray(f0_hz, dtype=np.float64)):
        writer.writerow((f"{t:.6f}", f"{f:.3f}"))
    return atomic_write_text(path, out.getvalue())


def read_f0_csv(path: str | Path, n_frames: int, hop_size: int, sample_rate: int) -> np.ndarray:
    """f0 in Hz, float32 [n_frames] on the mel grid."""
    path = Path(path)
    if not path.is_file():
        raise DiffSvcError(f"{path}: f0 file not found (write one with --f0-out)")
    rows: list[tuple[float, float]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DiffSvcError(f"{path}: cannot read the f0 file ({e})") from None
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
            continue
        if number == 1 and row[0].strip().lower().startswith("time"):
            continue
        try:
            t, f = float(row[0]), float(row[1])
        except (ValueError, IndexError):
            raise DiffSvcError(f"{path}: line {number}: expected 'time_s,f0_hz' numbers, got {','.join(row)!r}") from None
        if not (math.isfinite(t) and math.isfinite(f)) or f < 0:
            raise DiffSvcError(f"{path}: line {number}: time and f0 must be finite and f0 >= 0")
        rows.append((t, f))
    if not rows:
        raise DiffSvcError(f"{path}: no f0 rows found (expected a CSV of time_s,f0_hz)")
    rows.sort()
    times = np.array([r[0] for r in rows])
    hz = np.array([r[1] for r in rows])
    grid = frame_times(n_frames, hop_size, sample_rate)
    voiced = hz > 0
    out = np.zeros(n_frames)
    if voiced.any():
        out = np.interp(grid, times[voiced], hz[voiced])
    nearest = np.clip(np.searchsorted(times, grid), 1, len(times) - 1) if len(times) > 1 else np.zeros(n_frames, int)
    if len(times) > 1:
        left_closer = np.abs(grid - times[nearest - 1]) <= np.abs(times[nearest] - grid)
        nearest = np.where(left_closer, nearest - 1, nearest)
    out[~voiced[nearest]] = 0.0
    return out.astype(np.float32)
