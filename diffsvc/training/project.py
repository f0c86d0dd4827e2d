"""A training project: the folder `models/NAME/` that `diffsvc train --project NAME` creates.

    models/NAME/config.yaml                  the base config plus the data's spec_min/spec_max,
                                             written once on creation (the project's settings win
                                             on resume, as in the original)
    models/NAME/model_ckpt_steps_N.ckpt      checkpoints in the original Diff-SVC layout
    models/NAME/data_stats.json              the training data's f0 statistics (infer --key auto)
    models/NAME/logs/                        TensorBoard
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from diffsvc.checkpoint import find_checkpoints, latest_checkpoint
from diffsvc.config import Config, load_config, save_config
from diffsvc.audio.mel import CONFIG_KEYS, HIFIGAN_KEYS
from diffsvc.data.prepared import PreparedData
from diffsvc.errors import DiffSvcError

CONFIG_NAME = "config.yaml"
DATA_STATS_NAME = "data_stats.json"
LOGS_NAME = "logs"
MIN_SPEC_RANGE = 1e-3  # a mel bin that never varies in the data would divide by zero when normalised

# manifest.mel key (MelSettings', the Config's or NSF-HiFiGAN's spelling) -> Config key, for the
# check that data and model agree
_MEL_KEYS = {**CONFIG_KEYS, **{key: key for key in CONFIG_KEYS.values()},
             **{HIFIGAN_KEYS[name]: CONFIG_KEYS[name] for name in CONFIG_KEYS}}


class Project:
    """The folder of one training project (see the module docstring for its files)."""

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
        """The project's config: `base` with the data's per-bin spec_min/spec_max and the content
        encoder and f0 method the data was prepared with (inference must use the same encoder).
        Written once, with the data's f0 statistics beside it."""
        config = config_with_data_stats(base, data)
        save_config(config, self.config_path)
        self.write_data_stats(data)
        return config

    def write_data_stats(self, data: PreparedData) -> None:
        """Copy the data's f0 statistics (median, log2 mean/std, range) for `infer --key auto`."""
        import json

        from diffsvc.fileio import atomic_write_text

        stats = {k: v for k, v in data.stats.items() if k.startswith("f0_")}
        if data.stats.get("speakers"):  # per singer, for --key auto with --speaker
            stats["speakers"] = data.stats["speakers"]
        stats["f0_settings"] = data.manifest.f0
        stats["content"] = data.manifest.content
        atomic_write_text(self.root / DATA_STATS_NAME, json.dumps(stats, indent=1))

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
    changes = {"spec_min": lo, "spec_max": hi, "speakers": list(data.manifest.speakers)}
    encoder = (data.manifest.content or {}).get("encoder")
    from diffsvc.features.content import CONTENT_ENCODERS
    from diffsvc.features.f0 import F0_EXTRACTORS

    if encoder in CONTENT_ENCODERS.names():
        changes.update(content_encoder=encoder, use_vec=encoder == "contentvec")
    extractor = (data.manifest.f0 or {}).get("extractor")
    if extractor in F0_EXTRACTORS.names():
        changes["f0_extractor"] = extractor
    return base.replace(**changes)


def check_data_matches(config: Config, data: PreparedData, config_source: str) -> None:
    """The prepared mels must have been made with the model's mel settings, and the data's singers
    must be the project's singer table."""
    from diffsvc.model.speakers import same_singers

    if not same_singers(list(data.manifest.speakers), list(config.speakers)):
        def said(names):
            return f"the singers {', '.join(names)}" if names else "one singer"

        raise DiffSvcError(
            f"{data.root}: the data holds {said(data.manifest.speakers)} but {config_source} was made for "
            f"{said(config.speakers)}; to add or change singers start a new project from this one with "
            "`diffsvc train --project NEW --init-from OLD_CHECKPOINT` (trained singers keep their rows), "
            "or train the data it was made with")
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
