"""The f0 curve as a CSV of `time_s,f0_hz` (0 Hz = unvoiced), written for editing and read back.

Reading accepts any time grid (a pitch editor may thin or resample the rows) and what a
spreadsheet saves back (a UTF-8 BOM; `;` or tab between columns, then decimal commas); the curve is
interpolated onto the mel frame grid, linearly between voiced rows; a frame whose nearest row is
unvoiced stays unvoiced, so editing a note never smears pitch into a pause.

A curve must cover the song's voiced stretches (`F0Curve.require_covers`): one that stops short
is refused with what it covers and what the song needs, and so is one running far past the song's
end (another song's, or times in milliseconds), unless padding is asked for (--f0-pad),
which holds its first and last values over the rest.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
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


#: how far a curve may stop short of a voiced stretch's edge: the slicer keeps 0.2 s of the
#: surrounding pause on each voiced stretch (split_for_inference), plus rounding to frames
COVER_TOLERANCE_S = 0.25
#: how far a curve may run past the song's end (at least; 10 % of the song for long ones): an
#: editor may keep a little tail, a curve of another song or in milliseconds runs far past
OVERRUN_S = 1.0


@dataclass(frozen=True)
class F0Curve:
    """The rows of an f0 CSV: times [R] in seconds (sorted) and f0 [R] in Hz (0 = unvoiced)."""

    path: Path
    times: np.ndarray
    hz: np.ndarray

    @property
    def start_s(self) -> float:
        return float(self.times[0])

    @property
    def end_s(self) -> float:
        return float(self.times[-1])

    def require_covers(self, start_s: float, end_s: float, *, song_s: float | None = None, pad: bool = False) -> None:
        """Raise DiffSvcError (one line) unless the rows reach from `start_s` to `end_s` (the song's
        voiced span, seconds) within COVER_TOLERANCE_S and, when the song's length `song_s` is given,
        stop within OVERRUN_S of its end (a curve running far past it is another song's, or its
        times are not in seconds: the song would take only its first rows); `pad` accepts any curve."""
        if pad:
            return
        if song_s is not None and self.end_s > song_s + max(OVERRUN_S, 0.1 * song_s):
            raise DiffSvcError(f"{self.path}: the f0 curve runs to {self.end_s:.2f} s, but the song is {song_s:.2f} s "
                               "long (another song's curve, or times not in seconds?); give this song's curve "
                               "(--f0-out writes one to edit) or pass --f0-pad to use it as it is")
        if self.start_s <= start_s + COVER_TOLERANCE_S and self.end_s >= end_s - COVER_TOLERANCE_S:
            return
        raise DiffSvcError(f"{self.path}: the f0 curve covers {self.start_s:.2f}-{self.end_s:.2f} s, but the song "
                           f"has voiced audio from {start_s:.2f} s to {end_s:.2f} s; give a curve over the whole "
                           "song (--f0-out writes one to edit) or pass --f0-pad to hold its ends")

    def on_grid(self, n_frames: int, hop_size: int, sample_rate: int) -> np.ndarray:
        """f0 in Hz, float32 [n_frames] on the mel grid (ends held where the rows stop)."""
        times, hz = self.times, self.hz
        grid = frame_times(n_frames, hop_size, sample_rate)
        voiced = hz > 0
        out = np.zeros(n_frames)
        if voiced.any():
            out = np.interp(grid, times[voiced], hz[voiced])
        nearest = (np.clip(np.searchsorted(times, grid), 1, len(times) - 1) if len(times) > 1
                   else np.zeros(n_frames, int))
        if len(times) > 1:
            left_closer = np.abs(grid - times[nearest - 1]) <= np.abs(times[nearest] - grid)
            nearest = np.where(left_closer, nearest - 1, nearest)
        out[~voiced[nearest]] = 0.0
        return out.astype(np.float32)


def read_f0_csv(path: str | Path, n_frames: int, hop_size: int, sample_rate: int) -> np.ndarray:
    """f0 in Hz, float32 [n_frames] on the mel grid (no coverage check; see load_f0_csv)."""
    return load_f0_csv(path).on_grid(n_frames, hop_size, sample_rate)


def _delimiter(text: str) -> str:
    """';' or tab when the first row that is not a comment holds one (a comma-separated row of
    numbers holds neither; a ';'-separated one may hold decimal commas), else ','."""
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            for candidate in (";", "\t"):
                if candidate in line:
                    return candidate
            break
    return ","


def load_f0_csv(path: str | Path) -> F0Curve:
    """The curve's rows; DiffSvcError (one line naming the file) for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise DiffSvcError(f"{path}: f0 file not found (write one with --f0-out)")
    rows: list[tuple[float, float]] = []
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's "CSV UTF-8" starts with a BOM
    except (OSError, UnicodeDecodeError) as e:
        raise DiffSvcError(f"{path}: cannot read the f0 file ({e})") from None
    delimiter = _delimiter(text)
    for number, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1):
        if delimiter != ",":  # a spreadsheet in a locale that writes 0,5 for 0.5 separates with ; or tab
            row = [cell.replace(",", ".") for cell in row]
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
    return F0Curve(path, np.array([r[0] for r in rows]), np.array([r[1] for r in rows]))
