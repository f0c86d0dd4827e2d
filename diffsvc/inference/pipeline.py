"""The song pipeline: a 44.1 kHz waveform of any length in, the converted waveform (same length) out.

    converter = SongConverter(loaded_model, content_encoder, vocoder, device, settings)
    analysis = converter.analyse(wav)                    # slicing + f0 (the --f0-out curve)
    result = converter.convert(wav, analysis, key=0, seed=1)

1. The file is cut at silences (`split_for_inference`); consecutive voiced pieces are merged back,
   so voiced audio is only ever divided into sampling windows (crossfaded in the mel domain) and
   never into separately vocoded pieces. Boundaries are moved onto the mel hop grid, so every
   stretch's frames are frames of the whole file.
2. Per voiced stretch: mel (for --shallow and the plot), f0, content units, mel2ph.
3. All windows of all stretches are sampled in batches (`lengths=` masking keeps them apart).
   The start noise is drawn per stretch from a generator seeded by (seed, first frame), and each
   window takes its slice: a frame's noise does not depend on how the song was windowed.
4. Per stretch: the joined mel, clipped to [mel_vmin, mel_vmax], is vocoded with f0 = 2^(shifted
   log2 f0) (the original's after_infer), cut to the stretch's length.
5. Silent stretches are exact zeros (silence in, silence out); voiced stretches fade in/out over
   10 ms where they meet a silent one, so the step to digital zero does not click. Shorter pauses
   inside a voiced stretch (>= 0.1 s below --slice-db in the input) are gated to zero the same way:
   the model's output there is not silence (and the original fed the vocoder an interpolated f0
   through pauses, which hums).
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from diffsvc.audio.mel import CLAMP, MelExtractor
from diffsvc.audio.slicer import frame_energy_db, split_for_inference
from diffsvc.checkpoint import LoadedModel
from diffsvc.features.align import align_content_to_mel
from diffsvc.features.f0 import make_f0_extractor
from diffsvc.features.pitch import denorm_f0, norm_interp_f0, shift_key
from diffsvc.inference.windows import (DEFAULT_CONTEXT_FRAMES, DEFAULT_CROSSFADE_FRAMES, Window, WindowPlan,
                                       free_memory_bytes, join_windows, measured_bytes_per_frame,
                                       plan_for_memory, plan_windows)
from diffsvc.sampling import make_sampler

SILENCE_FADE_S = 0.01
GATE_MIN_PAUSE_S = 0.1
SLICE_MAX_LEN_S = 60.0  # the slicer's cap; its cuts inside voiced audio are merged away again
STAGES = ("load", "f0", "content", "sampling", "vocoder")


@dataclass
class InferenceSettings:
    sampler: str = "dpm-solver++"
    sampling_steps: int = 20
    shallow_step: int | None = None  # --shallow K: start from the input mel noised to step K
    f0_method: str = "crepe"
    slice_db: float = -40.0
    window_frames: int | None = None  # None: from free memory
    batch_size: int | None = None  # None: from free memory
    context_frames: int = DEFAULT_CONTEXT_FRAMES
    crossfade_frames: int = DEFAULT_CROSSFADE_FRAMES
    progress: bool = False


@dataclass(frozen=True)
class Stretch:
    """Samples [start, end) of the song; frames [start // hop, ceil(end / hop))."""

    start: int
    end: int
    voiced: bool


@dataclass
class Analysis:
    stretches: list[Stretch]
    f0_hz: np.ndarray  # [n_frames] of the whole song, 0 = unvoiced (and 0 in silent stretches)


@dataclass
class Conversion:
    audio: np.ndarray  # float32 [N], N = len(input)
    mel_in: np.ndarray  # [n_frames, M] log10
    mel_out: np.ndarray  # [n_frames, M] log10, as vocoded (clipped)
    f0_hz: np.ndarray  # [n_frames] the f0 used (extracted or --f0-in)
    f0_cond_hz: np.ndarray  # [n_frames] the conditioning f0 after the key shift (0 in silence)
    key: float
    plan: WindowPlan | None
    seed: int


@dataclass
class StageTimer:
    seconds: dict = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    device: torch.device | None = None

    @contextmanager
    def __call__(self, stage: str):
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device is not None and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def summary(self, audio_seconds: float) -> str:
        """'load 0.01x, f0 0.2x, ... total 1.3x' real-time factors (seconds of work per second of audio)."""
        total = sum(self.seconds.values())
        parts = [f"{k} {v / max(audio_seconds, 1e-9):.3g}" for k, v in self.seconds.items()]
        return f"real-time factor: {', '.join(parts)}, total {total / max(audio_seconds, 1e-9):.3g} " \
               f"({total:.1f} s for {audio_seconds:.1f} s of audio)"


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False, unit="step")


