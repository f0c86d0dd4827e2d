"""The song pipeline: a 44.1 kHz waveform of any length in, the converted waveform (same length) out.

    converter = SongConverter(loaded_model, content_encoder, vocoder, device, settings)
    analysis = converter.analyse(song)                   # slicing + f0 (the --f0-out curve)
    converter.convert_to(write, song, analysis, key=0, seed=1)   # streamed to write(chunk)
    result = converter.convert(song, analysis, key=0, seed=1)    # or all in memory

`song` is a numpy array or a SpooledAudio (the CLI's: decoded once to a temporary file), read a
stretch at a time, so memory does not grow with the song's length.

1. The song's level is measured (`audio.slicer.SongLevel`: silence is --slice-db below its loud
   singing, the definition preprocess uses) and the file is cut at silences (`split_for_inference`);
   consecutive voiced pieces are merged back up to 60 s, so voiced audio is divided into sampling
   windows (crossfaded in the mel domain) and, only past 60 s, into sections cut at quiet points
   (overlapping, crossfaded in audio). Boundaries are moved onto the mel hop grid, so every
   stretch's frames are frames of the whole file.
2. Voiced stretches are worked through in order, in groups holding about one batch of windows
   (`group_stretches`): per stretch its mel (for --shallow and the plot), content units, mel2ph and
   f0, shifted by the key and brought into the model's f0 range (`keyshift.fit_f0_range`, or the
   original's clamp with out_of_range="original"), held in a `StretchInput`; then the group's
   windows are sampled in batches, longest first (`lengths=` masking keeps them apart). The start
   noise is drawn in fixed blocks of frames, each from a generator seeded by (seed, block): a
   frame's noise does not depend on how the song was windowed, grouped or cut into sections.
3. Per stretch: the joined mel, clipped to [mel_vmin, mel_vmax], is vocoded with f0 = 2^(shifted
   log2 f0) (the original's after_infer), cut to the stretch's length, put at the input stretch's
   level (`match_level`; follow_loudness=False keeps the model's level), and written.
4. Silent stretches are exact zeros (silence in, silence out); voiced stretches fade in/out over 10
   ms where they meet a silent one, so the step to digital zero does not click. Shorter pauses
   inside a voiced stretch (>= 0.1 s below the song's silence threshold) are gated to zero the same
   way: the model's output there is not silence (and the original fed the vocoder an interpolated f0
   through pauses, which hums).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from diffsvc.audio.mel import CLAMP, MelExtractor
from diffsvc.audio.slicer import DEFAULT_RELATIVE_DB, SongLevel, frame_energy_db, measure_level, split_for_inference
from diffsvc.checkpoint import LoadedModel
from diffsvc.cpu_runtime import autocast_for, denoiser_runtime, resolve_cpu_runtime
from diffsvc.features.align import align_content_to_mel
from diffsvc.features.f0 import make_f0_extractor
from diffsvc.features.pitch import denorm_f0, norm_interp_f0, shift_key
from diffsvc.inference.keyshift import RangeReport, fit_f0_range, range_report, shift_hz
from diffsvc.inference.windows import (DEFAULT_CONTEXT_FRAMES, DEFAULT_CROSSFADE_FRAMES, MAX_BATCH, MAX_BATCH_CPU,
                                       MAX_WINDOW_FRAMES, MAX_WINDOW_FRAMES_CPU, Window, WindowPlan,
                                       free_memory_bytes, join_windows, measured_bytes_per_frame,
                                       plan_for_memory, plan_windows)
from diffsvc.sampling import make_sampler

log = logging.getLogger(__name__)

SILENCE_FADE_S = 0.01
GATE_MIN_PAUSE_S = 0.1
NOISE_BLOCK_FRAMES = 256
LENGTH_BUCKET = 64
SECTION_MAX_S = 60.0  # a longer voiced stretch is converted in sections, so memory stays flat
SECTION_CONTEXT_FRAMES = 16  # each section also converts this much of its neighbour (~0.19 s) ...
SECTION_CROSSFADE_S = 0.05  # ... and the two are crossfaded over this span around the cut
STAGES = ("load", "f0", "content", "sampling", "vocoder")


@dataclass
class InferenceSettings:
    sampler: str = "ddim"  # the config's default (chosen by benchmarks/sampler.py)
    sampling_steps: int = 20
    shallow_step: int | None = None  # --shallow K: start from the input mel noised to step K
    f0_method: str = "crepe"
    slice_db: float = DEFAULT_RELATIVE_DB  # silence: this far below the song's own level (audio.slicer.SongLevel)
    follow_loudness: bool = True  # each voiced stretch's output at its input's level (False: the model's level)
    window_frames: int | None = None  # None: from free memory
    batch_size: int | None = None  # None: from free memory
    context_frames: int = DEFAULT_CONTEXT_FRAMES
    crossfade_frames: int = DEFAULT_CROSSFADE_FRAMES
    section_seconds: float = SECTION_MAX_S  # longer voiced stretches are converted in sections
    out_of_range: str = "fold"  # voiced f0 outside [f0_min, f0_max] after the key shift: fold, clamp, original
    progress: bool = False
    speaker: torch.Tensor | None = None  # multi-singer models: blend weights [n_singers] (SpeakerChoice.tensor)
    cpu_runtime: str | None = None  # torch, onnxruntime, bf16, auto (diffsvc.cpu_runtime); None: the config's


@dataclass(frozen=True)
class Stretch:
    """Samples [start, end) of the song; frames [start // hop, ceil(end / hop)). A voiced stretch
    that meets another voiced one (a long stretch cut into sections) is converted with `pre` /
    `post` extra samples on that side, and the two are crossfaded around the cut."""

    start: int
    end: int
    voiced: bool
    pre: int = 0
    post: int = 0

    @property
    def render(self) -> tuple[int, int]:
        """The samples converted: [start - pre, end + post)."""
        return self.start - self.pre, self.end + self.post


@dataclass(frozen=True)
class StretchInput:
    """What the model needs for one voiced stretch, over its render frames [a, b) (F = b - a
    frames of the whole song's mel grid; T = content-unit frames of the stretch's audio).

    units: [T, C] float32 content units; mel2ph: [F] long, 1-based unit index per frame (0 = none);
    f0_log2: [F] float32 log2 Hz after the key shift and range handling, unvoiced frames
    interpolated; mel_in: [F, M] log10 mel of the input (the --shallow start and the plot);
    windows: the sampling windows over the F frames."""

    stretch: Stretch
    frames: tuple[int, int]
    units: torch.Tensor
    mel2ph: torch.Tensor
    f0_log2: torch.Tensor
    mel_in: torch.Tensor
    windows: list[Window]

    @property
    def f0_cond_hz(self) -> np.ndarray:
        """[F] the conditioning f0 in Hz (2^f0_log2), as the vocoder receives it."""
        return denorm_f0(self.f0_log2).numpy()


@dataclass
class Analysis:
    stretches: list[Stretch]
    f0_hz: np.ndarray  # [n_frames] of the whole song, 0 = unvoiced (and 0 in silent stretches)
    level: SongLevel | None = None  # the song's level and silence threshold (None: an absolute -40 dBFS)

    @property
    def silence_db(self) -> float:
        """dBFS below which the input is silence (the slicer's and the gate's threshold)."""
        return self.level.threshold_db if self.level is not None else -40.0


    def voiced_span(self, sample_rate: int) -> tuple[float, float] | None:
        """(start, end) in seconds from the first voiced stretch to the end of the last; None if none."""
        voiced = [s for s in self.stretches if s.voiced]
        if not voiced:
            return None
        return voiced[0].start / sample_rate, voiced[-1].end / sample_rate


@dataclass
class Conversion:
    audio: np.ndarray | None  # float32 [N], N = len(input) (None from convert_to: it was written)
    mel_in: np.ndarray | None  # [n_frames, M] log10 (kept for convert and keep_mels only)
    mel_out: np.ndarray | None  # [n_frames, M] log10, as vocoded (clipped)
    f0_hz: np.ndarray  # [n_frames] the f0 used (extracted or --f0-in)
    f0_cond_hz: np.ndarray  # [n_frames] the conditioning f0 after the key shift (0 in silence)
    key: float
    plan: WindowPlan | None
    seed: int
    f0_range: RangeReport | None = None  # voiced frames outside the model's f0 range after the shift


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


def _progress(total: int, desc: str, enabled: bool, unit: str = "step", position: int | None = None):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False, unit=unit,
                position=position)


def find_stretches(wav, sample_rate: int, hop: int, db: float, *, max_section_s: float = SECTION_MAX_S,
                   context_frames: int = SECTION_CONTEXT_FRAMES) -> list[Stretch]:
    """Voiced and silent stretches covering the song, boundaries on the hop grid.

    Consecutive voiced pieces are merged up to `max_section_s`: voiced audio is divided into
    separately vocoded sections only when a stretch is longer than that, and then at the slicer's
    cut points (short pauses, else the quietest window), with `context_frames` of overlap on each
    side of the cut and an equal-power crossfade over SECTION_CROSSFADE_S around it (see _OrderedWriter)."""
    n = len(wav)
    half = crossfade_half(sample_rate)
    context = max(context_frames * hop, -(-half // hop) * hop)
    shortest_section = 2 * context
    pieces: list[list] = []  # [start, end, voiced] on the hop grid
    segments = split_for_inference(wav, sample_rate, db, max_section_s)
    for i, seg in enumerate(segments):
        start = 0 if i == 0 else round(seg.start / hop) * hop
        end = n if i == len(segments) - 1 else round(seg.end / hop) * hop
        if end > start:
            pieces.append([start, end, seg.voiced])
    merged: list[list] = []
    for start, end, voiced in pieces:
        if merged and merged[-1][2] == voiced and (
                not voiced or end - merged[-1][0] <= max_section_s * sample_rate
                or min(end - start, merged[-1][1] - merged[-1][0]) < shortest_section):
            merged[-1][1] = end
        else:
            merged.append([start, end, voiced])
    # a stretch too short for content units (< 3 frames) is left silent
    stretches = [Stretch(a, b, v and b - a >= 3 * hop) for a, b, v in merged]
    for i in range(len(stretches) - 1):  # sections of one voiced stretch overlap around their cut
        left, right = stretches[i], stretches[i + 1]
        if left.voiced and right.voiced:
            stretches[i] = Stretch(left.start, left.end, True, left.pre, min(context, n - left.end))
            stretches[i + 1] = Stretch(right.start, right.end, True, context, right.post)
    return stretches


def crossfade_half(sample_rate: int) -> int:
    """Half the section crossfade in samples: the overlap each side of a cut must cover it."""
    return max(1, int(SECTION_CROSSFADE_S * sample_rate) // 2)


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


def match_level(out: np.ndarray, source: np.ndarray, sample_rate: int, silence_db: float,
                percentile: float = 95.0, headroom: float = 10 ** (-0.3 / 20)) -> float:
    """Gain that puts `out` at the level of `source` (the same samples of the input): the ratio of
    their REFERENCE-style levels, the `percentile` of 10 ms frame RMS over the frames where the
    source is above `silence_db` (dB). Capped so that the output's peak stays under -0.3 dBFS.
    1.0 when the source has no such frame or the output is silent."""
    src = frame_energy_db(source, sample_rate).db
    got = frame_energy_db(out, sample_rate).db
    frames = src >= silence_db
    if not frames.any() or not np.any(out):
        return 1.0
    gain = 10 ** ((np.percentile(src[frames], percentile) - np.percentile(got[frames], percentile)) / 20)
    peak = float(np.max(np.abs(out)))
    return float(min(gain, headroom / peak)) if peak > 0 else float(gain)


def frames_of(stretch: Stretch, hop: int) -> tuple[int, int]:
    """The stretch's own frames."""
    return stretch.start // hop, -(-stretch.end // hop)


def render_frames(stretch: Stretch, hop: int) -> tuple[int, int]:
    """The frames converted for the stretch (its own and the overlap into a neighbouring section)."""
    start, end = stretch.render
    return start // hop, -(-end // hop)


class SongConverter:
    """Converts a song with one loaded model: analyse (f0 on the mel grid, voiced stretches), then
    convert (content units, conditioning, window-sampled mels, vocoded audio).

        conv = SongConverter(loaded, content_encoder, vocoder, "cpu", InferenceSettings(...))
        analysis = conv.analyse(wav)                    # wav float32 [N] at config.audio_sample_rate
        result = conv.convert(wav, analysis, key=0.0, seed=0)   # result.audio float32 [N], same length

    `key` transposes in semitones; the same seed gives the same output. Windows are sized by the
    backbone's memory per frame (inference/windows.py) unless settings fix them. Errors: AudioError
    for unusable input; the encoders' and vocoder's own errors pass through as one-line messages.
    """

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
        # one choice for all three models (the vocoder keeps what it built for each runtime)
        setting = self.settings.cpu_runtime or self.config.cpu_runtime
        self.cpu_runtime = resolve_cpu_runtime(setting, self.device)
        # the denoiser may run another way (auto: ONNX Runtime next to bf16); built at first sampling
        self.denoiser_runtime = denoiser_runtime(setting, self.device)
        self._vocoder_runtime = None  # what the vocoder runs (auto may fall back to torch where its choice fails)
        if hasattr(vocoder, "use_cpu_runtime"):
            self._vocoder_runtime = vocoder.use_cpu_runtime(setting).cpu_runtime

    # --- analysis ---------------------------------------------------------------------------
    def f0_extractor(self):
        if self._f0_extractor is None:
            c = self.config
            self._f0_extractor = make_f0_extractor(self.settings.f0_method, self.sample_rate, self.hop, c.f0_min,
                                                   c.f0_max, device=str(self.device), threshold=c.crepe_threshold)
        return self._f0_extractor

    def num_frames(self, num_samples: int) -> int:
        return -(-num_samples // self.hop)

    def _stretch_wav(self, wav, s: Stretch) -> np.ndarray:
        """The samples converted for `s`, padded to whole frames."""
        a, b = render_frames(s, self.hop)
        start, end = s.render
        piece = wav[start:end]
        return np.pad(piece, (0, (b - a) * self.hop - len(piece))).astype(np.float32, copy=False)

    def analyse(self, wav: np.ndarray, f0_hz: np.ndarray | None = None) -> Analysis:
        """Measure the song's level (its silence threshold), find the stretches and, unless `f0_hz`
        (whole-song grid) is given, extract f0 in the voiced ones."""
        level = measure_level(wav, self.sample_rate, self.settings.slice_db)
        stretches = find_stretches(wav, self.sample_rate, self.hop, level.threshold_db,
                                   max_section_s=self.settings.section_seconds)
        n_frames = self.num_frames(len(wav))
        if f0_hz is not None:
            f0 = np.asarray(f0_hz, dtype=np.float32)
        else:
            f0 = np.zeros(n_frames, dtype=np.float32)
            voiced = [s for s in stretches if s.voiced]
            with self.timer("f0"), _progress(len(voiced), "f0", self.settings.progress) as bar:
                for s in voiced:  # extracted with the overlap as context, kept for the own frames
                    (a, b), (ra, rb) = frames_of(s, self.hop), render_frames(s, self.hop)
                    f0[a:b] = self.f0_extractor().extract(self._stretch_wav(wav, s), rb - ra)[a - ra:b - ra]
                    bar.update(1)
        for s in stretches:  # silence has no pitch, whatever an edited curve says
            if not s.voiced:
                a, b = frames_of(s, self.hop)
                f0[a:b] = 0
        return Analysis(stretches, f0, level)

    # --- sampling ---------------------------------------------------------------------------
    def sampler(self):
        return make_sampler(self.settings.sampler, self.model.schedule(), self.settings.sampling_steps)

    def denoiser_calls(self) -> int:
        """Denoiser calls per sampling window: what the sampler runs (ddpm: every step from the
        start step; plms: one more than its steps), the number to report as its steps."""
        return self.sampler().num_denoiser_calls(self.settings.shallow_step or self.model.K_step)

    # --- memory -----------------------------------------------------------------------------
    def window_plan(self, longest: int) -> WindowPlan:
        s = self.settings
        if self._bytes_per_frame is None:
            self._bytes_per_frame = measured_bytes_per_frame(self.model, self.device)
        cuda = self.device.type == "cuda"
        plan = plan_for_memory(self._bytes_per_frame, free_memory_bytes(self.device), longest,
                               context_frames=s.context_frames, crossfade_frames=s.crossfade_frames,
                               max_window_frames=MAX_WINDOW_FRAMES if cuda else MAX_WINDOW_FRAMES_CPU,
                               max_batch=MAX_BATCH if cuda else MAX_BATCH_CPU)
        if s.window_frames is not None:
            plan = WindowPlan(s.window_frames, plan.batch_size, s.context_frames, s.crossfade_frames)
        if s.batch_size is not None:
            plan = WindowPlan(plan.window_frames, s.batch_size, s.context_frames, s.crossfade_frames)
        return plan

    # --- conversion -------------------------------------------------------------------------
    def convert(self, wav, analysis: Analysis, *, key: float = 0.0, seed: int = 0) -> Conversion:
        """The whole converted song in memory, with its mels (for tests, the plot and the API)."""
        sink = ArraySink(len(wav))
        result = self.convert_to(sink.write, wav, analysis, key=key, seed=seed, keep_mels=True)
        result.audio = sink.audio
        return result

    @torch.inference_mode()
    def convert_to(self, write: Callable[[np.ndarray], None], wav, analysis: Analysis, *, key: float = 0.0,
                   seed: int = 0, keep_mels: bool = False) -> Conversion:
        """Convert `wav` (a numpy array or a SpooledAudio) and hand the output to `write` in order,
        a piece at a time. Voiced stretches are worked through in groups of about one batch of
        windows (conditioning, sampling, vocoding, written), so memory does not grow with the
        song; only `keep_mels` (for --plot) keeps the song's mels. Returns the Conversion
        without audio."""
        c = self.config
        n = len(wav)
        n_frames = self.num_frames(n)
        m = c.audio_num_mel_bins
        mel_in = mel_out = None
        if keep_mels:
            mel_in = np.full((n_frames, m), math.log10(CLAMP), dtype=np.float32)
            mel_out = np.full((n_frames, m), math.log10(CLAMP), dtype=np.float32)
        f0_cond = np.zeros(n_frames, dtype=np.float32)
        writer = _OrderedWriter(write, crossfade_half(self.sample_rate))
        voiced = [s for s in analysis.stretches if s.voiced]
        mode = self.settings.out_of_range
        report = range_report(analysis.f0_hz, key, c.f0_min, c.f0_max, mode)
        if mode == "original":  # the original's log2 shift and clamp, per stretch after interpolation
            f0_src, shift = analysis.f0_hz, key
        else:
            f0_src, shift = fit_f0_range(shift_hz(analysis.f0_hz, key), c.f0_min, c.f0_max, mode), None
        self._last_plan = None
        if voiced:
            lengths = [b - a for a, b in (render_frames(s, self.hop) for s in voiced)]
            plan = self.window_plan(max(lengths))
            windows = [plan_windows(length, plan) for length in lengths]
            groups = group_stretches([len(w) for w in windows], plan.batch_size)
            batch_size = min(plan.batch_size, max(sum(len(windows[i]) for i in g) for g in groups))
            self._last_plan = WindowPlan(plan.window_frames, batch_size, plan.context_frames, plan.crossfade_frames)
            sampler = self.sampler()
            calls = self.denoiser_calls()
            total_calls = calls * sum(-(-sum(len(windows[i]) for i in g) // batch_size) for g in groups)
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
            with self.timer("sampling"):  # building an ONNX Runtime session the first time counts as sampling
                denoiser = self._denoiser()  # once per conversion: the weights do not change within one
            # two bars while the stages interleave: denoiser steps, and stretches converted and written
            with _progress(total_calls, "sampling", self.settings.progress, position=0) as bar, \
                    _progress(len(voiced), "converted", self.settings.progress, "stretch", position=1) as done:
                for group in groups:
                    items = [self._condition(wav, voiced[i], f0_src, shift, windows[i]) for i in group]
                    mels = self._sample_group(items, batch_size, sampler, generator, seed, bar.update, denoiser)
                    for item, mel in zip(items, mels):
                        (a, b), ra = frames_of(item.stretch, self.hop), item.frames[0]
                        if keep_mels:
                            mel_in[a:b] = item.mel_in[a - ra:b - ra].numpy()
                            mel_out[a:b] = mel[a - ra:b - ra].clamp(c.mel_vmin, c.mel_vmax).float().cpu().numpy()
                        f0_cond[a:b] = item.f0_cond_hz[a - ra:b - ra]
                        writer.write_stretch(self._vocode(wav, item, mel, seed, analysis.silence_db), item.stretch)
                        done.update(1)
        writer.silence_until(n)
        return Conversion(None, mel_in, mel_out, analysis.f0_hz, f0_cond, key, self._last_plan, seed, report)

    def _condition(self, wav, s: Stretch, f0_hz: np.ndarray, key: float | None,
                   windows: list[Window]) -> StretchInput:
        """A voiced stretch's mel (the --shallow reference), content units, mel2ph and f0, over
        its render frames (its own and any overlap into a neighbouring section). `key` None:
        `f0_hz` is already shifted and in range; else the original's log2 shift and clamp."""
        with self.timer("content"):
            a, b = render_frames(s, self.hop)
            piece = self._stretch_wav(wav, s)
            mel_in = self.mel(torch.from_numpy(piece))[: b - a]
            # bf16 for HuBERT/ContentVec; the weight-free stand-in is signal processing: kept exact
            with autocast_for("torch" if self.encoder.is_standin else self.cpu_runtime):
                units = self.encoder.encode(piece, self.sample_rate).float()
            mel2ph = torch.from_numpy(align_content_to_mel(units.shape[0], b - a))
            f0_log2, _ = norm_interp_f0(f0_hz[a:b])
            if key is not None:
                f0_log2 = shift_key(f0_log2, key, self.config.f0_max)
            return StretchInput(s, (a, b), units, mel2ph, f0_log2, mel_in, windows)

    def _vocode(self, wav, item: StretchInput, mel: torch.Tensor, seed: int, silence_db: float) -> np.ndarray:
        """One continuous vocoder pass over a stretch's render range, at the input's level
        (`match_level`), gated in the input's pauses, faded where it meets silence."""
        c = self.config
        s, (a, _b) = item.stretch, item.frames
        start, end = s.render
        with self.timer("vocoder"):
            # the vocoders draw from the global generator (NSF phases, Griffin-Lim's start); seeded
            # per stretch so the output does not depend on how stretches were grouped
            torch.manual_seed((int(seed) * 1_000_003 + a) % (2**63))
            mel = mel.clamp(c.mel_vmin, c.mel_vmax)
            f0 = torch.pow(2.0, item.f0_log2)
            # the last frame repeated up to a multiple of LENGTH_BUCKET frames, cut off again: few
            # distinct shapes for the vocoder's convolutions (see _sample_batch)
            pad = -len(mel) % LENGTH_BUCKET
            mel = torch.cat([mel, mel[-1:].expand(pad, -1)])
            f0 = torch.cat([f0, f0[-1:].expand(pad)])
            if self._vocoder_runtime is not None and self.vocoder.cpu_runtime != self._vocoder_runtime:
                self.vocoder.use_cpu_runtime(self._vocoder_runtime)  # shared with another converter since: ours again
            out = self.vocoder.vocode(mel, f0).float().cpu().numpy()[: end - start]
            out = np.pad(out, (0, end - start - len(out)))
            source = wav[start:end]
            if self.settings.follow_loudness:
                out *= match_level(out, source, self.sample_rate, silence_db)
            out *= silence_gate(source, self.sample_rate, silence_db)
            fade = int(SILENCE_FADE_S * self.sample_rate)
            if s.start > 0 and not s.pre:  # meets a silent stretch (a voiced neighbour is crossfaded)
                out[:fade] *= np.linspace(0, 1, min(fade, len(out)), dtype=np.float32)
            if s.end < len(wav) and not s.post:
                out[-fade:] *= np.linspace(1, 0, min(fade, len(out)), dtype=np.float32)
            return out

    def _stretch_noise(self, frames: tuple[int, int], seed: int) -> torch.Tensor:
        """[1, M, F] start noise for song frames [a, b), drawn in fixed blocks of frames, each from
        a generator seeded by (seed, block): a frame's noise is the same however the song was
        windowed, grouped or cut into sections."""
        a, b = frames
        blocks = []
        for k in range(a // NOISE_BLOCK_FRAMES, -(-b // NOISE_BLOCK_FRAMES)):
            g = torch.Generator().manual_seed((int(seed) * 1_000_003 + k) % (2**63))
            blocks.append(torch.randn(self.model.n_mels, NOISE_BLOCK_FRAMES, generator=g))
        offset = a - (a // NOISE_BLOCK_FRAMES) * NOISE_BLOCK_FRAMES
        return torch.cat(blocks, dim=1)[None, :, offset:offset + b - a]

    def _sample_group(self, items: list[StretchInput], batch_size: int, sampler, generator, seed: int,
                      progress, denoiser=None) -> list[torch.Tensor]:
        """Sample every window of the group's stretches, longest first in batches; join per stretch."""
        with self.timer("sampling"):
            pairs = [(k, w) for k, it in enumerate(items) for w in it.windows]  # (item, window)
            noises = [self._stretch_noise(it.frames, seed) for it in items]
            order = sorted(range(len(pairs)), key=lambda j: -pairs[j][1].length)
            results: dict[int, torch.Tensor] = {}
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                out = self._sample_batch([(pairs[j][1], items[pairs[j][0]], noises[pairs[j][0]]) for j in batch],
                                         sampler, generator, progress, denoiser)
                results.update(zip(batch, out))
            joined = []
            for k, it in enumerate(items):
                parts = [(w, results[j]) for j, (owner, w) in enumerate(pairs) if owner == k]
                joined.append(join_windows(parts, it.frames[1] - it.frames[0]))
            return joined

    def _sample_batch(self, batch: list[tuple[Window, StretchInput, torch.Tensor]], sampler, generator, progress,
                      denoiser=None):
        dev = self.device
        # padded up to a multiple of LENGTH_BUCKET frames (masked, so exact): the denoiser then sees
        # few distinct shapes, and oneDNN's per-shape primitive cache stays small on the CPU
        length = -(-max(w.length for w, _, _ in batch) // LENGTH_BUCKET) * LENGTH_BUCKET
        units, mel2ph, f0, noise, ref = [], [], [], [], []
        for w, it, stretch_noise in batch:
            m2p = it.mel2ph[w.lo:w.hi]
            used = m2p[m2p > 0]
            first = int(used.min()) - 1 if used.numel() else 0
            last = int(used.max()) if used.numel() else 1
            pad = length - w.length
            units.append(it.units[first:last])
            mel2ph.append(torch.nn.functional.pad(torch.where(m2p > 0, m2p - first, m2p), (0, pad)))
            f0.append(torch.nn.functional.pad(it.f0_log2[w.lo:w.hi], (0, pad)))
            noise.append(torch.nn.functional.pad(stretch_noise[..., w.lo:w.hi], (0, pad)))
            ref.append(torch.nn.functional.pad(it.mel_in[w.lo:w.hi], (0, 0, 0, pad)))
        th = max(u.shape[0] for u in units)
        units_b = torch.stack([torch.nn.functional.pad(u, (0, 0, 0, th - u.shape[0])) for u in units]).to(dev)
        with autocast_for(self.denoiser_runtime):  # bf16: the denoiser's convolutions (the sampler's sums stay fp32)
            out = self.model.sample(
                units_b, torch.stack(mel2ph).to(dev), torch.stack(f0).to(dev), sampler,
                lengths=torch.tensor([w.length for w, _, _ in batch], device=dev),
                ref_mel=torch.stack(ref).to(dev) if self.settings.shallow_step else None,
                shallow_step=self.settings.shallow_step, noise=torch.stack(noise).to(dev), generator=generator,
                progress=progress, speaker=None if self.settings.speaker is None
                else self.settings.speaker.reshape(1, -1).to(dev).expand(len(batch), -1), denoiser=denoiser)
        return [out[i, :w.length].float() for i, (w, _, _) in enumerate(batch)]

    def runtime_text(self) -> str:
        """How the models ran on the CPU, for a header line: 'bf16', or 'bf16, the denoiser in onnxruntime'."""
        if self.denoiser_runtime == self.cpu_runtime:
            return self.cpu_runtime
        return f"{self.cpu_runtime}, the denoiser in {self.denoiser_runtime}"

    def _denoiser(self):
        """The ONNX Runtime session of the denoiser when denoiser_runtime is onnxruntime (built once),
        else None (the torch backbone). A backbone that does not export, or a session whose numbers
        differ from torch's, is one log line and the torch path (bf16 autocast where the other
        models run bf16)."""
        if self.denoiser_runtime != "onnxruntime":
            return None
        from diffsvc.model.onnx_denoiser import onnx_denoiser

        backbone = self.model.denoise_fn  # asked each time: the model's weights or backbone may have changed
        try:
            return onnx_denoiser(backbone)  # kept per backbone and weights: built once
        except Exception as e:  # noqa: BLE001 - an export ONNX cannot express, a broken ONNX Runtime install
            fallback = "bf16" if self.cpu_runtime == "bf16" else "torch"
            reason = " ".join(str(e).split()).split(". ")[0][:200] or type(e).__name__  # its first sentence
            log.warning("cpu_runtime: the denoiser (%s) cannot run in ONNX Runtime (%s); it runs in %s",
                        type(backbone).__name__, reason, fallback)
            self.denoiser_runtime = fallback
            return None


def group_stretches(window_counts: list[int], batch_size: int) -> list[list[int]]:
    """Consecutive stretches in groups of at least `batch_size` windows (the last may hold fewer):
    a group's windows fill its batches, and only one group is in memory at a time."""
    groups: list[list[int]] = [[]]
    count = 0
    for i, k in enumerate(window_counts):
        if count >= batch_size:
            groups.append([])
            count = 0
        groups[-1].append(i)
        count += k
    return [g for g in groups if g]


class ArraySink:
    """Collects written audio in one array (the in-memory `convert`)."""

    def __init__(self, num_samples: int):
        self.audio = np.zeros(num_samples, dtype=np.float32)
        self.position = 0

    def write(self, chunk: np.ndarray) -> None:
        self.audio[self.position:self.position + len(chunk)] = chunk
        self.position += len(chunk)


class _OrderedWriter:
    """Writes converted stretches in order, filling the gaps (silent stretches) with zeros in
    bounded chunks, so a long silence costs no memory, and crossfading neighbouring sections of
    a long voiced stretch around their cut (equal power: the two vocoder passes start from
    unrelated source phases, so they add like uncorrelated signals)."""

    SILENCE_CHUNK = 1 << 16

    def __init__(self, write: Callable[[np.ndarray], None], half_crossfade: int):
        self._write = write
        self.position = 0
        self.half = half_crossfade
        ramp = (np.arange(2 * half_crossfade, dtype=np.float64) + 0.5) / (2 * half_crossfade)
        self.fade_in = np.sin(0.5 * np.pi * ramp).astype(np.float32)
        self.fade_out = np.cos(0.5 * np.pi * ramp).astype(np.float32)
        self.pending: np.ndarray | None = None  # the previous section's faded-out tail

    def write_stretch(self, out: np.ndarray, s: Stretch) -> None:
        """`out` covers s.render; written up to the crossfade before a following section."""
        origin, h = s.render[0], self.half
        if s.pre:
            a = s.start - h
            assert self.pending is not None and self.position == a, "sections must come in order"
            self.write(self.pending + out[a - origin:s.start + h - origin] * self.fade_in)
            self.pending = None
        else:
            self.silence_until(s.start)
        stop = s.end - h if s.post else s.end
        self.write(out[self.position - origin:stop - origin])
        if s.post:
            self.pending = out[stop - origin:s.end + h - origin] * self.fade_out

    def silence_until(self, end: int) -> None:
        while self.position < end:
            k = min(end - self.position, self.SILENCE_CHUNK)
            self._write(np.zeros(k, dtype=np.float32))
            self.position += k

    def write(self, chunk: np.ndarray) -> None:
        self._write(chunk)
        self.position += len(chunk)
