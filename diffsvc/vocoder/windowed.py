"""NSF-HiFiGAN as a `Vocoder`, vocoding long mels in overlapping windows so memory stays flat in T.

Each window is run with `context_frames` of extra mel on both sides (then cut off). The
generator's receptive field is about 8 frames each way (measured: 4 frames of context leave
2e-5 of difference, 8 leave float noise), so the default of 16 makes a window's output equal a
single pass over the whole mel. Consecutive windows overlap by `crossfade_frames` and are joined with a
linear crossfade: there the two outputs differ only by the source's random noise.

The harmonic source keeps one continuous phase across windows: the original draws random
initial phases once per forward, so each window starts from the phase the single pass would have
reached at that frame (computed per frame in float64), instead of drawing new ones. Otherwise the
overtones would jump at every seam and partly cancel inside the crossfades.
"""

from __future__ import annotations

import torch

from diffsvc.audio.mel import log10_to_ln
from diffsvc.errors import ConfigError
from diffsvc.vocoder.base import VOCODERS, MelSettings, Vocoder
from diffsvc.vocoder.nsf_hifigan import Generator

# windows are evened out in steps of this many frames: few distinct lengths (see below)
WINDOW_MULTIPLE = 32


def window_spans(num_frames: int, window_frames: int, crossfade_frames: int) -> list[tuple[int, int]]:
    """Output spans [start, end) covering num_frames; consecutive spans overlap by crossfade_frames."""
    if window_frames <= crossfade_frames:
        raise ValueError(f"window_frames ({window_frames}) must be larger than crossfade_frames ({crossfade_frames})")
    spans, start = [], 0
    while True:
        end = min(start + window_frames, num_frames)
        spans.append((start, end))
        if end >= num_frames:
            return spans
        start = end - crossfade_frames


