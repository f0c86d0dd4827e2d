"""f0 extraction: accuracy on synthetic voice with known f0, unvoiced handling, frame grid,
range, cache-key settings, fidelity to the original CREPE chain, and bad input."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from audio_synth import cents_error, stable_voiced, synth_voice
from diffsvc.errors import AudioError, DiffSvcError
from diffsvc.features.f0 import extract_f0, interpolate_like_original, make_f0_extractor
from diffsvc.features.f0.fcpe import fcpe_available
from diffsvc.features.f0.praat import place_like_original

SR, HOP = 44100, 512
CREPE_BIN = 2 ** (20 / 1200)  # one CREPE pitch bin (20 cents): its range limits hold to one bin
needs_fcpe = pytest.mark.skipif(not fcpe_available(), reason="torchfcpe not installed (pip install 'diffsvc[fcpe]')")
FAST_METHODS = ["crepe-tiny", "parselmouth", pytest.param("fcpe", marks=needs_fcpe)]

# Measured on seeds 0-2 (3 s phrases, 150-500 Hz, vibrato +-30 cents): median / p90 cents error on
# stable voiced frames: crepe-tiny 5.5/16.5, crepe (full) 3.6/9.1, parselmouth 6.1/8.3, fcpe 0.9/1.9;
# missed voiced frames <= 4%. Bounds below leave about 2x margin.
BOUNDS = {"crepe-tiny": (12.0, 35.0), "crepe": (8.0, 20.0), "parselmouth": (12.0, 20.0), "fcpe": (3.0, 6.0)}
MAX_MISSED = 0.1


@pytest.fixture(scope="module")
def phrase():
    """3 s melody, then 1 s of pause (noise floor only), then 1 s of one note."""
    a, fa = synth_voice(3.0, SR, None, seed=1)
    pause = np.random.RandomState(9).randn(SR).astype(np.float32) * 1e-4
    b, fb = synth_voice(1.0, SR, 330.0, seed=2)
    wav = np.concatenate([a, pause, b])
    truth = np.zeros(len(wav) // HOP, dtype=np.float32)
    truth[:len(fa)] = fa
    off = (len(a) + len(pause)) // HOP + 1  # first frame of b on the mel grid (within one sample)
    n_b = min(len(fb), len(truth) - off)
    truth[off:off + n_b] = fb[:n_b]
    pause_frames = np.arange(len(a) // HOP + 10, (len(a) + len(pause)) // HOP - 10)
    return wav, truth, pause_frames


_cache: dict = {}


def _f0(method, wav, **kw):
    key = (method, id(wav), tuple(sorted(kw.items())))
    if key not in _cache:
        _cache[key] = make_f0_extractor(method, **kw).extract(wav)
    return _cache[key]


@pytest.mark.parametrize("method", FAST_METHODS)
def test_voiced_frames_are_accurate(phrase, method):
    wav, truth, _ = phrase
    f0 = _f0(method, wav)
    stable = stable_voiced(truth)
    err = cents_error(f0, truth, stable)
    median_bound, p90_bound = BOUNDS[method]
    assert np.mean(f0[stable] == 0) < MAX_MISSED
    voiced_err = err[f0[stable] > 0]
    assert np.median(voiced_err) < median_bound
    assert np.percentile(voiced_err, 90) < p90_bound


@pytest.mark.parametrize("method", FAST_METHODS)
def test_pause_is_unvoiced_and_length_is_mel_grid(phrase, method):
    wav, _, pause = phrase
    f0 = _f0(method, wav)
    assert f0.dtype == np.float32 and f0.shape == (len(wav) // HOP,)
    assert np.all(f0[pause] == 0)
    assert np.all(f0 >= 0) and np.all(np.isfinite(f0))


def test_full_crepe_on_one_second():
    wav, truth = synth_voice(1.0, SR, [(0.5, 220.0), (0.5, 262.0)], seed=4)
    f0 = make_f0_extractor("crepe").extract(wav)
    stable = stable_voiced(truth)
    err = cents_error(f0, truth, stable)
    assert f0.shape == truth.shape
    assert np.mean(f0[stable] == 0) < MAX_MISSED
    assert np.median(err) < BOUNDS["crepe"][0] and np.percentile(err, 90) < BOUNDS["crepe"][1]


@pytest.mark.parametrize("method", FAST_METHODS)
@pytest.mark.parametrize("extra", [-3, 0, 5])
def test_output_length_follows_n_frames(method, extra):
    wav, _ = synth_voice(0.5, SR, 200.0, seed=0)
    n = len(wav) // HOP + extra
    f0 = extract_f0(wav, SR, HOP, n, method)
    assert f0.shape == (n,)


def test_crepe_matches_the_original_chain_exactly():
    """torchcrepe.predict(batch 1024) + median/Silence/At/mean + np.interp, as the original, with
    the same seeded dither, must equal our blockwise version (here 7 s: 2 viterbi blocks)."""
    import resampy
    import torch
    import torchcrepe

    from diffsvc.features.f0.crepe import CrepeF0, a_weighted_loudness, seeded_dither

    wav, _ = synth_voice(7.0, SR, None, seed=3)
    wav[2 * SR:3 * SR] = 0.0
    n = len(wav) // HOP
    audio = torch.from_numpy(resampy.resample(wav, SR, 16000, filter="kaiser_best"))[None]
    with seeded_dither():
        pitch, pd = torchcrepe.predict(audio, 16000, 80, 40.0, 1100.0, pad=True, model="tiny", batch_size=1024,
                                       return_periodicity=True)
    assert np.allclose(a_weighted_loudness(audio[0].numpy(), block=333),
                       torchcrepe.loudness.a_weighted(audio, 16000, 80)[0].numpy(), atol=1e-3)
    pd = torchcrepe.filter.median(pd, 3)
    pd = torchcrepe.threshold.Silence(-60.0)(pd, audio, 16000, 80)
    f0 = torchcrepe.threshold.At(0.05)(pitch, pd)
    f0 = torchcrepe.filter.mean(f0, 3)
    f0[torch.isnan(f0)] = 0
    f0 = f0[0].numpy()
    nz = np.nonzero(f0)[0]
    expected = np.interp(np.arange(n) * HOP / SR, 0.005 * nz, f0[nz], left=f0[nz[0]], right=f0[nz[-1]])

    ours = CrepeF0(model="tiny", threshold=0.05)
    np.testing.assert_allclose(ours.extract_like_original(wav, n), expected, rtol=1e-5, atol=1e-3)
    zeros_for_unvoiced = ours.extract(wav, n)
    voiced = zeros_for_unvoiced > 0
    np.testing.assert_allclose(zeros_for_unvoiced[voiced], expected[voiced], rtol=1e-5, atol=1e-3)
    assert not voiced[2 * SR // HOP + 5:3 * SR // HOP - 5].any()  # the zeroed second


def test_crepe_alignment_option_shifts_by_half_a_hop():
    # a rising glide: the true centre of mel frame i is hop/2 later, so "centred" reads higher f0
    from diffsvc.features.f0.crepe import CrepeF0

    wav, _ = synth_voice(1.0, SR, [(0.05, 200.0), (0.95, 400.0)], seed=0, vibrato_cents=0.0)
    original = CrepeF0(model="tiny", align="original")
    centred = CrepeF0(model="tiny", align="centred")
    f0_5ms = original.post_process(*original.frames_16k(wav))
    a = original.to_frame_grid(f0_5ms, 80, False)
    b = centred.to_frame_grid(f0_5ms, 80, False)
    np.testing.assert_allclose(centred.frame_times(80) - original.frame_times(80), HOP / 2 / SR)
    both = (a > 0) & (b > 0)
    expected = np.interp(centred.frame_times(80), np.arange(len(f0_5ms)) * 0.005, f0_5ms)
    np.testing.assert_allclose(b[both], expected[both], rtol=1e-5)
    assert not np.allclose(a[both], b[both])


@pytest.mark.parametrize("method", FAST_METHODS)
def test_f0_range_is_honoured(method):
    high, _ = synth_voice(1.0, SR, 500.0, seed=0)
    low, _ = synth_voice(1.0, SR, 150.0, seed=0)
    tol = CREPE_BIN if method.startswith("crepe") else 1.0
    capped = extract_f0(high, SR, HOP, None, method, f0_min=40.0, f0_max=300.0)
    floored = extract_f0(low, SR, HOP, None, method, f0_min=250.0, f0_max=1100.0)
    assert np.all(capped <= 300.0 * tol)
    assert np.all((floored == 0) | (floored >= 250.0 / tol))
    # within range the same tones are found
    free = extract_f0(high, SR, HOP, None, method)
    assert np.median(free[free > 0]) == pytest.approx(500.0, rel=0.03)


@pytest.mark.parametrize("method,changes", [
    ("crepe", {"threshold": 0.1, "f0_min": 50.0, "f0_max": 1000.0, "hop_size": 256, "sample_rate": 48000,
               "align": "centred"}),
    ("crepe-tiny", {"threshold": 0.3}),
    ("parselmouth", {"f0_min": 60.0, "f0_max": 900.0, "hop_size": 441, "sample_rate": 22050,
                     "voicing_threshold": 0.45}),
    pytest.param("fcpe", {"fcpe_threshold": 0.05, "f0_max": 800.0, "decoder": "argmax"}, marks=needs_fcpe),
])
def test_settings_change_with_every_setting(method, changes):
    base = make_f0_extractor(method).settings()
    json.dumps(base)  # usable as a cache key
    assert base == make_f0_extractor(method).settings()
    assert base == make_f0_extractor(method, device="cuda:1").settings()  # device is not a setting
    assert base["extractor"] == ("parselmouth" if method == "parselmouth" else method)
    for name, value in changes.items():
        changed = make_f0_extractor(method, **{name: value}).settings()
        assert changed != base, name
    assert make_f0_extractor("crepe").settings() != make_f0_extractor("crepe-tiny").settings()


def test_interpolate_like_original():
    f0 = np.array([0, 100, 0, 0, 200, 0], dtype=np.float32)
    np.testing.assert_allclose(interpolate_like_original(f0), [100, 100, 100 + 100 / 3, 100 + 200 / 3, 200, 200],
                               rtol=1e-6)
    assert not interpolate_like_original(np.zeros(4)).any()


def test_praat_padding_never_crashes():
    # more Praat frames than the mel has: the original's negative right pad crashed
    f0 = np.arange(1, 13, dtype=np.float64)
    out = place_like_original(f0, samples_over_hop=10, n_frames=8)
    assert out.shape == (8,) and np.all(out > 0)
    out = place_like_original(np.arange(1, 5, dtype=np.float64), samples_over_hop=10, n_frames=10)
    assert list(out[:4]) == [0, 0, 0, 1]  # left pad (10 - 4 + 1)//2 = 3, as the original
    wav, _ = synth_voice(1.0, SR, 200.0, seed=0)
    assert extract_f0(wav, SR, HOP, 10, "parselmouth").shape == (10,)


@pytest.mark.parametrize("method", FAST_METHODS)
def test_silence_and_tiny_inputs(method):
    assert not extract_f0(np.zeros(SR, np.float32), SR, HOP, None, method).any()
    assert extract_f0(np.zeros(100, np.float32), SR, HOP, None, method).shape == (0,)
    few = extract_f0(np.random.RandomState(0).randn(700).astype(np.float32) * 0.1, SR, HOP, None, method)
    assert few.shape == (1,) and np.isfinite(few).all()


@pytest.mark.parametrize("method", FAST_METHODS)
def test_nan_and_stereo_are_one_clear_error(method):
    wav, _ = synth_voice(0.5, SR, 200.0, seed=0)
    bad = wav.copy()
    bad[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        extract_f0(bad, SR, HOP, None, method)
    with pytest.raises(AudioError, match="mono"):
        extract_f0(np.stack([wav, wav], 1), SR, HOP, None, method)


@pytest.mark.parametrize("method", FAST_METHODS)
def test_clipped_input_still_tracks(method):
    wav, truth = synth_voice(1.0, SR, 247.0, seed=2)
    clipped = np.clip(wav * 20.0, -1.0, 1.0)
    f0 = extract_f0(clipped, SR, HOP, None, method)
    stable = stable_voiced(truth)
    assert np.mean(f0[stable] == 0) < MAX_MISSED
    assert np.median(cents_error(f0, truth, stable & (f0 > 0))) < 2 * BOUNDS[method][0]


@pytest.mark.parametrize("method", FAST_METHODS)
@pytest.mark.parametrize("sr,hop", [(8000, 128), (192000, 2048)])
def test_other_sample_rates(method, sr, hop):
    wav, truth = synth_voice(1.0, sr, 196.0, seed=5, hop_size=hop)
    f0 = extract_f0(wav, sr, hop, None, method)
    stable = stable_voiced(truth)
    assert f0.shape == truth.shape
    assert np.mean(f0[stable] == 0) < MAX_MISSED
    assert np.median(cents_error(f0, truth, stable & (f0 > 0))) < 2 * BOUNDS[method][0]


def test_bad_settings_are_clear_errors():
    with pytest.raises(DiffSvcError, match="f0 range"):
        make_f0_extractor("parselmouth", f0_min=500.0, f0_max=100.0)
    with pytest.raises(DiffSvcError, match="unknown f0 method"):
        make_f0_extractor("yin")
    with pytest.raises(DiffSvcError, match="align"):
        make_f0_extractor("crepe", align="late")


def test_fcpe_without_the_package_says_how_to_install(monkeypatch):
    import diffsvc.features.f0.fcpe as fcpe

    monkeypatch.setattr(fcpe, "fcpe_available", lambda: False)
    with pytest.raises(DiffSvcError, match="pip install"):
        make_f0_extractor("fcpe")


@needs_fcpe
def test_fcpe_loads_bundled_weights_without_network(monkeypatch):
    import diffsvc.features.f0.fcpe as fcpe

    def no_network(*args, **kwargs):
        raise AssertionError("FCPE tried to open a network connection")

    fcpe.load_fcpe_model.cache_clear()
    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    model = fcpe.load_fcpe_model("cpu")
    assert not model.training and fcpe.bundled_weights_path().is_file()
    wav, _ = synth_voice(0.5, 16000, 300.0, seed=0)
    f0 = fcpe.FcpeF0(sample_rate=16000, hop_size=160).extract(wav)
    assert np.median(f0[f0 > 0]) == pytest.approx(300.0, rel=0.03)
