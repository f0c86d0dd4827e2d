"""An original Diff-SVC project folder loads as it is (issue #11, item 1).

The config files in tests/fixtures are what the original writes to checkpoints/NAME/config.yaml:
every key and value of training/config_nsf.yaml (the 44.1 kHz NSF-HiFiGAN setup) and of
training/config.yaml (the 24 kHz HiFiGAN setup), with work_dir/exp_name and the binarizer's
per-bin spec_min/spec_max (see tests/fixtures/README.md). They are copied untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml

from diffsvc.checkpoint import save_model
from diffsvc.cli.main import main
from diffsvc.config import load_config
from diffsvc.errors import CheckpointError, ConfigError
from diffsvc.features.content import load_content_encoder
from diffsvc.features.content.hubert_soft import HubertSoft
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.vocoder import Generator, load_vocoder, save_vocoder

from audio_synth import synth_voice
from infer_fixture import TINY_NSF
from prepared_fixture import write_prepared

FIXTURES = Path(__file__).parent / "fixtures"
NSF_CONFIG = FIXTURES / "original_config_nsf.yaml"
HIFIGAN_24K_CONFIG = FIXTURES / "original_config_24k.yaml"
STEP = 30000


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A working folder as a Diff-SVC user has it after copying checkpoints/nyaru to models/nyaru:
    HuBERT-soft where the original's config says (checkpoints/hubert/hubert_soft.pt) and the vocoder
    where diffsvc keeps it (models/nsf_hifigan/), so both directions of the fallback are used."""
    root = tmp_path_factory.mktemp("original")
    project = root / "models" / "nyaru"
    project.mkdir(parents=True)
    shutil.copyfile(NSF_CONFIG, project / "config.yaml")
    config = load_config(NSF_CONFIG)
    torch.manual_seed(0)
    model = GaussianDiffusion.from_config(config)
    with torch.no_grad():
        model.denoise_fn.output_projection.weight.normal_(0, 0.02)
    save_model(project / f"model_ckpt_steps_{STEP}.ckpt", model, STEP)
    (root / "checkpoints" / "hubert").mkdir(parents=True)
    torch.save(HubertSoft().state_dict(), root / "checkpoints" / "hubert" / "hubert_soft.pt")
    save_vocoder(Generator.from_config(TINY_NSF), TINY_NSF, root / "models" / "nsf_hifigan")
    wav, _ = synth_voice(1.0, 44100, f0=220.0, seed=1)
    sf.write(root / "song.wav", wav, 44100)
    return root


def test_original_config_files_load_as_written():
    config = load_config(NSF_CONFIG)
    assert config.vocoder == "nsf-hifigan"  # from network.vocoders.nsf_hifigan.NsfHifiGAN
    assert config.vocoder_ckpt == "checkpoints/nsf_hifigan/model"
    assert config.hubert_path == "checkpoints/hubert/hubert_soft.pt"
    assert (config.residual_layers, config.residual_channels, len(config.spec_min)) == (20, 384, 128)
    assert config.loss_mask is False
    with pytest.raises(ConfigError, match=r"original_config_24k\.yaml: vocoder: network\.vocoders\.hifigan\.HifiGAN "
                                          r"is the original's 24 kHz HiFiGAN.*not support"):
        load_config(HIFIGAN_24K_CONFIG)


def test_original_vocoder_names_in_every_form_map(tmp_path):
    data = yaml.safe_load(NSF_CONFIG.read_text())
    for value in ("NsfHifiGAN", "nsfhifigan", "network.vocoders.nsf_hifigan.NsfHifiGAN"):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(dict(data, vocoder=value)))
        assert load_config(tmp_path / "c.yaml").vocoder == "nsf-hifigan"
    for value in ("HifiGAN", "network.vocoders.pwg.PWG"):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(dict(data, vocoder=value)))
        with pytest.raises(ConfigError, match=rf"vocoder: {value} is .*not support"):
            load_config(tmp_path / "c.yaml")


def test_missing_model_files_name_the_key_and_both_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(NSF_CONFIG)
    with pytest.raises(CheckpointError) as err:
        load_content_encoder(config)
    for needle in ("hubert_path", "checkpoints/hubert/hubert_soft.pt", "models/hubert_soft.pt"):
        assert needle in str(err.value)
    with pytest.raises(CheckpointError) as err:
        load_vocoder(config.vocoder_ckpt)
    for needle in ("vocoder_ckpt", "checkpoints/nsf_hifigan/model", "models/nsf_hifigan/model"):
        assert needle in str(err.value)
    vec = load_config(NSF_CONFIG).replace(use_vec=True)  # the original's ContentVec path was hard-coded
    with pytest.raises(CheckpointError) as err:
        load_content_encoder(vec)
    for needle in ("contentvec_path", "checkpoints/vec/checkpoint_best_legacy_500.pt",
                   "models/checkpoint_best_legacy_500.pt"):
        assert needle in str(err.value)


