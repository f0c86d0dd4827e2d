"""`diffsvc models`: finds the public files, loads each into its real architecture, reports
missing and broken ones with the exact place to put them, and lists projects."""

import json

import torch

from diffsvc.checkpoint import save_model
from diffsvc.cli.main import main
from diffsvc.config import save_config
from diffsvc.features.content.hubert_soft import HubertSoft
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.vocoder import Generator, save_vocoder

from conftest import tiny_config

SMALL_NSF = {"resblock": "1", "upsample_rates": [8, 8, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4, 4],
             "upsample_initial_channel": 32, "resblock_kernel_sizes": [3, 7, 11],
             "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "sampling_rate": 44100, "num_mels": 128,
             "n_fft": 2048, "win_size": 2048, "hop_size": 512, "fmin": 40, "fmax": 16000}


def test_models_reports_missing_files_with_their_place(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["models"]) == 1
    out = capsys.readouterr().out
    assert "[MISSING] HuBERT-soft content encoder: models/hubert_soft.pt" in out
    assert "hubert-soft-0d54a1f4.pt" in out and "models/nsf_hifigan/model" in out
    assert "none in models/ yet" in out


def test_models_loads_public_files_and_lists_projects(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    models.mkdir()
    # The public HuBERT-soft file under its own name (flat state dict, v0.1 weight-norm keys).
    torch.save(HubertSoft().state_dict(), models / "hubert-soft-0d54a1f4.pt")
    generator = Generator.from_config(SMALL_NSF)
    save_vocoder(generator, SMALL_NSF, models / "nsf_hifigan")
    config = tiny_config()
    save_config(config, models / "alto" / "config.yaml")
    save_model(models / "alto" / "model_ckpt_steps_2000.ckpt", GaussianDiffusion.from_config(config), 2000)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "[ok     ] HuBERT-soft content encoder: models/hubert-soft-0d54a1f4.pt" in out
    assert "HuBERT-soft, 94.6M parameters" in out
    assert "[ok     ] NSF-HiFiGAN vocoder" in out and "44100 Hz, hop 512, 128 mel bins" in out
    assert "alto: steps 2000" in out

    # A broken vocoder config is reported as BROKEN with its one-line reason, and fails the check.
    (models / "nsf_hifigan" / "config.json").write_text(json.dumps(dict(SMALL_NSF, upsample_initial_channel=64)))
    assert main(["models"]) == 1
    out = capsys.readouterr().out
    assert "[BROKEN ] NSF-HiFiGAN vocoder" in out


def test_models_marks_a_placeholder_project_checkpoint(tmp_path, monkeypatch, capsys):
    """An LFS pointer or a download cut short among a project's checkpoints is named, and fails the check."""
    monkeypatch.chdir(tmp_path)
    config = tiny_config(content_encoder="stand-in", vocoder="griffin-lim")
    save_config(config, tmp_path / "offline.yaml")
    save_config(config, tmp_path / "models" / "alto" / "config.yaml")
    good = tmp_path / "models" / "alto" / "model_ckpt_steps_1000.ckpt"
    save_model(good, GaussianDiffusion.from_config(config), 1000)
    assert main(["models", "--config", "offline.yaml"]) == 0
    assert "BROKEN" not in capsys.readouterr().out
    (good.parent / "model_ckpt_steps_2000.ckpt").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    (good.parent / "model_ckpt_steps_3000.ckpt").write_bytes(good.read_bytes()[:4096])
    assert main(["models", "--config", "offline.yaml"]) == 1
    out = capsys.readouterr().out
    assert "alto: steps 1000, 2000, 3000" in out
    assert "[BROKEN ] step 2000: models/alto/model_ckpt_steps_2000.ckpt: not a readable PyTorch checkpoint: " \
           "it is a Git LFS pointer" in out
    assert "[BROKEN ] step 3000" in out and "without its end" in out and "step 1000:" not in out
