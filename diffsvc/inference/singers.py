"""`infer --speaker`: the singer table of a checkpoint before it loads, and per-singer `--key auto`.

The table is read from the config.yaml beside the checkpoint (cheap), so a missing or wrong
--speaker costs one line before any model loads; the checkpoint's own spk_map is checked against
it when the model loads (diffsvc.checkpoint.config_with_singers).
"""

from __future__ import annotations

import json
from pathlib import Path

from diffsvc.errors import DiffSvcError
from diffsvc.inference.keyshift import DATA_STATS
from diffsvc.model.speakers import SpeakerChoice, blended_median_hz


def singers_beside(checkpoint: Path) -> list[str]:
    """The singer table in the config.yaml beside `checkpoint` ([] for a one-singer model).

    Raises CheckpointError when there is no config.yaml (the line loading the checkpoint gives), and
    ConfigError when it is unreadable: a missing table is never read as "one singer", which would
    answer `--speaker` with "this model has a single singer" for a multi-singer checkpoint."""
    from diffsvc.config import load_config
    from diffsvc.inference.project import config_path_beside

    return list(load_config(config_path_beside(checkpoint)).speakers)


def project_singers(project_dir: str | Path) -> list[str]:
    """The singer table (row order) in a project folder's config.yaml, for building a page ([] for a
    one-singer project, or when config.yaml is absent or unreadable: whatever then uses the project
    checks it with singers_beside, which says what is wrong)."""
    from diffsvc.config import load_config

    path = Path(project_dir) / "config.yaml"
    if not path.is_file():
        return []
    try:
        return list(load_config(path).speakers)
    except DiffSvcError:
        return []  # loading the checkpoint reports a bad config properly


def speaker_median_hz(project_dir: str | Path, choice: SpeakerChoice) -> float:
    """The f0 median `--key auto` aims at for the chosen singer or blend, from data_stats.json's
    per-singer statistics (weighted geometric mean of the singers' medians for a blend)."""
    path = Path(project_dir) / DATA_STATS
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
        per_singer = {name: float(entry["f0_median_hz"]) for name, entry in stats["speakers"].items()
                      if "f0_median_hz" in entry}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise DiffSvcError(f"--key auto needs each singer's f0 statistics in {path} (written by `diffsvc train` "
                           "for a multi-singer project); give --key in semitones") from None
    return blended_median_hz(choice, per_singer)
