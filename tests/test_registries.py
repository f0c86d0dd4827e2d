"""One contract per kind of part: every registered entry goes through the same checks, so a new
entry that forgets something (a shape, a batch of mixed lengths, an error) fails here.

Kinds: f0 extractors, content encoders, samplers, vocoders, denoiser backbones. Also: the CLI,
the config and `diffsvc models` offer exactly the registered names.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from audio_synth import synth_voice
from conftest import tiny_config
from diffsvc.config import Config, config_from_dict
from diffsvc.errors import AudioError, CheckpointError, ConfigError, DiffSvcError
from diffsvc.features.content import CONTENT_ENCODERS, load_content_encoder
from diffsvc.features.f0 import F0_EXTRACTORS, make_f0_extractor
from diffsvc.model.backbones import BACKBONES, Backbone, make_backbone
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.registry import Registry, UnknownPartError
from diffsvc.sampling import SAMPLERS, make_sampler
from diffsvc.vocoder import VOCODERS, make_vocoder

SR, HOP = 44100, 512
REGISTRIES = {"diff_decoder_type": BACKBONES, "content_encoder": CONTENT_ENCODERS, "f0_extractor": F0_EXTRACTORS,
              "sampler": SAMPLERS, "vocoder": VOCODERS}


def sine(seconds: float, hz: float = 220.0, sr: int = SR) -> np.ndarray:
    """A sung vowel at `hz` (harmonics and formants: CREPE hears a pure sine as unvoiced)."""
    wav, _ = synth_voice(seconds, sr, f0=[(seconds, hz)], seed=0, consonants=False)
    return np.asarray(wav, dtype=np.float32)


# --- the registry helper ----------------------------------------------------------------------

def test_registry_names_aliases_and_the_unknown_name_error():
    reg = Registry("widget", "widget_kind")

    @reg.register("round", aliases=("circle",))
    class Round:
        """A round widget."""

    reg.add("square", "diffsvc.config:Config", doc="lazily imported")
    assert reg.names() == ("round", "square")  # registration order, aliases left out
    assert reg.get("circle") is Round and reg.doc("round") == "A round widget."
    assert reg.get("square") is Config  # imported on first use
    with pytest.raises(UnknownPartError, match=r"widget_kind: unknown widget 'oval'; choose one of round, square"):
        reg.get("oval")
    assert issubclass(UnknownPartError, DiffSvcError) and issubclass(UnknownPartError, ValueError)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("round", Round)


@pytest.mark.parametrize("key", sorted(REGISTRIES))
def test_config_accepts_exactly_the_registered_names(key):
    registry = REGISTRIES[key]
    for name in registry.names():
        assert getattr(config_from_dict({key: name}, "c.yaml"), key) == name
    expected = f"c.yaml: {key}: 'nonesuch' is not one of {', '.join(registry.names())}"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config_from_dict({key: "nonesuch"}, "c.yaml")


def test_cli_choices_are_the_registered_names():
    import argparse

    from diffsvc.cli import infer, preprocess

    def choices(module, dest):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        return tuple(next(a for a in parser._actions if a.dest == dest).choices)

    assert choices(preprocess, "f0") == F0_EXTRACTORS.names()
    assert choices(preprocess, "content") == CONTENT_ENCODERS.names()
    assert choices(infer, "f0_method") == F0_EXTRACTORS.names()
    assert choices(infer, "sampler") == SAMPLERS.names()


def test_models_command_lists_every_registered_part(tmp_path, monkeypatch, capsys):
    from diffsvc.cli.main import main

    monkeypatch.chdir(tmp_path)
    main(["models"])
    out = capsys.readouterr().out
    for key, registry in REGISTRIES.items():
        assert f"{key} ({registry.what})" in out
        for name in registry.names():
            assert f"    {name} " in out


# --- f0 extractors ----------------------------------------------------------------------------

@pytest.fixture(scope="module", params=F0_EXTRACTORS.names())
def f0_extractor(request):
    return request.param, make_f0_extractor(request.param, SR, HOP, 40.0, 1100.0, "cpu", 0.05)


def test_f0_extractor_contract(f0_extractor):
    name, extractor = f0_extractor
    assert extractor.name == name and extractor.settings()["extractor"] == name
    assert extractor.device == "cpu"
    # mixed lengths: each gives exactly its mel frame count, float32 Hz, 0 = unvoiced
    for seconds in (0.3, 0.55):
        wav = sine(seconds)
        f0 = extractor.extract(wav)
        assert f0.shape == (len(wav) // HOP,) and f0.dtype == np.float32
        assert np.isfinite(f0).all() and (f0 >= 0).all()
        voiced = f0[f0 > 0]
        assert len(voiced) > len(f0) // 2, name
        assert abs(np.median(voiced) / 220.0 - 1) < 0.03, (name, np.median(voiced))
    assert extractor.extract(sine(0.5), n_frames=7).shape == (7,)
    assert extractor.extract(sine(0.5), n_frames=0).shape == (0,)
    assert (extractor.extract(np.zeros(SR // 8, np.float32)) == 0).all()  # silence is unvoiced


def test_f0_extractor_bad_input_errors(f0_extractor):
    name, extractor = f0_extractor
    with pytest.raises(AudioError, match="mono"):
        extractor.extract(np.zeros((2, SR), np.float32))
    bad = sine(0.5)
    bad[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        extractor.extract(bad)
    with pytest.raises(DiffSvcError, match="f0 range"):
        make_f0_extractor(name, SR, HOP, 500.0, 100.0)


# --- content encoders -------------------------------------------------------------------------

def _tiny_hubert_soft(tmp_path):
    from test_content import tiny_hubert_soft

    return CONTENT_ENCODERS.get("hubert-soft")(tiny_hubert_soft())


def _tiny_contentvec(tmp_path):
    from test_content import TINY_FAIRSEQ_CFG, random_fairseq_state_dict

    ckpt = {"args": None, "cfg": {"_name": None, "model": TINY_FAIRSEQ_CFG, "task": {"labels": ["km"]}},
            "model": random_fairseq_state_dict(), "optimizer_history": [], "extra_state": {}}
    torch.save(ckpt, tmp_path / "cv.pt")
    return CONTENT_ENCODERS.get("contentvec").load(tmp_path / "cv.pt")


# An encoder with weights needs a tiny stand-in for its weights here; a new one without fails below.
TINY_WEIGHTS = {"hubert-soft": _tiny_hubert_soft, "contentvec": _tiny_contentvec}


@pytest.mark.parametrize("name", CONTENT_ENCODERS.names())
def test_content_encoder_contract(name, tmp_path):
    cls = CONTENT_ENCODERS.get(name)
    if cls.weights_key is None:
        encoder = cls.load(None)
    else:
        assert name in TINY_WEIGHTS, f"add a tiny model for {name!r} to TINY_WEIGHTS"
        assert cls.weights_key in Config.__dataclass_fields__ and cls.public_name and cls.weights_source
        encoder = TINY_WEIGHTS[name](tmp_path)
    encoder = encoder.to("cpu")
    for seconds, sr in ((0.7, SR), (1.3, 22050)):  # mixed lengths and rates
        wav = sine(seconds, sr=sr)
        units = encoder.encode(wav, sr)
        assert units.dtype == torch.float32 and units.device.type == "cpu"
        assert units.shape == (encoder.num_frames(len(wav), sr), encoder.dim), name
        assert torch.isfinite(units).all()
    stereo = np.stack([sine(0.7), sine(0.7)])
    assert encoder.encode(stereo, SR).shape == encoder.encode(sine(0.7), SR).shape
    bad = sine(0.7)
    bad[5] = np.inf
    with pytest.raises(AudioError, match="NaN or infinite"):
        encoder.encode(bad, SR)
    with pytest.raises(AudioError):
        encoder.encode(np.zeros(0, np.float32), SR)


@pytest.mark.parametrize("name", [n for n in CONTENT_ENCODERS.names() if CONTENT_ENCODERS.get(n).weights_key])
def test_content_encoder_missing_weights_is_one_line_naming_the_key(name, tmp_path):
    cls = CONTENT_ENCODERS.get(name)
    missing = tmp_path / "nowhere" / "w.pt"
    config = Config(**{"content_encoder": name, cls.weights_key: str(missing)})
    with pytest.raises(CheckpointError) as err:
        load_content_encoder(config)
    assert str(missing) in str(err.value) and cls.weights_key in str(err.value) and "\n" not in str(err.value)
    assert load_content_encoder(config, allow_standin=True).is_standin


# --- samplers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_contract(name):
    torch.manual_seed(0)
    config = tiny_config()
    model = GaussianDiffusion.from_config(config).eval()
    torch.nn.init.normal_(model.denoise_fn.output_projection.weight, std=0.3)
    sampler = make_sampler(name, model.schedule(), 4, speedup=25)
    assert sampler.name == name
    # a batch of mixed lengths: the padded item's frames stay zero and its real frames equal a lone run
    lengths = torch.tensor([12, 7])
    mel2ph = (torch.arange(12)[None] < lengths[:, None]).long() * (torch.arange(12)[None] // 2 + 1)
    units, f0 = torch.randn(2, 6, config.hidden_size), torch.full((2, 12), 8.0)
    noise = torch.randn(2, 1, config.audio_num_mel_bins, 12)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        both = model.sample(units, mel2ph, f0, sampler, lengths=lengths, noise=noise, generator=g)
        alone = model.sample(units[1:], mel2ph[1:, :7], f0[1:, :7], make_sampler(name, model.schedule(), 4,
                             speedup=25), noise=noise[1:, ..., :7], generator=torch.Generator().manual_seed(1))
    assert both.shape == (2, 12, config.audio_num_mel_bins) and torch.isfinite(both).all()
    assert (both[1, 7:] == 0).all()
    if not sampler.stochastic:
        torch.testing.assert_close(both[1, :7], alone[0], rtol=1e-4, atol=1e-4)
    assert 1 <= sampler.num_denoiser_calls(config.K_step) <= config.K_step


def test_unknown_sampler_lists_the_choices():
    with pytest.raises(UnknownPartError, match=re.escape("choose one of " + ", ".join(SAMPLERS.names()))):
        make_sampler("euler", {"alphas_cumprod": torch.ones(3)})


# --- vocoders ---------------------------------------------------------------------------------

def _vocoder_config(name, tmp_path):
    if VOCODERS.get(name).weights_key is None:
        return tiny_config(vocoder=name)
    from infer_fixture import TINY_NSF

    from diffsvc.vocoder import Generator, save_vocoder

    assert name == "nsf-hifigan", f"add a tiny model for vocoder {name!r} here"
    torch.manual_seed(0)
    save_vocoder(Generator.from_config(TINY_NSF), TINY_NSF, tmp_path / "voc")
    return tiny_config(vocoder=name, vocoder_ckpt=str(tmp_path / "voc" / "model"))


@pytest.mark.parametrize("name", VOCODERS.names())
def test_vocoder_contract(name, tmp_path):
    config = _vocoder_config(name, tmp_path)
    vocoder = make_vocoder(config, "cpu")
    assert (vocoder.sample_rate, vocoder.hop_size, vocoder.n_mels) == (SR, HOP, 128)
    for frames in (9, 23):  # mixed lengths
        mel = torch.full((frames, 128), -4.0)
        wav = vocoder.vocode(mel, torch.full((frames,), 220.0))
        assert wav.shape == (frames * HOP,) and wav.device.type == "cpu" and torch.isfinite(wav).all()
    with pytest.raises(ConfigError, match="mel"):
        vocoder.vocode(torch.zeros(5, 64), torch.zeros(5))
    with pytest.raises(ConfigError, match="hop_size is 256"):
        vocoder.check_config(config.replace(hop_size=256, win_size=1024, fft_size=1024))


def test_missing_vocoder_weights_is_a_checkpoint_error(tmp_path):
    for name in VOCODERS.names():
        if VOCODERS.get(name).weights_key:
            with pytest.raises(CheckpointError):
                make_vocoder(tiny_config(vocoder=name, vocoder_ckpt=str(tmp_path / "none" / "model")), "cpu")


# --- denoiser backbones -----------------------------------------------------------------------

TINY_BACKBONE = dict(residual_layers=2, residual_channels=8, lynxnet_layers=2, lynxnet_channels=8,
                     lynxnet_kernel=5, audio_num_mel_bins=16, keep_bins=16, hidden_size=12)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_contract(name):
    torch.manual_seed(0)
    config = tiny_config(diff_decoder_type=name, **TINY_BACKBONE)
    net = make_backbone(config)
    assert isinstance(net, Backbone) and (net.in_dims, net.cond_dims) == (16, 12)
    assert net.reach_frames >= 1 and net.activation_floats_per_frame() > 0
    state_key = type(net).STATE_KEY
    assert state_key in net.state_dict()
    others = [BACKBONES.get(n).STATE_KEY for n in BACKBONES.names() if n != name]
    assert not any(k in net.state_dict() for k in others)  # checkpoints can be told apart
    # starts by ignoring its input (zero output weights); then, with random output weights, a padded batch of mixed
    # lengths gives each item's lone numbers on its real frames
    x, cond = torch.randn(2, 1, 16, 40), torch.randn(2, 12, 40)
    t = torch.tensor([3, 77])
    with torch.no_grad():
        assert torch.equal(net(x, t, cond), net(x + 1, t, cond))  # zero-initialised output projection
    torch.nn.init.normal_(net.output_projection.weight, std=0.3)
    mask = torch.ones(2, 1, 40)
    mask[1, :, 25:] = 0
    with torch.no_grad():
        both = net(x * mask[:, None], t, cond, mask)
        alone = net(x[1:, ..., :25], t[1:], cond[1:, :, :25], None)
    assert both.shape == x.shape and both.device.type == "cpu"
    torch.testing.assert_close(both[1, ..., :25], alone[0], rtol=1e-4, atol=1e-5)
    # the step matters and the conditioning matters
    with torch.no_grad():
        assert not torch.allclose(net(x, t, cond), net(x, t + 100, cond))
        assert not torch.allclose(net(x, t, cond), net(x, t, cond + 1))
    # trains: one optimiser step lowers the loss on a fixed batch
    model = GaussianDiffusion.from_config(config)
    assert type(model.denoise_fn) is type(net) and model.n_mels == 16
    mel = torch.randn(2, 40, 16) * 0.3 - 2
    mel2ph = torch.arange(1, 41).repeat(2, 1)
    units, f0 = torch.randn(2, 40, 12), torch.full((2, 40), 8.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    kw = dict(t=torch.tensor([10, 60]), noise=torch.randn(2, 1, 16, 40))
    first = model.loss(mel, units, mel2ph, f0, **kw)
    for _ in range(5):
        opt.zero_grad()
        model.loss(mel, units, mel2ph, f0, **kw).backward()
        opt.step()
    assert model.loss(mel, units, mel2ph, f0, **kw) < first


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="diff_decoder_type: 'transformer' is not one of wavenet, lynxnet"):
        config_from_dict({"diff_decoder_type": "transformer"}, "c.yaml")


def test_readme_parts_table_names_every_registered_part():
    from conftest import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    parts = readme[readme.index("### Parts"):]
    parts = parts[:parts.index("\n## ")]
    for key, registry in REGISTRIES.items():
        row = next(line for line in parts.splitlines() if f"(`{key}`" in line)
        assert all(f"`{name}`" in row for name in registry.names()), (key, row)
