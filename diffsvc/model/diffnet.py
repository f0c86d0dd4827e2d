"""Moved to diffsvc.model.backbones.diffnet (one file per denoiser backbone); kept for old imports."""

from diffsvc.model.backbones.diffnet import DiffNet, ResidualBlock, SinusoidalStepEmbedding

__all__ = ["DiffNet", "ResidualBlock", "SinusoidalStepEmbedding"]
