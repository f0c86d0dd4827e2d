"""Diagnose a trained model: where along the diffusion does its denoiser fail, and is the cause
elsewhere (what training and sampling feed the denoiser, or noisy content features)?

    python benchmarks/recipe_diagnose.py MODEL.ckpt DATA_DIR [--split valid] [--piece 0]

Prints, for one prepared piece:
- the noise-prediction error (MSE of eps) and the implied clean-mel error (RMS of x0 in normalised
  units, clipped to [-1, 1]) at a range of t, with a fixed noise;
- the same error at t computed through the sampling path (GaussianDiffusion.sample's conditioning
  and denoiser call, one DDIM step from x_t) against the training path (GaussianDiffusion.loss),
  which must agree if training and sampling feed the denoiser the same things;
- the frame-to-frame roughness of the real mel, of the content units and of samples from pure
  noise and from the noised input mel (shallow 300), and their error against the real mel.

The functions are reused by benchmarks/recipe.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffsvc.data.batch import collate  # noqa: E402



@torch.no_grad()
def per_t_errors(model, batch, ts: list[int], *, seed: int = 0) -> list[dict]:
    """For each t: eps MSE (the noise implied by the output, for a v model too) and clean-mel RMS (normalised units, x0 clipped to [-1, 1]) of `model`
    on `batch` (one item, no padding), with the same noise at every t. Source of the x0 formula:
    Ho et al. 2020, eq. 4 solved for x0."""
    model.eval()
    x0 = model.norm_spec(batch.mel).transpose(1, 2)[:, None]
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=g)
    cond = model.condition(batch.units, batch.mel2ph, batch.f0).cond
    rows = []
    for t in ts:
        tt = torch.full((x0.shape[0],), t, dtype=torch.long)
        x_t = model.q_sample(x0, tt, noise)
        eps = model.eps_from(model.denoise_fn(x_t, tt, cond, None), x_t, tt)
        a = model.alphas_cumprod[t]
        x0_hat = ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        rows.append({"t": t, "eps_mse": float(((eps - noise) ** 2).mean()),
                     "x0_rms": float(((x0_hat - x0) ** 2).mean().sqrt()),
                     "own_loss": float(model.loss(batch.mel, batch.units, batch.mel2ph, batch.f0, None, t=tt,
                                                    noise=noise))})
    return rows


def roughness(mel: np.ndarray | torch.Tensor) -> float:
    """Frame-to-frame roughness of a log10 mel [T, M]: the mean absolute difference between
    neighbouring frames (log10 units), over bins and frames."""
    mel = torch.as_tensor(mel).float()
    return float((mel[1:] - mel[:-1]).abs().mean())


def logmel_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """`diffsvc eval`'s log-mel distance (diffsvc.evaluation.metrics): mean |a - b| of two log10
    mels [T, M], log10 units."""
    from diffsvc.evaluation.metrics import log_mel_distance

    return log_mel_distance(a.float().numpy(), b.float().numpy())


def mel_cepstral_distortion(a: torch.Tensor, b: torch.Tensor) -> float:
    """`diffsvc eval`'s MCD (diffsvc.evaluation.metrics, dB over c1..c13) of two log10 mels [T, M]."""
    from diffsvc.evaluation import metrics

    return metrics.mel_cepstral_distortion(a.float().numpy(), b.float().numpy())


