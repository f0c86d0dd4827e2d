"""Cutting recordings at silences.

Training (`slice_audio`): pieces of about min_s..max_s seconds, cut inside pauses, long pauses
trimmed to at most `keep_silence_s` at each piece edge, stretches without any pause split at their
quietest short window, and pieces shorter than `drop_shorter_s` dropped (with the reason).

Inference (`split_for_inference`): segments tagged voiced/silent that cover the whole file with no
gap, so the output can be stitched back to the input's exact length; voiced segments are at most
`max_len_s` long.

Energies are librosa.feature.rms's on 10 ms hops (40 ms windows), computed in chunks so that
memory stays flat, and compared with a threshold in dBFS. The slicing functions take that
threshold as given; what it is comes from `SongLevel`, the one definition of silence that
preprocess and infer share:

    silence = frames below max(reference + relative_db, SILENCE_FLOOR_DB)

where `reference` is the song's own level: the REFERENCE_PERCENTILE (95th) percentile of its
frame levels above the floor (its loud singing; a percentile, not the peak, so one click or
plosive does not set it), and `relative_db` the user's --slice-db / --db (default -30 dB: a
well-levelled take, loud singing near -12 dBFS RMS, gets about the original's -40 dBFS). A song
recorded 30 dB quieter is sliced exactly like the loud take, as level-relative gates in
recording tools do. The floor keeps digital silence and hiss silent at any level. The original
compared with -40 dBFS absolute, which turned a take peaking at -40 dBFS into silence.
The level is measured with `LevelMeter`, a block at a time into a histogram of 0.01 dB bins:
memory stays flat in the song's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Piece:
    """Samples [start, end) of the input."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    def seconds(self, sr: int) -> float:
        return (self.end - self.start) / sr


@dataclass(frozen=True)
class Dropped:
    piece: Piece
    reason: str


@dataclass(frozen=True)
class Segment(Piece):
    """A stretch of the input for inference; silent ones need no conversion."""

    voiced: bool = True


@dataclass
class SliceResult:
    pieces: list[Piece] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)


@dataclass(frozen=True)
class _Energy:
    db: np.ndarray  # per frame, dBFS
    hop: int  # samples; frame i is centred on sample i*hop


def frame_energy_db(wav, sr: int, hop_s: float = 0.01, win_s: float = 0.04, *,
                    chunk_frames: int = 1000) -> _Energy:
    """RMS level per hop, as librosa.feature.rms(center=True, pad_mode="constant") computes it,
    worked out a chunk of frames at a time. Why not librosa itself: its framing squares every
    sample win/hop (4) times at once, so a 10-minute song needed ~0.5 GB here; this reads any
    sliceable `wav` (a numpy array or a SpooledAudio) in chunks, with memory flat in its length."""
    hop = max(1, int(round(hop_s * sr)))
    win = max(hop, int(round(win_s * sr)))
    n = len(wav)
    half = win // 2
    n_frames = 1 + (n + 2 * half - win) // hop if n else 0
    db = np.empty(n_frames, dtype=np.float32)
    for f0 in range(0, n_frames, chunk_frames):
        f1 = min(n_frames, f0 + chunk_frames)
        lo, hi = f0 * hop - half, (f1 - 1) * hop - half + win  # samples the chunk's frames read
        x = np.zeros(hi - lo, dtype=np.float64)
        a, b = max(0, lo), min(n, hi)
        if b > a:
            x[a - lo:b - lo] = np.asarray(wav[a:b], dtype=np.float64)
        cumulative = np.concatenate([[0.0], np.cumsum(x * x)])
        starts = np.arange(f1 - f0) * hop
        power = np.maximum(cumulative[starts + win] - cumulative[starts], 0.0) / win
        db[f0:f1] = 20.0 * np.log10(np.maximum(np.sqrt(power), 1e-10))
    return _Energy(db, hop)


