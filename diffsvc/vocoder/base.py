"""What every vocoder offers the rest of diffsvc, and the check that its mel matches ours.

A vocoder turns Diff-SVC's log10 mel [T, M] and f0 [T] (Hz, 0 = unvoiced) into audio [T * hop].
The original only printed a warning when the model's mel settings differed from the vocoder's,
and then produced noise; here a mismatch is a ConfigError naming the setting.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from diffsvc.audio.mel import CONFIG_KEYS, MelSettings
from diffsvc.errors import ConfigError
from diffsvc.registry import Registry

VOCODERS = Registry("vocoder", "vocoder")


def mel_mismatches(expected: MelSettings, given: MelSettings) -> list[str]:
    """Names of the settings that differ (floats compared with a small tolerance)."""
    names = []
    for f in dataclasses.fields(MelSettings):
        a, b = getattr(expected, f.name), getattr(given, f.name)
        if not math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6):
            names.append(f.name)
    return names


class Vocoder:
    """Base class: subclasses set `settings`, `name`, `is_standin` and implement `vocode` and `to`.

    Registered vocoders (VOCODERS) are built by `for_config(config, device)`, the one constructor
    shape the registry uses; a missing weights file is a CheckpointError naming it.
    """

    settings: MelSettings
    name: str = "vocoder"
    is_standin: bool = False
    weights_key: str | None = None  # config key of the weights; None: weight-free (`diffsvc models` skips it)
    weights_hint: str = ""  # `diffsvc models`' line for a missing file, with {places}

    @property
    def sample_rate(self) -> int:
        return self.settings.sample_rate

    @property
    def hop_size(self) -> int:
        return self.settings.hop_size

    @property
    def n_mels(self) -> int:
        return self.settings.n_mels

    @classmethod
    def for_config(cls, config, device) -> "Vocoder":
        """The vocoder a project's config describes, on `device` (not yet checked against it)."""
        raise NotImplementedError

    def to(self, device) -> "Vocoder":
        raise NotImplementedError

    def vocode(self, mel_log10: torch.Tensor, f0_hz: torch.Tensor) -> torch.Tensor:
        """log10 mel [T, M] and f0 [T] (Hz, 0 = unvoiced) -> audio [T * hop] on the vocoder's device."""
        raise NotImplementedError

    def check_mel_settings(self, sample_rate: int, n_mels: int, hop_size: int, n_fft: int, win_size: int,
                           fmin: float, fmax: float) -> None:
        """Raise ConfigError naming every setting that differs from this vocoder's."""
        given = MelSettings(sample_rate, n_mels, hop_size, n_fft, win_size, fmin, fmax).normalised()
        self._raise_on_mismatch(given, {name: name for name in CONFIG_KEYS})

    def check_config(self, config) -> None:
        """Same check for a diffsvc Config; the error names the config keys (audio_sample_rate, ...)."""
        self._raise_on_mismatch(MelSettings.from_config(config), CONFIG_KEYS)

    def _raise_on_mismatch(self, given: MelSettings, labels: dict[str, str]) -> None:
        bad = mel_mismatches(self.settings, given)
        if bad:
            details = ", ".join(
                f"{labels[n]} is {_fmt(getattr(given, n))} but the vocoder expects {_fmt(getattr(self.settings, n))}"
                for n in bad)
            raise ConfigError(
                f"mel settings do not match the vocoder {self.name}: {details}; "
                "use a config whose audio settings equal the vocoder's (its mel would otherwise come out as noise)")

    def _check_inputs(self, mel_log10: torch.Tensor, f0_hz: torch.Tensor) -> None:
        if mel_log10.dim() != 2 or mel_log10.shape[1] != self.n_mels:
            raise ConfigError(f"vocoder {self.name} takes a mel [T, {self.n_mels}], "
                              f"got shape {list(mel_log10.shape)} (audio_num_mel_bins must be {self.n_mels})")
        if f0_hz.dim() != 1 or f0_hz.shape[0] != mel_log10.shape[0]:
            raise ValueError(f"f0 must be [T] with T = {mel_log10.shape[0]} mel frames, got {list(f0_hz.shape)}")


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
