"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class DiffSvcError(Exception):
    """A problem the user can fix; the message says what and how."""


class ConfigError(DiffSvcError):
    """A configuration file or value is wrong."""


class CheckpointError(DiffSvcError):
    """A model file is missing, foreign, truncated, unsafe or does not match its config."""


class AudioError(DiffSvcError):
    """An audio file cannot be used (unreadable, empty, silent, NaN...)."""


class WriteError(DiffSvcError, OSError):
    """A file or folder cannot be written (full disk, read-only folder, permissions...); the
    message names the path and the system's reason. Raised by diffsvc.fileio only.

    Also an OSError carrying the system's errno, strerror and the path (filename), so code that
    handles OSError around a write keeps working; str() is the one-line message."""

    def __init__(self, message: str, errno: int | None = None, strerror: str | None = None,
                 filename: str | None = None):
        OSError.__init__(self, errno, strerror, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # worker processes send it back to the main one
        return type(self), (self.message, self.errno, self.strerror, self.filename)
