"""`diffsvc infer` end to end on the CPU with a tiny random-weight project saved in the public formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from audio_synth import synth_voice
from cli_checks import one_error_line as _one_error_line
from diffsvc.cli.main import main
from diffsvc.inference.components import load_content_encoder_for
from diffsvc.inference.f0_io import read_f0_csv, write_f0_csv
from diffsvc.inference.keyshift import auto_key
from diffsvc.audio.load import load_audio
from diffsvc.audio.spool import spool_audio
from diffsvc.inference.pipeline import InferenceSettings, SongConverter, find_stretches, group_stretches
from diffsvc.inference.project import choose_checkpoint, load_checkpoint
from diffsvc.inference.windows import join_windows, plan_for_memory, plan_windows, WindowPlan
from diffsvc.vocoder import GriffinLimVocoder
from infer_fixture import write_project

SR = 44100
HOP = 512
# two notes separated by a 1.2 s pause, then a pause to the end
MELODY = [(1.0, 220.0), (1.2, 0.0), (1.2, 330.0), (0.6, 0.0)]


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working folder holding models/singer and song.wav; the CLI runs from there."""
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "singer", steps=(1000, 2000))
    wav, _ = synth_voice(4.0, SR, f0=MELODY, seed=0)
    sf.write(tmp_path / "song.wav", wav, SR)
    return tmp_path


def run_cli(capsys, *args) -> tuple[int, str]:
    rc = main(["infer", *args, "--quiet"])
    return rc, capsys.readouterr().err


def converter_for(root: Path, **settings) -> SongConverter:
    """The project's converter, with a one-iteration Griffin-Lim: these tests look at mels and f0."""
    choice = choose_checkpoint(root / "models", "singer")
    loaded = load_checkpoint(choice, torch.device("cpu"))
    c = loaded.config
    s = InferenceSettings(sampler=c.sampler, sampling_steps=c.sampling_steps, f0_method=c.f0_extractor, **settings)
    return SongConverter(loaded, load_content_encoder_for(c, "cpu"), GriffinLimVocoder.from_config(c, n_iter=1),
                         "cpu", s)


# --- the whole command ------------------------------------------------------------------------

def test_output_matches_input_length_and_silence_stays_silent(work, capsys):
    # input at another rate and in stereo: output is 44.1 kHz mono of the same duration
    wav, _ = synth_voice(4.0, 22050, f0=MELODY, seed=1)
    sf.write(work / "stereo.flac", np.stack([wav, 0.5 * wav], axis=1), 22050)
    rc, err = run_cli(capsys, "stereo.flac", "--steps", "2000", "--seed", "0", "--format", "flac")
    assert rc == 0, err
    out, sr = sf.read(work / "output" / "stereo_singer_steps_2000.flac")
    assert sr == SR and out.ndim == 1
    assert len(out) == 2 * len(wav)
    # the pause (1.0-2.2 s) and the tail (3.4-4.0 s), away from the 10 ms fades, are exact zeros
    assert np.all(out[int(1.1 * SR):int(2.1 * SR)] == 0)
    assert np.all(out[int(3.5 * SR):] == 0)
    assert np.abs(out[int(0.2 * SR):int(0.8 * SR)]).max() > 0.01  # the notes are not


def test_silent_input_gives_silent_output(work, capsys):
    sf.write(work / "quiet.wav", np.zeros(SR, dtype=np.float32), SR)
    rc, err = run_cli(capsys, "quiet.wav", "--out", "q.wav", "--seed", "0")
    assert rc == 0, err
    out, _ = sf.read(work / "q.wav")
    assert len(out) == SR and not out.any()
    assert "silent input" in err