SILENCE_FLOOR_DB = -70.0  # dBFS: below this is silence whatever the song's level (digital silence, hiss)
REFERENCE_PERCENTILE = 95.0  # the song's reference level: this percentile of its frame levels above the floor
DEFAULT_RELATIVE_DB = -30.0  # silence: this far below the reference (--slice-db, preprocess --db)
MOSTLY_SILENT_SHARE = 0.5  # warn when more than this share of a song's sound falls below the threshold
_BIN_DB = 0.01
_LOW_DB = -200.0  # frame_energy_db's floor (1e-10)
_BINS = int(round((20.0 - _LOW_DB) / _BIN_DB)) + 1


class LevelMeter:
    """Frame levels of a signal fed in consecutive blocks, exactly as `frame_energy_db` computes
    them on the whole signal, counted into a histogram (memory flat in the signal's length).

        meter = LevelMeter(44100)
        for block in blocks: meter.add(block)
        level = meter.level(relative_db=-40.0)
    """

    def __init__(self, sr: int, hop_s: float = 0.01, win_s: float = 0.04):
        self.hop = max(1, int(round(hop_s * sr)))
        self.win = max(self.hop, int(round(win_s * sr)))
        half = self.win // 2
        self._buf = np.zeros(half, dtype=np.float64)  # samples from position -half (centre padding)
        self._next = 0  # next frame index; frame i reads [i*hop - half, i*hop - half + win)
        self._buf_start = -half
        self.samples = 0
        self.counts = np.zeros(_BINS, dtype=np.int64)
        self._done = False

    def add(self, block) -> None:
        block = np.asarray(block, dtype=np.float64).reshape(-1)
        self.samples += len(block)
        self._buf = np.concatenate([self._buf, block])
        self._flush(len(self._buf))

    def _flush(self, available: int) -> None:
        half = self.win // 2
        first = self._next * self.hop - half - self._buf_start
        count = (available - first - self.win) // self.hop + 1 if available - first >= self.win else 0
        if count > 0:
            x = self._buf[first:first + (count - 1) * self.hop + self.win]
            cumulative = np.concatenate([[0.0], np.cumsum(x * x)])
            starts = np.arange(count) * self.hop
            power = np.maximum(cumulative[starts + self.win] - cumulative[starts], 0.0) / self.win
            db = (20.0 * np.log10(np.maximum(np.sqrt(power), 1e-10))).astype(np.float32)
            self._count(db)
            self._next += count
        keep_from = self._next * self.hop - half - self._buf_start
        self._buf = self._buf[keep_from:]
        self._buf_start += keep_from

    def _count(self, db: np.ndarray) -> None:
        idx = np.clip(np.round((db.astype(np.float64) - _LOW_DB) / _BIN_DB).astype(np.int64), 0, _BINS - 1)
        self.counts += np.bincount(idx, minlength=_BINS)

    def finish(self) -> None:
        """Count the last frames (the end is zero-padded, as frame_energy_db pads it)."""
        if self._done:
            return
        self._done = True
        n, half = self.samples, self.win // 2
        n_frames = 1 + (n + 2 * half - self.win) // self.hop if n else 0
        need = (n_frames - 1) * self.hop - half + self.win - self._buf_start if n_frames > self._next else 0
        if need > len(self._buf):
            self._buf = np.concatenate([self._buf, np.zeros(need - len(self._buf))])
        if n_frames > self._next:
            self._flush(need)

    def level(self, relative_db: float = DEFAULT_RELATIVE_DB) -> SongLevel:
        self.finish()
        return SongLevel.from_histogram(self.counts, relative_db)


