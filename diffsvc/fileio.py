"""Every file diffsvc writes goes through here: written under a temporary name beside the target,
then renamed into place, so a killed run never leaves a half-written file behind; and every
failure to write (full disk, read-only folder, no permission, a quota) becomes one `WriteError`
line that names the path and the system's reason, with the temporary file removed.

The bytes themselves go through `Sink`, a small seekable binary file whose writes all end in one
function, `_write_some` (`os.write`). Libraries write into a `Sink` rather than to a path of their
own: numpy (`np.save`), torch (`torch.save`), soundfile (its virtual-file interface) and text. So
an error of the system reaches us as an OSError with its errno even when the library would report
it in its own words (libsndfile: "Unspecified internal error", an assertion, torch: "file write
failed"): the Sink keeps the first OSError and that is what the user reads.

    with atomic_open("output/song.wav") as f:       # f: Sink
        np.save(f, array)
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from diffsvc.errors import WriteError

# --- the system calls every write goes through (tests replace these to simulate a full or
# read-only disk without root)


def _write_some(fd: int, data: memoryview) -> int:
    return os.write(fd, data)


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _mkstemp(folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
    return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)


# --- errors

_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def reason(e: BaseException) -> str:
    """The system's words for an OSError ("No space left on device"), else the first line."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def write_error(path: str | os.PathLike, e: BaseException, what: str = "cannot write") -> WriteError:
    """One line: the path, the system's reason, what to do."""
    code = getattr(e, "errno", None)
    if code in _FULL:
        hint = "free space on that disk or write somewhere else"
    elif code in _READ_ONLY:
        hint = "the folder is read-only for you; choose another folder"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        hint = "a file stands where a folder should be; move it or choose another folder"
    else:
        hint = "check the disk and the folder"
    return WriteError(f"{path}: {what} ({reason(e)}); {hint}", code, reason(e), str(path))


def _is_write_failure(e: BaseException) -> bool:
    """OSError, or libsndfile's error (a RuntimeError) from writers that take a path."""
    if isinstance(e, OSError):
        return True
    try:
        import soundfile as sf

        return isinstance(e, sf.LibsndfileError)
    except (ImportError, AttributeError):
        return False


def _system_cause(e: BaseException, folder: Path) -> BaseException:
    """A library's own words ("System error.") hide the cause; a full disk is the usual one."""
    if isinstance(e, OSError):
        return e
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_bavail == 0:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return e


# --- folders


def make_dirs(folder: str | os.PathLike) -> Path:
    """Create `folder` and its parents; WriteError when that is not possible."""
    folder = Path(folder)
    try:
        _mkdir(folder)
    except OSError as e:
        raise write_error(folder, e, "cannot create the folder") from None
    return folder


def check_writable(folder: str | os.PathLike) -> Path:
    """Fail before any work when `folder` cannot be made or a file in it cannot be written.

    Creates the folder, then writes and removes one hidden byte-long temporary file: a real test
    (permissions, read-only mounts, a completely full disk, root on a chmod-ed folder) rather than
    a guess from the mode bits."""
    folder = make_dirs(folder)
    probe = None
    try:
        fd, probe = _mkstemp(folder, ".diffsvc-write-test.", ".part")
        try:
            _write_some(fd, memoryview(b"\0"))
        finally:
            os.close(fd)
    except OSError as e:
        raise write_error(folder, e, "cannot write in this folder") from None
    finally:
        if probe is not None:
            with contextlib.suppress(OSError):
                os.unlink(probe)
    return folder


# --- the temporary file


class Sink:
    """A seekable binary file (write, seek, tell, read, flush) whose writes all go through
    `_write_some`. The first OSError is kept in `error`.

    quiet=True is for C libraries that call `write` through a callback (soundfile's virtual
    files), where a Python exception cannot travel: a failed write returns 0 bytes written and the
    library fails in its own way; `atomic_open` then reports the kept OSError."""

    def __init__(self, path: Path, quiet: bool = False):
        self.path = path
        self.name = str(path)  # like a file object's name
        self.quiet = quiet
        self.error: OSError | None = None
        self._fd: int | None = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is not None:
            if self.quiet:
                return 0
            raise self.error
        done = 0
        try:
            while done < len(view):
                n = _write_some(self._fd, view[done:])
                if n <= 0:
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                done += n
        except OSError as e:
            self.error = e
            if self.quiet:
                return done
            raise
        return done

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, os.fstat(self._fd).st_size - self.tell())
        return os.read(self._fd, size)

    def flush(self) -> None:
        pass  # unbuffered: every write is a system call

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _temp_beside(path: Path, suffix: str) -> Path:
    """A new empty file `.STEM.XXXX.partSUFFIX` beside `path` (hidden: folder scans skip it)."""
    make_dirs(path.parent)
    try:
        fd, tmp = _mkstemp(path.parent, f".{path.stem}.", f".part{suffix}")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
    except OSError as e:
        raise write_error(path, e) from None
    return Path(tmp)


def _finish(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, quiet: bool = False) -> Iterator[Sink]:
    """Yield a `Sink` on a temporary file beside `path`; on success rename it onto `path`.

    Errors: WriteError (path, the system's reason) when the folder, the temporary file, a write
    or the rename fails, whatever the writing library raised on top of the failed write. Any
    other error of the block propagates unchanged. Either way the temporary file is removed and
    `path` is left as it was."""
    path = Path(path)
    tmp = _temp_beside(path, path.suffix)
    sink = Sink(tmp, quiet=quiet)
    try:
        yield sink
        sink.close()
        _finish(tmp, path)
    except BaseException as e:
        sink.close()
        _remove(tmp)
        if sink.error is not None and not isinstance(e, WriteError):
            raise write_error(path, sink.error) from None
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`, for writers that insist on a file name; on success
    rename it onto `path`. Prefer `atomic_open` (the system's reason survives any library).

    The temporary name keeps the final suffix (writers such as soundfile pick the format from
    it) and starts with a dot so that folder scans skip it. An OSError or libsndfile error in the
    block becomes a WriteError; on any error the temporary file is removed and `path` is left as
    it was."""
    path = Path(path)
    tmp = _temp_beside(path, path.suffix if suffix is None else suffix)
    try:
        yield tmp
        _finish(tmp, path)
    except BaseException as e:
        _remove(tmp)
        if _is_write_failure(e) and not isinstance(e, WriteError):
            raise write_error(path, _system_cause(e, path.parent)) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` and move the result onto `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    import torch

    with atomic_open(path) as f:
        torch.save(obj, f)
    return Path(path)


def atomic_np_save(path: str | os.PathLike, array) -> Path:
    import numpy as np

    with atomic_open(path) as f:
        np.save(f, array)
    return Path(path)


@contextlib.contextmanager
def atomic_sound_file(path: str | os.PathLike, sample_rate: int, channels: int, subtype: str,
                      format: str) -> Iterator[Callable]:
    """Yield `write(frames)` appending float frames to a new sound file at `path` (soundfile,
    written through a quiet `Sink`); the file appears under its name only when the block ends
    without an error. Errors as in `atomic_open`."""
    import soundfile as sf

    with atomic_open(path, quiet=True) as sink:
        out = sf.SoundFile(sink, "w", sample_rate, channels, subtype=subtype, format=format)
        try:
            yield out.write
        finally:
            out.close()