def balanced_spans(num_frames: int, window_frames: int, crossfade_frames: int,
                   multiple: int = 1) -> list[tuple[int, int]]:
    """As `window_spans`, with the same number of windows, each as short as that count allows
    (rounded up to `multiple` frames, never above window_frames): the work is spread evenly
    instead of leaving a short last window, so windows of one length (a batch, or a vocoder run
    at a fixed length) carry little padding. 2584 frames in windows of 1500: 2 spans of 1300,
    not 1500 and 1100."""
    count = len(window_spans(num_frames, window_frames, crossfade_frames))
    if count == 1:
        return [(0, num_frames)]
    even = -(-(num_frames + (count - 1) * crossfade_frames) // count)
    even = min(window_frames, -(-even // multiple) * multiple)
    return window_spans(num_frames, max(even, crossfade_frames + 1), crossfade_frames)


def frame_start_phases(generator: Generator, f0: torch.Tensor, initial_phase: torch.Tensor) -> torch.Tensor:
    """Phase (cycles mod 1) of every harmonic at the first sample of each frame: [B, T, dim].

    Equals what the single-pass cumsum reaches there: initial + hop * sum of earlier frames'
    per-sample steps (f0 is constant within a frame). float64 keeps it exact over hours.
    """
    sine_gen = generator.m_source.l_sin_gen
    step = sine_gen.harmonic_step(f0[..., None]).double() * generator.hop_size  # [B, T, dim]
    before = torch.cumsum(step, dim=1) - step
    return (initial_phase.double()[:, None, :] + before) % 1


@torch.no_grad()
def vocode_in_windows(generator: Generator, mel: torch.Tensor, f0: torch.Tensor, *, window_frames: int,
                      context_frames: int, crossfade_frames: int, decode=None) -> torch.Tensor:
    """ln-mel [B, M, T] and f0 [B, T] -> audio [B, 1, T * hop], at most window + 2 * context frames at a time.

    decode: who runs the generator's body, (mel, excitation) -> audio (default generator.decode;
    the ONNX Runtime session of `NsfHifiGan.use_cpu_runtime`)."""
    decode = decode or generator.decode
    batch, num_frames = f0.shape
    hop = generator.hop_size
    # drawn exactly as the original's single forward draws it (its first random number)
    initial_phase = generator.m_source.l_sin_gen.draw_initial_phase(batch, f0.device)
    phases = frame_start_phases(generator, f0, initial_phase)
    out = mel.new_zeros(batch, 1, num_frames * hop)
    spans = balanced_spans(num_frames, window_frames, crossfade_frames, WINDOW_MULTIPLE)
    window_frames = max(end - start for start, end in spans)
    fade = crossfade_frames * hop
    ramp = (torch.arange(fade, device=mel.device, dtype=mel.dtype) + 0.5) / max(fade, 1)
    # Every window is run at one length (window + 2 context): the first and last windows take
    # more context from inside the stretch instead of being shorter. Why: oneDNN caches
    # primitives (and their memory) per input shape on the CPU, so windows of varying length made
    # memory grow with the number of stretches; a fixed length also computes each frame with at
    # least the usual context.
    length = min(num_frames, window_frames + 2 * context_frames)
    for i, (start, end) in enumerate(spans):
        lo = min(max(0, start - context_frames), num_frames - length)
        hi = lo + length
        wav = decode(mel[..., lo:hi], generator.excitation(f0[:, lo:hi], initial_phase=phases[:, lo]))
        wav = wav[..., (start - lo) * hop:(end - lo) * hop]
        if fade and i > 0:
            wav[..., :fade] *= ramp
        if fade and i + 1 < len(spans):
            wav[..., -fade:] *= 1 - ramp
        out[..., start * hop:end * hop] += wav
    return out


@VOCODERS.register("nsf-hifigan", doc="NSF-HiFiGAN (the original's; weights at vocoder_ckpt)")
class NsfHifiGan(Vocoder):
    """A loaded NSF-HiFiGAN generator behind the Vocoder interface (see `load_vocoder`)."""

    is_standin = False

    def __init__(self, generator: Generator, settings: MelSettings, *, source: str = "",
                 window_frames: int = 1000, context_frames: int = 16, crossfade_frames: int = 8):
        if settings.hop_size != generator.hop_size:
            raise ValueError(f"hop_size {settings.hop_size} differs from the generator's upsampling "
                             f"({generator.hop_size})")
        window_spans(1, window_frames, crossfade_frames)  # validates the window sizes early
        if context_frames < 0:
            raise ValueError("context_frames must be >= 0")
        self.generator = generator.eval()
        self.settings = settings
        self.name = f"NSF-HiFiGAN ({source})" if source else "NSF-HiFiGAN"
        self.window_frames = window_frames
        self.context_frames = context_frames
        self.crossfade_frames = crossfade_frames
        self.cpu_runtime = "torch"
        self._decode = generator.decode
        self._decoders = {"torch": generator.decode}

    def use_cpu_runtime(self, name: str = "auto") -> "NsfHifiGan":
        """Who runs the generator's body on the CPU: 'auto', 'torch', 'onnxruntime' or 'bf16'
        (diffsvc.cpu_runtime; each built once and kept). The excitation (f0 -> sines and noise,
        with its random draws) stays in torch fp32 either way, so seeded outputs keep the same
        random stream; a later `to()` onto another device goes back to torch. Errors:
        ConfigError as resolve_cpu_runtime."""
        from diffsvc.cpu_runtime import resolve_cpu_runtime

        runtime = resolve_cpu_runtime(name, self.device)
        if runtime not in self._decoders:
            try:
                self._decoders[runtime] = (_onnx_decode(self.generator, self.n_mels) if runtime == "onnxruntime"
                                           else _bf16_decode(self.generator))
            except Exception as e:  # noqa: BLE001 - a broken ONNX Runtime/onnx install, an export it cannot run
                if name != "auto":
                    raise ConfigError(f"cpu_runtime {runtime}: the vocoder cannot run this way here ({e}); "
                                      "use cpu_runtime: torch (or reinstall diffsvc[fast])") from None
                runtime = "torch"  # auto only chose it because it imported: the plain way is always there
        self._decode, self.cpu_runtime = self._decoders[runtime], runtime
        return self

    title = "NSF-HiFiGAN vocoder"
    weights_key = "vocoder_ckpt"

    # `diffsvc models`' hint for a missing file; {places} are the places looked at
    weights_hint = "put the nsf_hifigan_20221211 release files as {places} with its config.json beside it"

    @classmethod
    def describe_weights(cls, path) -> str:
        """Load the folder's generator; one line about it (CheckpointError if broken)."""
        from diffsvc.vocoder.loading import load_vocoder

        vocoder = load_vocoder(path)
        return f"NSF-HiFiGAN, {vocoder.sample_rate} Hz, hop {vocoder.hop_size}, {vocoder.n_mels} mel bins"

    @classmethod
    def for_config(cls, config, device) -> "NsfHifiGan":
        """The generator at `config.vocoder_ckpt` (config.json beside it), run on the CPU by
        config.cpu_runtime; CheckpointError if missing, ConfigError for an unusable cpu_runtime."""
        from diffsvc.vocoder.loading import load_vocoder

        return load_vocoder(config.vocoder_ckpt, device).use_cpu_runtime(config.cpu_runtime)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def to(self, device) -> "NsfHifiGan":
        self.generator.to(device)
        if self.device.type != "cpu":
            self._decoders = {"torch": self.generator.decode}
            self._decode, self.cpu_runtime = self.generator.decode, "torch"
        return self

    @torch.no_grad()
    def vocode(self, mel_log10: torch.Tensor, f0_hz: torch.Tensor) -> torch.Tensor:
        mel_log10, f0_hz = torch.as_tensor(mel_log10), torch.as_tensor(f0_hz)
        self._check_inputs(mel_log10, f0_hz)
        device = self.device
        # Diff-SVC's mels are log10; the vocoder was trained on natural-log mels (x 2.30259)
        mel = log10_to_ln(mel_log10.to(device, torch.float32)).T[None]
        f0 = f0_hz.to(device, torch.float32)[None]
        if mel.shape[-1] <= self.window_frames:
            # one pass: the original's numbers and random draws (its forward is decode(mel, excitation(f0)))
            return self._decode(mel, self.generator.excitation(f0))[0, 0].to(device)
        return vocode_in_windows(self.generator, mel, f0, window_frames=self.window_frames,
                                 context_frames=self.context_frames, crossfade_frames=self.crossfade_frames,
                                 decode=self._decode)[0, 0].to(device)


class _Body(torch.nn.Module):
    """The generator's deterministic body as a module of its own (what ONNX Runtime runs)."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, mel: torch.Tensor, har_source: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(mel, har_source)


def _bf16_decode(generator: Generator):
    """generator.decode on a bfloat16 copy of its weights: float32 in, float32 out."""
    import copy

    body = copy.deepcopy(generator).to(torch.bfloat16)

    def decode(mel: torch.Tensor, har_source: torch.Tensor) -> torch.Tensor:
        return body.decode(mel.to(torch.bfloat16), har_source.to(torch.bfloat16)).float()

    return decode


def _onnx_decode(generator: Generator, n_mels: int):
    """generator.decode as an ONNX Runtime session (batch and length free)."""
    from diffsvc.cpu_runtime import OnnxModule

    frames = 8
    mel = torch.zeros(1, n_mels, frames)
    har = torch.zeros(1, 1, frames * generator.hop_size)
    return OnnxModule(_Body(generator).eval(), (mel, har), input_names=("mel", "har_source"), output_names=("audio",),
                      dynamic_axes={"mel": {0: "batch", 2: "frames"}, "har_source": {0: "batch", 2: "samples"},
                                    "audio": {0: "batch", 2: "samples"}})
