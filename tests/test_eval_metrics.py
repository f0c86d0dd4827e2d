"""Each `diffsvc eval` figure against a known answer."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from diffsvc.audio.mel import MelExtractor
from diffsvc.evaluation.metrics import (MCD_CONSTANT, content_distance, cosine_similarity, log_mel_distance,
                                        mel_cepstral_distortion, pitch_scores)
from diffsvc.features.f0 import make_f0_extractor

from audio_synth import synth_voice

SR = 44100


@pytest.fixture(autouse=True)
def no_numpy_warnings():
    """A division by zero or a mean of nothing would warn: make it fail instead."""
    with warnings.catch_warnings(), np.errstate(divide="raise", invalid="raise"):
        warnings.simplefilter("error", RuntimeWarning)
        yield


def voice(f0_scale: float = 1.0, seconds: float = 1.5):
    melody = [(0.4, 220.0 * f0_scale), (0.4, 294.0 * f0_scale), (0.2, 0.0), (0.5, 262.0 * f0_scale)]
    return synth_voice(seconds, SR, f0=melody, seed=3, vibrato_cents=0.0, consonants=False)


def test_identical_audio_gives_zero_distance():
    wav, _ = voice()
    mel = MelExtractor().numpy(wav)
    assert log_mel_distance(mel, mel.copy()) == 0.0
    assert mel_cepstral_distortion(mel, mel.copy()) == 0.0
    noisy = mel + 0.05 * np.random.default_rng(0).standard_normal(mel.shape)
    assert log_mel_distance(mel, noisy) > 0.03
    assert mel_cepstral_distortion(mel, noisy) > 0.1


def test_mcd_known_value_and_c0_excluded():
    rng = np.random.default_rng(1)
    mel = rng.uniform(-4, -1, (20, 128))
    # a level change moves only c0: no distortion
    assert mel_cepstral_distortion(mel, mel + 0.7) == pytest.approx(0.0, abs=1e-9)
    # a difference of a * cos(pi d (k + 1/2) / M) in the ln mel moves c_d by a / 2: MCD = K sqrt(2 (a/2)^2)
    a, k = 0.3, np.arange(128)
    for d in (1, 13):
        wave = a * np.cos(np.pi * d * (k + 0.5) / 128) / math.log(10)  # in log10 mel
        assert mel_cepstral_distortion(mel, mel + wave) == pytest.approx(MCD_CONSTANT * a / math.sqrt(2), rel=1e-9)
    # c14 and above are not part of the figure
    beyond = mel + a * np.cos(np.pi * 20 * (k + 0.5) / 128) / math.log(10)
    assert mel_cepstral_distortion(mel, beyond) == pytest.approx(0.0, abs=1e-9)


def test_silent_and_empty_mels():
    silent = np.full((10, 128), math.log10(1e-5))
    assert mel_cepstral_distortion(silent, silent) == 0.0
    assert log_mel_distance(silent, silent) == 0.0
    assert math.isnan(mel_cepstral_distortion(np.zeros((0, 128)), np.zeros((0, 128))))
    assert math.isnan(log_mel_distance(np.zeros((0, 128)), np.zeros((0, 128))))
    with pytest.raises(ValueError, match="aligned"):
        log_mel_distance(silent, silent[:5])


def test_identical_f0_is_full_accuracy_and_semitone_is_100_cents():
    f0 = np.array([0, 0, 220, 230, 240, 0, 300, 310, 0], dtype=np.float32)
    same = pitch_scores(f0, f0)
    assert (same.median_abs_cents, same.raw_pitch_accuracy, same.voicing_recall, same.voicing_false_alarm) == \
        (0.0, 1.0, 1.0, 0.0)
    up = pitch_scores(f0, f0 * 2 ** (1 / 12))
    assert up.median_abs_cents == pytest.approx(100.0, abs=1e-3)
    assert up.raw_pitch_accuracy == 0.0 and up.voicing_recall == 1.0
    quarter = pitch_scores(f0, f0 * 2 ** (0.4 / 12))  # 40 cents: within the 50-cent tolerance
    assert quarter.raw_pitch_accuracy == 1.0
    # one voiced frame missed, one unvoiced frame claimed voiced
    est = f0.copy()
    est[2], est[0] = 0, 100
    mixed = pitch_scores(f0, est)
    assert mixed.voicing_recall == pytest.approx(4 / 5)
    assert mixed.raw_pitch_accuracy == pytest.approx(4 / 5)
    assert mixed.voicing_false_alarm == pytest.approx(1 / 4)


def test_unvoiced_and_silent_pitch_is_nan_not_an_error():
    zeros = np.zeros(50, dtype=np.float32)
    s = pitch_scores(zeros, zeros)
    assert math.isnan(s.median_abs_cents) and math.isnan(s.raw_pitch_accuracy) and math.isnan(s.voicing_recall)
    assert s.voicing_false_alarm == 0.0
    voiced = np.full(50, 200.0)
    s = pitch_scores(voiced, zeros)  # output lost its voice entirely
    assert s.raw_pitch_accuracy == 0.0 and s.voicing_recall == 0.0 and math.isnan(s.median_abs_cents)
    assert math.isnan(s.voicing_false_alarm)
    s = pitch_scores([], [])
    assert s.voiced_frames == 0 and math.isnan(s.raw_pitch_accuracy)


def test_pitch_through_audio_and_a_second_extractor():
    """The eval path: audio re-tracked with Praat. The same audio scores 0 cents and full RPA;
    the voice sung a semitone higher scores about 100 cents against the original intention."""
    wav, f0_true = voice()
    up, _ = voice(2 ** (1 / 12))
    praat = make_f0_extractor("parselmouth", SR, 512, 40.0, 1100.0)
    n = len(f0_true)
    same = pitch_scores(praat.extract(wav, n), praat.extract(wav.copy(), n))
    assert same.median_abs_cents == 0.0 and same.raw_pitch_accuracy == 1.0
    shifted = pitch_scores(f0_true, praat.extract(up, n))
    assert shifted.median_abs_cents == pytest.approx(100.0, abs=10.0)
    assert shifted.raw_pitch_accuracy < 0.1
    right = pitch_scores(f0_true, praat.extract(wav, n))
    assert right.median_abs_cents < 15.0 and right.raw_pitch_accuracy > 0.9
    silence = np.zeros_like(wav)
    quiet = pitch_scores(f0_true, praat.extract(silence, n))
    assert quiet.voicing_recall == 0.0 and quiet.raw_pitch_accuracy == 0.0


def test_cosine_and_content_distance():
    a = np.array([1.0, 0.0, 0.0])
    assert cosine_similarity(a, a * 3) == pytest.approx(1.0)
    assert cosine_similarity(a, [0.0, 1.0, 0.0]) == 0.0
    assert math.isnan(cosine_similarity(a, np.zeros(3)))
    units = np.random.default_rng(2).standard_normal((30, 256))
    assert content_distance(units, units.copy()) == pytest.approx(0.0, abs=1e-12)
    assert content_distance(units, -units) == pytest.approx(2.0)
    assert 0.8 < content_distance(units, np.random.default_rng(3).standard_normal((30, 256))) < 1.2
    assert math.isnan(content_distance(np.zeros((5, 256)), np.zeros((5, 256))))
    assert math.isnan(content_distance(np.zeros((0, 256)), np.zeros((0, 256))))


def test_same_singer_scores_higher_than_another():
    """GE2E (resemblyzer, the eval extra) on the demo's two synthetic singers: a new phrase of
    singer B is closer to B's centroid than a phrase of singer A; silence has no embedding."""
    from diffsvc.demo.corpus import SINGER_A, SINGER_B, song
    from diffsvc.evaluation.speaker import load_speaker_encoder

    encoder = load_speaker_encoder("cpu")
    assert encoder is not None, "the eval extra is part of `make install`: pip install -e '.[eval]'"
    with np.errstate(all="ignore"):  # librosa's resampler inside resemblyzer
        centroid = encoder.centroid([song(SINGER_B, 4.0, seed=s)[0] for s in (1, 2)], SR)
        same = cosine_similarity(encoder.embed(song(SINGER_B, 4.0, seed=9)[0], SR), centroid)
        other = cosine_similarity(encoder.embed(song(SINGER_A, 4.0, seed=9)[0], SR), centroid)
        assert same > other + 0.03
        assert encoder.embed(np.zeros(SR, dtype=np.float32), SR) is None
        assert encoder.embed(np.zeros(10, dtype=np.float32), SR) is None
