"""tests/procs.py: a process a test starts is cleaned up with all its descendants, on timeout and
when it ends leaving children behind (as torchrun's workers or a shell's background jobs would)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from procs import run, started

# The leader starts a child that would sleep for ten minutes, writes the child's pid, then
# either waits for it (hangs) or exits at once (leaves it orphaned).
SPAWN = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(str(child.pid))
if sys.argv[2] == "hang":
    child.wait()
"""


def _gone(pid: int, patience: float = 30.0) -> bool:
    """True once `pid` no longer runs (absent, or a zombie waiting for its new parent to reap it)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _pid(path) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.1)
    raise AssertionError("the child never wrote its pid")


def test_a_timeout_kills_the_whole_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    with pytest.raises(subprocess.TimeoutExpired):
        # It hangs until killed: the timeout is the mechanism under test, long enough for the child
        # to start (subprocess.run would kill the leader only, and the child would sleep on).
        run([sys.executable, "-c", SPAWN, str(pid_file), "hang"], timeout=10)
    assert _gone(_pid(pid_file))


def test_children_left_behind_are_killed_when_the_test_is_done(tmp_path):
    pid_file = tmp_path / "child.pid"
    proc = run([sys.executable, "-c", SPAWN, str(pid_file), "exit"], timeout=120)
    assert proc.returncode == 0
    assert _gone(_pid(pid_file))

    pid_file.unlink()
    with started([sys.executable, "-c", SPAWN, str(pid_file), "hang"]) as leader:
        child = _pid(pid_file)
        assert leader.poll() is None and not _gone(child, patience=0)
    assert _gone(child)
    assert leader.returncode is not None  # and the leader was reaped
