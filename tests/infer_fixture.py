"""A tiny trained-looking project for inference tests, written through the public save functions:

    models/NAME/model_ckpt_steps_N.ckpt   (diffsvc.checkpoint.save_model, the original layout)
    models/NAME/config.yaml               (diffsvc.config.save_config)
    models/NAME/data_stats.json           (the training data's f0 statistics, for --key auto)

The model is a 2-layer, 8-channel DiffNet with random weights (its output projection too, which a
fresh model zero-initialises, so the output depends on the conditioning); the content encoder is
the weight-free stand-in and the vocoder Griffin-Lim, or a tiny random NSF-HiFiGAN saved in the
release layout with `diffsvc.vocoder.save_vocoder`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from diffsvc.checkpoint import checkpoint_name, save_model
from diffsvc.config import save_config
from diffsvc.model.diffusion import GaussianDiffusion

from conftest import tiny_config

TINY_NSF = {
    "resblock": "1", "num_gpus": 0, "batch_size": 1, "learning_rate": 0.0002, "adam_b1": 0.8, "adam_b2": 0.99,
    "lr_decay": 0.999, "seed": 1234, "upsample_rates": [8, 8, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4, 4],
    "upsample_initial_channel": 32, "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]],
    "discriminator_periods": [3, 5, 7, 11, 17, 23, 37], "segment_size": 16384, "num_mels": 128, "num_freq": 1025,
    "n_fft": 2048, "hop_size": 512, "win_size": 2048, "sampling_rate": 44100, "fmin": 40, "fmax": 16000,
    "fmax_for_loss": None, "num_workers": 4,
}


def tiny_model(config, seed: int = 0) -> GaussianDiffusion:
    torch.manual_seed(seed)
    model = GaussianDiffusion.from_config(config)
    with torch.no_grad():
        model.denoise_fn.output_projection.weight.normal_(0, 0.2)
    return model.eval()


def write_project(root: str | Path, name: str = "singer", steps=(1000,), *, vocoder: str = "griffin-lim",
                  f0_median_hz: float | None = 220.0, seed: int = 0, **config_overrides) -> Path:
    """Write models/NAME under `root` and return that folder. vocoder: griffin-lim or nsf-hifigan
    (a tiny random one written to root/models/nsf_hifigan, where the config points)."""
    root = Path(root)
    folder = root / "models" / name
    values = dict(content_encoder="stand-in", vocoder=vocoder, f0_extractor="parselmouth", sampler="dpm-solver++",
                  sampling_steps=4)
    values.update(config_overrides)
    config = tiny_config(**values)
    if vocoder == "nsf-hifigan":
        from diffsvc.vocoder import Generator, save_vocoder

        torch.manual_seed(seed)
        save_vocoder(Generator.from_config(TINY_NSF), TINY_NSF, root / "models" / "nsf_hifigan")
        config = config.replace(vocoder_ckpt=str(root / "models" / "nsf_hifigan" / "model"))
    model = tiny_model(config, seed)
    save_config(config, folder / "config.yaml")
    for step in steps:
        save_model(folder / checkpoint_name(step), model, step)
    if f0_median_hz is not None:
        stats = {"f0_median_hz": f0_median_hz, "f0_log2_mean": float(torch.log2(torch.tensor(f0_median_hz)))}
        (folder / "data_stats.json").write_text(json.dumps(stats), encoding="utf-8")
    return folder


def eval_settings_of_a_tone(root: Path, name: str, **project) -> dict:
    """Write project `name` in `root` (the current folder: write_project's keywords), a 1 s 220 Hz
    tone as song.wav, run `diffsvc eval` on it and return eval.json's `settings`."""
    import numpy as np
    import soundfile as sf

    from diffsvc.cli.main import main

    write_project(root, name, **project)
    t = np.arange(44100) / 44100
    sf.write(root / "song.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 44100)
    assert main(["eval", "--project", name, "--device", "cpu", "--seed", "1", "song.wav"]) == 0
    return json.loads((root / "models" / name / "eval.json").read_text())["settings"]
