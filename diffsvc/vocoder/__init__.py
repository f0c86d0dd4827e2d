"""Vocoders: NSF-HiFiGAN (the original's) and a weight-free Griffin-Lim stand-in, one interface.

    vocoder = make_vocoder(config, device)                 # the one config.vocoder names, checked
    vocoder = load_vocoder("models/nsf_hifigan", device)   # or GriffinLimVocoder.from_config(config)
    vocoder.check_config(config)                           # ConfigError if the mel settings differ
    wav = vocoder.vocode(mel_log10, f0_hz)                 # [T, M], [T] -> [T * hop]

The VOCODERS registry names them; adding one is one new module with a
`@VOCODERS.register("name")` Vocoder subclass (with `for_config(config, device)`) plus its import
below.
"""

from diffsvc.audio.mel import MelSettings
from diffsvc.vocoder.base import VOCODERS, Vocoder
from diffsvc.vocoder.windowed import NsfHifiGan  # registers "nsf-hifigan" (first: the default)
from diffsvc.vocoder.griffin_lim import GriffinLimVocoder  # registers "griffin-lim"
from diffsvc.vocoder.loading import load_vocoder, save_vocoder
from diffsvc.vocoder.nsf_hifigan import Generator


def make_vocoder(config, device) -> Vocoder:
    """The vocoder named by config.vocoder on `device`, checked against the config's mel settings.

    Errors: UnknownPartError for an unknown name, CheckpointError for missing weights,
    ConfigError naming each mel setting that differs from the vocoder's."""
    vocoder = VOCODERS.get(config.vocoder).for_config(config, device)
    vocoder.check_config(config)
    return vocoder


__all__ = ["Generator", "GriffinLimVocoder", "MelSettings", "NsfHifiGan", "VOCODERS", "Vocoder", "load_vocoder",
           "make_vocoder", "save_vocoder"]
