"""What `diffsvc preprocess` tells the user: the dataset check before the work, the table after it."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from diffsvc.audio.slicer import SILENCE_FLOOR_DB, SongLevel

QUIET_PEAK_DB = -30.0  # a file whose loudest sample stays below this is worth a look
CLIPPED_SHARE = 0.001  # 0.1 % of samples at full scale: audible distortion, the f0 suffers
LIST_AT_MOST = 8


@dataclass
class SourceFacts:
    """One readable source file, as the check reports it."""

    source: str
    duration: float
    sample_rate: int
    channels: int
    peak: float
    clipped: float
    gain: float
    sliced_seconds: float
    pieces: int
    dropped: list[dict] = field(default_factory=list)  # {reason, seconds}
    level: SongLevel | None = None  # its level and silence threshold, as infer measures them


@dataclass
class DatasetCheck:
    files: list[SourceFacts] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # {source, error}
    skipped: list[str] = field(default_factory=list)  # not audio
    beside_singers: list[str] = field(default_factory=list)  # audio at the top beside singer folders (singers.py)

    @property
    def total_seconds(self) -> float:
        return sum(f.duration for f in self.files)

    @property
    def sliced_seconds(self) -> float:
        return sum(f.sliced_seconds for f in self.files)

    @property
    def pieces(self) -> int:
        return sum(f.pieces for f in self.files)

    def clipped_files(self) -> list[SourceFacts]:
        return [f for f in self.files if f.clipped >= CLIPPED_SHARE]

    def quiet_files(self) -> list[SourceFacts]:
        """Low recordings (sliced like loud ones, since silence is relative; the noise is worth a look)."""
        return [f for f in self.files if not _is_silent(f) and _db(f.peak) < QUIET_PEAK_DB]

    def silent_files(self) -> list[SourceFacts]:
        return [f for f in self.files if _is_silent(f)]

    def mostly_below(self) -> list[tuple[SourceFacts, str]]:
        """Files most of whose sound falls under the silence threshold, with infer's warning line."""
        found = []
        for f in self.files:
            line = f.level.warning(f.source, "--db") if f.level is not None else None
            if line:
                found.append((f, line))
        return found

    def scaled_files(self) -> list[SourceFacts]:
        return [f for f in self.files if f.gain != 1.0]

    def dropped_by_reason(self) -> list[tuple[str, int, float]]:
        """(reason kind, count, seconds), most seconds first."""
        counts: Counter = Counter()
        seconds: Counter = Counter()
        for f in self.files:
            for d in f.dropped:
                kind = reason_kind(d["reason"])
                counts[kind] += 1
                seconds[kind] += d["seconds"]
        return sorted(((k, counts[k], seconds[k]) for k in counts), key=lambda r: -r[2])

    def has_warnings(self) -> bool:
        return bool(self.failed or self.clipped_files() or self.scaled_files() or self.mostly_below()
                    or self.beside_singers)


def reason_kind(reason: str) -> str:
    """"1.23 s is shorter than 2 s" -> "shorter than 2 s", so reasons group."""
    return re.sub(r"^[\d.]+ s is ", "", reason)


def _is_silent(f: SourceFacts) -> bool:
    if f.level is not None and f.level.silent:
        return True
    return f.pieces == 0 and any("silent" in d["reason"] for d in f.dropped)


def _db(amplitude: float) -> float:
    return 20 * math.log10(amplitude) if amplitude > 0 else -math.inf


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:LIST_AT_MOST])
    return shown + (f" and {len(items) - LIST_AT_MOST} more" if len(items) > LIST_AT_MOST else "")


def format_check(check: DatasetCheck) -> list[str]:
    """The dataset check, a few lines, printed before the slow work starts."""
    lines = [f"Dataset check: {len(check.files)} readable audio file(s), {duration(check.total_seconds)} in total"]
    rates = Counter(f.sample_rate for f in check.files)
    if rates:
        mix = ", ".join(f"{sr} Hz x{n}" for sr, n in sorted(rates.items()))
        channels = Counter(f.channels for f in check.files)
        lines.append(f"  sample rates: {mix}; channels: " + ", ".join(f"{c} x{n}" for c, n in sorted(channels.items()))
                     + " (all become 44100 Hz mono)")
    if check.skipped:
        lines.append(f"  skipped {len(check.skipped)} file(s) that are not audio: {_names(check.skipped)}")
    for entry in check.failed:
        lines.append(f"  FAILED to read {entry['source']}: {entry['error']}")
    for f in check.clipped_files():
        lines.append(f"  clipped: {f.source} ({100 * f.clipped:.2f} % of samples at full scale)")
    for f in check.scaled_files():
        lines.append(f"  over full scale: {f.source} (peak {_db(f.peak):+.1f} dBFS), scaled down to -1 dBFS")
    for f in check.quiet_files():
        lines.append(f"  very quiet: {f.source} (peak {_db(f.peak):.1f} dBFS; sliced relative to its own level, "
                     "but listen for noise)")
    for f in check.silent_files():
        lines.append(f"  silent: {f.source} (nothing above {SILENCE_FLOOR_DB:g} dBFS; no pieces)")
    for _, line in check.mostly_below():
        lines.append(f"  {line}")
    lines.append(f"  after slicing: {check.pieces} piece(s), {duration(check.sliced_seconds)} "
                 f"({_share(check.sliced_seconds, check.total_seconds)} of the audio)")
    for kind, count, seconds in check.dropped_by_reason():
        lines.append(f"  dropped {count} stretch(es), {seconds:.1f} s: {kind}")
    return lines


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole > 0 else "0 %"


def display_width(text: str) -> int:
    """Terminal columns of `text`: combining marks take none, East Asian wide and full-width
    characters two (Unicode UAX #11), others one; so a singer named "歌" or "te\u0301nor" lines up."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def format_table(rows: list[tuple[str, str]]) -> list[str]:
    width = max(display_width(k) for k, _ in rows)
    rule = "-" * (width + 2 + max(display_width(v) for _, v in rows))
    return [rule] + [f"{k}{' ' * (width - display_width(k))}  {v}" for k, v in rows] + [rule]
