"""GaussianDiffusion: the denoiser, the conditioning, the noise schedule and the per-bin mel
normalisation in one module, with the original's parameter and buffer names (a checkpoint's
`state_dict` is this module's, each key prefixed `model.`).

Mels are log10 [B,T,M] outside, normalised to [-1, 1] per bin with spec_min/spec_max inside,
shaped [B,1,M,T] for the denoiser.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from diffsvc.model.backbones import Backbone, make_backbone
from diffsvc.model.conditioning import Conditioning, ConditioningEmbedding
from diffsvc.model.schedule import SCHEDULE_BUFFERS, make_betas, schedule_buffers
from diffsvc.sampling import Sampler


class GaussianDiffusion(nn.Module):
    """The Diff-SVC acoustic model: conditioning (`fs2`), a denoiser backbone (`denoise_fn`), the
    noise schedule buffers and the per-bin mel range, under the original's parameter names.

    loss(mel [B,T,M] log10, units [B,Th,H], mel2ph [B,T], f0_log2 [B,T], lengths [B]) -> scalar
    sample(units, mel2ph, f0_log2, sampler) -> mel [B,T,M] log10

    The backbone is any registered one (diffsvc.model.backbones, `diff_decoder_type`); its
    `in_dims` is the mel bins M. Build from a Config with `from_config` (ConfigError for the legacy
    `no_fs2: false` layout); ValueError for an impossible shallow-diffusion start.
    `prediction`: what the backbone outputs, "eps" (the noise, the original), "v" or "x0" (see target).
    """

    def __init__(self, denoise_fn: Backbone, fs2: ConditioningEmbedding, betas, spec_min, spec_max,
                 K_step: int | None = None, loss_type: str = "l2", keep_bins: int | None = None,
                 prediction: str = "eps"):
        super().__init__()
        self.denoise_fn = denoise_fn
        self.fs2 = fs2
        self.n_mels = denoise_fn.in_dims
        for name, value in schedule_buffers(betas).items():
            self.register_buffer(name, value)
        self.num_timesteps = int(self.betas.shape[0])
        self.K_step = int(K_step or self.num_timesteps)
        self.loss_type = loss_type
        self.prediction = prediction  # what denoise_fn outputs: "eps" (the original), "v" or "x0" (see eps_from)
        keep = keep_bins or len(spec_min)
        self.register_buffer("spec_min", torch.tensor(list(spec_min), dtype=torch.float32)[None, None, :keep])
        self.register_buffer("spec_max", torch.tensor(list(spec_max), dtype=torch.float32)[None, None, :keep])

    @classmethod
    def from_config(cls, config) -> "GaussianDiffusion":
        if not config.no_fs2:
            from diffsvc.errors import ConfigError

            raise ConfigError(
                "no_fs2: false is a legacy Diff-SVC model (trained before 2022-11-28, with an FFT encoder "
                "over the content units); diffsvc does not support it yet. Retrain with the current layout."
            )
        betas = make_betas(config.schedule_type, config.timesteps, config.max_beta)
        fs2 = ConditioningEmbedding.from_config(config)
        if config.speakers:  # several singers: the singer table (model/speakers.py)
            from diffsvc.model.speakers import attach_speaker_embedding

            attach_speaker_embedding(fs2, config.speakers, config.hidden_size)
        return cls(make_backbone(config), fs2, betas,
                   config.spec_min, config.spec_max, config.K_step, config.diff_loss_type, config.keep_bins,
                   getattr(config, "prediction", "eps"))

    # --- buffers and normalisation ---
    def schedule(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in SCHEDULE_BUFFERS}

    def resize_spec_stats(self, n_bins: int) -> None:
        """Make spec_min/spec_max [1,1,n_bins] so a checkpoint with that shape loads strictly."""
        for name in ("spec_min", "spec_max"):
            old = getattr(self, name)
            setattr(self, name, old.new_zeros(1, 1, n_bins) + old[..., :1])

    def norm_spec(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.spec_min) / (self.spec_max - self.spec_min) * 2 - 1

    def denorm_spec(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1) / 2 * (self.spec_max - self.spec_min) + self.spec_min

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        a = self.sqrt_alphas_cumprod.gather(-1, t).reshape(-1, 1, 1, 1)
        b = self.sqrt_one_minus_alphas_cumprod.gather(-1, t).reshape(-1, 1, 1, 1)
        return a * x0 + b * noise

    # --- prediction target (config `prediction`) ---
    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What denoise_fn learns to output: the noise (eps), v = sqrt(a) eps - sqrt(1-a) x0
        (Salimans & Ho 2022, "Progressive distillation", sec. 4; a = alphas_cumprod[t]), or the
        clean mel x0 itself (Ho et al. 2020 sec. 3.2 name it; Ramesh et al. 2022's decoder uses it)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        a = self.sqrt_alphas_cumprod.gather(-1, t).reshape(-1, 1, 1, 1)
        b = self.sqrt_one_minus_alphas_cumprod.gather(-1, t).reshape(-1, 1, 1, 1)
        return a * noise - b * x0

    def eps_from(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise implied by denoise_fn's output at x_t, t (the samplers take the noise):
        eps = sqrt(a) v + sqrt(1-a) x_t for v prediction, (x_t - sqrt(a) x0) / sqrt(1-a) for x0
        prediction (x_t = sqrt(a) x0 + sqrt(1-a) eps solved for eps), the output itself for eps."""
        if self.prediction == "eps":
            return out
        a, b = self._coefficients(t)
        if self.prediction == "x0":
            return (x_t - a * out) / b
        return a * out + b * x_t

    def x0_from(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean mel implied by denoise_fn's output at x_t, t, computed without going through the
        noise: x0 = (x_t - sqrt(1-a) eps) / sqrt(a) for eps prediction (an error in eps grows by up
        to 1/sqrt(a), 158x at the original schedule's last step), sqrt(a) x_t - sqrt(1-a) v for v
        prediction, the output itself for x0 prediction."""
        if self.prediction == "x0":
            return out
        a, b = self._coefficients(t)
        if self.prediction == "eps":
            return (x_t - b * out) / a
        return a * x_t - b * out

    def _coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(a), sqrt(1-a) at steps t [B], shaped [B,1,1,1], in the buffers' float32: a bf16 or
        fp16 denoiser output (autocast) is promoted to float32 by them, so the conversion adds no
        rounding the network did not make (the sampler's sums stay float32)."""
        a = self.sqrt_alphas_cumprod.gather(-1, t).reshape(-1, 1, 1, 1)
        b = self.sqrt_one_minus_alphas_cumprod.gather(-1, t).reshape(-1, 1, 1, 1)
        return a, b

    # --- conditioning ---
    def condition(self, units: torch.Tensor, mel2ph: torch.Tensor, f0_log2: torch.Tensor,
                  speaker: torch.Tensor | None = None) -> Conditioning:
        """Conditioning with cond [B,H,T] for the denoiser, f0_denorm [B,T], pitch [B,T].

        speaker: singer indices (long [B]) or blend weights (float [B, n_singers]) for a
        multi-singer model (required there); must be None for a one-singer model."""
        table = getattr(self.fs2, "spk_embed_proj", None)
        if (table is None) != (speaker is None):
            raise ValueError("a multi-singer model needs `speaker`; a one-singer model takes none")
        extra = None if table is None else table.vector(speaker)
        return self.fs2(units, mel2ph, f0_log2, extra=extra).channels_first()

    @staticmethod
    def frame_mask(mel2ph: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
        """[B,1,1,T] mask of real frames from item lengths, or None (the original: no mask)."""
        if lengths is None:
            return None
        frames = torch.arange(mel2ph.shape[1], device=mel2ph.device)
        return (frames[None] < lengths[:, None]).to(torch.float32)[:, None, None, :]

    # --- training ---
    def loss(self, mel: torch.Tensor, units: torch.Tensor, mel2ph: torch.Tensor, f0_log2: torch.Tensor,
             lengths: torch.Tensor | None = None, *, t: torch.Tensor | None = None,
             noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
             weights: torch.Tensor | None = None, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """The noise-prediction loss on a padded batch (the v or x0 loss when prediction is v or x0).
        `weights` [B]: each item's loss weight (a weighting over timesteps; None: all 1).
        speaker: see `condition`.

        lengths given: padded frames are masked out of the denoiser's view and of the loss (ours).
        lengths None: the original's loss, a mean over the whole padded tensor.
        """
        b = mel.shape[0]
        if t is None:
            t = torch.randint(0, self.K_step, (b,), device=mel.device, generator=generator)
        x0 = self.norm_spec(mel).transpose(1, 2)[:, None]
        if noise is None:
            noise = torch.randn(x0.shape, device=mel.device, dtype=x0.dtype, generator=generator)
        cond = self.condition(units, mel2ph, f0_log2, speaker).cond
        mask = self.frame_mask(mel2ph, lengths)
        x_t = self.q_sample(x0, t, noise)
        if mask is not None:
            x_t = x_t * mask
        out = self.denoise_fn(x_t, t, cond, None if mask is None else mask[:, 0])
        target = self.target(x0, t, noise)
        err = (target - out).abs() if self.loss_type == "l1" else (target - out) ** 2
        if weights is not None:
            err = err * weights.reshape(-1, 1, 1, 1).to(err.dtype)
        if mask is None:
            return err.mean()
        return (err * mask).sum() / (mask.sum() * err.shape[2]).clamp(min=1)

    # --- inference ---
    def sample(self, units: torch.Tensor, mel2ph: torch.Tensor, f0_log2: torch.Tensor, sampler: Sampler, *,
               lengths: torch.Tensor | None = None, ref_mel: torch.Tensor | None = None,
               shallow_step: int | None = None, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None, progress: Callable | None = None,
               speaker: torch.Tensor | None = None, denoiser: Callable | None = None) -> torch.Tensor:
        """Sample mels [B,T,M] (log10, 0 where mel2ph == 0). speaker: see `condition`.

        shallow_step k: start from the input mel `ref_mel` noised to step k-1 (the original's
        use_gt_mel / add_noise_step) instead of pure noise. `noise` fixes the start noise.
        lengths given: batched items of different lengths are kept apart by masking (ours).
        denoiser: called instead of `denoise_fn`, with the same arguments and result (an
        OnnxDenoiser of it: diffsvc.model.onnx_denoiser); None: denoise_fn.
        """
        cond = self.condition(units, mel2ph, f0_log2, speaker).cond
        b, t_frames = mel2ph.shape
        shape = (b, 1, self.n_mels, t_frames)
        if noise is None:
            noise = torch.randn(shape, device=mel2ph.device, generator=generator)
        mask = self.frame_mask(mel2ph, lengths)
        if shallow_step is not None:
            if ref_mel is None:
                raise ValueError("shallow diffusion needs the input mel (ref_mel)")
            if not 1 <= shallow_step <= self.K_step:
                raise ValueError(f"shallow_step must be within 1..{self.K_step}, got {shallow_step}")
            t_start = int(shallow_step)
            x0 = self.norm_spec(ref_mel).transpose(1, 2)[:, None]
            x = self.q_sample(x0, torch.full((b,), t_start - 1, device=x0.device, dtype=torch.long), noise)
        else:
            t_start = self.K_step
            x = noise
        if mask is not None:
            x = x * mask
        dn_mask = None if mask is None else mask[:, 0]

        # what depends on the conditioning alone is computed once for all steps (when the
        # denoiser offers it: DiffNet's per-layer conditioner projections)
        net = self.denoise_fn if denoiser is None else denoiser
        project = getattr(net, "project_condition", None)
        extra = {"cond_proj": project(cond)} if project is not None else {}

        def denoise(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
            return self.eps_from(net(x_, t_, cond, dn_mask, **extra), x_, t_)

        x = sampler.sample(denoise, x, t_start, mask=mask, generator=generator, progress=progress)
        mel = self.denorm_spec(x[:, 0].transpose(1, 2))
        return mel * (mel2ph > 0)[..., None].to(mel.dtype)
