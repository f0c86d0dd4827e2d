"""Content units: what is sung, with as little of who sings it as the encoder manages.

    encoder = load_content_encoder(config, device="cuda")
    units = encoder.encode(wav, sample_rate)   # torch.float32 [Th, 256] on the CPU, 50 frames/s

`config.content_encoder` picks the model from the CONTENT_ENCODERS registry: "hubert-soft"
(bshall's HuBERT-soft, the original Diff-SVC default, from `config.hubert_path`) or "contentvec"
(a fairseq ContentVec/HuBERT checkpoint from `config.contentvec_path`, layer 9 through final_proj,
as the original's use_vec) or "stand-in" (weight-free MFCC features for the offline demo; not
speaker-independent).

Adding an encoder is one ContentEncoder subclass with the registry's constructor shape
(`weights_key`, `public_name`, `weights_source` and `load(path, **options)`; path is None for a
weight-free one) and one `@CONTENT_ENCODERS.register("name")`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from diffsvc.errors import CheckpointError, DiffSvcError
from diffsvc.features.content.encoder import ContentEncoder, HubertContentEncoder, prepare_wav
from diffsvc.features.content.fairseq_hubert import CONTENTVEC_OUTPUT_LAYER
from diffsvc.features.content.standin import StandinContentEncoder
from diffsvc.modelfile.locate import find_model_file, not_found_message
from diffsvc.registry import Registry

__all__ = [
    "CONTENT_ENCODERS", "ContentEncoder", "HubertContentEncoder", "HubertSoftEncoder", "ContentVecEncoder",
    "StandinContentEncoder", "load_content_encoder", "find_weights",
    "hubert_soft_encoder", "contentvec_encoder", "prepare_wav",
    "HUBERT_SOFT_PUBLIC_NAME", "CONTENTVEC_PUBLIC_NAME",
]

log = logging.getLogger(__name__)

HUBERT_SOFT_PUBLIC_NAME = "hubert-soft-0d54a1f4.pt"
CONTENTVEC_PUBLIC_NAME = "checkpoint_best_legacy_500.pt"

CONTENT_ENCODERS = Registry("content encoder", "content_encoder")


@CONTENT_ENCODERS.register("hubert-soft", doc="bshall's HuBERT-soft (the original's default; hubert_path)")
class HubertSoftEncoder(HubertContentEncoder):
    """HuBERT-soft as a ContentEncoder: all layers, 40-sample pad, units [Th, 256] at 50 frames/s."""

    weights_key = "hubert_path"
    public_name = HUBERT_SOFT_PUBLIC_NAME
    weights_source = f"HuBERT-soft weights ({HUBERT_SOFT_PUBLIC_NAME}, github.com/bshall/hubert release v0.1)"

    def __init__(self, model, **options):
        super().__init__(model, "hubert-soft", input_padding=model.input_padding, **options)

    title = "HuBERT-soft content encoder"

    @classmethod
    def load(cls, path: Path, **options) -> "HubertSoftEncoder":
        from diffsvc.features.content.loading import load_hubert_soft

        return cls(load_hubert_soft(path), **options)

    @classmethod
    def describe_weights(cls, path: Path) -> str:
        """Load the file into the real architecture; one line about it (CheckpointError if broken)."""
        from diffsvc.features.content.loading import load_hubert_soft

        model = load_hubert_soft(path)
        return f"HuBERT-soft, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"


@CONTENT_ENCODERS.register("contentvec", doc="ContentVec, fairseq checkpoint, layer 9 + final_proj (contentvec_path)")
class ContentVecEncoder(HubertContentEncoder):
    """A fairseq-HuBERT module as Diff-SVC used ContentVec: no padding, layer 9, final_proj."""

    weights_key = "contentvec_path"
    public_name = CONTENTVEC_PUBLIC_NAME
    weights_source = f"ContentVec checkpoint ({CONTENTVEC_PUBLIC_NAME}, github.com/auspicious3000/contentvec)"

    def __init__(self, model, *, output_layer: int = CONTENTVEC_OUTPUT_LAYER, **options):
        super().__init__(model, "contentvec", input_padding=0, output_layer=output_layer, **options)

    title = "ContentVec content encoder"

    @classmethod
    def load(cls, path: Path, **options) -> "ContentVecEncoder":
        from diffsvc.features.content.loading import load_fairseq_hubert

        model, _ = load_fairseq_hubert(path)
        return cls(model, **options)

    @classmethod
    def describe_weights(cls, path: Path) -> str:
        from diffsvc.features.content.loading import load_fairseq_hubert

        model, _ = load_fairseq_hubert(path)
        return f"fairseq HuBERT/ContentVec, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"


CONTENT_ENCODERS.add("stand-in", StandinContentEncoder,
                     doc="weight-free MFCC features (offline demo only; not speaker-independent)")


def hubert_soft_encoder(model, **options) -> HubertContentEncoder:
    """A HubertSoft module (weights already loaded) as a ContentEncoder: all layers, 40-sample pad."""
    return HubertSoftEncoder(model, **options)


def contentvec_encoder(model, *, output_layer: int = CONTENTVEC_OUTPUT_LAYER, **options) -> HubertContentEncoder:
    """A fairseq-HuBERT module as Diff-SVC used ContentVec: no padding, layer 9, final_proj."""
    return ContentVecEncoder(model, output_layer=output_layer, **options)


def find_weights(kind: str, config) -> Path | None:
    """The weights file of encoder `kind` for `config`: the configured path, else the public file
    name in the same folder, or the original's `checkpoints/` places (diffsvc.modelfile.locate);
    None if none exists or the encoder needs no weights."""
    cls = CONTENT_ENCODERS.get(kind)
    if cls.weights_key is None:
        return None
    return find_model_file(cls.weights_key, getattr(config, cls.weights_key), cls.public_name)


def load_content_encoder(config, device="cpu", allow_standin: bool = False, **options) -> ContentEncoder:
    """The content encoder that `config.content_encoder` names, on `device`.

    The weights file is the config key the encoder names (`hubert_path` / `contentvec_path`), or
    the public file name in the same folder; a path in the original's `checkpoints/` layout is also
    looked for under `models/` (diffsvc.modelfile.locate). When it is missing: CheckpointError
    saying which file to put where, or, with allow_standin, the weight-free MFCC stand-in (logged as
    a warning). `options` go to the encoder (res_type, legacy_22050, window_frames, context_frames).
    """
    kind = "contentvec" if getattr(config, "use_vec", False) else config.content_encoder
    try:
        cls = CONTENT_ENCODERS.get(kind)
    except DiffSvcError as e:
        raise CheckpointError(str(e)) from None
    if cls.weights_key is None:  # chosen on purpose (the offline demo), so no warning
        return cls.load(None).to(device)
    configured = getattr(config, cls.weights_key)
    path = find_weights(kind, config)
    if path is not None:
        return cls.load(path, **options).to(device)
    if allow_standin:
        log.warning("%s not found; using the %s: content is NOT speaker-independent", configured,
                    StandinContentEncoder.name)
        return StandinContentEncoder().to(device)
    raise CheckpointError(not_found_message(cls.weights_key, configured, cls.weights_source, cls.public_name))