def test_original_project_converts_untouched(original, monkeypatch, capsys):
    monkeypatch.chdir(original)
    before = (original / "models" / "nyaru" / "config.yaml").read_bytes()
    common = ["--f0", "parselmouth", "--sampling-steps", "2", "--seed", "0", "--quiet"]
    assert main(["infer", "song.wav", *common]) == 0, capsys.readouterr().err
    out, sr = sf.read(original / "output" / f"song_nyaru_steps_{STEP}.wav")
    assert sr == 44100 and len(out) == 44100 and abs(out).max() > 0
    ckpt = f"models/nyaru/model_ckpt_steps_{STEP}.ckpt"
    assert main(["infer", "song.wav", "--ckpt", ckpt, "--out", "by_ckpt.wav", *common]) == 0, capsys.readouterr().err
    assert (original / "by_ckpt.wav").exists()
    assert (original / "models" / "nyaru" / "config.yaml").read_bytes() == before


def test_models_lists_original_projects(original, monkeypatch, capsys):
    monkeypatch.chdir(original)
    old = original / "models" / "old24k"
    old.mkdir(exist_ok=True)
    shutil.copyfile(HIFIGAN_24K_CONFIG, old / "config.yaml")
    shutil.copyfile(original / "models" / "nyaru" / f"model_ckpt_steps_{STEP}.ckpt", old / "model_ckpt_steps_5.ckpt")
    try:
        main(["models", "--config", "models/nyaru/config.yaml"])
    finally:
        shutil.rmtree(old)
    out = capsys.readouterr().out
    assert f"nyaru: steps {STEP} (44100 Hz, 20x384, hubert-soft)" in out
    assert "[ok     ] HuBERT-soft content encoder: checkpoints/hubert/hubert_soft.pt" in out
    assert "[ok     ] NSF-HiFiGAN vocoder: models/nsf_hifigan" in out
    assert "old24k" in out and "24 kHz HiFiGAN" in out


def test_train_init_from_an_original_checkpoint(original, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = write_prepared(tmp_path / "prepared", lengths=(40, 48), valid_lengths=(40,))
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"num_valid_plots": 0, "val_check_interval": 1000, "content_encoder": "stand-in",
                                    "vocoder": "griffin-lim", "max_sentences": 2}))
    ckpt = original / "models" / "nyaru" / f"model_ckpt_steps_{STEP}.ckpt"
    rc = main(["train", "--project", "ft", "--data", str(data), "--config", str(base), "--init-from", str(ckpt),
               "--max-steps", "1", "--device", "cpu", "--workers", "0", "--no-progress", "--batch-size", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"initialised from {ckpt}" in captured.out + captured.err


def test_distill_an_original_project_leaves_it_untouched(original, tmp_path, monkeypatch, capsys):
    """`diffsvc distill` takes an original checkpoint as the teacher (full size, one step) and
    writes only the student's folder beside it."""
    import hashlib

    from diffsvc.checkpoint import load_model

    monkeypatch.chdir(tmp_path)
    shutil.copytree(original / "models" / "nyaru", tmp_path / "models" / "nyaru")
    data = write_prepared(tmp_path / "prepared", lengths=(40, 48), valid_lengths=(40,))
    project = tmp_path / "models" / "nyaru"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in project.iterdir()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one step of the full-size model: much faster on one thread of busy cores
    try:
        rc = main(["distill", "--project", "nyaru", "--data", str(data), "--steps", "1", "--device", "cpu",
                   "--workers", "0", "--no-progress", "--batch-size", "2"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0, capsys.readouterr().err
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in project.iterdir() if p.is_file()}
    assert after == before and sorted(p.name for p in project.iterdir() if p.is_dir()) == ["student"]
    student = load_model(project / "student" / "model_ckpt_steps_1.ckpt")
    assert student.config.distill["teacher_step"] == STEP and student.config.sampler == "consistency"
    assert student.config.residual_layers == 20 and student.config.residual_channels == 384  # the teacher's size
