"""A song decoded once to 44.1 kHz mono float32 in a temporary file, read back by the slice.

Inference needs random access to the song (f0 per stretch, then content, mel and the silence
gate per stretch), and whole-song arrays grow with the song: a 10-minute song is 106 MB as
float32 before any copy. Spooling the decoded, resampled stream to disk keeps memory flat in
the song's length; only the stretch being worked on is in memory. Reads go through plain file
reads rather than a memory map, so the pages do not count as the process's resident memory.

    with spool_audio("song.flac", 44100) as song:
        len(song), song.peak, song[44100:88200]   # float32 numpy arrays
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from diffsvc.audio.load import _amp_to_db, iter_audio_blocks, load_audio
from diffsvc.errors import AudioError
from diffsvc.fileio import Sink

BYTES_PER_SAMPLE = 4  # float32


class SpooledAudio:
    """Read-only float32 samples in a temporary file; slicing returns numpy arrays."""

    def __init__(self, path: Path, num_samples: int, sample_rate: int, peak: float, source: Path,
                 owned_dir: tempfile.TemporaryDirectory | None = None):
        self.path = path
        self.num_samples = num_samples
        self.sample_rate = sample_rate
        self.peak = peak  # max |x|
        self.source = source
        self._dir = owned_dir
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("SpooledAudio supports contiguous slices only")
        start, stop, _ = index.indices(self.num_samples)
        count = max(0, stop - start)
        data = os.pread(self._file.fileno(), count * BYTES_PER_SAMPLE, start * BYTES_PER_SAMPLE)
        return np.frombuffer(data, dtype=np.float32).copy()  # writable, like a numpy slice copy

    @property
    def peak_db(self) -> float:
        return _amp_to_db(self.peak)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> SpooledAudio:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def spool_audio(path: str | os.PathLike, sample_rate: int = 44100, *, block_seconds: float = 30.0,
                min_duration_s: float = 0.1, temp_dir: str | os.PathLike | None = None) -> SpooledAudio:
    """Decode and resample `path` block by block into a temporary file (removed on close).

    Formats soundfile cannot stream (the audioread fallback) are decoded whole first; the
    errors are the ones `load_audio` gives (missing, empty, corrupt, NaN, too short).
    """
    path = Path(path)
    where = Path(temp_dir) if temp_dir is not None else Path(tempfile.gettempdir())
    try:
        folder = tempfile.TemporaryDirectory(prefix="diffsvc-song-", dir=where)
    except OSError as e:
        raise AudioError(_no_room(path, where, e)) from None
    try:
        raw = Path(folder.name) / "song.f32"
        total, peak = 0, 0.0
        out = None
        try:
            raw.touch()
            out = Sink(raw)  # writes through diffsvc.fileio like every other file
            try:
                for block in _blocks(path, sample_rate, block_seconds):
                    out.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
                    total += len(block)
                    if block.size:
                        peak = max(peak, float(np.max(np.abs(block))))
            finally:
                out.close()
        except OSError as e:
            if out is not None and out.error is None:  # reading the song, not writing the spool
                raise AudioError(f"{path}: cannot be read ({e.strerror or e})") from None
            raise AudioError(_no_room(path, where, e)) from None
        if total < min_duration_s * sample_rate:
            raise AudioError(f"{path}: too short ({total / sample_rate:.3f} s, need at least {min_duration_s:g} s); "
                             "use a longer recording")
        return SpooledAudio(raw, total, sample_rate, peak, path, folder)
    except BaseException:
        folder.cleanup()
        raise


def _no_room(path: Path, where: Path, e: OSError) -> str:
    return (f"{path}: cannot hold the decoded song in the temporary folder {where} ({e.strerror or e}; it needs "
            "about 10 MB per minute of audio); free space there or point TMPDIR at another folder")


def _blocks(path: Path, sample_rate: int, block_seconds: float):
    import soundfile as sf

    try:
        sf.info(str(path))
        streamable = True
    except Exception:  # noqa: BLE001 - not for soundfile: the whole-file fallback decides
        streamable = False
    if streamable:
        yield from iter_audio_blocks(path, block_seconds, sample_rate)
    else:  # the audioread fallback decodes whole files only
        yield load_audio(path, sample_rate, min_duration_s=0.0)
