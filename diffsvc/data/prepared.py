"""The prepared-data folder: what `diffsvc preprocess` writes and `diffsvc train` reads.

    <raw>/.diffsvc/
        manifest.json        pieces, settings, dataset statistics (written last, atomically)
        pieces/<id>.npy      audio of each piece, 44.1 kHz mono float32 (validation audio, re-extraction)
        mel/<id>.npy         log10 mel [T, M]
        f0/<key>.npy         f0 in Hz [T], 0 = unvoiced; key = hash(audio, every f0 setting)
        units/<key>.npy      content units [Th, 256]; key = hash(audio, encoder)

Every file goes through diffsvc.fileio (temporary name, then rename), so a killed run leaves
only whole files and the next run redoes only what is missing. The folder is hidden inside the
raw folder, so `preprocess raw/` then `train` finds it without naming anything, and audio scans
skip it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from diffsvc.errors import DiffSvcError
from diffsvc.fileio import atomic_np_save, atomic_write_text

PREPARED_DIRNAME = ".diffsvc"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def prepared_dir(raw_dir: str | os.PathLike) -> Path:
    return Path(raw_dir) / PREPARED_DIRNAME


def content_hash(array: np.ndarray) -> str:
    """A short stable hash of an audio array's bytes."""
    return hashlib.sha1(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()[:16]


def settings_hash(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class Piece:
    id: str
    source: str  # path relative to the raw folder
    start: int  # samples at 44.1 kHz within the source
    end: int
    frames: int  # mel frames
    split: str  # "train" or "valid"
    f0_key: str
    units_key: str
    voiced_fraction: float = 0.0

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / 44100


@dataclass
class Manifest:
    format: int = FORMAT_VERSION
    mel: dict = field(default_factory=dict)  # sample_rate, hop_size, ... (must match the model config)
    f0: dict = field(default_factory=dict)  # the f0 extractor's settings
    content: dict = field(default_factory=dict)  # encoder name, is_standin
    pieces: list[Piece] = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # spec_min, spec_max (per bin), f0 statistics; "speakers": per singer
    dropped: list[dict] = field(default_factory=list)  # {source, reason}
    failed: list[dict] = field(default_factory=list)  # {source, error}
    speakers: list = field(default_factory=list)  # the singer table (raw/<singer>/ folders); [] = one singer

    def speaker_of(self, piece: Piece) -> str | None:
        """The singer of a piece (its source's top folder), or None for a one-singer dataset."""
        from diffsvc.data.singers import singer_of

        return singer_of(piece.source, self.speakers)

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        data["pieces"] = [Piece(**p) for p in data.get("pieces", [])]
        return cls(**data)


class PreparedData:
    """Read access to a prepared-data folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.exists():
            raise DiffSvcError(
                f"{self.root}: no prepared data here; run `diffsvc preprocess <folder of recordings>` first "
                "(or pass --data with the folder preprocess wrote)"
            )
        try:
            self.manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, TypeError, KeyError) as e:
            raise DiffSvcError(f"{path}: damaged manifest ({e}); run `diffsvc preprocess` again") from None
        if self.manifest.format != FORMAT_VERSION:
            raise DiffSvcError(f"{path}: prepared with another diffsvc version; run `diffsvc preprocess` again")

    @classmethod
    def find(cls, data: str | os.PathLike) -> "PreparedData":
        """Accept the raw folder (its .diffsvc inside) or the prepared folder itself."""
        data = Path(data)
        if (data / MANIFEST).exists():
            return cls(data)
        return cls(prepared_dir(data))

    def pieces(self, split: str | None = None) -> list[Piece]:
        return [p for p in self.manifest.pieces if split is None or p.split == split]

    @property
    def stats(self) -> dict:
        return self.manifest.stats

    def mel_path(self, piece: Piece) -> Path:
        return self.root / "mel" / f"{piece.id}.npy"

    def f0_path(self, piece: Piece) -> Path:
        return self.root / "f0" / f"{piece.f0_key}.npy"

    def units_path(self, piece: Piece) -> Path:
        return self.root / "units" / f"{piece.units_key}.npy"

    def audio_path(self, piece: Piece) -> Path:
        return self.root / "pieces" / f"{piece.id}.npy"

    def load(self, piece: Piece) -> dict[str, np.ndarray]:
        """{mel [T,M] float32, f0 [T] Hz float32, units [Th,256] float32}."""
        try:
            return {
                "mel": np.load(self.mel_path(piece)),
                "f0": np.load(self.f0_path(piece)).astype(np.float32),
                "units": np.load(self.units_path(piece)).astype(np.float32),
            }
        except (OSError, ValueError) as e:
            raise DiffSvcError(f"{self.root}: piece {piece.id} is missing or damaged ({e}); "
                               "run `diffsvc preprocess` again to redo it") from None

    def load_audio(self, piece: Piece) -> np.ndarray:
        return np.load(self.audio_path(piece))


def write_manifest(root: str | os.PathLike, manifest: Manifest) -> None:
    atomic_write_text(Path(root) / MANIFEST, manifest.to_json())


def save_array(path: Path, array: np.ndarray) -> None:
    atomic_np_save(path, array)


def dataset_stats(mels: list[np.ndarray], f0s: list[np.ndarray]) -> dict:
    """spec_min/spec_max per mel bin (what the model normalises with) and f0 statistics of the
    voiced frames (median in Hz and log2 mean/std, used by `infer --key auto`)."""
    spec_min = np.min([m.min(axis=0) for m in mels], axis=0)
    spec_max = np.max([m.max(axis=0) for m in mels], axis=0)
    voiced = np.concatenate([f[f > 0] for f in f0s]) if f0s else np.zeros(0)
    stats = {"spec_min": spec_min.astype(float).tolist(), "spec_max": spec_max.astype(float).tolist()}
    if voiced.size:
        log2 = np.log2(voiced)
        stats.update(f0_median_hz=float(np.median(voiced)), f0_log2_mean=float(log2.mean()),
                     f0_log2_std=float(log2.std()), f0_p05_hz=float(np.percentile(voiced, 5)),
                     f0_p95_hz=float(np.percentile(voiced, 95)))
    return stats