def find_stretches(wav: np.ndarray, sample_rate: int, hop: int, db: float) -> list[Stretch]:
    """Voiced and silent stretches covering the song, boundaries on the hop grid, voiced merged."""
    n = len(wav)
    merged: list[list] = []
    for seg in split_for_inference(wav, sample_rate, db, SLICE_MAX_LEN_S):
        if merged and merged[-1][2] == seg.voiced:
            merged[-1][1] = seg.end
        else:
            merged.append([seg.start, seg.end, seg.voiced])
    stretches = []
    for i, (start, end, voiced) in enumerate(merged):
        start = 0 if i == 0 else int(round(start / hop)) * hop
        end = n if i == len(merged) - 1 else int(round(end / hop)) * hop
        if end <= start:
            continue
        if stretches and stretches[-1].voiced == voiced:
            stretches[-1] = Stretch(stretches[-1].start, end, voiced)
        else:
            stretches.append(Stretch(start, end, voiced))
    # a stretch too short for content units (< 3 frames) is left silent
    return [s if s.end - s.start >= 3 * hop else Stretch(s.start, s.end, False) for s in stretches]


def silence_gate(wav: np.ndarray, sample_rate: int, db: float, min_pause_s: float = GATE_MIN_PAUSE_S,
                 fade_s: float = SILENCE_FADE_S) -> np.ndarray:
    """Gain [N] that is 0 inside the input's pauses (>= min_pause_s below db) and 1 elsewhere; the
    ramps (fade_s) lie inside the pause, so no onset or decay is cut."""
    energy = frame_energy_db(wav, sample_rate)
    silent = energy.db < db
    gain = np.ones(len(wav), dtype=np.float32)
    fade = max(1, int(fade_s * sample_rate))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2]):
        # frame i covers about [i*hop - hop/2, i*hop + hop/2)
        sa = 0 if a == 0 else int(a * energy.hop - energy.hop // 2)
        sb = len(wav) if b == len(silent) else min(len(wav), int(b * energy.hop - energy.hop // 2))
        if sb - sa < max(int(min_pause_s * sample_rate), 2 * fade + 1):
            continue
        gain[sa:sb] = 0.0
        if sa > 0:
            gain[sa:sa + fade] = np.linspace(1, 0, fade, dtype=np.float32)
        if sb < len(wav):
            gain[sb - fade:sb] = np.linspace(0, 1, fade, dtype=np.float32)
    return gain


def frames_of(stretch: Stretch, hop: int) -> tuple[int, int]:
    return stretch.start // hop, -(-stretch.end // hop)


class SongConverter:
    def __init__(self, loaded: LoadedModel, content_encoder, vocoder, device: torch.device,
                 settings: InferenceSettings | None = None):
        self.model = loaded.model
        self.config = loaded.config
        self.encoder = content_encoder
        self.vocoder = vocoder
        self.device = torch.device(device)
        self.settings = settings or InferenceSettings(self.config.sampler, self.config.sampling_steps)
        self.hop = self.config.hop_size
        self.sample_rate = self.config.audio_sample_rate
        self.mel = MelExtractor.from_config(self.config)
        self.timer = StageTimer(device=self.device)
        self._f0_extractor = None
        self._bytes_per_frame = None
        self._last_plan: WindowPlan | None = None

    # --- analysis ---------------------------------------------------------------------------
    def f0_extractor(self):
        if self._f0_extractor is None:
            c = self.config
            self._f0_extractor = make_f0_extractor(self.settings.f0_method, self.sample_rate, self.hop, c.f0_min,
                                                   c.f0_max, device=str(self.device), threshold=c.crepe_threshold)
        return self._f0_extractor

    def num_frames(self, num_samples: int) -> int:
        return -(-num_samples // self.hop)

    def _stretch_wav(self, wav: np.ndarray, s: Stretch) -> np.ndarray:
        a, b = frames_of(s, self.hop)
        piece = wav[s.start:s.end]
        return np.pad(piece, (0, (b - a) * self.hop - len(piece))).astype(np.float32, copy=False)

    def analyse(self, wav: np.ndarray, f0_hz: np.ndarray | None = None) -> Analysis:
        """Find the stretches and, unless `f0_hz` (whole-song grid) is given, extract f0 in the voiced ones."""
        stretches = find_stretches(wav, self.sample_rate, self.hop, self.settings.slice_db)
        n_frames = self.num_frames(len(wav))
        if f0_hz is not None:
            f0 = np.asarray(f0_hz, dtype=np.float32)
        else:
            f0 = np.zeros(n_frames, dtype=np.float32)
            voiced = [s for s in stretches if s.voiced]
            with self.timer("f0"), _progress(len(voiced), "f0", self.settings.progress) as bar:
                for s in voiced:
                    a, b = frames_of(s, self.hop)
                    f0[a:b] = self.f0_extractor().extract(self._stretch_wav(wav, s), b - a)
                    bar.update(1)
        for s in stretches:  # silence has no pitch, whatever an edited curve says
            if not s.voiced:
                a, b = frames_of(s, self.hop)
                f0[a:b] = 0
        return Analysis(stretches, f0)

    # --- memory -----------------------------------------------------------------------------
    def window_plan(self, longest: int) -> WindowPlan:
        s = self.settings
        if self._bytes_per_frame is None:
            self._bytes_per_frame = measured_bytes_per_frame(self.model, self.device)
        plan = plan_for_memory(self._bytes_per_frame, free_memory_bytes(self.device), longest,
                               context_frames=s.context_frames, crossfade_frames=s.crossfade_frames)
        if s.window_frames is not None:
            plan = WindowPlan(s.window_frames, plan.batch_size, s.context_frames, s.crossfade_frames)
        if s.batch_size is not None:
            plan = WindowPlan(plan.window_frames, s.batch_size, s.context_frames, s.crossfade_frames)
        return plan

    # --- conversion -------------------------------------------------------------------------
    @torch.inference_mode()
    def convert(self, wav: np.ndarray, analysis: Analysis, *, key: float = 0.0, seed: int = 0) -> Conversion:
        c = self.config
        n = len(wav)
        n_frames = self.num_frames(n)
        m = c.audio_num_mel_bins
        mel_in = np.full((n_frames, m), math.log10(CLAMP), dtype=np.float32)
        mel_out = np.full((n_frames, m), math.log10(CLAMP), dtype=np.float32)
        f0_cond = np.zeros(n_frames, dtype=np.float32)
        audio = np.zeros(n, dtype=np.float32)
        voiced = [s for s in analysis.stretches if s.voiced]
        if not voiced:  # silence in, silence out
            return Conversion(audio, mel_in, mel_out, analysis.f0_hz, f0_cond, key, None, seed)

        # conditioning per stretch
        items = []
        with self.timer("content"), _progress(len(voiced), "content", self.settings.progress) as bar:
            for s in voiced:
                a, b = frames_of(s, self.hop)
                piece = self._stretch_wav(wav, s)
                mel_in[a:b] = self.mel(torch.from_numpy(piece)).numpy()[: b - a]
                units = self.encoder.encode(piece, self.sample_rate)
                mel2ph = torch.from_numpy(align_content_to_mel(units.shape[0], b - a))
                f0_log2, _uv = norm_interp_f0(analysis.f0_hz[a:b])
                f0_log2 = shift_key(f0_log2, key, c.f0_max)
                f0_cond[a:b] = denorm_f0(f0_log2).numpy()
                items.append(dict(stretch=s, frames=(a, b), units=units, mel2ph=mel2ph, f0_log2=f0_log2))
                bar.update(1)

        # windows, batched sampling
        with self.timer("sampling"):
            mels = self._sample_all(items, mel_in, seed)

        # vocoding, one continuous pass per stretch
        torch.manual_seed(seed)  # the vocoders draw from the global generator (NSF phases, Griffin-Lim init)
        fade = int(SILENCE_FADE_S * self.sample_rate)
        index = {s: i for i, s in enumerate(analysis.stretches)}
        with self.timer("vocoder"), _progress(len(items), "vocoder", self.settings.progress) as bar:
            for item, mel in zip(items, mels):
                s, (a, b) = item["stretch"], item["frames"]
                mel = mel.clamp(c.mel_vmin, c.mel_vmax)
                mel_out[a:b] = mel.cpu().numpy()
                f0 = torch.pow(2.0, item["f0_log2"])
                out = self.vocoder.vocode(mel, f0).float().cpu().numpy()[: s.end - s.start]
                out = np.pad(out, (0, s.end - s.start - len(out)))
                out *= silence_gate(wav[s.start:s.end], self.sample_rate, self.settings.slice_db)
                i = index[s]
                if i > 0 and not analysis.stretches[i - 1].voiced:
                    out[:fade] *= np.linspace(0, 1, min(fade, len(out)), dtype=np.float32)
                if i + 1 < len(analysis.stretches) and not analysis.stretches[i + 1].voiced:
                    out[-fade:] *= np.linspace(1, 0, min(fade, len(out)), dtype=np.float32)
                audio[s.start:s.end] = out
                bar.update(1)
        return Conversion(audio, mel_in, mel_out, analysis.f0_hz, f0_cond, key, self._last_plan, seed)

    def _stretch_noise(self, frames: tuple[int, int], seed: int) -> torch.Tensor:
        """[1, M, F] start noise of a stretch, from (seed, first frame): independent of windowing."""
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + frames[0]) % (2**63))
        return torch.randn(1, self.model.n_mels, frames[1] - frames[0], generator=g)

    def _sample_all(self, items: list[dict], mel_in: np.ndarray, seed: int) -> list[torch.Tensor]:
        s = self.settings
        longest = max(b - a for a, b in (it["frames"] for it in items))
        plan = self.window_plan(longest)
        windows: list[Window] = []
        for i, it in enumerate(items):
            windows.extend(plan_windows(i, it["frames"][1] - it["frames"][0], plan))
        plan = WindowPlan(plan.window_frames, min(plan.batch_size, len(windows)), plan.context_frames,
                          plan.crossfade_frames)
        # the batch size was sized for full windows; longest first keeps padding low
        order = sorted(range(len(windows)), key=lambda k: -windows[k].length)
        noises = [self._stretch_noise(it["frames"], seed) for it in items]
        sampler = make_sampler(s.sampler, self.model.schedule(), s.sampling_steps)
        t_start = s.shallow_step or self.model.K_step
        batches = [order[k:k + plan.batch_size] for k in range(0, len(order), plan.batch_size)]
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        results: dict[int, torch.Tensor] = {}
        with _progress(len(batches) * sampler.num_denoiser_calls(t_start), "sampling", s.progress) as bar:
            for batch in batches:
                out = self._sample_batch([windows[k] for k in batch], items, noises, mel_in, sampler, generator,
                                         bar.update)
                for k, mel in zip(batch, out):
                    results[k] = mel
        self._last_plan = plan
        joined = []
        for i, it in enumerate(items):
            parts = [(w, results[k]) for k, w in enumerate(windows) if w.segment == i]
            joined.append(join_windows(parts, it["frames"][1] - it["frames"][0]))
        return joined

    def _sample_batch(self, batch: list[Window], items, noises, mel_in, sampler, generator, progress):
        dev = self.device
        length = max(w.length for w in batch)
        units, mel2ph, f0, noise, ref = [], [], [], [], []
        for w in batch:
            it = items[w.segment]
            m2p = it["mel2ph"][w.lo:w.hi]
            used = m2p[m2p > 0]
            first = int(used.min()) - 1 if used.numel() else 0
            last = int(used.max()) if used.numel() else 1
            pad = length - w.length
            units.append(it["units"][first:last])
            mel2ph.append(torch.nn.functional.pad(torch.where(m2p > 0, m2p - first, m2p), (0, pad)))
            f0.append(torch.nn.functional.pad(it["f0_log2"][w.lo:w.hi], (0, pad)))
            noise.append(torch.nn.functional.pad(noises[w.segment][..., w.lo:w.hi], (0, pad)))
            a = it["frames"][0]
            ref.append(torch.nn.functional.pad(torch.from_numpy(mel_in[a + w.lo:a + w.hi]), (0, 0, 0, pad)))
        th = max(u.shape[0] for u in units)
        units_b = torch.stack([torch.nn.functional.pad(u, (0, 0, 0, th - u.shape[0])) for u in units]).to(dev)
        out = self.model.sample(
            units_b, torch.stack(mel2ph).to(dev), torch.stack(f0).to(dev), sampler,
            lengths=torch.tensor([w.length for w in batch], device=dev),
            ref_mel=torch.stack(ref).to(dev) if self.settings.shallow_step else None,
            shallow_step=self.settings.shallow_step, noise=torch.stack(noise).to(dev), generator=generator,
            progress=progress)
        return [out[i, :w.length] for i, w in enumerate(batch)]
