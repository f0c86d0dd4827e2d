"""Reading (and, for tests and tools, writing) the public NSF-HiFiGAN folder.

Layout of openvpi's nsf_hifigan_20221211.zip, as Diff-SVC expects it:

    models/nsf_hifigan/model        torch.save({"generator": state_dict}) with weight-norm
                                    weight_g / weight_v keys, often saved from a GPU
    models/nsf_hifigan/config.json  architecture and mel settings

The original loaded the weights without map_location and, when a file was missing, printed a
line and crashed later with "no attribute 'h'". Here every problem is one CheckpointError line
that names the file expected and where to put it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from diffsvc.errors import CheckpointError
from diffsvc.fileio import atomic_torch_save, atomic_write_text
from diffsvc.modelfile.locate import locate_model_file
from diffsvc.modelfile.strict import compare_state, to_legacy_weight_norm
from diffsvc.modelfile.torch_load import safe_torch_load
from diffsvc.vocoder.base import MelSettings
from diffsvc.vocoder.nsf_hifigan import Generator
from diffsvc.vocoder.windowed import NsfHifiGan

WHERE = ("put the files of nsf_hifigan_20221211.zip (openvpi) as models/nsf_hifigan/model "
         "and models/nsf_hifigan/config.json")
ARCHITECTURE_KEYS = ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                     "resblock_kernel_sizes", "resblock_dilation_sizes", "num_mels", "sampling_rate")
MEL_KEYS = ("hop_size", "n_fft", "win_size", "fmin", "fmax")

VOCODER_KEY = "vocoder_ckpt"


def vocoder_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """(model file, config.json) for either the folder or the `model` file inside it.

    A path that does not exist is looked for as config key vocoder_ckpt (the original's
    checkpoints/nsf_hifigan/model, then models/nsf_hifigan/model: diffsvc.modelfile.locate)."""
    path = Path(path)
    if not path.exists():
        path = locate_model_file(VOCODER_KEY, str(path), "NSF-HiFiGAN vocoder", how=WHERE)
    if path.is_dir():
        model_file, config_file = path / "model", path / "config.json"
    else:
        model_file, config_file = path, path.parent / "config.json"
    if not model_file.is_file():
        raise CheckpointError(f"{model_file}: NSF-HiFiGAN weight file 'model' not found; {WHERE}")
    if not config_file.is_file():
        raise CheckpointError(f"{config_file}: NSF-HiFiGAN config.json not found beside {model_file.name}; {WHERE}")
    return model_file, config_file


def read_vocoder_config(config_file: Path) -> dict:
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{config_file}: not a readable JSON file ({e}); {WHERE}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object of vocoder settings")
    missing = [k for k in ARCHITECTURE_KEYS + MEL_KEYS if k not in config]
    if missing:
        raise CheckpointError(f"{config_file}: missing key(s) {', '.join(missing)}; is this NSF-HiFiGAN's config.json?")
    return config


def mel_settings(config: dict) -> MelSettings:
    return MelSettings.from_hifigan_json(config)


def legacy_state_dict(generator: Generator) -> dict[str, torch.Tensor]:
    """The generator's weights under the release's key names (weight_g / weight_v), as it saves them."""
    return {to_legacy_weight_norm(key): value for key, value in generator.state_dict().items()}


def build_generator(config: dict, config_file: Path | str = "config.json") -> Generator:
    try:
        generator = Generator.from_config(config)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{config_file}: cannot build NSF-HiFiGAN from these values ({e})") from None
    if generator.hop_size != int(config["hop_size"]):
        raise CheckpointError(f"{config_file}: upsample_rates multiply to {generator.hop_size} "
                              f"but hop_size is {config['hop_size']}")
    return generator


def load_generator_weights(generator: Generator, state_dict, model_file: Path) -> None:
    """Strict load of legacy weight-normed keys; any mismatch is one line with examples."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{model_file}: 'generator' is not a state dict of tensors")
    mismatch = compare_state(legacy_state_dict(generator), state_dict)
    if mismatch:
        parts = [mismatch.keys_part()] if mismatch.missing or mismatch.unexpected else []
        if mismatch.reshaped:
            k, got, want = mismatch.reshaped[0]
            parts.append(f"{len(mismatch.reshaped)} with other shapes (e.g. {k}: file {list(got)}, "
                         f"config.json {list(want)})")
        raise CheckpointError(f"{model_file}: weights do not match the architecture in config.json: "
                              f"{'; '.join(parts)}; use the model and config.json from the same release")
    # torch's weight-norm parametrization maps the legacy weight_g / weight_v names while loading
    generator.load_state_dict(state_dict, strict=True)


def load_vocoder(path: str | os.PathLike = "models/nsf_hifigan", device: str | torch.device = "cpu", *,
                 window_frames: int = 1000, context_frames: int = 16, crossfade_frames: int = 8) -> NsfHifiGan:
    """The NSF-HiFiGAN folder (or its `model` file) -> a ready NsfHifiGan on `device`."""
    model_file, config_file = vocoder_files(path)
    config = read_vocoder_config(config_file)
    generator = build_generator(config, config_file)
    # safe_torch_load maps to CPU: release weights were saved from a GPU
    checkpoint = safe_torch_load(model_file, allow_unsafe=None, what="NSF-HiFiGAN weight file")
    if not isinstance(checkpoint, dict) or "generator" not in checkpoint:
        keys = list(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{model_file}: no 'generator' entry (found {keys}); "
                              "expected the 'model' file of nsf_hifigan_20221211.zip")
    load_generator_weights(generator, checkpoint["generator"], model_file)
    generator.remove_weight_norm().eval()
    return NsfHifiGan(generator, mel_settings(config), source=str(model_file), window_frames=window_frames,
                      context_frames=context_frames, crossfade_frames=crossfade_frames).to(device)


def save_vocoder(generator: Generator, config: dict, folder: str | os.PathLike) -> Path:
    """Write `generator` (still weight-normed) in the release layout: folder/model + folder/config.json."""
    if not any(".parametrizations." in k for k in generator.state_dict()):
        raise ValueError("save_vocoder needs a weight-normed generator (before remove_weight_norm)")
    folder = Path(folder)
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2))
    atomic_torch_save({"generator": legacy_state_dict(generator)}, folder / "model")
    return folder
