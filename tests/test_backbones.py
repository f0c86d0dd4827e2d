"""The second denoiser backbone (LYNXNet) trains, checkpoints, resumes and converts like DiffNet,
and the original's DiffNet checkpoints are untouched by the backbone registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audio_synth import synth_voice
from conftest import tiny_config
from diffsvc.checkpoint import load_model
from diffsvc.config import save_config
from diffsvc.errors import CheckpointError
from diffsvc.inference.components import load_content_encoder_for
from diffsvc.inference.pipeline import InferenceSettings, SongConverter
from diffsvc.inference.project import choose_checkpoint, load_checkpoint
from diffsvc.inference.windows import estimated_bytes_per_frame
from diffsvc.model.backbones import LYNXNet
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.training.project import Project
from diffsvc.training.trainer import TrainOptions, train
from diffsvc.vocoder import GriffinLimVocoder
from infer_fixture import write_project
from prepared_fixture import write_prepared

N_MELS = 16
LYNX = dict(diff_decoder_type="lynxnet", lynxnet_layers=2, lynxnet_channels=16, lynxnet_kernel=7)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_prepared(tmp_path_factory.mktemp("prepared"), n_mels=N_MELS)


def _options(tmp_path, data_dir, name, max_steps):
    base = tmp_path / "base.yaml"
    if not base.exists():
        save_config(tiny_config(audio_num_mel_bins=N_MELS, keep_bins=N_MELS, timesteps=1000, K_step=1000,
                                val_check_interval=3, num_ckpt_keep=2, log_interval=1, num_valid_plots=0,
                                lr=1e-2, max_sentences=4, **LYNX), base)
    return TrainOptions(project=Project(tmp_path / "models" / name), data_dir=data_dir, base_config=base,
                        max_steps=max_steps, progress=False, device="cpu", workers=0)


def test_lynxnet_trains_checkpoints_and_resumes_exactly(tmp_path, data_dir):
    straight = train(_options(tmp_path, data_dir, "straight", 15), log=lambda _m: None)
    losses = [r.loss for r in straight.history]
    assert len(losses) == 15 and sum(losses[-5:]) < sum(losses[:5])  # the loss falls
    loaded = load_model(straight.checkpoint)
    assert isinstance(loaded.model.denoise_fn, LYNXNet) and loaded.config.diff_decoder_type == "lynxnet"
    assert "denoise_fn.residual_layers.0.depthwise.weight" in loaded.model.state_dict()
    # resume: 3 steps, then on to 6, equals 6 straight (same batches, losses and weights)
    first = train(_options(tmp_path, data_dir, "a", 6), log=lambda _m: None)
    train(_options(tmp_path, data_dir, "b", 3), log=lambda _m: None)
    second = train(_options(tmp_path, data_dir, "b", 6), log=lambda _m: None)
    assert [r.step for r in second.history] == [4, 5, 6]
    for a, b in zip(first.history[3:], second.history):
        assert a.loss == pytest.approx(b.loss, rel=1e-6, abs=1e-7)
    wa, wb = load_model(first.checkpoint).model.state_dict(), load_model(second.checkpoint).model.state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def test_checkpoint_of_one_backbone_with_the_other_config_is_explained(tmp_path):
    folder = write_project(tmp_path, "lynx", steps=(10,), **LYNX)
    wrong = tiny_config(content_encoder="stand-in", vocoder="griffin-lim")  # wavenet
    save_config(wrong, tmp_path / "wavenet.yaml")
    with pytest.raises(CheckpointError, match="trained with diff_decoder_type: lynxnet but the config says wavenet"):
        load_model(folder / "model_ckpt_steps_10.ckpt", tmp_path / "wavenet.yaml")


def test_lynxnet_project_converts_a_song_to_its_length_in_windows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "lynx", steps=(10,), **LYNX)
    loaded = load_checkpoint(choose_checkpoint(tmp_path / "models", "lynx"), torch.device("cpu"))
    assert isinstance(loaded.model.denoise_fn, LYNXNet)
    c = loaded.config
    wav, _ = synth_voice(2.5, 44100, f0=[(2.5, 240.0)], seed=3, consonants=False)
    results = {}
    for window in (None, 60):
        s = InferenceSettings(sampler=c.sampler, sampling_steps=c.sampling_steps, f0_method=c.f0_extractor,
                              window_frames=window)
        conv = SongConverter(loaded, load_content_encoder_for(c, "cpu"), GriffinLimVocoder.from_config(c, n_iter=1),
                             "cpu", s)
        results[window] = conv.convert(wav, conv.analyse(wav), seed=4)
    whole, windowed = results[None], results[60]
    assert len(whole.audio) == len(wav) and len(windowed.audio) == len(wav)
    assert windowed.plan.window_frames == 60
    assert np.isfinite(whole.mel_out).all() and whole.mel_out.shape[-1] == c.audio_num_mel_bins


def test_window_memory_comes_from_the_backbone():
    # the planner's estimate is the backbone's own count plus the sampler's history: it grows
    # with LYNXNet's width the way the backbone says, without the planner opening it
    small = GaussianDiffusion.from_config(tiny_config(**LYNX))
    wide = GaussianDiffusion.from_config(tiny_config(**dict(LYNX, lynxnet_channels=64)))
    for model in (small, wide):
        expected = 8 * (model.denoise_fn.activation_floats_per_frame() + 10 * model.n_mels)
        assert estimated_bytes_per_frame(model) == expected
    assert estimated_bytes_per_frame(wide) > estimated_bytes_per_frame(small)
    # DiffNet: the count the window planner always used, 12 C + 2 H + 10 M floats, plus the
    # conditioner projections sampling keeps over all steps (2 C per layer), x 8 bytes
    dn = GaussianDiffusion.from_config(tiny_config())
    assert estimated_bytes_per_frame(dn) == 8 * (12 * 8 + 2 * 256 + 2 * 8 * 2 + 10 * 128)


def test_use_pitch_embed_false_drops_the_pitch_term_and_its_weights():
    with_pitch = GaussianDiffusion.from_config(tiny_config())
    without = GaussianDiffusion.from_config(tiny_config(use_pitch_embed=False))
    assert "fs2.pitch_embed.weight" in with_pitch.state_dict()
    assert "fs2.pitch_embed.weight" not in without.state_dict()
    units, mel2ph = torch.randn(1, 5, 256), torch.arange(1, 11)[None] // 2 + 0
    mel2ph = mel2ph.clamp(min=1)
    low, high = torch.full((1, 10), 7.0), torch.full((1, 10), 9.0)
    assert torch.equal(without.condition(units, mel2ph, low).cond, without.condition(units, mel2ph, high).cond)
    assert not torch.equal(with_pitch.condition(units, mel2ph, low).cond,
                           with_pitch.condition(units, mel2ph, high).cond)


def test_pitch_embedding_starts_as_the_originals_embedding():
    # common_layers.Embedding: normal, std H^-0.5 (rows of norm ~1, like the content units), padding
    # row 0; torch's default (std 1, rows of norm 16 at H = 256) made a fresh demo model key on pitch
    torch.manual_seed(0)
    weight = GaussianDiffusion.from_config(tiny_config()).fs2.pitch_embed.weight.detach()
    assert torch.equal(weight[0], torch.zeros(256))
    assert float(weight[1:].std()) == pytest.approx(256 ** -0.5, rel=0.05)


def test_use_nsf_false_is_refused_with_the_reason():
    from diffsvc.config import config_from_dict
    from diffsvc.errors import ConfigError

    with pytest.raises(ConfigError, match=r"c\.yaml: use_nsf: false .* not supported"):
        config_from_dict({"use_nsf": False}, "c.yaml")
