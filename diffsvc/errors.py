"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class DiffSvcError(Exception):
    """A problem the user can fix; the message says what and how."""


class ConfigError(DiffSvcError):
    """A configuration file or value is wrong."""


class CheckpointError(DiffSvcError):
    """A model file is missing, foreign, truncated, unsafe or does not match its config."""


class AudioError(DiffSvcError):
    """An audio file cannot be used (unreadable, empty, silent, NaN...)."""


class WriteError(DiffSvcError):
    """A file or folder cannot be written (full disk, read-only folder, permissions...); the
    message names the path and the system's reason. Raised by diffsvc.fileio only."""
