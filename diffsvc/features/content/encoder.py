"""The one interface the rest of diffsvc calls for content units, and the input checks behind it.

`encoder.encode(wav, sample_rate) -> torch.Tensor [Th, 256]` (float32, CPU) takes audio at any rate
and resamples it to 16 kHz itself with `librosa.resample(res_type="soxr_hq")` (the filter that
`diffsvc.audio` uses too). The original called librosa 0.9's default, kaiser_best (resampy); pass
`res_type="kaiser_best"` to reproduce that. ContentVec's original also loaded the file at 22050 Hz
first (librosa.load's default), so its audio went native -> 22050 -> 16000; `legacy_22050=True`
reproduces that double resampling, for matching the original's numbers only.

Bad input fails here with one AudioError line, never deep inside the model:
- empty, NaN/inf, non-numeric data, more than 2 dimensions, or an impossible sample rate;
- stereo is mixed to mono (the mean of the channels, as librosa.to_mono); a 2-D array must have its
  (at most 8) channels on the short axis, either [C, N] or [N, C];
- input too short for one frame (under 20 ms for HuBERT-soft, under 25 ms for ContentVec, which
  is not padded) raises AudioError rather than returning zero frames, because zero frames break
  the alignment to mel frames further on; `num_frames()` lets a caller check first.
- silence is valid input and gives units (the model's view of silence).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F

from diffsvc.errors import AudioError
from diffsvc.features.content.hubert_soft import SAMPLE_RATE, Hubert
from diffsvc.features.content.windowed import DEFAULT_CONTEXT_FRAMES, DEFAULT_WINDOW_FRAMES, encode_windowed

MAX_CHANNELS = 8
RESAMPLE_TYPES = ("soxr_hq", "kaiser_best")


def prepare_wav(
    wav, sample_rate, *, source: str = "<audio>", res_type: str = "soxr_hq", legacy_22050: bool = False
) -> np.ndarray:
    """Any numeric mono/multi-channel array or tensor at `sample_rate` -> float32 mono at 16 kHz."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer, np.floating)) or (
        not math.isfinite(sample_rate) or sample_rate <= 0 or float(sample_rate) != int(sample_rate)
    ):
        raise AudioError(f"{source}: sample rate {sample_rate!r} is not a positive whole number of Hz")
    sample_rate = int(sample_rate)
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    wav = np.asarray(wav)
    if wav.dtype.kind in "iu":  # PCM integers: full scale -> 1.0
        wav = wav.astype(np.float64) / float(np.iinfo(wav.dtype).max + 1)
    elif wav.dtype.kind != "f":
        raise AudioError(f"{source}: audio samples must be numbers, got dtype {wav.dtype}")
    wav = _to_mono(wav, source)
    if wav.size == 0:
        raise AudioError(f"{source}: the audio is empty (0 samples)")
    if not np.isfinite(wav).all():
        raise AudioError(f"{source}: the audio contains NaN or infinite samples; re-export or re-decode it")
    wav = wav.astype(np.float32)
    if res_type not in RESAMPLE_TYPES:
        raise ValueError(f"res_type must be one of {RESAMPLE_TYPES}, got {res_type!r}")
    if legacy_22050 and sample_rate != 22050:
        wav, sample_rate = _resample(wav, sample_rate, 22050, res_type), 22050
    if sample_rate != SAMPLE_RATE:
        wav = _resample(wav, sample_rate, SAMPLE_RATE, res_type)
    return np.ascontiguousarray(wav, dtype=np.float32)


def _to_mono(wav: np.ndarray, source: str) -> np.ndarray:
    if wav.ndim <= 1:
        return wav.reshape(-1)
    if wav.ndim == 2:
        rows, cols = wav.shape
        if rows <= MAX_CHANNELS and cols > rows:
            return wav.mean(axis=0)
        if cols <= MAX_CHANNELS and rows > cols:
            return wav.mean(axis=1)
    raise AudioError(f"{source}: cannot tell channels from samples in audio of shape {tuple(wav.shape)}; "
                     f"pass [samples], [channels, samples] or [samples, channels] with at most {MAX_CHANNELS} channels")


