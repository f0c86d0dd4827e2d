"""Mel settings have one home (diffsvc.audio.mel.MelSettings): every place that holds them agrees."""

import pytest

from conftest import tiny_config
from diffsvc.audio.mel import MelExtractor, MelSettings
from diffsvc.data.preprocess import mel_settings
from diffsvc.vocoder import GriffinLimVocoder
from diffsvc.vocoder.loading import mel_settings as hifigan_mel_settings
from infer_fixture import TINY_NSF


@pytest.mark.parametrize("changes", [{}, dict(hop_size=256, win_size=1024, fft_size=1024, fmax=11025.0,
                                               audio_sample_rate=22050, audio_num_mel_bins=80, keep_bins=80)])
def test_every_holder_of_the_mel_settings_agrees(changes):
    config = tiny_config(**changes)
    settings = MelSettings.from_config(config)
    assert settings.hop_size == config.hop_size and settings.n_mels == config.audio_num_mel_bins
    assert MelExtractor.from_config(config).settings == settings
    assert GriffinLimVocoder.from_config(config, n_iter=1).settings == settings
    assert MelSettings.from_dict(mel_settings(config)) == settings  # a prepared dataset's record
    assert settings.extractor().settings == settings


def test_hifigan_config_json_reads_into_the_same_settings():
    assert hifigan_mel_settings(TINY_NSF) == MelSettings.from_config(tiny_config()) == MelSettings()
    assert isinstance(MelSettings.from_hifigan_json(TINY_NSF).fmin, float)  # 40 in the JSON, 40.0 here
