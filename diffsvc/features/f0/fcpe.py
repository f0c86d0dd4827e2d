"""FCPE f0 (torchfcpe's bundled model), an optional extra: `pip install diffsvc[fcpe]`.

The weights ship inside the torchfcpe wheel (assets/fcpe_c_v001.pt); they are read through
`safe_torch_load` (weights_only) and nothing is downloaded. torchfcpe resamples to its 16 kHz
internally (torchaudio) and predicts on a 10 ms grid; we map that grid onto the mel frames by
time (values from the nearest FCPE frames, linear in Hz between voiced neighbours).
FCPE's own range is 32.7-1975.5 Hz; values outside [f0_min, f0_max] are reported as unvoiced.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from diffsvc.errors import DiffSvcError
from diffsvc.features.f0 import F0Extractor

DEFAULT_THRESHOLD = 0.006  # torchfcpe's default voicing threshold (its own scale, not CREPE's)
INSTALL_HINT = "FCPE needs the optional package torchfcpe: pip install 'diffsvc[fcpe]' (or pip install torchfcpe)"


def fcpe_available() -> bool:
    try:
        import torchfcpe  # noqa: F401
    except ImportError:
        return False
    return True


def bundled_weights_path() -> Path:
    try:
        import torchfcpe
    except ImportError:
        raise DiffSvcError(INSTALL_HINT) from None
    return Path(torchfcpe.__file__).parent / "assets" / "fcpe_c_v001.pt"


@functools.lru_cache(maxsize=4)
def load_fcpe_model(device: str = "cpu"):
    """torchfcpe's inference wrapper around the bundled weights, in eval mode on `device`."""
    from torchfcpe.models_infer import InferCFNaiveMelPE
    from torchfcpe.tools import DotDict

    from diffsvc.modelfile.torch_load import safe_torch_load

    ckpt = safe_torch_load(bundled_weights_path(), allow_unsafe=None, what="FCPE model file")
    config = ckpt["config_dict"]
    # what torchfcpe.spawn_bundled_infer_model does, minus its unsafe torch.load and its prints
    config["model"]["conv_dropout"] = 0.0
    config["model"]["atten_dropout"] = 0.0
    config["model"].setdefault("use_harmonic_emb", False)  # torchfcpe's default, set to silence its warning
    model = InferCFNaiveMelPE(DotDict(config), ckpt["model"])
    return model.to(device).eval()


class FcpeF0(F0Extractor):
    name = "fcpe"

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, decoder: str = "local_argmax", **kwargs):
        super().__init__(**kwargs)
        if not fcpe_available():
            raise DiffSvcError(INSTALL_HINT)
        if decoder not in ("local_argmax", "argmax"):
            raise DiffSvcError(f"FCPE decoder {decoder!r} is unknown; use 'local_argmax' or 'argmax'")
        self.threshold = float(threshold)
        self.decoder = decoder

    @classmethod
    def from_options(cls, *, crepe_threshold: float = 0.05, **kwargs) -> "FcpeF0":
        # CREPE's threshold is on another scale; FCPE's own comes as fcpe_threshold
        if "fcpe_threshold" in kwargs:
            kwargs["threshold"] = kwargs.pop("fcpe_threshold")
        return cls(**kwargs)

    def settings(self) -> dict[str, Any]:
        import torchfcpe

        return {**super().settings(), "threshold": self.threshold, "decoder": self.decoder,
                "weights": "fcpe_c_v001", "torchfcpe": getattr(torchfcpe, "__version__", "0.0.4")}

    def _extract(self, wav: np.ndarray, n_frames: int) -> np.ndarray:
        import torch

        model = load_fcpe_model(self.device)
        with torch.inference_mode():
            audio = torch.from_numpy(np.ascontiguousarray(wav))[None, :, None].to(self.device)
            f0 = model(audio, self.sample_rate, decoder_mode=self.decoder, threshold=self.threshold)
        f0 = f0[0, :, 0].float().cpu().numpy()
        f0 = np.where((f0 >= self.f0_min) & (f0 <= self.f0_max), f0, 0.0)
        hop_s = model.get_hop_size() / model.get_model_sr()
        return to_frame_grid(f0, hop_s, np.arange(n_frames) * self.hop_size / self.sample_rate)


def to_frame_grid(f0: np.ndarray, src_hop_s: float, times: np.ndarray) -> np.ndarray:
    """Hz on a source grid -> Hz at `times`: voicing from the nearest source frame, values linear
    between voiced source frames."""
    voiced = f0 > 0
    if not voiced.any():
        return np.zeros(len(times), dtype=np.float32)
    src_times = np.arange(len(f0)) * src_hop_s
    values = np.interp(times, src_times[voiced], f0[voiced])
    voicing = np.interp(times, src_times, voiced.astype(np.float64))
    return np.where(voicing >= 0.5, values, 0.0).astype(np.float32)
