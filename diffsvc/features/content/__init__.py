"""Content units: what is sung, with as little of who sings it as the encoder manages.

    encoder = load_content_encoder(config, device="cuda")
    units = encoder.encode(wav, sample_rate)   # torch.float32 [Th, 256] on the CPU, 50 frames/s

`config.content_encoder` picks the model: "hubert-soft" (bshall's HuBERT-soft, the original
Diff-SVC default, from `config.hubert_path`) or "contentvec" (a fairseq ContentVec/HuBERT
checkpoint from `config.contentvec_path`, layer 9 through final_proj, as the original's use_vec)
or "stand-in" (weight-free MFCC features for the offline demo; not speaker-independent).
"""

from __future__ import annotations

import logging
from diffsvc.errors import CheckpointError
from diffsvc.features.content.encoder import ContentEncoder, HubertContentEncoder, prepare_wav
from diffsvc.features.content.fairseq_hubert import CONTENTVEC_OUTPUT_LAYER
from diffsvc.features.content.standin import StandinContentEncoder
from diffsvc.modelfile.locate import find_model_file, not_found_message

__all__ = [
    "ContentEncoder", "HubertContentEncoder", "StandinContentEncoder", "load_content_encoder",
    "hubert_soft_encoder", "contentvec_encoder", "prepare_wav",
    "HUBERT_SOFT_PUBLIC_NAME", "CONTENTVEC_PUBLIC_NAME",
]

log = logging.getLogger(__name__)

HUBERT_SOFT_PUBLIC_NAME = "hubert-soft-0d54a1f4.pt"
CONTENTVEC_PUBLIC_NAME = "checkpoint_best_legacy_500.pt"


def hubert_soft_encoder(model, **options) -> HubertContentEncoder:
    """A HubertSoft module (weights already loaded) as a ContentEncoder: all layers, 40-sample pad."""
    return HubertContentEncoder(model, "hubert-soft", input_padding=model.input_padding, **options)


def contentvec_encoder(model, *, output_layer: int = CONTENTVEC_OUTPUT_LAYER, **options) -> HubertContentEncoder:
    """A fairseq-HuBERT module as Diff-SVC used ContentVec: no padding, layer 9, final_proj."""
    return HubertContentEncoder(model, "contentvec", input_padding=0, output_layer=output_layer, **options)


def load_content_encoder(config, device="cpu", allow_standin: bool = False, **options) -> ContentEncoder:
    """The content encoder that `config.content_encoder` names, on `device`.

    The weights file is `config.hubert_path` / `config.contentvec_path`, or the public file name in
    the same folder; a path in the original's `checkpoints/` layout is also looked for under
    `models/` (diffsvc.modelfile.locate). When it is missing: CheckpointError saying which file to put where, or, with
    allow_standin, the weight-free MFCC stand-in (logged as a warning). `options` go to the encoder
    (res_type, legacy_22050, window_frames, context_frames).
    """
    from diffsvc.features.content.loading import load_fairseq_hubert, load_hubert_soft

    kind = "contentvec" if getattr(config, "use_vec", False) else config.content_encoder
    if kind == "stand-in":  # chosen on purpose (the offline demo), so no warning
        return StandinContentEncoder().to(device)
    if kind == "hubert-soft":
        key, public, what = "hubert_path", HUBERT_SOFT_PUBLIC_NAME, (
            f"HuBERT-soft weights ({HUBERT_SOFT_PUBLIC_NAME}, github.com/bshall/hubert release v0.1)")
    elif kind == "contentvec":
        key, public, what = "contentvec_path", CONTENTVEC_PUBLIC_NAME, (
            f"ContentVec checkpoint ({CONTENTVEC_PUBLIC_NAME}, github.com/auspicious3000/contentvec)")
    else:
        raise CheckpointError(f"content_encoder {kind!r} is not one of hubert-soft, contentvec, stand-in")
    configured = getattr(config, key)
    path = find_model_file(key, configured, public)
    if path is not None and kind == "hubert-soft":
        return hubert_soft_encoder(load_hubert_soft(path), **options).to(device)
    if path is not None:
        model, _ = load_fairseq_hubert(path)
        return contentvec_encoder(model, **options).to(device)
    if allow_standin:
        log.warning("%s not found; using the %s: content is NOT speaker-independent", configured,
                    StandinContentEncoder.name)
        return StandinContentEncoder().to(device)
    raise CheckpointError(not_found_message(key, configured, what, public))
