"""What `diffsvc eval` writes: a table on the terminal, eval.json and eval.csv in the project
folder, and with several checkpoints eval.png (each figure against the training step, the best
checkpoint by reconstruction marked). Every file is written atomically (diffsvc.fileio).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from diffsvc.fileio import atomic_path, atomic_write_text

# column -> (short heading, name, unit, better): the order of the table
FIGURES = {
    "recon_log_mel_l1": ("L1", "reconstruction log-mel L1", "log10", "lower"),
    "recon_mcd_db": ("MCD", "reconstruction MCD", "dB", "lower"),
    "recon_median_abs_cents": ("r.cents", "reconstruction median |f0 error|", "cents", "lower"),
    "recon_rpa": ("r.RPA", "reconstruction raw pitch accuracy (50 cents)", "share", "higher"),
    "recon_voicing_recall": ("r.VR", "reconstruction voicing recall", "share", "higher"),
    "recon_voicing_false_alarm": ("r.VFA", "reconstruction voicing false alarm", "share", "lower"),
    "recon_speaker_sim": ("r.spk", "reconstruction speaker similarity to the singer", "cos", "higher"),
    "median_abs_cents": ("cents", "songs: median |f0 error|", "cents", "lower"),
    "rpa": ("RPA", "songs: raw pitch accuracy (50 cents)", "share", "higher"),
    "voicing_recall": ("VR", "songs: voicing recall", "share", "higher"),
    "voicing_false_alarm": ("VFA", "songs: voicing false alarm", "share", "lower"),
    "speaker_sim_target": ("spk.tgt", "songs: speaker similarity to the singer", "cos", "higher"),
    "speaker_sim_source": ("spk.src", "songs: speaker similarity to the source", "cos", "lower"),
    "speaker_moved": ("moved", "songs: spk.tgt - spk.src", "cos", "higher"),
    "content_distance": ("content", "songs: content-unit distance to the input", "1-cos", "lower"),
    "rtf_total": ("RTF", "songs: real-time factor, all stages", "s/s", "lower"),
    "peak_memory_mib": ("mem", "peak memory", "MiB", "lower"),
}


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def columns(rows: list[dict]) -> list[str]:
    return [k for k in FIGURES if any(k in r for r in rows)]


def table(rows: list[dict], best: int | None = None, mark: str = "*") -> tuple[list[str], list[list[str]]]:
    """(heading, body) of the table, one body row of text per checkpoint: the step (the best
    step by reconstruction followed by `mark`), then each figure present in some row ("n/a" where
    a row lacks it), in FIGURES order."""
    cols = columns(rows)
    head = ["step"] + [FIGURES[c][0] for c in cols]
    body = [[f"{r['step']}{mark if r['step'] == best else ''}"] + [_fmt(r.get(c)) for c in cols] for r in rows]
    return head, body


def legend(rows: list[dict]) -> list[str]:
    """One line per column of `table`: its short heading, name, unit and which way is better."""
    return [f"{FIGURES[c][0]}: {FIGURES[c][1]} ({FIGURES[c][2]}, {FIGURES[c][3]} is better)" for c in columns(rows)]


def format_table(rows: list[dict], best: int | None = None) -> str:
    """Plain-text table, one row per checkpoint; the best step (by reconstruction) starred."""
    head, body = table(rows, best)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in [head] + body]
    return "\n".join(lines + (["* best by reconstruction (lowest MCD)"] if best is not None else [])
                     + [f"  {line}" for line in legend(rows)])


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_report(result: dict, folder: str | Path) -> list[Path]:
    """eval.json, eval.csv and (several rows) eval.png in `folder`; returns the paths written."""
    folder = Path(folder)
    written = [atomic_write_text(folder / "eval.json", json.dumps(_json_safe(result), indent=1))]
    rows = result["rows"]
    keys = ["step", "checkpoint"] + [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("step", "checkpoint")]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if _json_safe(r.get(k)) is None else r.get(k) for k in keys})
    written.append(atomic_write_text(folder / "eval.csv", buffer.getvalue()))
    if len(rows) > 1:
        written.append(write_plot(rows, result.get("best_step"), folder / "eval.png"))
    return written


def write_plot(rows: list[dict], best: int | None, path: Path) -> Path:
    """One panel per figure against the training step; a dashed line at the best step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in columns(rows) if any(_json_safe(r.get(c)) is not None for r in rows)]
    n = max(1, len(cols))
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.8 * nrows), squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, c in zip(axes.flat, cols):
        values = [r.get(c, float("nan")) if _json_safe(r.get(c)) is not None else float("nan") for r in rows]
        ax.plot(steps, values, marker="o")
        _, name, unit, better = FIGURES[c]
        ax.set_title(f"{name} ({unit}), {better} is better", fontsize=8)
        ax.set_xlabel("training step", fontsize=8)
        if best is not None:
            ax.axvline(best, color="tab:red", linestyle="--", linewidth=1)
    for ax in list(axes.flat)[len(cols):]:
        ax.axis("off")
    fig.suptitle(f"diffsvc eval (dashed: best by reconstruction, step {best})" if best is not None
                 else "diffsvc eval", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
