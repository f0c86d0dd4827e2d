"""Where along the sampler does a model's sample turn to noise, and how well can the mel be learned
from the conditioning at all? (issue #14; benchmarks/results/recipe-diagnosis.md)

    python benchmarks/recipe_trace.py MODEL.ckpt DATA_DIR [--sampler dpm-solver++] [--steps 20]

Prints, for the validation piece (400 frames) sampled from pure noise:
- at every step the sampler asks the denoiser about, its clean-mel estimate x0_hat (the noise it
  implies, through GaussianDiffusion.eps_from, turned back into x0 and clipped to [-1, 1] as the
  samplers do): roughness over the real mel's, MCD (dB) and RMS error (normalised units);
- a bound that needs no diffusion: a linear least-squares map from the conditioning (the first 48
  content dimensions, f0, f0^2, 1) to the normalised mel, fitted on the training pieces, and its
  RMS error on the validation piece against the mean mel's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recipe_diagnose import load_piece, mel_cepstral_distortion, roughness  # noqa: E402


@torch.no_grad()
def trace(model, batch, sampler, *, seed: int = 1) -> list[dict]:
    """One sample from pure noise; for each denoiser call its x0 estimate against the real mel."""
    model.eval()
    real = batch.mel[0].float()
    x0_real = model.norm_spec(batch.mel).transpose(1, 2)[:, None]
    cond = model.condition(batch.units, batch.mel2ph, batch.f0).cond
    rows = []

    def denoise(x, t):
        eps = model.eps_from(model.denoise_fn(x, t, cond, None), x, t)
        a = model.alphas_cumprod[t[0]].double()
        x0 = ((x.double() - (1 - a).sqrt() * eps.double()) / a.sqrt()).clamp(-1, 1).float()
        mel = model.denorm_spec(x0[:, 0].transpose(1, 2))[0]
        rows.append({"t": int(t[0]), "roughness": roughness(mel) / roughness(real),
                     "mcd_db": mel_cepstral_distortion(mel, real),
                     "rms": float((x0 - x0_real).pow(2).mean().sqrt())})
        return eps

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, model.n_mels, real.shape[0], generator=g)
    sampler.sample(denoise, x, model.K_step)
    return rows


def linear_bound(model, data: Path) -> dict:
    """RMS error (normalised mel) of a least-squares linear map from the conditioning, fitted on the
    training pieces, on the training and validation pieces; and the mean mel's on validation."""
    from diffsvc.data.batch import collate
    from diffsvc.data.dataset import PieceDataset
    from diffsvc.data.prepared import PreparedData

    def features(split):
        ds = PieceDataset(PreparedData.find(data), split, crop_frames=0)
        xs, ys = [], []
        for i in range(len(ds)):
            b = collate([ds[i]])
            units = torch.nn.functional.pad(b.units, (0, 0, 1, 0))
            content = torch.gather(units, 1, b.mel2ph[..., None].expand(-1, -1, units.shape[-1]))[0, :, :48]
            f0 = b.f0[0][:, None]
            xs.append(torch.cat([content, f0, f0 ** 2, torch.ones_like(f0)], 1))
            ys.append(model.norm_spec(b.mel)[0])
        return torch.cat(xs).double(), torch.cat(ys).double()

    xt, yt = features("train")
    xv, yv = features("valid")
    w = torch.linalg.solve(xt.T @ xt + 1e-3 * torch.eye(xt.shape[1], dtype=torch.double), xt.T @ yt)
    rms = lambda pred, y: float((pred - y).pow(2).mean().sqrt())  # noqa: E731
    return {"train": rms(xt @ w, yt), "valid": rms(xv @ w, yv), "mean_mel_valid": rms(yt.mean(0), yv)}


def main() -> None:
    from diffsvc.checkpoint import load_model
    from diffsvc.sampling import make_sampler

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("--sampler", default=None, help="default: the model's config")
    p.add_argument("--steps", type=int, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    loaded = load_model(args.checkpoint)
    model, config = loaded.model, loaded.config
    name, steps = args.sampler or config.sampler, args.steps or config.sampling_steps
    batch = load_piece(args.data, "valid", 0, 400)
    print(f"{args.checkpoint} (step {loaded.global_step}, prediction {model.prediction}), {name} {steps}, "
          "validation piece 0 from pure noise")
    print("| t | x0_hat roughness (x real) | x0_hat MCD dB | x0_hat RMS |\n|---|---|---|---|")
    for r in trace(model, batch, make_sampler(name, model.schedule(), steps)):
        print(f"| {r['t']} | {r['roughness']:.2f} | {r['mcd_db']:.2f} | {r['rms']:.3f} |")
    bound = linear_bound(model, args.data)
    print(f"linear map from the conditioning: RMS {bound['train']:.3f} (train), {bound['valid']:.3f} (validation); "
          f"the mean mel: {bound['mean_mel_valid']:.3f} (validation)")


if __name__ == "__main__":
    main()