def _resample(wav: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray:
    import librosa

    if wav.shape[0] < 2:  # resamplers need two samples; one sample is one (too short) sample
        return wav
    return librosa.resample(wav, orig_sr=orig_sr, target_sr=target_sr, res_type=res_type)


class ContentEncoder(ABC):
    """Speech content features at 50 frames/s that the diffusion model is conditioned on."""

    name: str = "content encoder"
    # the registry's constructor shape (see diffsvc.features.content.CONTENT_ENCODERS)
    weights_key: str | None = None  # config key of the weights file; None: needs no weights
    public_name: str = ""  # the weights file's public name, also looked for beside the configured path
    weights_source: str = ""  # what the file is and where it comes from, for the missing-file error
    dim: int = 256
    frame_rate: float = 50.0
    is_standin: bool = False
    revision: int | None = None  # bumped when an encoder's features change (cached units are recomputed)

    def __init__(self, *, res_type: str = "soxr_hq", legacy_22050: bool = False):
        self.res_type = res_type
        self.legacy_22050 = legacy_22050
        self.device = torch.device("cpu")

    def encode(self, wav, sample_rate: int, *, source: str = "<audio>") -> torch.Tensor:
        """wav (numpy or tensor, mono [N] or 2-D multi-channel) at `sample_rate` -> [Th, dim]
        float32 CPU tensor. `source` names the audio in error messages."""
        wav16 = prepare_wav(wav, sample_rate, source=source, res_type=self.res_type, legacy_22050=self.legacy_22050)
        if self.frames_at_16k(wav16.shape[0]) == 0:
            raise AudioError(
                f"{source}: {wav16.shape[0] / SAMPLE_RATE * 1000:.1f} ms of audio is too short for content "
                f"units (one frame needs {self.min_samples_at_16k() / SAMPLE_RATE * 1000:g} ms)"
            )
        units = self._encode_16k(wav16)
        return units.to(device="cpu", dtype=torch.float32)

    def num_frames(self, num_samples: int, sample_rate: int) -> int:
        """Frames `encode` returns for `num_samples` at `sample_rate` (resampled length as librosa's)."""
        return self.frames_at_16k(math.ceil(num_samples * SAMPLE_RATE / sample_rate))

    def min_samples_at_16k(self) -> int:
        n = 1
        while self.frames_at_16k(n) == 0:
            n += 1
        return n

    @classmethod
    def load(cls, path, **options) -> "ContentEncoder":
        """Build the encoder from its weights file `path` (None for a weight-free encoder);
        CheckpointError for a missing, foreign or unsafe file."""
        return cls(**options)

    def to(self, device) -> "ContentEncoder":
        self.device = torch.device(device)
        return self

    @abstractmethod
    def frames_at_16k(self, num_samples: int) -> int: ...

    @abstractmethod
    def _encode_16k(self, wav16: np.ndarray) -> torch.Tensor: ...

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} on {self.device}>"


class HubertContentEncoder(ContentEncoder):
    """HuBERT-soft or ContentVec behind the ContentEncoder interface.

    input_padding: samples of zeros added each side (40 for HuBERT-soft's `units`, 0 for ContentVec).
    output_layer: transformer layers to run (None: all, HuBERT-soft; 9: Diff-SVC's ContentVec).
    """

    def __init__(
        self,
        model: Hubert,
        name: str,
        *,
        input_padding: int,
        output_layer: int | None = None,
        window_frames: int = DEFAULT_WINDOW_FRAMES,
        context_frames: int = DEFAULT_CONTEXT_FRAMES,
        res_type: str = "soxr_hq",
        legacy_22050: bool = False,
    ):
        super().__init__(res_type=res_type, legacy_22050=legacy_22050)
        if output_layer is not None and not 1 <= output_layer <= model.num_layers:
            raise ValueError(f"output_layer {output_layer} is outside 1..{model.num_layers}")
        self.model = model.eval()
        self.name = name
        self.input_padding = input_padding
        self.output_layer = output_layer
        self.window_frames = window_frames
        self.context_frames = context_frames
        self.dim = model.proj.out_features
        self.frame_rate = SAMPLE_RATE / model.frame_stride
        self.device = next(model.parameters()).device

    def to(self, device) -> "HubertContentEncoder":
        self.model.to(device)
        return super().to(device)

    def frames_at_16k(self, num_samples: int) -> int:
        return self.model.num_frames(num_samples + 2 * self.input_padding)

    @torch.inference_mode()
    def _encode_16k(self, wav16: np.ndarray) -> torch.Tensor:
        wav = torch.from_numpy(wav16).to(self.device)
        wav = F.pad(wav, (self.input_padding, self.input_padding))
        return encode_windowed(self.model, wav, self.output_layer, self.window_frames, self.context_frames)
