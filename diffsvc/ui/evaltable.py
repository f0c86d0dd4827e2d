"""What `diffsvc eval` left in a project folder, read back for the page: its table, the best
checkpoint and its figure.

The command writes eval.json (rows of figures per checkpoint, best_step, what could not be
computed), eval.csv and, with several checkpoints, eval.png (diffsvc.evaluation.report). The page
shows eval.json through the same `table` and `legend` as the terminal, so both say the same.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from diffsvc.errors import DiffSvcError

BEST_MARK = " (best)"


@dataclass
class EvalView:
    head: list[str]  # "step", then the short headings of the figures present
    body: list[list[str]]  # one row of text per checkpoint, in step order; the best step marked
    best_step: int | None  # lowest reconstruction MCD; None without reconstruction figures
    best_checkpoint: str | None  # its file name
    legend: list[str]  # "MCD: reconstruction MCD (dB, lower is better)", one per column
    unavailable: list[str] = field(default_factory=list)  # figures the run could not compute, and why
    plot: Path | None = None  # eval.png of this run (several checkpoints only)
    written: str = ""  # when eval.json was written (local time)


def read_eval(project_dir: str | Path) -> EvalView | None:
    """The last evaluation of a project; None when it has none. A file that is not an evaluation
    raises DiffSvcError naming it."""
    from diffsvc.evaluation.report import legend, table

    path = Path(project_dir) / "eval.json"
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        rows = result["rows"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "step" in r for r in rows):
            raise ValueError("rows without steps")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DiffSvcError(f"{path}: not an evaluation written by diffsvc eval ({e}); run the evaluation again") \
            from None
    best = result.get("best_step")
    head, body = table(rows, best, mark=BEST_MARK)
    best_file = next((r.get("checkpoint") for r in rows if r["step"] == best), None) if best is not None else None
    # eval.png is written only with several rows; an older one beside a one-row eval.json is stale
    plot = path.with_name("eval.png")
    return EvalView(head, body, best, best_file, legend(rows), list(result.get("unavailable") or []),
                    plot if len(rows) > 1 and plot.is_file() else None,
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime)))


def eval_command(models_dir: str | Path, project: str, data: str | Path, all_steps: bool, max_pieces: int | None,
                 sampling_steps: int | None, device: str | None, songs: list[Path] = ()) -> list[str]:
    """The `diffsvc eval` command line: the same options a user would type."""
    argv = ["eval", *[str(s) for s in songs], "--project", project, "--models-dir", str(models_dir),
            "--data", str(data)]
    if all_steps:
        argv.append("--all-steps")
    if max_pieces:
        argv += ["--max-pieces", str(int(max_pieces))]
    if sampling_steps:
        argv += ["--sampling-steps", str(int(sampling_steps))]
    if device and device != "auto":
        argv += ["--device", device]
    return argv
