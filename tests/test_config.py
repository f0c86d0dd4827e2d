"""The typed configuration: defaults, the original's config.yaml, and one clear error per mistake."""

import sys
from pathlib import Path

import pytest
import yaml

from diffsvc.config import DEFAULT_CONFIG, RECIPE_KEYS, Config, describe_fields, load_config
from diffsvc.errors import ConfigError
from procs import run


def test_default_file_holds_the_original_defaults():
    config = load_config(DEFAULT_CONFIG)
    # the YAML and the schema agree on every value but the training recipe, which the schema keeps
    # at the original's (for configs without those keys) and the YAML sets to ours for new projects
    original_recipe = {key: getattr(Config(), key) for key in RECIPE_KEYS}
    assert config.replace(**original_recipe) == Config()
    assert (config.audio_sample_rate, config.hop_size, config.win_size, config.fft_size) == (44100, 512, 2048, 2048)
    assert (config.residual_layers, config.residual_channels, config.hidden_size) == (20, 384, 256)
    assert (config.timesteps, config.K_step, config.max_beta, config.schedule_type) == (1000, 1000, 0.02, "linear")
    assert (config.f0_min, config.f0_max, config.f0_bin, config.lr, config.decay_steps) == (40.0, 1100.0, 256, 0.0008, 40000)
    keys_in_file = {line.split(":")[0] for line in DEFAULT_CONFIG.read_text().splitlines()
                    if line and not line.startswith("#")}
    assert keys_in_file == {name for name, _, _ in describe_fields()}


def _write(tmp_path, data, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("data, message", [
    ({"hop_sise": 512}, r"c\.yaml: hop_sise: unknown setting \(did you mean hop_size\?\)"),
    ({"hop_size": "big"}, r"c\.yaml: hop_size: expected a whole number"),
    ({"use_uv": "yes"}, r"c\.yaml: use_uv: expected true or false"),
    ({"hop_size": 0}, r"c\.yaml: hop_size: 0 is too small"),
    ({"K_step": 2000}, r"c\.yaml: K_step: 2000 is larger than timesteps"),
    ({"fmax": 30000}, r"c\.yaml: fmax: 30000.0 Hz is above the Nyquist"),
    ({"sampler": "euler"}, r"c\.yaml: sampler: 'euler' is not one of"),
    ({"spec_min": [-5.0, -4.0], "spec_max": [0.0, 0.0]}, r"c\.yaml: spec_min: has 2 values"),
    ({"spec_min": [1.0], "spec_max": [0.0]}, r"c\.yaml: spec_max: bin 0"),
    ({"f0_min": 900, "f0_max": 800}, r"c\.yaml: f0_min: 900.0 must be below f0_max"),
])
def test_mistakes_name_the_key_and_the_file(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, data))


def test_broken_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML at line \d"):
        load_config(_write(tmp_path, "a: 1\nb: [\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_original_config_yaml_loads_with_unused_keys_ignored(tmp_path):
    original = {
        "task_cls": "training.task.SVC_task.SVCTask", "binarizer_cls": "preprocessing.SVCpre.SVCBinarizer",
        "enc_layers": 4, "dec_layers": 4, "cwt_std_scale": 0.8, "datasets": [], "hubert_path":
        "checkpoints/hubert/hubert_soft.pt", "residual_channels": 512, "spec_min": [-5.0] * 128,
        "spec_max": [0.5] * 128, "use_crepe": False, "fmax": 16000, "max_beta": 0.02,
    }
    config = load_config(_write(tmp_path, original, "config.yaml"))
    assert config.residual_channels == 512 and len(config.spec_min) == 128
    assert config.f0_extractor == "parselmouth"  # use_crepe: false
    assert config.loss_mask is False


def test_cli_help_and_version():
    out = run([sys.executable, "-m", "diffsvc", "--help"], timeout=300, check=True).stdout
    for command in ("preprocess", "train", "infer", "models"):
        assert command in out
    version = run([sys.executable, "-m", "diffsvc", "--version"], timeout=300, check=True)
    from diffsvc import __version__
    assert version.stdout.strip() == f"diffsvc {__version__}"


FIXTURE_NSF = Path(__file__).parent / "fixtures" / "original_config_nsf.yaml"


def _write_text(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_choice_values_match_whatever_their_spelling(tmp_path):
    """`vocoder: NSF-HiFiGAN`, `sampler: DPM-Solver++`, `f0_extractor: Crepe_Tiny` name our choices."""
    text = FIXTURE_NSF.read_text(encoding="utf-8").replace(
        "vocoder: network.vocoders.nsf_hifigan.NsfHifiGAN", "vocoder: NSF-HiFiGAN")
    config = load_config(_write_text(tmp_path, text + "sampler: DPM-Solver++\nf0_extractor: Crepe_Tiny\n"))
    assert (config.vocoder, config.sampler, config.f0_extractor) == ("nsf-hifigan", "dpm-solver++", "crepe-tiny")


def test_tab_indentation_is_named(tmp_path):
    text = FIXTURE_NSF.read_text(encoding="utf-8").replace("\n  ", "\n\t")
    with pytest.raises(ConfigError, match=r"line \d+: a tab in the indentation .*replace tabs with spaces"):
        load_config(_write_text(tmp_path, text))


def test_crlf_original_config_loads(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(FIXTURE_NSF.read_bytes().replace(b"\n", b"\r\n"))
    assert load_config(path).vocoder == "nsf-hifigan"