def test_seed_repeats_the_output_and_plot_is_written(work, capsys):
    wav, _ = synth_voice(1.5, SR, f0=250.0, seed=5)
    sf.write(work / "short.wav", wav, SR)
    for name in ("a.wav", "b.wav"):
        rc, err = run_cli(capsys, "short.wav", "--seed", "7", "--out", name)
        assert rc == 0, err
    rc, err = run_cli(capsys, "short.wav", "--seed", "8", "--out", "c.wav", "--plot")
    assert rc == 0, err
    a, b, c = (sf.read(work / n)[0] for n in ("a.wav", "b.wav", "c.wav"))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (work / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "real-time factor: load" in err and "sampling" in err and "vocoder" in err
    # without --steps the newest checkpoint is used
    assert choose_checkpoint(work / "models").step == 2000


def test_auto_key_picks_the_shift_to_the_singer(work, capsys):
    # the project's singer sits at 220 Hz; a song around 165 Hz is 5 semitones lower
    wav, _ = synth_voice(2.0, SR, f0=220.0 * 2 ** (-5 / 12), seed=2)
    sf.write(work / "low.wav", wav, SR)
    rc, err = run_cli(capsys, "low.wav", "--key", "auto", "--seed", "0", "--out", "low_out.wav")
    assert rc == 0, err
    assert "key +5 semitones (--key auto" in err
    assert auto_key(np.array([0, 330.0, 330.0, 0]), 220.0) == -7
    assert auto_key(np.zeros(5), 220.0) == 0


def test_nsf_hifigan_project_converts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "nsf", vocoder="nsf-hifigan")
    wav, _ = synth_voice(1.5, SR, f0=200.0, seed=3)
    sf.write(tmp_path / "s.wav", wav, SR)
    rc, err = run_cli(capsys, "s.wav", "--seed", "0")
    assert rc == 0, err
    out, _ = sf.read(tmp_path / "output" / "s_nsf_steps_1000.wav")
    assert len(out) == len(wav) and np.abs(out).max() > 0


# --- the pipeline's guarantees ----------------------------------------------------------------

def test_key_shift_moves_the_conditioning_f0(work):
    conv = converter_for(work, batch_size=4)
    wav = sf.read(work / "song.wav", dtype="float32")[0]
    analysis = conv.analyse(wav)
    base = conv.convert(wav, analysis, key=0, seed=0)
    up = conv.convert(wav, analysis, key=5, seed=0)
    voiced = analysis.f0_hz > 0
    assert voiced.sum() > 50
    ratio = up.f0_cond_hz[voiced] / base.f0_cond_hz[voiced]
    np.testing.assert_allclose(ratio, 2 ** (5 / 12), rtol=1e-4)
    # the original's clamp (--out-of-range original): pushed above f0_max (1100 Hz) -> 0 in log2, i.e. 1 Hz
    high = converter_for(work, batch_size=4, out_of_range="original").convert(wav, analysis, key=30, seed=0)
    assert np.all(high.f0_cond_hz[voiced][analysis.f0_hz[voiced] * 2 ** 2.5 > 1100] == 1.0)


def test_windowed_long_input_equals_one_pass_away_from_seams(work):
    wav, _ = synth_voice(4.0, SR, f0=[(1.5, 200.0), (1.5, 260.0), (1.0, 300.0)], seed=4, consonants=False)
    one = converter_for(work)
    analysis = one.analyse(wav)
    assert [s.voiced for s in analysis.stretches].count(True) == 1
    whole = one.convert(wav, analysis, seed=5)
    windowed_conv = converter_for(work, window_frames=100)
    windowed = windowed_conv.convert(wav, analysis, seed=5)
    assert windowed.plan.window_frames == 100 and whole.plan.window_frames > 300
    # the tiny denoiser reaches 3 frames per call, 5 calls: 15 frames < the 32 frames of context,
    # so every kept frame saw the neighbourhood the single pass saw
    np.testing.assert_allclose(windowed.mel_out, whole.mel_out, atol=1e-4)


def test_batched_and_one_at_a_time_sampling_agree(work):
    wav = sf.read(work / "song.wav", dtype="float32")[0]
    solo = converter_for(work, window_frames=40, batch_size=1)
    batched = converter_for(work, window_frames=40, batch_size=8)
    analysis = solo.analyse(wav)
    a = solo.convert(wav, analysis, seed=9)
    b = batched.convert(wav, analysis, seed=9)
    assert b.plan.batch_size > 1 and a.plan.batch_size == 1
    np.testing.assert_allclose(a.mel_out, b.mel_out, atol=1e-5)


