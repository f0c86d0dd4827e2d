"""A training project: the folder `models/NAME/` that `diffsvc train --project NAME` creates.

    models/NAME/config.yaml                  the base config plus the data's spec_min/spec_max,
                                             written once on creation (the project's settings win
                                             on resume, as in the original)
    models/NAME/model_ckpt_steps_N.ckpt      checkpoints in the original Diff-SVC layout
    models/NAME/logs/                        TensorBoard
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from diffsvc.checkpoint import find_checkpoints, latest_checkpoint
from diffsvc.config import Config, load_config, save_config
from diffsvc.data.prepared import PreparedData
from diffsvc.errors import DiffSvcError

CONFIG_NAME = "config.yaml"
LOGS_NAME = "logs"
MIN_SPEC_RANGE = 1e-3  # a mel bin that never varies in the data would divide by zero when normalised

# manifest.mel key (either spelling) -> Config key, for the check that data and model agree
_MEL_KEYS = {"sample_rate": "audio_sample_rate", "audio_sample_rate": "audio_sample_rate",
             "hop_size": "hop_size", "win_size": "win_size", "n_fft": "fft_size", "fft_size": "fft_size",
             "n_mels": "audio_num_mel_bins", "num_mels": "audio_num_mel_bins",
             "audio_num_mel_bins": "audio_num_mel_bins", "fmin": "fmin", "fmax": "fmax"}


class Project:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @classmethod
    def named(cls, name: str, models_dir: str | os.PathLike = "models") -> "Project":
        if not name or Path(name).name != name or name in (".", ".."):
            raise DiffSvcError(f"--project {name!r}: give a plain name (the folder models/NAME is made for it)")
        return cls(Path(models_dir) / name)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def logs_dir(self) -> Path:
        return self.root / LOGS_NAME

    def exists(self) -> bool:
        return self.config_path.exists()

    def checkpoints(self) -> dict[int, Path]:
        return find_checkpoints(self.root)

    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(self.root)

    # --- config ---
    def create_config(self, base: Config, data: PreparedData) -> Config:
        """The project's config: `base` with the data's per-bin spec_min/spec_max. Written once."""
        config = config_with_data_stats(base, data)
        save_config(config, self.config_path)
        return config

    def load_config(self) -> Config:
        return load_config(self.config_path)

    # --- checkpoints ---
    def prune_checkpoints(self, keep: int) -> list[Path]:
        """Delete all but the newest `keep` checkpoints; return what was deleted."""
        found = self.checkpoints()
        old = [found[step] for step in sorted(found)[:-keep]] if keep > 0 else []
        for path in old:
            path.unlink(missing_ok=True)
        return old

    # --- reset ---
    def reset_targets(self) -> list[Path]:
        """What `--reset` deletes: our config, checkpoints, logs and left-over partial files."""
        if not self.root.is_dir():
            return []
        targets = list(self.checkpoints().values())
        targets += [p for p in self.root.iterdir() if p.name.startswith(".") and ".part" in p.name]
        for path in (self.config_path, self.logs_dir):
            if path.exists():
                targets.append(path)
        return targets

    def reset(self) -> None:
        for path in self.reset_targets():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def config_with_data_stats(base: Config, data: PreparedData) -> Config:
    stats = data.stats
    if not stats.get("spec_min") or not stats.get("spec_max"):
        raise DiffSvcError(f"{data.root}: the prepared data has no spec_min/spec_max statistics; "
                           "run `diffsvc preprocess` again")
    lo = [float(v) for v in stats["spec_min"][: base.keep_bins]]
    hi = [max(float(h), float(l) + MIN_SPEC_RANGE) for l, h in zip(lo, stats["spec_max"][: base.keep_bins])]
    return base.replace(spec_min=lo, spec_max=hi)


def check_data_matches(config: Config, data: PreparedData, config_source: str) -> None:
    """The prepared mels must have been made with the model's mel settings."""
    for key, value in (data.manifest.mel or {}).items():
        name = _MEL_KEYS.get(key)
        if name is None or not isinstance(value, (int, float)):
            continue
        ours = getattr(config, name)
        if not math.isclose(float(value), float(ours), rel_tol=1e-6, abs_tol=1e-6):
            raise DiffSvcError(
                f"{data.root}: prepared with {key}={value} but {config_source} has {name}={ours}; "
                "preprocess again with this config or train with the config the data was made for"
            )