@dataclass(frozen=True)
class SongLevel:
    """A song's own level and the silence threshold it gives (see the module docstring).

    reference_db: dBFS, the REFERENCE_PERCENTILE of frame levels above SILENCE_FLOOR_DB (-inf when
    no frame is above it); threshold_db: dBFS, what the slicer and the gate compare with;
    below_share: the share of the frames above the floor (the song's sound) under the threshold."""

    reference_db: float
    relative_db: float
    threshold_db: float
    frames: int
    sound_frames: int
    below_share: float

    @classmethod
    def from_histogram(cls, counts: np.ndarray, relative_db: float) -> SongLevel:
        values = _LOW_DB + np.arange(len(counts)) * _BIN_DB
        sound = values >= SILENCE_FLOOR_DB
        n_sound = int(counts[sound].sum())
        if n_sound == 0:
            return cls(-math.inf, relative_db, SILENCE_FLOOR_DB, int(counts.sum()), 0, 0.0)
        cumulative = np.cumsum(counts[sound])
        rank = math.ceil(REFERENCE_PERCENTILE / 100 * n_sound)
        reference = float(values[sound][np.searchsorted(cumulative, rank)])
        threshold = max(reference + relative_db, SILENCE_FLOOR_DB)
        below = int(counts[sound & (values < threshold)].sum())
        return cls(reference, relative_db, threshold, int(counts.sum()), n_sound, below / n_sound)

    @property
    def silent(self) -> bool:
        """Nothing above the floor: a silent recording."""
        return self.sound_frames == 0

    def warning(self, name: str, option: str) -> str | None:
        """One line when most of the song's sound falls below the threshold, naming `option`."""
        if self.silent or self.below_share <= MOSTLY_SILENT_SHARE:
            return None
        return (f"{name}: {100 * self.below_share:.0f} % of its sound lies below the silence threshold "
                f"({self.threshold_db:.1f} dBFS, {option} {self.relative_db:g} dB under its level of "
                f"{self.reference_db:.1f} dBFS) and is treated as silence; if that is singing, lower {option} "
                f"(e.g. {self.relative_db - 15:g})")


def measure_level(wav, sr: int, relative_db: float = DEFAULT_RELATIVE_DB, *, block: int = 1 << 20) -> SongLevel:
    """The SongLevel of a numpy array or any sliceable (a SpooledAudio), read `block` samples at a time."""
    meter = LevelMeter(sr)
    for start in range(0, len(wav), block):
        meter.add(wav[start:start + block])
    return meter.level(relative_db)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _quietest_sample(wav: np.ndarray, centre: int, radius: int) -> int:
    """Cut on the smallest |x| near `centre` so the cut does not click."""
    a, b = max(0, centre - radius), min(len(wav), centre + radius + 1)
    if b <= a:
        return int(np.clip(centre, 0, len(wav)))
    return a + int(np.argmin(np.abs(wav[a:b])))


@dataclass(frozen=True)
class _Layout:
    """Sound stretches separated by long pauses, with soft cut points (short pauses) inside."""

    runs: list[tuple[int, int]]  # [start, end) in samples, each with at most `keep` silence at its edges
    cuts: list[int]  # sample positions inside short pauses, usable as cut points


