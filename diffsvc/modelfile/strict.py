"""Strict state-dict loading with one good message, and the weight-norm key renames.

Every loader (Diff-SVC checkpoints, NSF-HiFiGAN, HuBERT-soft, fairseq HuBERT/ContentVec) compares
the file's tensors with the module's before loading, so a wrong or damaged file is one line that
counts the missing, unexpected and reshaped keys and names the first of each.

Weight norm: files saved with `torch.nn.utils.weight_norm` hold `NAME.weight_g` / `NAME.weight_v`;
the newer `torch.nn.utils.parametrizations.weight_norm` names them
`NAME.parametrizations.weight.original0` / `...original1`. Released files (NSF-HiFiGAN 20221211,
hubert-soft-0d54a1f4.pt, ContentVec) use the legacy names; `to_legacy_weight_norm` maps the new ones
onto them (torch's parametrization accepts the legacy names when loading).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch

from diffsvc.errors import CheckpointError

WEIGHT_NORM_RENAMES = {"parametrizations.weight.original0": "weight_g",
                       "parametrizations.weight.original1": "weight_v"}


def to_legacy_weight_norm(key: str) -> str:
    """`a.parametrizations.weight.original0` -> `a.weight_g` (and original1 -> weight_v); other keys unchanged."""
    for new, old in WEIGHT_NORM_RENAMES.items():
        if key.endswith(new):
            return key[: -len(new)] + old
    return key


@dataclass
class StateMismatch:
    """How a file's state dict differs from a module's: key lists, sorted as found."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    reshaped: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, file shape, module shape)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.reshaped)

    def keys_part(self, example: str = "e.g.") -> str:
        """'N missing (e.g. k); M unexpected (e.g. k)' for the key differences only."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({example} {self.missing[0]})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({example} {self.unexpected[0]})")
        return "; ".join(parts)


def compare_state(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], *,
                  optional: Iterable[str] = ()) -> StateMismatch:
    """Compare `found` (a file's tensors) with `expected` (a module's state_dict()).

    Keys of `expected` starting with a prefix in `optional` may be absent. Raises CheckpointError-free;
    the caller words the message."""
    optional = tuple(optional)
    missing = [k for k in expected if k not in found and not (optional and k.startswith(optional))]
    unexpected = [k for k in found if k not in expected]
    reshaped = [(k, tuple(found[k].shape), tuple(v.shape)) for k, v in expected.items()
                if k in found and tuple(found[k].shape) != tuple(v.shape)]
    return StateMismatch(missing, unexpected, reshaped)


def load_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str, kind: str, *,
                check_finite: bool = True) -> None:
    """Load `state` into `model` if its keys and shapes match exactly; else one CheckpointError line
    ('{source}: keys do not match {kind}: ...' or '{source}: KEY has shape X, {kind} needs Y')."""
    mismatch = compare_state(model.state_dict(), state)
    if mismatch.missing or mismatch.unexpected:
        raise CheckpointError(f"{source}: keys do not match {kind}: {mismatch.keys_part()}")
    if mismatch.reshaped:
        key, got, want = mismatch.reshaped[0]
        raise CheckpointError(f"{source}: {key} has shape {got}, {kind} needs {want}")
    if check_finite:
        check_finite_state(state, source)
    model.load_state_dict(state, strict=True)


def check_finite_state(state: Mapping[str, torch.Tensor], source: str) -> None:
    """One CheckpointError line naming the first tensor holding NaN or infinite values."""
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{source}: {key} holds NaN or infinite values; the file is damaged")
