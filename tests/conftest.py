"""Shared test helpers: where the reference fixtures live, and tiny model configurations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    env = os.environ.get("DIFFSVC_REFERENCE")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    path = reference_dir() / "fixtures"
    if not path.is_dir():
        pytest.skip(f"reference fixtures not found at {path} (set DIFFSVC_REFERENCE)")
    return path


def tiny_config(**overrides):
    """A model small enough to train and sample on CI's 2 cores in seconds."""
    from diffsvc.config import Config

    values = dict(residual_layers=2, residual_channels=8, hidden_size=256, spec_min=[-5.0], spec_max=[0.0],
                  timesteps=100, K_step=100, crop_frames=0, ds_workers=0)
    values.update(overrides)
    return Config(**values).validate("<tiny>")
