"""Denoiser backbones, one file each, behind the BACKBONES registry (config key diff_decoder_type).

    "wavenet"  DiffNet (diffnet.py): the original's; original checkpoints load into it unchanged
    "lynxnet"  LYNXNet (lynxnet.py): ConvNeXt-style blocks with SwiGLU, as DiffSinger trains now

Adding one: a new file with a `@BACKBONES.register("name")` Backbone subclass (forward(spec, t,
cond, mask), `from_config(config)`, `in_dims`, `cond_dims`, `reach_frames`,
`activation_floats_per_frame()`), and its import below. The config's diff_decoder_type, the
trainer, checkpoints, the samplers and the window planner then take it as they take DiffNet;
tests/test_registries.py runs it through the same checks.
"""

from diffsvc.model.backbones.base import BACKBONES, Backbone, SinusoidalStepEmbedding
from diffsvc.model.backbones.diffnet import DiffNet  # registers "wavenet" (first: the default)
from diffsvc.model.backbones.lynxnet import LYNXNet  # registers "lynxnet"


def make_backbone(config) -> Backbone:
    """The denoiser `config.diff_decoder_type` names, sized from the config."""
    return BACKBONES.get(config.diff_decoder_type).from_config(config)


def backbone_of_state(state: dict) -> str | None:
    """The registered backbone whose parameter names a model state_dict (keys `denoise_fn.*`)
    holds, or None when no backbone's names match (used to explain a foreign checkpoint)."""
    for name in BACKBONES.names():
        probe = BACKBONES.get(name).STATE_KEY
        if f"denoise_fn.{probe}" in state:
            return name
    return None


__all__ = ["backbone_of_state", "BACKBONES", "Backbone", "DiffNet", "LYNXNet", "SinusoidalStepEmbedding", "make_backbone"]
