"""f0 extraction on the mel frame grid: one interface, one class per method.

    f0 = extract_f0(wav44k, 44100, 512, n_frames, "crepe", 40.0, 1100.0)   # float32 [n_frames], Hz

Frame i of the result belongs to mel frame i; unvoiced frames are 0. The model later fills the
gaps by interpolating log2(f0) (`norm_interp_f0`); `interpolate_like_original` gives the original
CREPE path's Hz-domain filling instead.

Methods: "crepe" (torchcrepe full, the original's default), "crepe-tiny", "parselmouth" (Praat
autocorrelation, the original's `use_crepe: false`), "fcpe" (torchfcpe, optional extra).
Each extractor's `settings()` lists every setting that changes its numbers; preprocessing uses it
as the f0 cache key, so a changed threshold or range can never reuse stale f0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from diffsvc.errors import AudioError, DiffSvcError

METHODS = ("crepe", "crepe-tiny", "parselmouth", "fcpe")


class F0Extractor(ABC):
    """Waveform -> f0 in Hz on the mel grid (hop `hop_size` at `sample_rate`), 0 = unvoiced."""

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
    """Build the extractor named `method` (one of METHODS).

    `threshold` is CREPE's periodicity threshold (the original's `thre`); FCPE has its own scale
    (its default 0.006) and takes it as `fcpe_threshold`; Praat ignores it.
    """
    common = dict(sample_rate=sample_rate, hop_size=hop_size, f0_min=f0_min, f0_max=f0_max, device=device)
    if method in ("crepe", "crepe-full", "crepe-tiny"):
        from diffsvc.features.f0.crepe import CrepeF0

        model = "tiny" if method == "crepe-tiny" else kwargs.pop("model", "full")
        return CrepeF0(model=model, threshold=threshold, **common, **kwargs)
    if method in ("parselmouth", "praat"):
        from diffsvc.features.f0.praat import PraatF0

        return PraatF0(**common, **kwargs)
    if method == "fcpe":
        from diffsvc.features.f0.fcpe import FcpeF0

        if "fcpe_threshold" in kwargs:
            kwargs["threshold"] = kwargs.pop("fcpe_threshold")
        return FcpeF0(**common, **kwargs)
    raise DiffSvcError(f"unknown f0 method {method!r}; choose one of {', '.join(METHODS)}")


def extract_f0(wav44k: np.ndarray, sample_rate: int, hop_size: int, n_frames: int | None, method: str = "crepe",
               f0_min: float = 40.0, f0_max: float = 1100.0, device: str = "cpu", threshold: float = 0.05,
               **kwargs) -> np.ndarray:
    """f0 in Hz, float32 [n_frames], frame i = mel frame i, 0 = unvoiced."""
    extractor = make_f0_extractor(method, sample_rate, hop_size, f0_min, f0_max, device, threshold, **kwargs)
    return extractor.extract(wav44k, n_frames)


def __getattr__(name: str):
    # The classes load on first use so `import diffsvc.features.f0` stays light (no torch import).
    if name == "CrepeF0":
        from diffsvc.features.f0.crepe import CrepeF0

        return CrepeF0
    if name == "PraatF0":
        from diffsvc.features.f0.praat import PraatF0

        return PraatF0
    if name == "FcpeF0":
        from diffsvc.features.f0.fcpe import FcpeF0

        return FcpeF0
    raise AttributeError(name)


__all__ = ["F0Extractor", "METHODS", "check_waveform", "extract_f0", "interpolate_like_original",
           "make_f0_extractor", "CrepeF0", "PraatF0", "FcpeF0"]