def _layout(wav: np.ndarray, sr: int, db: float, keep_silence_s: float, min_silence_s: float,
            energy: _Energy) -> _Layout:
    n = len(wav)
    silent = energy.db < db
    hop = energy.hop
    keep = int(keep_silence_s * sr)
    min_sil_frames = max(1, int(round(min_silence_s * sr / hop)))
    # silence runs too short to count are treated as sound (stops, consonant gaps)
    pauses = [(a, b) for a, b in _runs(silent) if b - a >= min_sil_frames or a == 0 or b == len(silent)]
    if not (~silent).any():
        return _Layout([], [])
    runs: list[tuple[int, int]] = []
    cuts: list[int] = []
    run_start = 0
    for a, b in pauses:
        sa, sb = min(n, a * hop), min(n, b * hop)  # pause in samples
        if a == 0:  # leading silence: start `keep` before the sound
            run_start = max(0, sb - keep)
            continue
        if b == len(silent):  # trailing silence
            runs.append((run_start, min(n, sa + keep)))
            run_start = None
            break
        if sb - sa > 2 * keep:  # long pause: end the run, trim the middle
            runs.append((run_start, sa + keep))
            run_start = sb - keep
        else:  # short pause: a cut point at its quietest frame
            q = a + int(np.argmin(energy.db[a:b]))
            cuts.append(_quietest_sample(wav, q * hop, hop // 2))
    if run_start is not None:
        runs.append((run_start, n))
    return _Layout([(s, e) for s, e in runs if e > s], cuts)


def _split_run(start: int, end: int, cuts: list[int], energy: _Energy, min_len: int, max_len: int,
               shortest: int, wav: np.ndarray) -> list[Piece]:
    """Cut [start, end) into pieces of at most max_len, preferring pauses, then the quietest window."""
    pieces = []
    pos = start
    inside = [c for c in cuts if start < c < end]
    while end - pos > max_len:
        window = [c for c in inside if pos + min_len <= c <= pos + max_len]
        leaves_enough = [c for c in window if end - c >= shortest]
        shorter = [c for c in inside if pos + shortest <= c < pos + min_len]
        if leaves_enough or window:
            cut = (leaves_enough or window)[0]
        elif shorter:  # a real pause makes a slightly short piece: better than cutting a note
            cut = shorter[-1]
        else:  # no pause at all: the quietest short window between min_len and max_len
            last = pos + max_len
            if end - shortest >= pos + min_len:  # leave a remainder long enough to keep
                last = min(last, end - shortest)
            a = (pos + min_len) // energy.hop
            b = max(a + 1, min(len(energy.db), last // energy.hop))
            frame = a + int(np.argmin(energy.db[a:b]))
            cut = _quietest_sample(wav, frame * energy.hop, energy.hop // 2)
            cut = int(np.clip(cut, pos + 1, pos + max_len))
        pieces.append(Piece(pos, cut))
        pos = cut
    pieces.append(Piece(pos, end))
    return pieces


def slice_audio(wav: np.ndarray, sr: int, *, db: float = -40.0, min_s: float = 10.0, max_s: float = 15.0,
                drop_shorter_s: float = 2.0, keep_silence_s: float = 0.5, min_silence_s: float = 0.3) -> SliceResult:
    """Pieces for training; see the module docstring. Sample indices refer to `wav`."""
    wav = np.asarray(wav, dtype=np.float32)
    if not 0 < min_s <= max_s:
        raise ValueError(f"need 0 < min_s ({min_s}) <= max_s ({max_s})")
    result = SliceResult()
    if len(wav) == 0:
        return result
    energy = frame_energy_db(wav, sr)
    layout = _layout(wav, sr, db, keep_silence_s, min_silence_s, energy)
    if not layout.runs:
        result.dropped.append(Dropped(Piece(0, len(wav)), f"the whole file is below {db:g} dB (silent)"))
        return result
    shortest = int(drop_shorter_s * sr)
    for start, end in layout.runs:
        for piece in _split_run(start, end, layout.cuts, energy, int(min_s * sr), int(max_s * sr), shortest, wav):
            if len(piece) < shortest:
                result.dropped.append(Dropped(piece, f"{piece.seconds(sr):.2f} s is shorter than {drop_shorter_s:g} s"))
            else:
                result.pieces.append(piece)
    return result


def split_for_inference(wav, sr: int, db: float = -40.0, max_len_s: float = 30.0, *,
                        keep_silence_s: float = 0.2, min_silence_s: float = 0.5) -> list[Segment]:
    """Voiced/silent segments covering [0, len(wav)) without gaps or overlaps.

    Silent segments are pauses longer than `min_silence_s` + 2*`keep_silence_s` minus the
    `keep_silence_s` of context left on each neighbouring voiced segment. Voiced segments longer
    than `max_len_s` are cut at short pauses or, failing those, at their quietest window.
    """
    if isinstance(wav, np.ndarray) or not hasattr(wav, "__getitem__"):
        wav = np.asarray(wav, dtype=np.float32)  # else a sliceable such as SpooledAudio, read by the slice
    n = len(wav)
    if n == 0:
        return []
    energy = frame_energy_db(wav, sr)
    # a pause becomes a silent segment only when something is left after keeping context on both sides
    layout = _layout(wav, sr, db, keep_silence_s, min_silence_s, energy)
    if not layout.runs:
        return [Segment(0, n, voiced=False)]
    max_len = max(1, int(max_len_s * sr))
    segments: list[Segment] = []
    pos = 0
    for start, end in layout.runs:
        if start > pos:
            segments.append(Segment(pos, start, voiced=False))
        for piece in _split_run(start, end, layout.cuts, energy, max_len // 2, max_len, 1, wav):
            segments.append(Segment(piece.start, piece.end, voiced=True))
        pos = end
    if pos < n:
        segments.append(Segment(pos, n, voiced=False))
    return segments
