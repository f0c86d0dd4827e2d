"""Vocoders: NSF-HiFiGAN (the original's) and a weight-free Griffin-Lim stand-in, one interface.

    vocoder = load_vocoder("models/nsf_hifigan", device)   # or GriffinLimVocoder.from_config(config)
    vocoder.check_config(config)                           # ConfigError if the mel settings differ
    wav = vocoder.vocode(mel_log10, f0_hz)                 # [T, M], [T] -> [T * hop]
"""

from diffsvc.vocoder.base import MelSettings, Vocoder
from diffsvc.vocoder.griffin_lim import GriffinLimVocoder
from diffsvc.vocoder.loading import load_vocoder, save_vocoder
from diffsvc.vocoder.nsf_hifigan import Generator
from diffsvc.vocoder.windowed import NsfHifiGan

__all__ = ["Generator", "GriffinLimVocoder", "MelSettings", "NsfHifiGan", "Vocoder", "load_vocoder", "save_vocoder"]
