"""`python -m diffsvc.ui.jobrun JOB_FOLDER`: run a job's `diffsvc` command lines in turn (see jobs.py).

Each command runs through `diffsvc.cli.main.main`, exactly as typed at a terminal; the first one
that fails ends the job. rc.json gets the exit status and the one line that explains a failure.
"""

from __future__ import annotations

import json
import shlex
import sys
import traceback
from pathlib import Path

from diffsvc.fileio import atomic_write_text


def run(folder: Path) -> int:
    from diffsvc.cli.main import main
    from diffsvc.ui.jobs import error_line

    job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    commands, keep_going = job["commands"], bool(job.get("meta", {}).get("keep_going"))
    rc, message, failed = 0, "", []
    for index, argv in enumerate(commands):
        atomic_write_text(folder / "at.json", json.dumps({"index": index}))
        print(f"Running command {index + 1} of {len(commands)}: diffsvc {shlex.join(argv)}", file=sys.stderr,
              flush=True)
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse: a wrong option
            rc = e.code if isinstance(e.code, int) else 2
        except Exception as e:  # noqa: BLE001 - a bug: the page shows one line, the log keeps the trace
            traceback.print_exc()
            rc, message = 1, f"unexpected error in diffsvc {argv[0]}: {type(e).__name__}: {e} (the job log has details)"
        sys.stderr.flush()
        if rc != 0:
            if not message:
                text = (folder / "log.txt").read_text(encoding="utf-8", errors="replace")[-20_000:]
                message = error_line(text) or f"diffsvc {argv[0]} stopped with exit status {rc}"
            failed.append((rc, message))
            message = ""
            if not keep_going:
                break
    rc = failed[0][0] if failed else 0
    message = "; ".join(m for _, m in failed)
    atomic_write_text(folder / "rc.json", json.dumps({"rc": rc, "message": message, "failed": len(failed)}))
    return rc


if __name__ == "__main__":
    raise SystemExit(run(Path(sys.argv[1])))