@torch.no_grad()
def sample_piece(model, batch, sampler, *, seed: int = 0, shallow: int | None = None) -> torch.Tensor:
    """Sample one piece [T, M] (log10) from pure noise (or from the input mel noised to `shallow`)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    mel = model.sample(batch.units, batch.mel2ph, batch.f0, sampler, generator=g,
                       ref_mel=batch.mel if shallow else None, shallow_step=shallow)
    return mel[0]


def reconstruction(model, batch, sampler, *, seed: int = 0, vmin: float = -6.0, vmax: float = 1.5) -> dict:
    """Sample a piece from pure noise; its log-mel distance, MCD and roughness ratio to the real mel."""
    real = batch.mel[0].float()
    out = sample_piece(model, batch, sampler, seed=seed).clamp(vmin, vmax)
    return {"logmel_db": logmel_distance(out, real), "mcd_db": mel_cepstral_distortion(out, real),
            "roughness_ratio": roughness(out) / roughness(real), "mel": out}


def load_piece(data_dir: Path, split: str, index: int, max_frames: int = 400):
    from diffsvc.data.dataset import PieceDataset
    from diffsvc.data.prepared import PreparedData

    ds = PieceDataset(PreparedData.find(data_dir), split, crop_frames=0)
    item = ds[index]
    batch = collate([item])
    if batch.mel.shape[1] > max_frames:
        batch = crop(batch, max_frames)
    return batch


def crop(batch, frames: int):
    """The first `frames` frames of a one-item batch (mel2ph indexes content frames, which are kept)."""
    from dataclasses import replace

    return replace(batch, mel=batch.mel[:, :frames], mel2ph=batch.mel2ph[:, :frames], f0=batch.f0[:, :frames],
                   lengths=torch.clamp(batch.lengths, max=frames))


def smoothed_units(batch, frames: int):
    """The batch with its content units averaged over `frames` neighbouring frames (a test of whether
    the denoiser copies frame-to-frame noise of the content features)."""
    from dataclasses import replace

    u = batch.units.transpose(1, 2)
    kernel = torch.ones(u.shape[1], 1, frames) / frames
    smooth = torch.nn.functional.conv1d(torch.nn.functional.pad(u, (frames // 2, frames // 2), mode="replicate"),
                                        kernel, groups=u.shape[1])
    return replace(batch, units=smooth.transpose(1, 2))


def main() -> None:
    from diffsvc.checkpoint import load_model
    from diffsvc.sampling import make_sampler

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("--split", default="valid")
    p.add_argument("--piece", type=int, default=0)
    p.add_argument("--frames", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(1)
    loaded = load_model(args.checkpoint)
    model, config = loaded.model, loaded.config
    batch = load_piece(args.data, args.split, args.piece, args.frames)
    print(f"{args.checkpoint} (step {loaded.global_step}), {args.split} piece {args.piece}, {batch.mel.shape[1]} frames")
    ts = [0, 10, 50, 100, 200, 300, 400, 600, 800, 999]
    print("t | eps MSE | x0 RMS | loss() at the same t and noise")
    for r in per_t_errors(model, batch, ts):
        print(f"{r['t']} | {r['eps_mse']:.4f} | {r['x0_rms']:.3f} | {r['own_loss']:.4f}")
    real = batch.mel[0]
    units = batch.units[0, :, :24]
    print(f"roughness: real mel {roughness(real):.4f}; content units (MFCC part) per frame, relative to their "
          f"spread: {float((units[1:] - units[:-1]).abs().mean() / units.std()):.3f}; "
          f"real mel relative to its spread: {float((real[1:] - real[:-1]).abs().mean() / real.std()):.3f}")
    for name, steps in ((config.sampler, config.sampling_steps), ("ddim", 20), ("ddim", 100)):
        s = make_sampler(name, model.schedule(), steps)
        r = reconstruction(model, batch, s, vmin=config.mel_vmin, vmax=config.mel_vmax)
        print(f"{name} {steps} from pure noise: log-mel {r['logmel_db']:.3f}, MCD {r['mcd_db']:.2f} dB, "
              f"roughness {r['roughness_ratio']:.2f}x the real mel's")
    s = make_sampler(config.sampler, model.schedule(), config.sampling_steps)
    smooth = smoothed_units(batch, 5)
    r = reconstruction(model, smooth, s, vmin=config.mel_vmin, vmax=config.mel_vmax)
    print(f"{config.sampler} {config.sampling_steps} from pure noise, content units smoothed over 5 frames: "
          f"log-mel {r['logmel_db']:.3f}, roughness {r['roughness_ratio']:.2f}x")
    out = sample_piece(model, batch, s, shallow=300).clamp(config.mel_vmin, config.mel_vmax)
    print(f"{config.sampler} shallow 300: log-mel {logmel_distance(out, real):.3f}, "
          f"roughness {roughness(out) / roughness(real):.2f}x")


if __name__ == "__main__":
    main()
