"""Finding the recordings in a raw folder.

Audio is recognised by extension: what libsndfile reads (wav, flac, ogg/opus, mp3, aiff, ...) plus
the formats only the audioread fallback of `diffsvc.audio.load` opens (m4a, aac, wma), which work
where ffmpeg is installed and otherwise fail with one clear line per file. Everything else is
listed once as skipped. Hidden files and folders (the `.diffsvc` cache, temporary `.x.part` files
written by diffsvc.fileio, `.DS_Store`) are never scanned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".caf", ".w64",
    ".rf64", ".au", ".snd", ".m4a", ".aac", ".wma",
})


@dataclass
class ScanResult:
    audio: list[Path] = field(default_factory=list)  # sorted by relative path
    skipped: list[Path] = field(default_factory=list)  # files that are not audio (by extension)


def relative_name(path: Path, root: Path) -> str:
    """The path inside the raw folder, with forward slashes on every system (manifest `source`)."""
    return path.relative_to(root).as_posix()


def scan_audio(root: str | os.PathLike) -> ScanResult:
    """All audio files under `root`, recursively, in a stable order (sorted relative paths)."""
    root = Path(root)
    result = ScanResult()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # never descend into .diffsvc
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            (result.audio if path.suffix.lower() in AUDIO_EXTENSIONS else result.skipped).append(path)
    result.audio.sort(key=lambda p: relative_name(p, root))
    result.skipped.sort(key=lambda p: relative_name(p, root))
    return result