def test_streamed_output_equals_the_in_memory_result_and_comes_in_pieces(work):
    wav = sf.read(work / "song.wav", dtype="float32")[0]
    conv = converter_for(work, window_frames=40, batch_size=2)
    analysis = conv.analyse(wav)
    whole = conv.convert(wav, analysis, seed=3)
    chunks: list[np.ndarray] = []
    streamed = conv.convert_to(chunks.append, wav, analysis, seed=3)
    np.testing.assert_array_equal(np.concatenate(chunks), whole.audio)
    # no piece is the whole song: the longest is one voiced stretch (the first note and its context)
    voiced = [s for s in analysis.stretches if s.voiced]
    assert max(len(c) for c in chunks) == max(s.end - s.start for s in voiced) < len(wav) / 2
    assert streamed.audio is None and streamed.mel_in is None and streamed.mel_out is None
    np.testing.assert_array_equal(streamed.f0_cond_hz, whole.f0_cond_hz)


def test_a_long_voiced_stretch_is_converted_in_crossfaded_sections(work):
    # 6 s of continuous singing: one stretch normally; with 2 s sections, three or more overlapping ones
    wav, _ = synth_voice(6.0, SR, f0=[(2.0, 200.0), (2.0, 240.0), (2.0, 280.0)], seed=6, consonants=False)
    whole_conv = converter_for(work)
    sectioned_conv = converter_for(work, section_seconds=2.0)
    one = whole_conv.analyse(wav)
    parts = sectioned_conv.analyse(wav)
    assert [s.voiced for s in one.stretches].count(True) == 1
    sections = [s for s in parts.stretches if s.voiced]
    assert len(sections) >= 3 and all(s.end - s.start <= 2 * SR for s in sections)
    assert all(a.end == b.start and a.post > 0 and b.pre > 0 for a, b in zip(sections, sections[1:]))
    chunks: list[np.ndarray] = []
    sectioned_conv.convert_to(chunks.append, wav, parts, seed=2)
    assert max(len(c) for c in chunks) <= 2 * SR  # memory follows the section, not the song
    whole = whole_conv.convert(wav, one, seed=2)
    cut = sectioned_conv.convert(wav, parts, seed=2)
    np.testing.assert_array_equal(np.concatenate(chunks), cut.audio)
    assert len(cut.audio) == len(wav)
    # the same noise per frame and nearly the same conditioning (mel2ph spreads a section's units
    # over its own frames): away from the cuts the sections sample close to what one pass samples,
    # far closer than another seed does
    np.testing.assert_array_equal(cut.f0_cond_hz, whole.f0_cond_hz)
    far = np.ones(len(whole.mel_out), dtype=bool)
    for s in sections[1:]:
        far[max(0, s.start // HOP - 40):s.start // HOP + 40] = False
    assert far.sum() > len(far) // 2
    other_seed = whole_conv.convert(wav, one, seed=3)
    section_error = np.abs(cut.mel_out[far] - whole.mel_out[far]).mean()
    seed_spread = np.abs(other_seed.mel_out[far] - whole.mel_out[far]).mean()
    assert section_error < 0.1 * seed_spread
    # no dip at the cuts: the 10 ms level there is not far below its neighbourhood's
    level = np.sqrt(np.convolve(cut.audio ** 2, np.ones(441) / 441, mode="same"))
    for s in sections[1:]:
        around = level[s.start - SR // 4:s.start + SR // 4]
        assert level[s.start - 1100:s.start + 1100].min() > 0.3 * np.median(around)


def test_stretches_are_grouped_to_fill_batches():
    assert group_stretches([1, 1, 1, 1, 1], 2) == [[0, 1], [2, 3], [4]]
    assert group_stretches([5, 1, 1, 3], 4) == [[0], [1, 2, 3]]
    assert group_stretches([1, 1, 1], 1) == [[0], [1], [2]]
    assert group_stretches([], 4) == []


def test_spooled_song_reads_and_converts_like_the_loaded_array(work, tmp_path):
    wav, _ = synth_voice(4.0, 22050, f0=MELODY, seed=1)
    sf.write(work / "stereo.flac", np.stack([wav, 0.5 * wav], axis=1), 22050)
    loaded = load_audio(work / "stereo.flac", SR)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    with spool_audio(work / "stereo.flac", SR, block_seconds=0.7, temp_dir=spool_dir) as song:
        assert len(song) == len(loaded)
        assert any(spool_dir.iterdir())  # the decoded song lives on disk while in use
        np.testing.assert_allclose(song[0:len(song)], loaded, atol=1e-4)  # stream resampler vs one shot
        np.testing.assert_array_equal(song[1000:1010], song[0:len(song)][1000:1010])
        assert song.peak == pytest.approx(np.abs(loaded).max(), abs=1e-4)
        conv = converter_for(work)
        analysis = conv.analyse(song)
        assert analysis.stretches == conv.analyse(loaded).stretches
        a = conv.convert(song, analysis, seed=1)
        b = conv.convert(loaded, analysis, seed=1)
        np.testing.assert_allclose(a.mel_out, b.mel_out, atol=1e-3)
    assert not any(spool_dir.iterdir())  # removed on close


def test_spool_refuses_bad_files_and_leaves_nothing(tmp_path):
    from diffsvc.errors import AudioError

    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "nan.wav", np.full(4410, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", np.zeros(100, dtype=np.float32), SR)
    for name, needle in (("missing.wav", "not found"), ("empty.wav", "empty"), ("nan.wav", "NaN"),
                         ("short.wav", "too short")):
        with pytest.raises(AudioError, match=needle):
            spool_audio(tmp_path / name, SR, temp_dir=spool_dir)
    assert not any(spool_dir.iterdir())
    sf.write(tmp_path / "ok.wav", np.zeros(4410, dtype=np.float32), SR)
    with pytest.raises(AudioError, match="temporary folder .*TMPDIR"):
        spool_audio(tmp_path / "ok.wav", SR, temp_dir=tmp_path / "no such folder")


def test_a_failed_conversion_leaves_no_output_file(work, capsys, monkeypatch):
    from diffsvc.inference import pipeline

    calls = []

    def failing_vocode(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first stretch was already written to the temporary file
            raise RuntimeError("killed mid-song")
        return original(self, *args, **kwargs)

    original = pipeline.SongConverter._vocode
    monkeypatch.setattr(pipeline.SongConverter, "_vocode", failing_vocode)
    with pytest.raises(RuntimeError, match="killed mid-song"):
        main(["infer", "song.wav", "--seed", "0", "--quiet", "--batch-size", "1"])
    assert len(calls) == 2
    _no_output(work)
    assert not any(p.name.startswith(".") for p in work.glob("output/.*"))


def test_window_plan_and_join():
    plan = WindowPlan(window_frames=50, batch_size=2, context_frames=8, crossfade_frames=10)
    windows = plan_windows(130, plan)
    assert windows[0].start == 0 and windows[-1].end == 130
    assert all(w.lo == max(0, w.start - 8) and w.hi == min(130, w.end + 8) for w in windows)
    truth = torch.randn(130, 3)
    joined = join_windows([(w, truth[w.lo:w.hi]) for w in windows], 130)
    torch.testing.assert_close(joined, truth)  # equal estimates join into themselves
    small = plan_for_memory(bytes_per_frame=10_000, free_bytes=2 * 10_000 * 400, longest_stretch=10_000)
    big = plan_for_memory(bytes_per_frame=10_000, free_bytes=10**12, longest_stretch=10_000)
    assert small.window_frames < big.window_frames and small.batch_size <= big.batch_size


def test_stretches_cover_the_song_on_the_hop_grid():
    wav, _ = synth_voice(4.0, SR, f0=MELODY, seed=0)
    stretches = find_stretches(wav, SR, HOP, -40.0)
    assert stretches[0].start == 0 and stretches[-1].end == len(wav)
    assert all(a.end == b.start for a, b in zip(stretches, stretches[1:]))
    assert all(s.start % HOP == 0 for s in stretches)
    assert [s.voiced for s in stretches] == [True, False, True, False]


def test_f0_csv_round_trip(tmp_path):
    f0 = np.array([0, 0, 220, 221.5, 230, 0, 0, 330, 330], dtype=np.float32)
    write_f0_csv(tmp_path / "f0.csv", f0, HOP, SR)
    np.testing.assert_allclose(read_f0_csv(tmp_path / "f0.csv", len(f0), HOP, SR), f0, atol=1e-3)
    # an edited curve on a coarser grid is interpolated between voiced rows, pauses stay unvoiced
    (tmp_path / "edit.csv").write_text("time_s,f0_hz\n0,200\n0.0464,300\n0.08,0\n0.2,0\n", encoding="utf-8")
    got = read_f0_csv(tmp_path / "edit.csv", 10, HOP, SR)
    assert got[0] == pytest.approx(200) and 200 < got[2] < 300 and got[-1] == 0


# --- user mistakes: one line, non-zero exit, no output ----------------------------------------



def _no_output(root: Path):
    out = root / "output"
    assert not out.exists() or not any(out.iterdir())


def test_bad_inputs(work, capsys):
    _one_error_line(*run_cli(capsys, "missing.wav"), "missing.wav", "not found")
    (work / "empty.wav").write_bytes(b"")
    _one_error_line(*run_cli(capsys, "empty.wav"), "empty.wav", "empty")
    (work / "text.wav").write_text("not audio at all " * 20)
    _one_error_line(*run_cli(capsys, "text.wav"), "text.wav", "not a readable audio file")
    (work / "nothing").mkdir()
    _one_error_line(*run_cli(capsys, "nothing"), "no audio files")
    _no_output(work)


def test_checkpoint_choice_errors(work, capsys):
    _one_error_line(*run_cli(capsys, "song.wav", "--steps", "5"), "no checkpoint for step 5", "1000, 2000")
    write_project(work, "other")
    _one_error_line(*run_cli(capsys, "song.wav"), "several projects", "other, singer")
    _one_error_line(*run_cli(capsys, "song.wav", "--project", "nobody"), "nobody")
    _one_error_line(*run_cli(capsys, "song.wav", "--models-dir", "elsewhere"), "no trained project")
    _one_error_line(*run_cli(capsys, "song.wav", "--ckpt", "nope.ckpt"), "nope.ckpt", "not found")
    _no_output(work)


def test_missing_weights_and_mismatched_checkpoint(work, capsys):
    write_project(work, "hub", content_encoder="hubert-soft", hubert_path="models/hubert/hubert_soft.pt")
    _one_error_line(*run_cli(capsys, "song.wav", "--project", "hub"), "hubert_soft.pt", "not found")
    write_project(work, "voc", vocoder="griffin-lim")
    cfg_path = work / "models" / "voc" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg.update(vocoder="nsf-hifigan", vocoder_ckpt="models/nsf_hifigan/model")
    cfg_path.write_text(yaml.safe_dump(cfg))
    _one_error_line(*run_cli(capsys, "song.wav", "--project", "voc"), "nsf_hifigan", "not found", "config.json")
    cfg.update(vocoder="griffin-lim", residual_channels=16)
    cfg_path.write_text(yaml.safe_dump(cfg))
    _one_error_line(*run_cli(capsys, "song.wav", "--project", "voc"), "does not match its config")
    cfg.update(residual_channels=8, audio_sample_rate=24000, audio_num_mel_bins=80, keep_bins=80, fmax=12000)
    cfg_path.write_text(yaml.safe_dump(cfg))
    _one_error_line(*run_cli(capsys, "song.wav", "--project", "voc"), "24 kHz", "not supported")
    _no_output(work)


def test_output_errors(work, capsys):
    (work / "afile").write_text("x")
    _one_error_line(*run_cli(capsys, "song.wav", "--out", "afile/out.wav"), "cannot be written")
    (work / "taken.wav").write_bytes(b"keep me")
    _one_error_line(*run_cli(capsys, "song.wav", "--out", "taken.wav"), "already exists", "--overwrite")
    assert (work / "taken.wav").read_bytes() == b"keep me"
    (work / "models" / "singer" / "data_stats.json").unlink()
    _one_error_line(*run_cli(capsys, "song.wav", "--key", "auto"), "--key auto needs", "data_stats.json")
    _one_error_line(*run_cli(capsys, "song.wav", "--key", "up"), "--key")
    _no_output(work)


def test_infer_caps_the_cpu_kernel_cache_unless_the_user_set_it(work, capsys, monkeypatch):
    import os

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    run_cli(capsys, "missing.wav")
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "256"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "1024")
    run_cli(capsys, "missing.wav")
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "1024"
