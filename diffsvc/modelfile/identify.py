"""What a file is when it is not a weight file, told before torch reads it.

Downloads go wrong in a few typical ways, and torch's own errors for them mislead ("Unsupported
operand 118", "needs weights_only=False"). The kinds recognised here, from the file's first bytes:

- a Git LFS pointer: a ~130-byte text file starting `version https://git-lfs` (a clone without
  `git lfs pull`, or a "raw" link to a file kept in LFS);
- a web page: HTML from an error, login or "confirm download" page saved under the file's name;
- other text (a README, an error message saved by a script);
- a truncated zip: torch >= 1.6 writes zip archives, whose directory sits at the END of the file,
  so a download cut short lacks it.

A legacy (pickle) torch file cut short is found while it is read (torch_load.py).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from diffsvc.errors import CheckpointError

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = 0x80  # every torch.save pickle starts with PROTO (protocol 2..5)
_HEAD_BYTES = 1024


def check_model_file(path: str | os.PathLike, what: str = "model file") -> Path:
    """The path, or one CheckpointError line if it is missing, a folder, empty or a placeholder."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: {what} not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a {what}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: {what} is empty (0 bytes); copy it again")
    placeholder = identify_placeholder(path)
    if placeholder:
        raise CheckpointError(f"{path}: not a readable PyTorch {what}: {placeholder}")
    return path


def identify_placeholder(path: str | os.PathLike) -> str | None:
    """A sentence saying what stands in place of the weights (and that the real file must be
    downloaded), or None when the file looks like a torch file (zip or pickle)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
    if head.startswith(ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            return (f"truncated or foreign file: a zip archive without its end ({size} bytes), so the download or "
                    "copy stopped early; download the real file again")
        return None
    if len(head) > 1 and head[0] == PICKLE_PROTO and 2 <= head[1] <= 5:
        return None
    text = _as_text(head)
    if text is not None and text.startswith("version https://git-lfs"):
        return (f"it is a Git LFS pointer ({size} bytes of text naming the real file), not the weights; the real "
                "file was never downloaded: run `git lfs pull` where it came from, or download the real file")
    if text is not None and _is_html(text):
        return (f"it is a web page (HTML, {size} bytes), not the weights: the download saved an error or login "
                "page; download the real file")
    if text is not None:
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        return (f"it is a text file ({size} bytes, beginning {first!r}), not the weights; download the real file")
    return (f"truncated or foreign file: neither a zip nor a pickle (it begins with bytes {head[:4].hex()}); "
            "download the real file")


def _as_text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not just a character cut at the end of the head
            return None
        text = head[: e.start].decode("utf-8")
    text = text.lstrip("\ufeff")
    printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
    return text if text and printable >= 0.95 * len(text) else None


def _is_html(text: str) -> bool:
    start = text.lstrip().lower()
    return start.startswith(("<!doctype html", "<html", "<head", "<?xml")) or "<html" in start[:_HEAD_BYTES]
