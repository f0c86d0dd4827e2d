"""Shared test helpers: where the reference fixtures live, and tiny model configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The original Diff-SVC's numeric fixtures, shipped with the tests (copied from shared/reference/fixtures;
    tests/fixtures/README.md says how each was made). They always run: a missing folder is an error, not a skip."""
    assert FIXTURES.is_dir(), f"reference fixtures missing at {FIXTURES}"
    return FIXTURES


def tiny_config(**overrides):
    """A model small enough to train and sample on CI's 2 cores in seconds."""
    from diffsvc.config import Config

    values = dict(residual_layers=2, residual_channels=8, hidden_size=256, spec_min=[-5.0], spec_max=[0.0],
                  timesteps=100, K_step=100, crop_frames=0, ds_workers=0)
    values.update(overrides)
    return Config(**values).validate("<tiny>")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module's tests: tiny models run ten times faster on one thread
    than on two busy cores (use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
