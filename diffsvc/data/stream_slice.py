"""`slice_audio` over a stream of blocks, so a one-hour file is sliced with flat memory.

`slice_audio` needs the whole signal. Its decisions are local, though: a piece is at most
`max_s` long, and a cut inside a run of sound depends on the end of that run only within
`max_s + drop_shorter_s` of it. So we slice a window of a few blocks, keep the pieces (and drop
reasons) that end at least `margin` before the window's end, and start the next window where the
last kept item ended: a new window that starts inside sound restarts the greedy cut where
the whole-signal slicer would stand, and one that starts in a pause sees it as leading silence,
trimmed to the same `keep_silence_s`. A file shorter than the window is sliced in one call, with
results identical to `slice_audio` on the whole file. (At a seam inside a short pause the
restarted window may trim up to `keep_silence_s` of that pause: a tiny difference, never a lost note.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from diffsvc.audio.slicer import DEFAULT_RELATIVE_DB, slice_audio


@dataclass(frozen=True)
class SliceSettings:
    """Slicing settings. `db`: the silence threshold; in PreprocessOptions it is relative to each
    file's level (audio.slicer.SongLevel, the --db option), and preprocess hands `stream_slices`
    a copy holding that file's threshold in dBFS."""

    db: float = DEFAULT_RELATIVE_DB
    min_s: float = 10.0
    max_s: float = 15.0
    drop_shorter_s: float = 2.0
    keep_silence_s: float = 0.5
    min_silence_s: float = 0.3

    def as_kwargs(self) -> dict:
        return dict(db=self.db, min_s=self.min_s, max_s=self.max_s, drop_shorter_s=self.drop_shorter_s,
                    keep_silence_s=self.keep_silence_s, min_silence_s=self.min_silence_s)


@dataclass(frozen=True)
class StreamPiece:
    start: int  # samples in the whole file
    end: int
    audio: np.ndarray  # samples [start, end)


@dataclass(frozen=True)
class StreamDrop:
    start: int
    end: int
    reason: str


def stream_slices(blocks: Iterable[np.ndarray], sr: int, settings: SliceSettings, *,
                  window_s: float | None = None) -> Iterator[StreamPiece | StreamDrop]:
    """Pieces and dropped stretches of the concatenated `blocks`, in order.

    A file with no sound at all gives a single StreamDrop with the slicer's "silent" reason.
    Memory holds at most one window, one block and one unfinished piece, whatever the file length.
    """
    margin = int((settings.max_s + settings.drop_shorter_s + 2 * settings.keep_silence_s + 1.0) * sr)
    window = max(int((window_s or 4 * settings.max_s + 30) * sr), 2 * margin)
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0  # file position of buffer[0]
    heard_sound = False
    silent_reason = None
    # The slicer's energy frames sit on a grid from the buffer start: cutting the buffer only at
    # multiples of its hop keeps that grid where the whole-file slicer has it.
    hop = max(1, int(round(0.01 * sr)))
    emitted = 0  # file position where the last emitted item ended
    for block in blocks:
        buffer = np.concatenate([buffer, np.asarray(block, dtype=np.float32)])
        if len(buffer) < window:
            continue
        result = slice_audio(buffer, sr, **settings.as_kwargs())
        items = _ordered(result)
        if not result.pieces and len(result.dropped) == 1 and len(result.dropped[0].piece) == len(buffer):
            silent_reason = result.dropped[0].reason  # nothing but silence in this window
            items = []
        limit = len(buffer) - margin
        done = [it for it in items if it.end <= limit]
        for item in done:
            heard_sound = True
            if offset + item.end <= emitted:
                continue
            yield _shift(item, offset, buffer, emitted)
            emitted = offset + item.end
        cut = max((it.end for it in done), default=0)
        if not done and not any(it.start < limit for it in items):
            cut = limit  # a long pause: nothing before `limit` can become part of a piece
        cut -= cut % hop
        buffer = buffer[cut:].copy()  # copy: free the old window
        offset += cut
    if len(buffer):
        result = slice_audio(buffer, sr, **settings.as_kwargs())
        items = _ordered(result)
        silent = not result.pieces and len(result.dropped) == 1 and len(result.dropped[0].piece) == len(buffer)
        if silent:
            silent_reason = result.dropped[0].reason
            items = []
        for item in items:
            if offset + item.end <= emitted:
                continue  # already emitted before the (hop-aligned) seam
            heard_sound = True
            yield _shift(item, offset, buffer, emitted)
            emitted = offset + item.end
    if not heard_sound and silent_reason is not None:
        yield StreamDrop(0, offset + len(buffer), silent_reason)


@dataclass(frozen=True)
class _Item:
    start: int
    end: int
    reason: str | None  # None: a piece


def _ordered(result) -> list[_Item]:
    items = [_Item(p.start, p.end, None) for p in result.pieces]
    items += [_Item(d.piece.start, d.piece.end, d.reason) for d in result.dropped]
    return sorted(items, key=lambda it: (it.start, it.end))


def _shift(item: _Item, offset: int, buffer: np.ndarray, emitted: int) -> StreamPiece | StreamDrop:
    """The item at its file position; a start before the end of the last emitted item (at most
    one hop, from the aligned seam) is moved up to it so pieces never overlap."""
    start = max(item.start, emitted - offset)
    if item.reason is None:
        return StreamPiece(offset + start, offset + item.end, buffer[start:item.end].copy())
    return StreamDrop(offset + start, offset + item.end, item.reason)
