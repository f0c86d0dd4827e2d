"""f0 extraction on the mel frame grid: one interface, one class per method.

    f0 = extract_f0(wav44k, 44100, 512, n_frames, "crepe", 40.0, 1100.0)   # float32 [n_frames], Hz

Frame i of the result belongs to mel frame i; unvoiced frames are 0. The model later fills the
gaps by interpolating log2(f0) (`norm_interp_f0`); `interpolate_like_original` gives the original
CREPE path's Hz-domain filling instead.

Methods live in `F0_EXTRACTORS` (the registry below): "crepe" (torchcrepe full, the original's
default), "crepe-tiny", "parselmouth" (Praat autocorrelation, the original's `use_crepe: false`),
"fcpe" (torchfcpe, optional extra). Adding one is one new file here (a subclass of F0Extractor
with `_extract`) plus one `F0_EXTRACTORS.add(...)` line below; the CLI's --f0, the config's
f0_extractor and the contract test (tests/test_registries.py) pick it up from the registry.
Each extractor's `settings()` lists every setting that changes its numbers; preprocessing uses it
as the f0 cache key, so a changed threshold or range can never reuse stale f0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from diffsvc.errors import AudioError, DiffSvcError
from diffsvc.registry import Registry

F0_EXTRACTORS = Registry("f0 method", "f0_extractor")
# name -> "module:Class", imported on first use so that `import diffsvc.features.f0` stays light
F0_EXTRACTORS.add("crepe", "diffsvc.features.f0.crepe:CrepeF0", aliases=("crepe-full",),
                  doc="torchcrepe full model, Viterbi decoding (the original's default)")
F0_EXTRACTORS.add("crepe-tiny", "diffsvc.features.f0.crepe:CrepeTinyF0",
                  doc="torchcrepe tiny model (about 30x faster than full, a bit less exact)")
F0_EXTRACTORS.add("parselmouth", "diffsvc.features.f0.praat:PraatF0", aliases=("praat",),
                  doc="Praat autocorrelation (the original's use_crepe: false)")
F0_EXTRACTORS.add("fcpe", "diffsvc.features.f0.fcpe:FcpeF0",
                  doc="torchfcpe's bundled model (optional extra diffsvc[fcpe])")
METHODS = F0_EXTRACTORS.names()


class F0Extractor(ABC):
    """Waveform -> f0 in Hz on the mel grid (hop `hop_size` at `sample_rate`), 0 = unvoiced.

    Every extractor takes the same constructor keywords (sample_rate Hz, hop_size samples, f0_min
    and f0_max Hz, device) plus its own options; DiffSvcError for an impossible range or rate.
    """

    name: str = ""
    version: int = 1  # bump when an implementation change alters the numbers (invalidates caches)

    def __init__(self, sample_rate: int = 44100, hop_size: int = 512, f0_min: float = 40.0,
                 f0_max: float = 1100.0, device: str = "cpu"):
        if not 0 < f0_min < f0_max:
            raise DiffSvcError(f"f0 range {f0_min}..{f0_max} Hz is invalid; f0_min must be > 0 and below f0_max")
        if sample_rate <= 0 or hop_size <= 0:
            raise DiffSvcError(f"sample_rate ({sample_rate}) and hop_size ({hop_size}) must be positive")
        self.sample_rate = int(sample_rate)
        self.hop_size = int(hop_size)
        self.f0_min = float(f0_min)
        self.f0_max = float(f0_max)
        self.device = str(device)

    def settings(self) -> dict[str, Any]:
        """Every setting that changes the result (device is left out: it changes only rounding)."""
        return {"extractor": self.name, "version": self.version, "sample_rate": self.sample_rate,
                "hop_size": self.hop_size, "f0_min": self.f0_min, "f0_max": self.f0_max}

    @classmethod
    def from_options(cls, *, crepe_threshold: float = 0.05, **kwargs) -> "F0Extractor":
        """Build from the common keywords plus the config's `crepe_threshold` (used only by the
        extractors whose threshold is on CREPE's periodicity scale) and `fcpe_threshold`."""
        kwargs.pop("fcpe_threshold", None)
        return cls(**kwargs)

    def __call__(self, wav: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        return self.extract(wav, n_frames)

    def extract(self, wav: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        """f0 float32 [n_frames] (default len(wav) // hop_size, the mel frame count)."""
        wav = check_waveform(wav)
        if n_frames is None:
            n_frames = len(wav) // self.hop_size
        if n_frames <= 0:
            return np.zeros(0, dtype=np.float32)
        f0 = np.asarray(self._extract(wav, int(n_frames)), dtype=np.float32)
        assert f0.shape == (n_frames,), (f0.shape, n_frames)
        return np.nan_to_num(f0, nan=0.0, posinf=0.0, neginf=0.0)

    @abstractmethod
    def _extract(self, wav: np.ndarray, n_frames: int) -> np.ndarray:
        """wav: finite float32 mono at self.sample_rate. Returns [n_frames] Hz, 0 = unvoiced."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings()})"


def check_waveform(wav) -> np.ndarray:
    """A finite float32 1-D array, or one clear AudioError."""
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise AudioError(f"f0 extraction expects mono audio as a 1-D array, got shape {wav.shape}; "
                         "mix channels down first (load_audio does)")
    wav = wav.astype(np.float32, copy=False)
    if not np.all(np.isfinite(wav)):
        raise AudioError("audio passed to f0 extraction contains NaN or infinite samples; fix or re-export the file")
    return wav


def interpolate_like_original(f0: np.ndarray) -> np.ndarray:
    """Fill unvoiced (0) frames by linear interpolation in Hz, holding the ends (original CREPE path).

    All-unvoiced input stays all zero (the original then skipped the item as "empty f0").
    """
    f0 = np.asarray(f0, dtype=np.float32)
    voiced = f0 > 0
    if not voiced.any():
        return f0.copy()
    idx = np.arange(len(f0))
    return np.interp(idx, idx[voiced], f0[voiced]).astype(np.float32)


def make_f0_extractor(method: str, sample_rate: int = 44100, hop_size: int = 512, f0_min: float = 40.0,
                      f0_max: float = 1100.0, device: str = "cpu", threshold: float = 0.05, **kwargs) -> F0Extractor:
    """Build the extractor registered as `method` (see F0_EXTRACTORS; DiffSvcError listing the
    choices if unknown).

    `threshold` is CREPE's periodicity threshold (the original's `thre`); FCPE has its own scale
    (its default 0.006) and takes it as `fcpe_threshold`; Praat ignores it.
    """
    cls = F0_EXTRACTORS.get(method)
    return cls.from_options(sample_rate=sample_rate, hop_size=hop_size, f0_min=f0_min, f0_max=f0_max,
                            device=device, crepe_threshold=threshold, **kwargs)


def extract_f0(wav44k: np.ndarray, sample_rate: int, hop_size: int, n_frames: int | None, method: str = "crepe",
               f0_min: float = 40.0, f0_max: float = 1100.0, device: str = "cpu", threshold: float = 0.05,
               **kwargs) -> np.ndarray:
    """f0 in Hz, float32 [n_frames], frame i = mel frame i, 0 = unvoiced."""
    extractor = make_f0_extractor(method, sample_rate, hop_size, f0_min, f0_max, device, threshold, **kwargs)
    return extractor.extract(wav44k, n_frames)


def __getattr__(name: str):
    # The classes load on first use so `import diffsvc.features.f0` stays light (no torch import).
    cls = F0_EXTRACTORS.class_named(name)
    if cls is None:
        raise AttributeError(name)
    return cls


__all__ = ["F0Extractor", "F0_EXTRACTORS", "METHODS", "check_waveform", "extract_f0", "interpolate_like_original",
           "make_f0_extractor", "CrepeF0", "CrepeTinyF0", "PraatF0", "FcpeF0"]
