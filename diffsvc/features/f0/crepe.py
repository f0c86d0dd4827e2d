"""CREPE f0 through torchcrepe, with the original Diff-SVC settings and post-processing.

Original (data_gen_utils.py get_pitch_crepe):
  resampy kaiser_best 44.1k -> 16k; torchcrepe.predict(hop 80, fmin, fmax, pad=True, model,
  batch_size=1024, viterbi, return_periodicity) -> median(pd, 3) -> Silence(-60 dB) ->
  At(threshold) -> mean(f0, 3) -> NaN = 0 -> np.interp onto the mel frame times.

torchcrepe.predict decodes (viterbi) each batch separately, so the original's batch_size=1024
is also a decoding block of 1024 frames (5.12 s). We keep those blocks on every device, so CPU
and GPU give the same f0, but feed the network smaller sub-batches on CPU. A block's frames are
made on demand and the A-weighted loudness of the Silence step is computed block by block, so
memory does not grow with the length of the song beyond the 16 kHz copy and a few floats per frame.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from diffsvc.errors import DiffSvcError
from diffsvc.features.f0 import F0Extractor

CREPE_SR = 16000
CREPE_HOP = 80  # 5 ms, the original's hop
WINDOW = 1024  # torchcrepe.WINDOW_SIZE
DECODE_BLOCK = 1024  # the original's batch_size: frames per viterbi decode
SILENCE_DB = -60.0  # torchcrepe.threshold.Silence value in the original
TOP_DB = 80.0  # librosa.amplitude_to_db default used by torchcrepe's loudness
LOUDNESS_FLOOR_DB = -100.0  # torchcrepe.loudness.MIN_DB
DITHER_SEED = 0


@contextlib.contextmanager
def seeded_dither(seed: int = DITHER_SEED) -> Iterator[None]:
    """torchcrepe dithers every decoded pitch by +-20 cents (scipy triang noise from NumPy's global
    RNG), so the original gave slightly different f0 on every run. We keep the dither (it smooths
    the 20-cent bin steps before mean(3), as the original) but seed it, so the same audio always
    gives the same f0 and the f0 cache is meaningful. The global RNG state is restored afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def resample_to_16k(wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, str]:
    """The original used resampy's kaiser_best; fall back to soxr HQ where resampy is missing."""
    if sample_rate == CREPE_SR:
        return wav.astype(np.float32, copy=False), "none"
    try:
        import resampy
    except ImportError:
        from diffsvc.audio.load import resample

        return resample(wav, sample_rate, CREPE_SR), "soxr-hq"
    return resampy.resample(wav, sample_rate, CREPE_SR, filter="kaiser_best").astype(np.float32), "resampy-kaiser_best"


def _resampler_name() -> str:
    try:
        import resampy  # noqa: F401
    except ImportError:
        return "soxr-hq"
    return "resampy-kaiser_best"


