"""The content encoder and the vocoder a project's config names, loaded with clear errors.

The config says which ones the model was trained with (content_encoder, hubert_path /
contentvec_path, vocoder, vocoder_ckpt); relative paths are taken from the working directory, as
the original did (`models/...`).
"""

from __future__ import annotations

import torch

from diffsvc.config import Config

def load_content_encoder_for(config: Config, device: torch.device):
    """The encoder named by config.content_encoder, on `device`. A missing HuBERT/ContentVec file is
    an error naming it (never a silent fall-back: the model was trained on that encoder's units)."""
    from diffsvc.features.content import load_content_encoder

    return load_content_encoder(config, device=str(device), allow_standin=False)


def load_vocoder_for(config: Config, device: torch.device):
    """The vocoder named by config.vocoder, checked against the project's mel settings
    (diffsvc.vocoder.make_vocoder; kept here for the pipeline's imports)."""
    from diffsvc.vocoder import make_vocoder

    return make_vocoder(config, device)
