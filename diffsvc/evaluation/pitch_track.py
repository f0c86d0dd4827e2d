"""Re-tracking the f0 of converted audio with an extractor other than the one that conditioned it,
so the pitch figures do not share that extractor's errors.

    method, note = retrack_method("parselmouth")   # -> "fcpe" (or "crepe-tiny" without torchfcpe)
"""

from __future__ import annotations

from diffsvc.features.f0 import make_f0_extractor


def retrack_method(conditioning: str) -> tuple[str, str]:
    """(method, note): Praat for CREPE/FCPE-conditioned models; FCPE for Praat-conditioned ones,
    else CREPE-tiny when torchfcpe is missing (the note then says so)."""
    if conditioning in ("parselmouth", "praat"):
        from diffsvc.features.f0.fcpe import fcpe_available

        if fcpe_available():
            return "fcpe", ""
        return "crepe-tiny", "pitch re-tracked with crepe-tiny (torchfcpe not installed: pip install 'diffsvc[fcpe]')"
    return "parselmouth", ""


def retrack_extractor(config, conditioning: str, device: str = "cpu"):
    """The re-tracking extractor on the project's mel grid and f0 range, and its note."""
    method, note = retrack_method(conditioning)
    extractor = make_f0_extractor(method, config.audio_sample_rate, config.hop_size, config.f0_min, config.f0_max,
                                  device=device, threshold=config.crepe_threshold)
    return extractor, note


def track(extractor, wav, n_frames: int):
    """f0 [n_frames] of `wav`, its level brought under 0.9 first: pitch does not depend on level,
    and FCPE's resampler overshoots (and complains) on audio that touches full scale."""
    import numpy as np

    wav = np.asarray(wav, dtype=np.float32)
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak > 0.9:
        wav = wav * (0.9 / peak)
    return extractor.extract(wav, n_frames)
