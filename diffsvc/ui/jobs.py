"""Background jobs: `diffsvc` commands run by a separate process, recorded in a folder per job.

    STATE/jobs/ID/job.json   what was asked: kind, title, the command lines, pid, meta
    STATE/jobs/ID/log.txt    everything the commands printed (progress bars included)
    STATE/jobs/ID/at.json    which command of the list is running (index)
    STATE/jobs/ID/rc.json    written at the end: exit status and the error line, if any

The runner (`python -m diffsvc.ui.jobrun ID_FOLDER`) runs in its own process group, so a job
outlives the page's request, a closed browser tab, and even the server; `stop` signals the whole
group (training saves a checkpoint on SIGTERM). State is read back from the files, so a reopened
page sees every job as it is.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from diffsvc.errors import DiffSvcError
from diffsvc.fileio import atomic_write_text

ERROR_LINE = re.compile(r"^diffsvc \w+: (error: .*|interrupted)$")
# a tqdm bar: "desc:  45%|####   | 9/20 [...]" (desc optional)
BAR = re.compile(r"(?:([\w][\w ]*?): *)?(\d{1,3})%\|[^|\r\n]*\| *(\d+)/(\d+)")


@dataclass
class Job:
    folder: Path
    kind: str  # convert, preprocess, train
    title: str
    commands: list[list[str]]
    pid: int | None = None
    created: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def log_path(self) -> Path:
        return self.folder / "log.txt"

    def log_text(self, limit: int = 200_000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, self.log_path.stat().st_size - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def result(self) -> dict | None:
        try:
            return json.loads((self.folder / "rc.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def state(self) -> str:
        """running, done, failed, or stopped (signalled, or ended without writing a result)."""
        result = self.result()
        if result is not None:
            rc = result.get("rc", 1)
            return "done" if rc == 0 else "stopped" if rc in (130, -signal.SIGTERM) else "failed"
        return "running" if self.pid and _alive(self.pid, self.folder) else "stopped"

    def error(self) -> str:
        """The one readable line that explains a failure ('' when none)."""
        result = self.result() or {}
        return result.get("message") or ""

    def command_index(self) -> int:
        try:
            return int(json.loads((self.folder / "at.json").read_text(encoding="utf-8"))["index"])
        except (OSError, ValueError, KeyError):
            return 0

    def progress(self) -> tuple[float, str]:
        """(fraction 0..1 over all commands, a short description) from the log's last progress bar."""
        n = max(1, len(self.commands))
        index = min(self.command_index(), n - 1)
        if self.state() == "done":
            return 1.0, "done"
        text = self.log_text(20_000)
        bars = list(BAR.finditer(text[text.rfind("Running command") if "Running command" in text else 0:]))
        frac, desc = 0.0, "starting"
        if bars:
            # infer: "sampling" counts denoiser calls over the whole song, "converted" its stretches
            # (vocoded and written); other commands: their last bar
            last = {m.group(1) or "steps": m for m in bars}
            m = bars[-1]
            frac = _fraction(m)
            desc = f"{m.group(1) or 'steps'} {m.group(3)}/{m.group(4)}"
            if "converted" in last:
                frac = max(_fraction(last["converted"]), 0.9 * _fraction(last["sampling"]) if "sampling" in last else 0)
        prefix = f"{index + 1} of {n}: " if n > 1 else ""
        return (index + frac) / n, prefix + desc


def _fraction(bar: re.Match) -> float:
    return min(1.0, int(bar.group(3)) / max(1, int(bar.group(4))))


def _alive(pid: int, folder: Path) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap our own child, if it is one
        # our own child, still running: alive, even in the instant between fork and exec when its
        # command line is still ours (reading it then made a just-started job look stopped)
        return done != pid
    except ChildProcessError:
        pass  # not our child (a job started by an earlier server): check it is still the runner
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return str(folder).encode() in cmdline  # not a later process that got the same pid


class JobStore:
    """The jobs under STATE/jobs, newest first."""

    def __init__(self, state_dir: str | os.PathLike):
        self.root = Path(state_dir) / "jobs"

    def all(self) -> list[Job]:
        if not self.root.is_dir():
            return []
        jobs = [job for job in (self.load(p) for p in self.root.iterdir() if p.is_dir()) if job is not None]
        return sorted(jobs, key=lambda j: j.created, reverse=True)

    def load(self, folder: Path) -> Job | None:
        try:
            data = json.loads((folder / "job.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return Job(folder, data["kind"], data["title"], data["commands"], data.get("pid"), data.get("created", 0.0),
                   data.get("meta", {}))

    def get(self, job_id: str) -> Job | None:
        return self.load(self.root / job_id) if job_id and "/" not in job_id else None

    def latest(self, kind: str) -> Job | None:
        return next((j for j in self.all() if j.kind == kind), None)

    def running(self, kind: str) -> list[Job]:
        return [j for j in self.all() if j.kind == kind and j.state() == "running"]

    def new_folder(self, kind: str) -> Path:
        folder = self.root / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        return folder

    def start(self, kind: str, title: str, commands: list[list[str]], meta: dict | None = None,
              folder: Path | None = None, cwd: str | os.PathLike | None = None) -> Job:
        """Start `diffsvc` with each argument list in turn (stopping at the first failure)."""
        if kind == "train":
            busy = self.running("train")
            if busy:
                raise DiffSvcError(f"a training is already running ({busy[0].title}); stop it first, "
                                   "or wait until it ends")
        folder = folder or self.new_folder(kind)
        job = Job(folder, kind, title, commands, None, time.time(), meta or {})
        self._write(job)
        log = open(job.log_path, "ab")
        try:
            process = subprocess.Popen([sys.executable, "-m", "diffsvc.ui.jobrun", str(folder.resolve())],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, cwd=cwd, env=_child_env())
        finally:
            log.close()
        job.pid = process.pid
        self._write(job)
        return job

    def stop(self, job: Job, sig: int = signal.SIGTERM) -> None:
        """Ask a running job to stop: SIGTERM (or SIGINT) to the runner alone, which runs the command in
        its own process: a training finishes its step, saves a checkpoint and ends its data-loader
        workers itself. Sent to the whole group, the signal killed those workers under it first and
        the trainer failed on their death without saving. SIGKILL goes to the whole group."""
        if job.pid and job.state() == "running":
            try:
                if sig == signal.SIGKILL:
                    os.killpg(job.pid, sig)  # the runner leads its own group
                else:
                    os.kill(job.pid, sig)
            except ProcessLookupError:
                pass

    @staticmethod
    def _write(job: Job) -> None:
        atomic_write_text(job.folder / "job.json", json.dumps(
            {"kind": job.kind, "title": job.title, "commands": job.commands, "pid": job.pid, "created": job.created,
             "meta": job.meta}, indent=1))


def _child_env() -> dict:
    env = dict(os.environ)
    # the child imports the same diffsvc as this process, wherever it was found
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def error_line(log: str) -> str:
    """The command's own error line ('diffsvc infer: error: ...') from a log, '' when none."""
    for line in reversed(log.replace("\r", "\n").splitlines()):
        if ERROR_LINE.match(line.strip()):
            return line.strip()
    return ""
