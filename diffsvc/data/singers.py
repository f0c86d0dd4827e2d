"""Multi-singer datasets: which singer each recording belongs to, and what preprocess says per singer.

A raw folder holding only sub-folders, two or more of which hold audio, is a multi-singer dataset:

    raw/alto/take1.wav           singer "alto"
    raw/alto/session2/x.flac     still "alto" (deeper folders stay inside their singer)
    raw/Tenor Ñ/y.wav            singer "Tenor Ñ" (any Unicode name)

A raw folder with audio directly inside it, or with a single sub-folder, is one singer, as before
(all of its audio, at any depth). Audio directly inside beside two or more sub-folders that hold audio
is most likely a stray file among singer folders: the dataset check warns, naming those files (and
preprocess asks before going on when run in a terminal); it is not refused, as one singer's
sessions in sub-folders with a few takes beside them is a real one-singer layout.

The singer table is the sorted list of names, in Unicode NFC (model.speakers.singer_name); a
singer's index is its position there (`Manifest.speakers`, then the project's `speakers` and the
checkpoints' spk_map).
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Iterable

import numpy as np

from diffsvc.data.report import duration
from diffsvc.model.speakers import singer_name

MIN_SINGER_SECONDS = 120.0  # less audio than this per singer after slicing gets a warning


def detect_singers(sources: Iterable[str]) -> list[str]:
    """The singer table for the audio files' paths relative to the raw folder (forward slashes):
    the sorted names of the top-level sub-folders when there are two or more and no audio sits
    directly in the raw folder; [] (one singer) otherwise. Names are NFC (speakers.singer_name), so
    a folder made on macOS (NFD) gives the name a keyboard types."""
    tops = set()
    for source in sources:
        head, sep, _rest = source.partition("/")
        if not sep:
            return []  # audio directly in raw/: a one-singer dataset as before
        tops.add(singer_name(head))
    return sorted(tops) if len(tops) >= 2 else []


def audio_beside_singer_folders(sources: Iterable[str]) -> list[str]:
    """The audio files directly in the raw folder when two or more sub-folders hold audio too (sorted;
    [] otherwise). Such a folder is read as one singer (detect_singers), which is right for one
    singer's sessions in sub-folders, and wrong, the voices mixed in one, for singer folders with a
    stray file beside them: the dataset check warns and names them (format_singer_check)."""
    flat, tops = [], set()
    for source in sources:
        head, sep, _rest = source.partition("/")
        if sep:
            tops.add(head)
        else:
            flat.append(source)
    return sorted(flat) if flat and len(tops) >= 2 else []


def singer_of(source: str, singers: list[str]) -> str | None:
    """The singer of a source path (relative to the raw folder), or None for a one-singer dataset."""
    if not singers:
        return None
    head = singer_name(source.partition("/")[0])
    return next((s for s in singers if singer_name(s) == head), None)


def choose_valid_per_singer(pieces: list[tuple[str, str]], count: int | None, seed: int, default_count) -> set[str]:
    """Validation ids drawn from every singer: `pieces` are (piece id, singer); `count` per singer
    (None: default_count(that singer's pieces)); each singer keeps at least one training piece."""
    by_singer: dict[str, list[str]] = defaultdict(list)
    for pid, singer in pieces:
        by_singer[singer].append(pid)
    chosen: set[str] = set()
    for singer in sorted(by_singer):
        ids = sorted(by_singer[singer])
        n = default_count(len(ids)) if count is None else count
        n = max(0, min(n, len(ids) - 1))
        chosen |= set(random.Random(f"{seed}:{singer}").sample(ids, n))
    return chosen


def singer_stats(f0s_by_singer: dict[str, list[np.ndarray]], seconds: dict[str, float],
                 pieces: dict[str, int]) -> dict[str, dict]:
    """{singer: {seconds, pieces, f0_median_hz, f0_p05_hz, f0_p95_hz, f0_log2_mean, f0_log2_std}}
    over the training pieces' voiced frames (what `infer --key auto` aims at per singer)."""
    out = {}
    for singer in sorted(seconds):
        entry: dict = {"seconds": float(seconds[singer]), "pieces": int(pieces.get(singer, 0))}
        f0s = f0s_by_singer.get(singer, [])
        voiced = np.concatenate([f[f > 0] for f in f0s]) if f0s else np.zeros(0)
        if voiced.size:
            log2 = np.log2(voiced)
            entry.update(f0_median_hz=float(np.median(voiced)), f0_p05_hz=float(np.percentile(voiced, 5)),
                         f0_p95_hz=float(np.percentile(voiced, 95)), f0_log2_mean=float(log2.mean()),
                         f0_log2_std=float(log2.std()))
        out[singer] = entry
    return out


def format_singer_check(singers: list[str], files: list, minimum: float = MIN_SINGER_SECONDS,
                        beside: list[str] | None = None) -> list[str]:
    """Dataset-check lines per singer: files, duration, pieces; a warning below `minimum` seconds.
    `files` are report.SourceFacts. `beside`: audio_beside_singer_folders (a warning naming them)."""
    if beside:
        folders = sorted({f.source.partition("/")[0] for f in files if "/" in f.source})
        shown = ", ".join(beside[:5]) + (f" and {len(beside) - 5} more" if len(beside) > 5 else "")
        return [f"  WARNING: {len(beside)} audio file(s) directly in the raw folder ({shown}) beside the "
                f"sub-folders {', '.join(folders)}: the whole folder is read as ONE singer, every voice mixed "
                "in one; for one singer per sub-folder move those files into their singer's folder "
                "(raw/<singer>/), else they make it one singer"]
    if not singers:
        return []
    lines = [f"  {len(singers)} singers (one per sub-folder of the raw folder):"]
    for singer in singers:
        mine = [f for f in files if singer_of(f.source, singers) == singer]
        sliced = sum(f.sliced_seconds for f in mine)
        line = (f"    {singer}: {len(mine)} file(s), {duration(sum(f.duration for f in mine))}, "
                f"{sum(f.pieces for f in mine)} piece(s) ({duration(sliced)} after slicing)")
        if sliced < minimum:
            line += f"; WARNING: little audio for this singer (under {duration(minimum)}): expect a weak voice"
        lines.append(line)
    return lines


def singer_rows(stats: dict[str, dict], splits: dict[str, tuple[int, int]]) -> list[tuple[str, str]]:
    """Summary-table rows per singer: duration, training/validation pieces and f0 range."""
    rows = []
    for singer, entry in stats.items():
        train, valid = splits.get(singer, (0, 0))
        f0 = (f"; f0 {entry['f0_median_hz']:.0f} Hz ({entry['f0_p05_hz']:.0f}-{entry['f0_p95_hz']:.0f})"
              if "f0_median_hz" in entry else "")
        rows.append((f"singer {singer}", f"{duration(entry['seconds'])}, {train} train / {valid} valid pieces{f0}"))
    return rows

