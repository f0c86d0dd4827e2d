"""Where results go and how they are written: the default name, the no-overwrite rule, atomic writes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from diffsvc.errors import DiffSvcError
from diffsvc.fileio import atomic_sound_file, check_writable

FORMATS = {"wav": "PCM_16", "flac": "PCM_16"}


def default_output_path(song: Path, project: str, step: int, fmt: str, out_dir: Path = Path("output")) -> Path:
    """output/{song}_{project}_steps_{N}.{fmt}, e.g. output/song_NAME_steps_30000.wav."""
    return out_dir / f"{song.stem}_{project}_steps_{step}.{fmt}"


def check_output(path: Path, overwrite: bool) -> None:
    """Fail before any work when the file exists (without --overwrite) or its folder cannot be
    made or written (a real write test through diffsvc.fileio: read-only mounts, permissions, a
    full disk)."""
    if path.is_dir():
        raise DiffSvcError(f"{path}: is a folder; --out needs a file name for a single input")
    if path.exists() and not overwrite:
        raise DiffSvcError(f"{path}: already exists; pass --overwrite to replace it or --out for another name")
    check_writable_folder(path.parent)


def check_writable_folder(folder: Path) -> None:
    """The output folder can be created and written, or one line saying why not."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DiffSvcError(f"{folder}: output folder cannot be written ({existing} is a file); "
                           "choose --out elsewhere")
    check_writable(folder)


def _format(path: Path) -> str:
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise DiffSvcError(f"{path}: unsupported output format {fmt!r}; use .wav or .flac")
    return fmt


def write_audio(path: Path, wav: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM WAV or FLAC (from the suffix), written to a temporary name and renamed.
    Errors: WriteError (path and the system's reason) on a full or read-only disk."""
    with audio_writer(path, sample_rate) as write:
        write(wav)
    return path


@contextlib.contextmanager
def audio_writer(path: Path, sample_rate: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield `write(chunk)` that appends float audio to `path` (16-bit PCM, clipped to [-1, 1])
    as it comes, so a long song is never held whole; the file appears under its name only when
    the block ends without an error. Every byte goes through diffsvc.fileio: a full or read-only
    disk is a WriteError naming `path` and the system's reason, and no partial file stays."""
    fmt = _format(path)
    with atomic_sound_file(path, sample_rate, 1, FORMATS[fmt], fmt.upper()) as out:
        yield lambda chunk: out(np.clip(np.asarray(chunk, dtype=np.float32), -1.0, 1.0))
