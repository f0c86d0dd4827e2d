"""NSF-HiFiGAN: key compatibility with the release, numbers against the reference fixture, the
public folder layout, clear errors, windowed vocoding, and the Griffin-Lim stand-in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.serialization

from diffsvc.audio.mel import LOG10_TO_LN, MelExtractor
from diffsvc.config import Config
from diffsvc.errors import CheckpointError, ConfigError
from diffsvc.vocoder import Generator, GriffinLimVocoder, NsfHifiGan, load_vocoder, save_vocoder
from diffsvc.vocoder.loading import legacy_state_dict, mel_settings
from diffsvc.vocoder.windowed import vocode_in_windows, window_spans

# The release's architecture with 32 initial channels instead of 512 (as the nsf_small fixture).
SMALL_CONFIG = {
    "resblock": "1", "upsample_rates": [8, 8, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4, 4],
    "upsample_initial_channel": 32, "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "num_mels": 128, "sampling_rate": 44100,
    "hop_size": 512, "n_fft": 2048, "win_size": 2048, "fmin": 40, "fmax": 16000,
    "discriminator_periods": [3, 5, 7, 11, 17, 23, 37], "segment_size": 16384,  # training keys are ignored
}


@pytest.fixture(scope="module")
def nsf_small(fixtures_dir):
    return torch.load(fixtures_dir / "nsf_small.pt", weights_only=True)


@pytest.fixture(scope="module")
def release_keys(fixtures_dir):
    return json.loads((fixtures_dir / "nsf_hifigan_keys.json").read_text())


def small_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    generator = Generator.from_config(SMALL_CONFIG)
    with torch.no_grad():
        generator.conv_post.bias.normal_(0, 0.1)  # HiFiGAN leaves it at torch's default; any value will do
    return generator


def voiced_inputs(num_frames: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    mel_ln = torch.randn(1, 128, num_frames, generator=gen) * 0.5 - 5
    f0 = 200 + 100 * torch.sin(torch.arange(num_frames) / 20.0)[None]
    return mel_ln, f0


# --- the release's key set -------------------------------------------------------------------

def test_key_set_and_shapes_equal_the_release(release_keys):
    generator = Generator.from_config(release_keys["config_used"])
    shapes = {k: list(v.shape) for k, v in legacy_state_dict(generator).items()}
    assert shapes == release_keys["state_dict_shapes"]
    assert sum(p.numel() for p in generator.parameters()) == release_keys["num_params_total"]
    generator.remove_weight_norm()
    folded = {k: list(v.shape) for k, v in generator.state_dict().items()}
    assert folded == release_keys["state_dict_shapes_after_remove_weight_norm"]


# --- numbers against the reference ----------------------------------------------------------

def test_body_with_injected_source_matches_reference(nsf_small):
    generator = Generator.from_config(nsf_small["config"])
    generator.load_state_dict(nsf_small["state_dict"], strict=True)
    source = nsf_small["sine_merge"].transpose(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(generator.decode(nsf_small["mel_ln"], source), nsf_small["out"], rtol=0, atol=1e-5)
        generator.remove_weight_norm()
        torch.testing.assert_close(generator.decode(nsf_small["mel_ln"], source),
                                   nsf_small["out_after_remove_weight_norm"], rtol=0, atol=1e-5)


def test_seeded_full_forward_matches_reference(nsf_small):
    generator = Generator.from_config(nsf_small["config"])
    generator.load_state_dict(nsf_small["state_dict"], strict=True)
    generator.remove_weight_norm().eval()
    with torch.no_grad():
        torch.manual_seed(nsf_small["seed_before_forward"])
        source = generator.excitation(nsf_small["f0"])
        torch.testing.assert_close(source, nsf_small["har_source"], rtol=0, atol=1e-6)
        torch.manual_seed(nsf_small["seed_before_forward"])
        out = generator(nsf_small["mel_ln"], nsf_small["f0"])
    torch.testing.assert_close(out, nsf_small["out"], rtol=0, atol=1e-5)


def test_vocoder_takes_log10_mel_and_gives_reference_audio(nsf_small):
    generator = Generator.from_config(nsf_small["config"])
    generator.load_state_dict(nsf_small["state_dict"], strict=True)
    vocoder = NsfHifiGan(generator.remove_weight_norm(), mel_settings(nsf_small["config"]))
    mel_log10 = nsf_small["mel_ln"][0].T / LOG10_TO_LN  # Diff-SVC's [T, M] log10 mel
    torch.manual_seed(nsf_small["seed_before_forward"])
    wav = vocoder.vocode(mel_log10, nsf_small["f0"][0])
    assert wav.shape == (10 * 512,)
    torch.testing.assert_close(wav, nsf_small["out"][0, 0], rtol=0, atol=1e-5)
    assert vocoder.sample_rate == 44100 and vocoder.hop_size == 512 and not vocoder.is_standin


# --- the public folder ------------------------------------------------------------------------

def test_saved_folder_loads_from_folder_or_model_file(tmp_path):
    generator = small_generator()
    folder = save_vocoder(generator, SMALL_CONFIG, tmp_path / "nsf_hifigan")
    raw = torch.load(folder / "model", weights_only=True)
    assert set(raw) == {"generator"}
    assert "conv_pre.weight_g" in raw["generator"] and "ups.0.weight_v" in raw["generator"]
    assert json.loads((folder / "config.json").read_text())["upsample_initial_channel"] == 32

    mel_ln, f0 = voiced_inputs(6)
    generator.remove_weight_norm().eval()
    torch.manual_seed(3)
    with torch.no_grad():
        expected = generator(mel_ln, f0)[0, 0]
    for path in (folder, folder / "model"):
        vocoder = load_vocoder(path, device="cpu")
        assert "NSF-HiFiGAN" in vocoder.name and not vocoder.is_standin
        assert not any(".parametrizations." in k for k in vocoder.generator.state_dict())  # weight norm folded
        torch.manual_seed(3)
        torch.testing.assert_close(vocoder.vocode(mel_ln[0].T / LOG10_TO_LN, f0[0]), expected, rtol=0, atol=1e-5)


def test_weights_saved_on_gpu_load_on_cpu(tmp_path, monkeypatch):
    generator = small_generator()
    folder = tmp_path / "nsf_hifigan"
    # torch.save records each tensor's device through location_tag: pretend they were on cuda:0
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        save_vocoder(generator, SMALL_CONFIG, folder)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(folder / "model", weights_only=True)  # what the original's loader did
    vocoder = load_vocoder(folder)
    assert vocoder.device.type == "cpu"
    expected = legacy_state_dict(generator)["conv_pre.weight_v"]
    assert torch.equal(torch.load(folder / "model", weights_only=True, map_location="cpu")
                       ["generator"]["conv_pre.weight_v"], expected)


@pytest.mark.parametrize("present", [(), ("config.json",), ("model",)])
def test_missing_files_name_the_expected_layout(tmp_path, present):
    save_vocoder(small_generator(), SMALL_CONFIG, tmp_path / "full")
    folder = tmp_path / "nsf_hifigan"
    if present:
        folder.mkdir()
        for name in present:
            (folder / name).write_bytes((tmp_path / "full" / name).read_bytes())
    with pytest.raises(CheckpointError) as err:
        load_vocoder(folder)
    message = str(err.value)
    assert "\n" not in message
    assert "models/nsf_hifigan/model" in message and "models/nsf_hifigan/config.json" in message
    missing = "config.json" if present == ("model",) else "model"
    assert str(folder / missing) in message or (not present and str(folder) in message)


def test_wrong_weights_are_one_clear_line(tmp_path):
    folder = save_vocoder(small_generator(), SMALL_CONFIG, tmp_path / "nsf_hifigan")
    state = torch.load(folder / "model", weights_only=True)["generator"]
    state["conv_pre.weight"] = state.pop("conv_pre.weight_v")  # a plain key where weight_v belongs
    state["ups.0.bias"] = torch.zeros(99)
    torch.save({"generator": state}, folder / "model")
    with pytest.raises(CheckpointError) as err:
        load_vocoder(folder)
    message = str(err.value)
    assert "\n" not in message
    assert "1 missing (e.g. conv_pre.weight_v)" in message
    assert "1 unexpected (e.g. conv_pre.weight)" in message
    assert "ups.0.bias: file [99]" in message

    torch.save(state, folder / "model")  # a flat state dict, without the "generator" entry
    with pytest.raises(CheckpointError, match="no 'generator' entry"):
        load_vocoder(folder)


def test_config_json_problems_name_the_key(tmp_path):
    config = {k: v for k, v in SMALL_CONFIG.items() if k != "hop_size"}
    folder = save_vocoder(small_generator(), config, tmp_path / "nsf_hifigan")
    with pytest.raises(CheckpointError, match="missing key\\(s\\) hop_size"):
        load_vocoder(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable JSON"):
        load_vocoder(folder)


# --- mel settings -----------------------------------------------------------------------------

def test_mel_settings_mismatch_names_the_setting():
    vocoder = NsfHifiGan(small_generator().remove_weight_norm(), mel_settings(SMALL_CONFIG))
    release = dict(sample_rate=44100, n_mels=128, hop_size=512, n_fft=2048, win_size=2048, fmin=40.0, fmax=16000.0)
    vocoder.check_mel_settings(**release)
    with pytest.raises(ConfigError) as err:
        vocoder.check_mel_settings(**{**release, "hop_size": 256, "fmax": 11025.0})
    message = str(err.value)
    assert "hop_size is 256 but the vocoder expects 512" in message
    assert "fmax is 11025 but the vocoder expects 16000" in message
    assert "sample_rate" not in message and "\n" not in message

    vocoder.check_config(Config())  # the default config is the release's 44.1 kHz setup
    with pytest.raises(ConfigError, match="audio_sample_rate is 24000 but the vocoder expects 44100"):
        vocoder.check_config(Config().replace(audio_sample_rate=24000, fmax=12000.0))
    with pytest.raises(ConfigError, match="audio_num_mel_bins must be 128"):
        vocoder.vocode(torch.zeros(5, 80), torch.zeros(5))


# --- windowed vocoding ------------------------------------------------------------------------

def test_window_spans_cover_the_mel_with_fixed_overlaps():
    spans = window_spans(250, 64, 8)
    assert spans[0][0] == 0 and spans[-1][1] == 250
    assert all(b[0] == a[1] - 8 for a, b in zip(spans, spans[1:]))
    assert all(e - s <= 64 for s, e in spans)
    assert window_spans(30, 64, 8) == [(0, 30)]


def test_windowed_vocoding_matches_a_single_pass():
    """With the source's noise switched off (noise_std 0 on voiced frames) everything left is
    deterministic given the initial phases, which both paths draw as their first random numbers:
    windows with enough context must reproduce the single pass everywhere, seams included.
    Measured max difference: 6e-7 (peak 0.7) with 16 frames of context."""
    generator = small_generator().remove_weight_norm().eval()
    generator.m_source.l_sin_gen.noise_std = 0.0
    mel_ln, f0 = voiced_inputs(200)
    with torch.no_grad():
        torch.manual_seed(5)
        single = generator(mel_ln, f0)
        torch.manual_seed(5)
        windowed = vocode_in_windows(generator, mel_ln, f0, window_frames=64, context_frames=16, crossfade_frames=8)
    assert windowed.shape == single.shape == (1, 1, 200 * 512)
    torch.testing.assert_close(windowed, single, rtol=0, atol=1e-5)


def test_vocoder_windows_stay_short_and_differ_only_by_noise():
    """Through the Vocoder, with the original's noise and an unvoiced gap: the generator never sees
    more than window + 2 * context frames, and the windowed audio differs from the single pass no
    more than two single passes that share initial phases but not noise differ from each other
    (measured ratio 0.97; re-drawing the phases in every window instead gives about 4)."""
    generator = small_generator().remove_weight_norm().eval()
    vocoder = NsfHifiGan(generator, mel_settings(SMALL_CONFIG), window_frames=64, context_frames=16,
                         crossfade_frames=8)
    seen = []
    # conv_pre takes the mel first in the generator's body: the frames each run sees
    generator.conv_pre.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[-1]))
    mel_ln, f0 = voiced_inputs(200)
    f0[:, 80:120] = 0
    torch.manual_seed(5)
    windowed = vocoder.vocode(mel_ln[0].T / LOG10_TO_LN, f0[0])
    assert max(seen) <= 64 + 2 * 16 and len(seen) == len(window_spans(200, 64, 8))
    seen.clear()
    with torch.no_grad():
        torch.manual_seed(5)
        single = generator(mel_ln, f0)[0, 0]
        torch.manual_seed(5)
        phase = generator.m_source.l_sin_gen.draw_initial_phase(1, "cpu")
        torch.manual_seed(105)
        other_noise = generator(mel_ln, f0, initial_phase=phase)[0, 0]

    def rms(x):
        return x.pow(2).mean().sqrt()

    assert rms(other_noise - single) > 0  # the noise is really on
    assert rms(windowed - single) < 1.3 * rms(other_noise - single)


# --- the Griffin-Lim stand-in -----------------------------------------------------------------

def test_griffin_lim_standin_reproduces_the_mel():
    """Two rising harmonic chirps -> mel -> Griffin-Lim -> mel again. Measured on voiced bins
    (log10 mel > -4): correlation 0.98, mean |difference| 0.19 (white noise: 0.0 and 1.6)."""
    sr = 44100
    t = np.arange(2 * sr) / sr
    signal = 0.3 * np.sin(2 * np.pi * (150 * t + 150 * t ** 2)) + 0.1 * np.sin(2 * np.pi * (450 * t + 450 * t ** 2))
    extractor = MelExtractor()
    mel = extractor(torch.from_numpy(signal.astype(np.float32)))
    vocoder = GriffinLimVocoder.from_config(Config())
    assert vocoder.is_standin and vocoder.name == "stand-in (Griffin-Lim)"
    torch.manual_seed(0)
    wav = vocoder.vocode(mel, torch.zeros(mel.shape[0]))
    assert wav.shape == (mel.shape[0] * 512,)
    again = extractor(wav).numpy()[2:-2]
    original = mel.numpy()[2:-2]
    voiced = original > -4
    assert np.corrcoef(original[voiced], again[voiced])[0, 1] > 0.9
    assert np.abs(original - again)[voiced].mean() < 0.4
