"""Field cases of infer (issue 11: items 2, 3, 7 and the sampler's printed steps): quiet songs,
key shifts past the model's f0 range, short --f0-in curves; each failed on the code before."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audio_synth import synth_voice
from diffsvc.audio.load import load_audio
from diffsvc.audio.slicer import frame_energy_db
from diffsvc.config import Config
from diffsvc.data.preprocess import PreprocessOptions, SliceSettings, preprocess
from diffsvc.features.f0 import make_f0_extractor
from diffsvc.inference.keyshift import auto_key
from diffsvc.sampling import SAMPLERS
from infer_fixture import write_project
from test_infer import MELODY, SR, _no_output, _one_error_line, converter_for, run_cli


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "singer")
    wav, _ = synth_voice(4.0, SR, f0=MELODY, seed=0)
    sf.write(tmp_path / "song.wav", wav, SR)
    return tmp_path


def _at_peak(wav: np.ndarray, peak_db: float) -> np.ndarray:
    return (wav * (10 ** (peak_db / 20) / np.abs(wav).max())).astype(np.float32)


# --- item 2: silence relative to the song's own level ------------------------------------------

def test_a_quiet_song_converts_like_a_loud_one_and_keeps_its_level(work):
    wav, _ = synth_voice(4.0, SR, f0=MELODY, seed=0)
    conv = converter_for(work)
    shares, levels = {}, {}
    for peak in (-6.0, -30.0, -40.0):  # a normal take, a quiet real take, the issue's -40 dBFS phrase
        song = _at_peak(wav, peak)
        analysis = conv.analyse(song)
        out = conv.convert(song, analysis, seed=0).audio
        shares[peak] = float(np.mean(out != 0))  # exact zeros are silence (gated or silent stretches)
        levels[peak] = 20 * np.log10(np.sqrt(np.mean(out[out != 0] ** 2)))
    assert shares[-6.0] > 0.3, shares
    for peak in (-30.0, -40.0):
        assert abs(shares[peak] - shares[-6.0]) < 0.03, shares
        # the output follows the input's loudness: 24 and 34 dB quieter in, about as much quieter out
        assert levels[-6.0] - levels[peak] == pytest.approx(-6.0 - peak, abs=2.0), levels


def test_model_loudness_keeps_the_models_level(work):
    wav, _ = synth_voice(2.0, SR, f0=220.0, seed=1)
    outs = []
    for peak in (-6.0, -30.0):
        conv = converter_for(work, follow_loudness=False)
        song = _at_peak(wav, peak)
        outs.append(conv.convert(song, conv.analyse(song), seed=0).audio)
    rms = [np.sqrt(np.mean(o[o != 0] ** 2)) for o in outs]
    assert rms[0] == pytest.approx(rms[1], rel=0.3)  # the same level whatever the input's


def test_cli_converts_a_quiet_song_and_warns_when_most_of_it_is_below_the_threshold(work, capsys):
    wav, _ = synth_voice(4.0, SR, f0=MELODY, seed=0)
    sf.write(work / "quiet.wav", _at_peak(wav, -40.0), SR)
    rc, err = run_cli(capsys, "quiet.wav", "--out", "q.wav", "--seed", "0")
    assert rc == 0, err
    out, _ = sf.read(work / "q.wav")
    assert np.mean(out != 0) > 0.3 and "silent input" not in err and "--slice-db" not in err
    # a loud shout (0.6 s), then soft singing 45 dB under it: most of the song's sound is below
    # the threshold -> one warning line naming the option
    loud, _ = synth_voice(0.6, SR, f0=300.0, seed=2, consonants=False)
    soft, _ = synth_voice(3.4, SR, f0=220.0, seed=3, consonants=False)
    sf.write(work / "mixed.wav", np.concatenate([_at_peak(loud, -3.0), _at_peak(soft, -48.0)]), SR)
    rc, err = run_cli(capsys, "mixed.wav", "--out", "m.wav", "--seed", "0")
    assert rc == 0, err
    warned = [line for line in err.splitlines() if "below the silence threshold" in line]
    assert len(warned) == 1 and "--slice-db" in warned[0] and "mixed.wav" in warned[0], err
    assert "Traceback" not in err


def test_level_meter_over_blocks_equals_the_whole_signal():
    from diffsvc.audio.slicer import LevelMeter, measure_level

    wav, _ = synth_voice(3.0, SR, f0=MELODY, seed=4)
    meter = LevelMeter(SR)
    for start in range(0, len(wav), 7777):  # blocks that do not fall on the hop grid
        meter.add(wav[start:start + 7777])
    db = frame_energy_db(wav, SR).db.astype(np.float64)
    whole = np.bincount(np.clip(np.round((db + 200) / 0.01).astype(int), 0, len(meter.counts) - 1),
                        minlength=len(meter.counts))
    meter.finish()
    np.testing.assert_array_equal(meter.counts, whole)
    assert measure_level(wav, SR, block=5000) == meter.level()


def test_preprocess_and_infer_share_one_silence(tmp_path):
    from diffsvc.audio.slicer import measure_level

    # the same quiet take: preprocess slices it like the loud one and measures what infer measures
    wav, _ = synth_voice(8.0, SR, f0=None, seed=6)
    for name, peak in (("loud", -6.0), ("quiet", -40.0)):
        (tmp_path / name).mkdir()
        sf.write(tmp_path / name / "take.wav", _at_peak(wav, peak), SR, subtype="FLOAT")
    seconds = {}
    for name in ("loud", "quiet"):
        lines: list[str] = []
        result = preprocess(tmp_path / name, Config(), PreprocessOptions(
            slicing=SliceSettings(min_s=2.0, max_s=4.0, drop_shorter_s=1.0), content="stand-in"),
            f0_extractor=make_f0_extractor("parselmouth"), log=lines.append, progress=False)
        assert result.usable, lines
        assert not any("silent" in line for line in lines), lines
        seconds[name] = result.check.sliced_seconds
        record = json.loads(next((result.root / "sources").glob("*.json")).read_text(encoding="utf-8"))
        infer_level = measure_level(load_audio(tmp_path / name / "take.wav", SR), SR)
        assert record["level"]["threshold_db"] == pytest.approx(infer_level.threshold_db, abs=0.02)
    assert seconds["quiet"] == pytest.approx(seconds["loud"], abs=0.1)


def test_preprocess_warns_like_infer_when_most_of_a_file_is_below_the_threshold(tmp_path):
    loud, _ = synth_voice(0.6, SR, f0=300.0, seed=2, consonants=False)
    soft, _ = synth_voice(5.4, SR, f0=220.0, seed=3, consonants=False)
    (tmp_path / "raw").mkdir()
    sf.write(tmp_path / "raw" / "mixed.wav", np.concatenate([_at_peak(loud, -3.0), _at_peak(soft, -48.0)]), SR,
             subtype="FLOAT")
    lines: list[str] = []
    preprocess(tmp_path / "raw", Config(), PreprocessOptions(
        slicing=SliceSettings(min_s=2.0, max_s=4.0, drop_shorter_s=0.5), content="stand-in"),
        f0_extractor=make_f0_extractor("parselmouth"), log=lines.append, progress=False)
    warned = [line for line in lines if "below the silence threshold" in line]
    assert len(warned) == 1 and "--db" in warned[0] and "mixed.wav" in warned[0], lines


# --- item 3: key shifts past the model's f0 range ------------------------------------------------

A4_TO_F5 = [(0.5, 440.0), (0.5, 523.25), (0.5, 587.33), (0.5, 698.46), (0.4, 0.0)]


def test_a_key_shift_past_f0_max_is_folded_and_reported(work, capsys):
    wav, _ = synth_voice(2.4, SR, f0=A4_TO_F5, seed=7, consonants=False)
    conv = converter_for(work)
    c = conv.config
    analysis = conv.analyse(wav)
    result = conv.convert(wav, analysis, key=12, seed=0)
    voiced = analysis.f0_hz > 0
    shifted = analysis.f0_hz[voiced] * 2.0
    cond = result.f0_cond_hz[voiced]
    assert (shifted > c.f0_max).mean() > 0.3  # the case: a good share goes past f0_max
    assert np.all((cond >= c.f0_min) & (cond <= c.f0_max * 1.0001)), cond.min()
    ratio = cond / shifted  # every frame is its shifted pitch or whole octaves from it, never 1 Hz
    np.testing.assert_allclose(np.log2(ratio), np.round(np.log2(ratio)), atol=1e-3)
    assert result.f0_range.above == int((shifted > c.f0_max).sum()) and result.f0_range.voiced == voiced.sum()
    # the command says so, once, naming the option; the original's 1 Hz stays available
    sf.write(work / "high.wav", wav, SR)
    rc, err = run_cli(capsys, "high.wav", "--key", "12", "--seed", "0", "--out", "h.wav")
    assert rc == 0, err
    line = [x for x in err.splitlines() if "f0 range" in x]
    assert len(line) == 1 and f"of {voiced.sum()} voiced frames" in line[0] and "--out-of-range" in line[0], err
    rc, err = run_cli(capsys, "high.wav", "--key", "0", "--seed", "0", "--out", "k0.wav")
    assert rc == 0 and "f0 range" not in err, err


def test_a_key_shift_below_f0_min_is_folded_up():
    from diffsvc.inference.keyshift import fit_f0_range

    f0 = np.array([0, 100, 110, 120, 0, 0, 60, 0], dtype=np.float32)
    low = fit_f0_range(f0 * 2 ** (-36 / 12), 40.0, 1100.0)  # three octaves down: 12.5-15 Hz
    assert np.all(low[f0 > 0] >= 40.0) and np.all(low[f0 == 0] == 0)
    np.testing.assert_allclose(low[1:4] / low[1], f0[1:4] / f0[1], rtol=1e-6)  # a run keeps its intervals
    clamped = fit_f0_range(f0 * 16, 40.0, 1100.0, mode="clamp")
    assert clamped.max() == pytest.approx(1100.0) and clamped[6] == pytest.approx(960.0)


def test_auto_key_never_pushes_a_song_out_of_range():
    song = np.array([0, 300.0, 400.0, 440.0, 0])
    # the singer's median is two octaves up: +24 would put 440 Hz at 1760 Hz; the most that fits is +15
    assert auto_key(song, 1600.0, 40.0, 1100.0) == 15
    assert 440 * 2 ** (auto_key(song, 1600.0, 40.0, 1100.0) / 12) <= 1100
    assert auto_key(song, 10.0, 40.0, 1100.0) == -34  # the same below f0_min: 300 Hz -> 42 Hz, not below 40
    assert 300 * 2 ** (auto_key(song, 10.0, 40.0, 1100.0) / 12) >= 40
    assert auto_key(song, 220.0, 40.0, 1100.0) == auto_key(song, 220.0)  # in range: unchanged


# --- item 7: an --f0-in curve shorter than the song ----------------------------------------------

def test_a_short_f0_curve_is_refused_unless_padding_is_asked_for(work, capsys):
    wav, _ = synth_voice(2.5, SR, f0=[(0.8, 220.0), (0.7, 0.0), (0.8, 330.0), (0.2, 0.0)], seed=9)
    sf.write(work / "two.wav", wav, SR)
    rows = "\n".join(f"{t:.3f},220" for t in np.arange(0, 0.5, 0.01))  # the first half second only
    (work / "short.csv").write_text("time_s,f0_hz\n" + rows + "\n", encoding="utf-8")
    _one_error_line(*run_cli(capsys, "two.wav", "--f0-in", "short.csv", "--seed", "0"),
                    "short.csv", "covers 0.00-0.49 s", "--f0-pad")
    _no_output(work)
    rc, err = run_cli(capsys, "two.wav", "--f0-in", "short.csv", "--f0-pad", "--seed", "0", "--out", "p.wav")
    assert rc == 0, err
    # a curve written by --f0-out covers the song and is taken as it is
    rc, err = run_cli(capsys, "two.wav", "--f0-out", "full.csv", "--seed", "0", "--out", "a.wav")
    assert rc == 0, err
    rc, err = run_cli(capsys, "two.wav", "--f0-in", "full.csv", "--seed", "0", "--out", "b.wav")
    assert rc == 0, err


def test_an_f0_curve_running_far_past_the_song_is_refused(work, capsys):
    """A curve in milliseconds (or of a longer song) 'covers' the song by its span, yet the song
    would take only its first rows: refused, naming both lengths."""
    wav, _ = synth_voice(1.5, SR, f0=220.0, seed=9)
    sf.write(work / "one.wav", wav, SR)
    rows = "\n".join(f"{t * 1000:.3f},220" for t in np.arange(0, 1.5, 0.01))  # times in ms
    (work / "ms.csv").write_text("time_s,f0_hz\n" + rows + "\n", encoding="utf-8")
    _one_error_line(*run_cli(capsys, "one.wav", "--f0-in", "ms.csv", "--seed", "0"),
                    "ms.csv", "runs to 1490.00 s", "1.50 s long", "--f0-pad")
    _no_output(work)


def test_an_f0_curve_saved_by_a_spreadsheet_reads_as_written(tmp_path):
    """A --f0-out curve saved back by a spreadsheet: a UTF-8 BOM, ';' or tab between the columns,
    decimal commas (0,5), with or without the header: the same curve as the original file."""
    from diffsvc.inference.f0_io import load_f0_csv, write_f0_csv

    f0 = np.array([0, 0, 220.5, 221.25, 0, 330.125], dtype=np.float32)
    original = load_f0_csv(write_f0_csv(tmp_path / "f0.csv", f0, 512, SR))
    text = (tmp_path / "f0.csv").read_text(encoding="utf-8")
    variants = {"bom": "\ufeff" + text, "tab": text.replace(",", "\t"),
                "euro": text.replace(",", ";").replace(".", ","),
                "euro-no-header": text.replace(",", ";").replace(".", ",").split("\n", 1)[1]}
    for name, variant in variants.items():
        (tmp_path / f"{name}.csv").write_text(variant, encoding="utf-8")
        curve = load_f0_csv(tmp_path / f"{name}.csv")
        np.testing.assert_array_equal(curve.times, original.times, err_msg=name)
        np.testing.assert_array_equal(curve.hz, original.hz, err_msg=name)


# --- item 9: the printed step count is the denoiser calls made -----------------------------------

@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_reports_the_denoiser_calls_it_makes(work, name):
    # the hook counts the torch backbone's calls: torch runs it here whatever `auto` would pick on this
    # machine (where torch's threads spin-wait it picks ONNX Runtime, whose calls test_onnx_denoiser counts)
    conv = converter_for(work, batch_size=64, cpu_runtime="torch")
    conv.settings.sampler = name
    calls, samples = [0], [0]
    conv.model.denoise_fn.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    real = conv.model.sample
    conv.model.sample = lambda *a, **k: (samples.__setitem__(0, samples[0] + 1), real(*a, **k))[1]
    wav, _ = synth_voice(1.0, SR, f0=220.0, seed=8)
    conv.convert(wav, conv.analyse(wav), seed=0)
    assert samples[0] >= 1 and calls[0] == conv.denoiser_calls() * samples[0]


def test_cli_prints_the_steps_ddpm_runs(work, capsys):
    wav, _ = synth_voice(1.0, SR, f0=220.0, seed=8)
    sf.write(work / "one.wav", wav, SR)
    rc, err = run_cli(capsys, "one.wav", "--sampler", "ddpm", "--seed", "0", "--out", "d.wav")
    assert rc == 0, err
    assert re.search(r"ddpm 100 steps", err), err  # the tiny model's 100-step schedule, not sampling_steps (4)