def a_weighted_loudness(audio16k: np.ndarray, hop: int = CREPE_HOP, block: int = 2048) -> np.ndarray:
    """torchcrepe.loudness.a_weighted(audio, 16000, hop, pad=True), computed in blocks of frames.

    torchcrepe takes one STFT of the whole signal (about 1 GB for a 10-minute song at hop 80).
    Its dB conversion clips at (global max - 80 dB), so a first pass finds the global max
    magnitude and a second pass applies the identical formula block by block.
    """
    import librosa
    import torchcrepe

    weights = torchcrepe.loudness.perceptual_weights()  # [513, 1]
    padded = np.pad(audio16k.astype(np.float32), (WINDOW // 2, WINDOW // 2))  # center=True, constant
    total = 1 + len(audio16k) // hop
    window = np.asarray(librosa.filters.get_window("hann", WINDOW, fftbins=True), dtype=np.float32)

    def magnitudes(start: int, count: int) -> np.ndarray:
        seg = padded[start * hop:(start + count - 1) * hop + WINDOW]
        frames = librosa.util.frame(seg, frame_length=WINDOW, hop_length=hop)  # [WINDOW, count]
        return np.abs(np.fft.rfft(frames * window[:, None], axis=0))

    peak = 0.0
    for start in range(0, total, block):
        peak = max(peak, float(magnitudes(start, min(block, total - start)).max()))
    ref_floor = 20.0 * np.log10(max(1e-5, peak)) - TOP_DB
    out = np.empty(total, dtype=np.float32)
    for start in range(0, total, block):
        count = min(block, total - start)
        db = 20.0 * np.log10(np.maximum(1e-5, magnitudes(start, count)))
        weighted = np.maximum(db, ref_floor) + weights
        weighted[weighted < LOUDNESS_FLOOR_DB] = LOUDNESS_FLOOR_DB
        out[start:start + count] = weighted.mean(axis=0)
    return out


class CrepeF0(F0Extractor):
    """torchcrepe f0; `model` "full" (the original) or "tiny" (about 30x faster, a bit less exact).

    align: "original" interpolates onto times i*hop/sr as the original did, although mel frame i
    is centred at i*hop + hop/2 (reflect pad (n_fft-hop)/2, center=False). Checkpoints trained by
    the original learned f0 with that 5.8 ms lead, so it stays the default; "centred" uses the
    true frame centres (better for new models, a setting in the cache key either way).
    """

    def __init__(self, model: str = "full", threshold: float = 0.05, align: str = "original",
                 batch_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if model not in ("full", "tiny"):
            raise DiffSvcError(f"CREPE model {model!r} does not exist; use 'full' or 'tiny'")
        if align not in ("original", "centred"):
            raise DiffSvcError(f"align {align!r} is unknown; use 'original' or 'centred'")
        if not 0.0 <= threshold <= 1.0:
            raise DiffSvcError(f"CREPE threshold {threshold} must be within 0..1 (default 0.05)")
        self.model = model
        self.threshold = float(threshold)
        self.align = align
        # network sub-batch: memory only, results are the same (decoding stays in DECODE_BLOCKs)
        self.batch_size = batch_size or (DECODE_BLOCK if self.device.startswith("cuda") else 128)
        self.name = "crepe" if model == "full" else "crepe-tiny"

    @classmethod
    def from_options(cls, *, crepe_threshold: float = 0.05, **kwargs) -> "CrepeF0":
        kwargs.pop("fcpe_threshold", None)
        return cls(threshold=crepe_threshold, **kwargs)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "model": self.model, "threshold": self.threshold, "align": self.align,
                "decoder": "viterbi", "decode_block": DECODE_BLOCK, "crepe_hop": CREPE_HOP,
                "silence_db": SILENCE_DB, "resampler": _resampler_name(), "dither_seed": DITHER_SEED}

    def frames_16k(self, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw CREPE output on its own 5 ms grid: (pitch Hz, periodicity, 16 kHz audio)."""
        import torch
        import torchcrepe

        audio16k, _ = resample_to_16k(wav, self.sample_rate)
        audio = torch.from_numpy(np.ascontiguousarray(audio16k))[None]
        padded = torch.nn.functional.pad(audio, (WINDOW // 2, WINDOW // 2))  # torchcrepe pad=True
        total = 1 + audio.shape[1] // CREPE_HOP
        pitch, periodicity = [], []
        with torch.inference_mode(), seeded_dither():
            for start in range(0, total, DECODE_BLOCK):
                count = min(DECODE_BLOCK, total - start)
                segment = padded[:, start * CREPE_HOP:(start + count - 1) * CREPE_HOP + WINDOW]
                logits = [torchcrepe.infer(frames, self.model, self.device).cpu()
                          for frames in torchcrepe.preprocess(segment, CREPE_SR, CREPE_HOP, self.batch_size,
                                                              self.device, pad=False)]
                logits = torch.cat(logits).reshape(1, -1, torchcrepe.PITCH_BINS).transpose(1, 2)
                p, pd = torchcrepe.postprocess(logits, self.f0_min, self.f0_max, torchcrepe.decode.viterbi,
                                               return_periodicity=True)
                pitch.append(p)
                periodicity.append(pd)
        return torch.cat(pitch, 1)[0].numpy(), torch.cat(periodicity, 1)[0].numpy(), audio16k

    def post_process(self, pitch: np.ndarray, periodicity: np.ndarray, audio16k: np.ndarray) -> np.ndarray:
        """The original's filter chain on the 5 ms grid; returns Hz with 0 = unvoiced."""
        import torch
        import torchcrepe

        pd = torchcrepe.filter.median(torch.from_numpy(periodicity)[None], 3)
        loudness = torch.from_numpy(a_weighted_loudness(audio16k))[None]
        pd[loudness < SILENCE_DB] = 0.0  # torchcrepe.threshold.Silence(-60), blockwise
        f0 = torchcrepe.threshold.At(self.threshold)(torch.from_numpy(pitch)[None], pd)
        f0 = torchcrepe.filter.mean(f0, 3)
        f0 = torch.where(torch.isnan(f0), torch.zeros_like(f0), f0)
        return f0[0].numpy()

    def frame_times(self, n_frames: int) -> np.ndarray:
        offset = 0.0 if self.align == "original" else self.hop_size / 2
        return (np.arange(n_frames) * self.hop_size + offset) / self.sample_rate

    def _extract(self, wav: np.ndarray, n_frames: int) -> np.ndarray:
        f0_5ms = self.post_process(*self.frames_16k(wav))
        return self.to_frame_grid(f0_5ms, n_frames, interpolate_unvoiced=False)

    def extract_like_original(self, wav: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        """The original's exact output: unvoiced filled by Hz interpolation on the 5 ms grid."""
        from diffsvc.features.f0 import check_waveform

        wav = check_waveform(wav)
        n_frames = len(wav) // self.hop_size if n_frames is None else n_frames
        f0_5ms = self.post_process(*self.frames_16k(wav))
        return self.to_frame_grid(f0_5ms, n_frames, interpolate_unvoiced=True)

    def to_frame_grid(self, f0_5ms: np.ndarray, n_frames: int, interpolate_unvoiced: bool) -> np.ndarray:
        """np.interp over the voiced 5 ms frames (ends held), as the original; then, unless
        `interpolate_unvoiced`, zero the mel frames whose nearest CREPE frames are unvoiced."""
        voiced = f0_5ms > 0
        if not voiced.any():
            return np.zeros(n_frames, dtype=np.float32)
        crepe_times = np.arange(len(f0_5ms)) * (CREPE_HOP / CREPE_SR)
        mel_times = self.frame_times(n_frames)
        f0 = np.interp(mel_times, crepe_times[voiced], f0_5ms[voiced])
        if not interpolate_unvoiced:
            voicing = np.interp(mel_times, crepe_times, voiced.astype(np.float64))
            f0 = np.where(voicing >= 0.5, f0, 0.0)
        return f0.astype(np.float32)


class CrepeTinyF0(CrepeF0):
    """torchcrepe's tiny model: CrepeF0 with model="tiny" (same settings and cache key layout)."""

    def __init__(self, **kwargs):
        kwargs["model"] = "tiny"
        super().__init__(**kwargs)
