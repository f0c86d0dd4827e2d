"""Starting processes from tests: each in its own session (process group), and the whole group
killed when the test is done with it, on success, failure or timeout alike.

Killing only the process a test started leaves its children behind: torchrun's workers, data
loader workers, a shell's commands. A child that waits on a peer (a training rank in a collective)
then hangs on for ever with nobody left to wait for, holding CPU, memory and ports. Every test in
tests/ that starts a process does it through `run` or `started` (tests/test_install.py checks that
no test file calls subprocess or multiprocessing directly).

POSIX only (os.killpg), like the rest of the test suite's process handling.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from typing import Iterator, Sequence


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL every process still in `proc`'s group (its own and its descendants'), then reap `proc`.

    The group outlives its leader: children of a leader that has exited are still in it and are
    killed too. A group that is already empty is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=30)


@contextlib.contextmanager
def started(cmd: Sequence[str], **kwargs) -> Iterator[subprocess.Popen]:
    """`subprocess.Popen(cmd, **kwargs)` in a new session; on leaving the block (however it is left)
    the whole process group is killed. Wait for the process inside the block if its result matters."""
    proc = subprocess.Popen(list(map(str, cmd)), start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        kill_group(proc)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()


def run(cmd: Sequence[str], *, timeout: float, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Like `subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)`, but the process
    runs in a new session and its whole group is killed as soon as it exits (children it left
    behind, which may hold its output pipes open) or when it times out (then subprocess.TimeoutExpired
    is raised, as subprocess.run does), or when the test is interrupted.

    `timeout` is required: it guards against a hang, it is not a measurement."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("text", True)
    with started(cmd, **kwargs) as proc:
        output: dict[str, str | bytes | None] = {"stdout": None, "stderr": None}

        def drain(name: str) -> None:
            output[name] = getattr(proc, name).read()

        readers = [threading.Thread(target=drain, args=(name,), daemon=True)
                   for name in ("stdout", "stderr") if getattr(proc, name) is not None]
        for reader in readers:
            reader.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            for reader in readers:
                reader.join(timeout=30)
            raise subprocess.TimeoutExpired(proc.args, timeout, output=output["stdout"],
                                            stderr=output["stderr"]) from None
        kill_group(proc)  # whatever it left behind; their ends of the pipes close with them
        for reader in readers:
            reader.join(timeout=30)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, output["stdout"], output["stderr"])
    if check:
        result.check_returncode()
    return result
