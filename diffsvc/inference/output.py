"""Where results go and how they are written: the default name, the no-overwrite rule, atomic writes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from diffsvc.errors import DiffSvcError
from diffsvc.fileio import atomic_path

FORMATS = {"wav": "PCM_16", "flac": "PCM_16"}


def default_output_path(song: Path, project: str, step: int, fmt: str, out_dir: Path = Path("output")) -> Path:
    """output/{song}_{project}_steps_{N}.{fmt}, e.g. output/song_NAME_steps_30000.wav."""
    return out_dir / f"{song.stem}_{project}_steps_{step}.{fmt}"


def check_output(path: Path, overwrite: bool) -> None:
    """Fail before any work when the file exists (without --overwrite) or its folder cannot be written."""
    if path.exists() and not overwrite:
        raise DiffSvcError(f"{path}: already exists; pass --overwrite to replace it or --out for another name")
    if path.is_dir():
        raise DiffSvcError(f"{path}: is a folder; --out needs a file name for a single input")
    folder = path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise DiffSvcError(f"{folder}: output folder cannot be written (check permissions or choose --out elsewhere)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DiffSvcError(f"{folder}: cannot create the output folder ({e.strerror})") from None


def write_audio(path: Path, wav: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM WAV or FLAC (from the suffix), written to a temporary name and renamed."""
    import soundfile as sf

    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise DiffSvcError(f"{path}: unsupported output format {fmt!r}; use .wav or .flac")
    data = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), data, sample_rate, subtype=FORMATS[fmt], format=fmt.upper())
    except OSError as e:
        raise DiffSvcError(f"{path}: cannot write the output ({e.strerror or e})") from None
    return path


@contextlib.contextmanager
def audio_writer(path: Path, sample_rate: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield `write(chunk)` that appends float audio to `path` (16-bit PCM, clipped to [-1, 1])
    as it comes, so a long song is never held whole; the file appears under its name only when
    the block ends without an error."""
    import soundfile as sf

    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise DiffSvcError(f"{path}: unsupported output format {fmt!r}; use .wav or .flac")
    try:
        with atomic_path(path) as tmp, sf.SoundFile(str(tmp), "w", sample_rate, 1, subtype=FORMATS[fmt],
                                                    format=fmt.upper()) as out:
            yield lambda chunk: out.write(np.clip(np.asarray(chunk, dtype=np.float32), -1.0, 1.0))
    except OSError as e:
        raise DiffSvcError(f"{path}: cannot write the output ({e.strerror or e})") from None
