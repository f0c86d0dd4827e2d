"""`diffsvc preprocess`: scanning, slicing, caching, resumption, manifest and the CLI, on audio the
tests make themselves (synthetic voice in several formats, rates and channel counts, plus a corrupt,
an empty, a silent and a far-too-loud file, and names with spaces and non-ASCII characters)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_synth import synth_voice
from diffsvc.config import Config
from diffsvc.data.dataset import PieceDataset, collate
from diffsvc.data.prepared import PreparedData, prepared_dir
from diffsvc.data.preprocess import (PreprocessOptions, SliceSettings, choose_valid, default_valid_count,
                                     piece_id, preprocess)
from diffsvc.data.stream_slice import StreamDrop, StreamPiece, stream_slices
from diffsvc.features.content import StandinContentEncoder
from diffsvc.features.f0 import make_f0_extractor

SR = 44100
SLICING = SliceSettings(min_s=2.0, max_s=4.0, drop_shorter_s=1.0)
UNICODE_NAME = "sub dir/ünï cödé 歌.flac"


def _write_raw(raw: Path) -> None:
    (raw / "sub dir").mkdir(parents=True)
    wav, _ = synth_voice(12.0, 44100, None, seed=1)
    sf.write(raw / "a voice.wav", wav, 44100, subtype="PCM_16")
    wav, _ = synth_voice(7.0, 48000, None, seed=2)
    sf.write(raw / UNICODE_NAME, np.stack([wav, 0.5 * wav], axis=1), 48000, subtype="PCM_24")
    wav, _ = synth_voice(7.0, 22050, None, seed=3)
    sf.write(raw / "c.ogg", wav, 22050, format="OGG", subtype="VORBIS")
    wav, _ = synth_voice(6.0, 32000, 330.0, seed=4)
    sf.write(raw / "d.mp3", wav, 32000, format="MP3")
    wav, _ = synth_voice(6.0, 44100, None, seed=5, level_db=0.0)
    sf.write(raw / "loud.wav", wav * 8.0, 44100, subtype="FLOAT")  # peak +18 dBFS
    sf.write(raw / "silent.wav", np.zeros(3 * 16000, dtype=np.float32), 16000)
    (raw / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 50)
    (raw / "empty.flac").write_bytes(b"")
    (raw / "notes.txt").write_text("not audio")


@pytest.fixture(scope="module")
def raw_template(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("template") / "raw"
    _write_raw(raw)
    return raw


@pytest.fixture
def raw(raw_template, tmp_path) -> Path:
    target = tmp_path / "raw"
    shutil.copytree(raw_template, target)
    return target


class CountingF0:
    """An f0 extractor that counts its calls and can stop the run after `fail_after` calls."""

    def __init__(self, method: str = "parselmouth", fail_after: int | None = None, **kwargs):
        self.inner = make_f0_extractor(method, **kwargs)
        self.calls = 0
        self.fail_after = fail_after

    def settings(self):
        return self.inner.settings()

    def extract(self, wav, n_frames=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of the work
        self.calls += 1
        return self.inner.extract(wav, n_frames)


class CountingUnits(StandinContentEncoder):
    calls = 0

    def encode(self, wav, sample_rate, **kwargs):
        type(self).calls += 1
        return super().encode(wav, sample_rate, **kwargs)


def _run(raw: Path, f0=None, units=None, config=None, **options):
    options.setdefault("slicing", SLICING)
    options.setdefault("content", "stand-in")
    lines: list[str] = []
    result = preprocess(raw, config or Config(), PreprocessOptions(**options), f0_extractor=f0 or CountingF0(),
                        content_encoder=units, log=lines.append, progress=False)
    return result, lines


@pytest.fixture(scope="module")
def first_run(raw_template, tmp_path_factory):
    raw = tmp_path_factory.mktemp("first") / "raw"
    shutil.copytree(raw_template, raw)
    f0 = CountingF0()
    result, lines = _run(raw, f0=f0)
    return raw, result, lines, f0


def test_first_run_reports_and_skips_bad_files(first_run):
    raw, result, lines, _ = first_run
    text = "\n".join(lines)
    assert {f["source"] for f in result.manifest.failed} == {"corrupt.wav", "empty.flac"}
    assert "FAILED to read corrupt.wav" in text and "FAILED to read empty.flac" in text
    assert "notes.txt" in text and result.check.skipped == ["notes.txt"]
    rates = {f.source: f.sample_rate for f in result.check.files}
    assert rates[UNICODE_NAME] == 48000 and rates["c.ogg"] == 22050 and rates["d.mp3"] == 32000
    assert "48000 Hz x1" in text and "22050 Hz x1" in text
    assert "silent: silent.wav" in text and "over full scale: loud.wav" in text
    assert any(d["source"] == "silent.wav" and "silent" in d["reason"] for d in result.manifest.dropped)
    # durations add up: the check's total is the decoded length of the readable files
    assert result.check.total_seconds == pytest.approx(12 + 7 + 7 + 6 + 6 + 3, abs=0.2)


def test_pieces_slicing_and_arrays(first_run):
    raw, result, _, f0 = first_run
    data = PreparedData.find(raw)
    pieces = data.pieces()
    assert {p.source for p in pieces} == {"a voice.wav", UNICODE_NAME, "c.ogg", "d.mp3", "loud.wav"}
    assert f0.calls == len(pieces) + sum("no voiced" in d["reason"] for d in data.manifest.dropped)
    by_source: dict[str, list] = {}
    for p in pieces:
        audio = data.load_audio(p)
        arrays = data.load(p)
        assert SLICING.drop_shorter_s <= p.seconds <= SLICING.max_s + 1e-9
        assert len(audio) == p.end - p.start and audio.dtype == np.float32
        assert p.frames == len(audio) // 512 == arrays["mel"].shape[0] == len(arrays["f0"])
        assert arrays["mel"].shape[1] == 128 and arrays["units"].shape[1] == 256
        assert abs(len(arrays["units"]) - p.seconds * 50) <= 2
        assert np.max(np.abs(audio)) <= 1.0  # the +18 dBFS file was scaled down
        assert p.voiced_fraction == pytest.approx(float(np.mean(arrays["f0"] > 0)))
        by_source.setdefault(p.source, []).append(p)
    for source_pieces in by_source.values():  # in order, never overlapping
        source_pieces.sort(key=lambda p: p.start)
        assert all(a.end <= b.start for a, b in zip(source_pieces, source_pieces[1:]))
    # the 14 s file is cut into several pieces that keep most of its sound
    long = by_source["a voice.wav"]
    assert len(long) >= 3 and sum(p.seconds for p in long) > 9.0
    # the piece audio is the source audio at 44.1 kHz
    from diffsvc.audio.load import load_audio

    whole = load_audio(raw / "a voice.wav")
    assert np.allclose(data.load_audio(long[1]), whole[long[1].start:long[1].end], atol=1e-4)


def test_split_and_stats(first_run):
    raw, result, _, _ = first_run
    data = PreparedData.find(raw)
    train, valid = data.pieces("train"), data.pieces("valid")
    assert len(valid) == default_valid_count(len(train) + len(valid)) >= 1
    assert not {p.id for p in train} & {p.id for p in valid}
    mels = [data.load(p)["mel"] for p in train]
    assert np.allclose(data.stats["spec_min"], np.min([m.min(0) for m in mels], axis=0))
    assert np.allclose(data.stats["spec_max"], np.max([m.max(0) for m in mels], axis=0))
    voiced = np.concatenate([f[f > 0] for f in (data.load(p)["f0"] for p in train)])
    assert data.stats["f0_median_hz"] == pytest.approx(float(np.median(voiced)))
    manifest = data.manifest
    assert manifest.f0["extractor"] == "parselmouth" and manifest.content == {"encoder": "stand-in", "is_standin": True,
                                                                            "revision": StandinContentEncoder.revision}
    assert manifest.mel["hop_size"] == 512 and manifest.mel["n_mels"] == 128
    # what training reads
    dataset = PieceDataset(data, "train")
    batch = collate([dataset[i] for i in range(min(3, len(dataset)))])
    assert batch.mel.shape[-1] == 128 and batch.units.shape[-1] == 256
    assert not (prepared_dir(raw) / "manifest.json.part").exists()


def test_rerun_does_no_work(first_run):
    raw, first, _, _ = first_run
    f0 = CountingF0()
    CountingUnits.calls = 0
    mel_times = {p: p.stat().st_mtime_ns for p in (prepared_dir(raw) / "mel").glob("*.npy")}
    result, _ = _run(raw, f0=f0, units=CountingUnits())
    assert f0.calls == 0 and CountingUnits.calls == 0
    assert result.f0_computed == 0 and result.units_computed == 0 and result.sources_decoded == 0
    assert result.manifest.pieces == first.manifest.pieces
    assert {p: p.stat().st_mtime_ns for p in (prepared_dir(raw) / "mel").glob("*.npy")} == mel_times


def test_changed_f0_setting_redoes_f0_only(raw):
    first, _ = _run(raw)
    n = len(first.manifest.pieces)
    f0 = CountingF0(f0_max=800.0)  # another f0 setting: a different cache key
    CountingUnits.calls = 0
    result, _ = _run(raw, f0=f0, units=CountingUnits())
    assert f0.calls >= n and result.f0_cached == 0
    assert CountingUnits.calls == 0 and result.sources_decoded == 0
    assert {p.f0_key for p in result.manifest.pieces}.isdisjoint({p.f0_key for p in first.manifest.pieces})
    assert [p.units_key for p in result.manifest.pieces] == [p.units_key for p in first.manifest.pieces]
    assert result.manifest.f0["f0_max"] == 800.0
    # back to the first setting: everything cached (content-keyed caches are kept)
    again = CountingF0()
    _run(raw, f0=again)
    assert again.calls == 0


def test_changed_slicing_reslices(raw):
    first, _ = _run(raw)
    result, _ = _run(raw, slicing=SliceSettings(min_s=3.0, max_s=6.0, drop_shorter_s=1.0))
    assert result.sources_decoded == len(result.check.files) and max(p.seconds for p in result.manifest.pieces) > 4.0
    ids = {p.id for p in result.manifest.pieces}
    on_disk = {p.stem for p in (prepared_dir(raw) / "pieces").glob("*.npy")}
    assert on_disk == ids  # pieces of the old slicing were removed


def test_interrupted_run_resumes(raw):
    with pytest.raises(KeyboardInterrupt):
        _run(raw, f0=CountingF0(fail_after=3))
    root = prepared_dir(raw)
    assert not (root / "manifest.json").exists()
    assert not list(root.rglob(".*.part*"))  # no half-written file
    assert len(list((root / "f0").glob("*.npy"))) == 3
    f0 = CountingF0()
    result, _ = _run(raw, f0=f0)
    assert result.f0_cached == 3 and f0.calls == result.f0_computed
    assert result.f0_computed + result.f0_cached == len(result.manifest.pieces) + sum(
        "no voiced" in d["reason"] for d in result.manifest.dropped)
    data = PreparedData.find(raw)
    assert all(data.load(p)["mel"].shape[0] == p.frames for p in data.pieces())


def test_stream_slicing_matches_whole_file_with_bounded_memory(monkeypatch):
    import diffsvc.data.stream_slice as stream

    wav, _ = synth_voice(32.0, SR, None, seed=7)
    wav[12 * SR:18 * SR] *= 1e-4  # a long pause
    whole = stream.slice_audio(wav, SR, **SLICING.as_kwargs())
    seen = []
    real = stream.slice_audio
    monkeypatch.setattr(stream, "slice_audio", lambda w, sr, **kw: (seen.append(len(w)), real(w, sr, **kw))[1])
    block = 3 * SR
    items = list(stream_slices((wav[i:i + block] for i in range(0, len(wav), block)), SR, SLICING, window_s=14.0))
    pieces = [it for it in items if isinstance(it, StreamPiece)]
    assert [(p.start, p.end) for p in pieces] == [(p.start, p.end) for p in whole.pieces]
    assert all(np.array_equal(p.audio, wav[p.start:p.end]) for p in pieces)
    assert len(seen) > 3 and max(seen) <= (14 + SLICING.max_s) * SR + block  # never the whole file at once
    assert sorted((d.start, d.end) for d in items if isinstance(d, StreamDrop)) == sorted(
        (d.piece.start, d.piece.end) for d in whole.dropped)


def test_stream_slicing_of_silence():
    blocks = [np.zeros(2 * SR, dtype=np.float32)] * 20
    items = list(stream_slices(blocks, SR, SLICING, window_s=12.0))
    assert len(items) == 1 and isinstance(items[0], StreamDrop) and "silent" in items[0].reason
    assert (items[0].start, items[0].end) == (0, 40 * SR)


def test_piece_ids_are_stable_unique_and_safe():
    names = ["a b.wav", "a_b.wav", "ünï cödé 歌.flac", "歌.wav", "dir/a b.wav"]
    ids = [piece_id(n, 3) for n in names]
    assert len(set(ids)) == len(ids)
    assert all(i.isascii() and " " not in i and "/" not in i for i in ids)
    assert ids == [piece_id(n, 3) for n in names] and piece_id("a b.wav", 4) != ids[0]


def test_validation_choice():
    ids = [f"p{i:03d}" for i in range(300)]
    chosen = choose_valid(ids, default_valid_count(300), seed=1)
    assert len(chosen) == 5 and chosen == choose_valid(reversed(ids), 5, seed=1)
    assert choose_valid(ids, 5, seed=2) != chosen
    assert default_valid_count(1) == 0 and default_valid_count(2) == 1 and default_valid_count(100) == 2
    assert len(choose_valid(["a", "b"], 5, seed=0)) == 1  # at least one piece stays for training


def test_cli(raw, capsys, monkeypatch, tmp_path):
    from diffsvc.cli.main import main

    monkeypatch.chdir(tmp_path)  # models/hubert_soft.pt does not exist here
    common = ["--f0", "parselmouth", "--min-seconds", "2", "--max-seconds", "4", "--min-piece", "1"]
    assert main(["preprocess", str(raw), *common, "--content", "hubert-soft"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hubert_soft.pt" in err[0] and "--content stand-in" in err[0]
    assert not (prepared_dir(raw) / "manifest.json").exists()

    # corrupt.wav and empty.flac are left out: the rest is prepared, and the exit code says files failed
    assert main(["preprocess", str(raw), *common, "--content", "stand-in", "--valid", "2", "--workers", "2"]) == 2
    captured = capsys.readouterr()
    out, err = captured.out, captured.err.strip().splitlines()
    assert len(err) == 1 and "2 file(s) could not be read" in err[0]
    assert "corrupt.wav" in err[0] and "empty.flac" in err[0]
    assert "Dataset check" in out and "training pieces" in out and "validation pieces   2" in out
    assert len(PreparedData.find(raw).pieces("valid")) == 2
    manifest = json.loads((prepared_dir(raw) / "manifest.json").read_text(encoding="utf-8"))
    assert UNICODE_NAME in {p["source"] for p in manifest["pieces"]}

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.wav").write_bytes(b"not audio at all")
    shutil.copy(raw / "silent.wav", bad / "silent.wav")
    assert main(["preprocess", str(bad), *common, "--content", "stand-in"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no usable training data" in err[0] and "1 file(s) could not be read" in err[0]


@pytest.mark.parametrize("layout", ["empty", "no audio"])
def test_a_folder_without_audio_is_said_first_before_model_files(layout, capsys, monkeypatch, tmp_path):
    """The most basic input problem first: a folder with no audio is one line naming it and what to do,
    before the missing HuBERT-soft weights (not in tmp_path) or a crepe model are looked for, and the
    folder is left as it was (no .diffsvc made in it)."""
    from diffsvc.cli.main import main

    monkeypatch.chdir(tmp_path)  # models/hubert_soft.pt does not exist here
    folder = tmp_path / "my takes"
    (folder / "sub").mkdir(parents=True)
    if layout == "no audio":
        (folder / "notes.txt").write_text("lyrics")
        (folder / "sub" / "cover.png").write_bytes(b"\x89PNG")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    assert main(["preprocess", str(folder), "--content", "hubert-soft"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{folder}: no audio files found" in err[0] and "put the singer's recordings in it" in err[0], err
    assert "hubert" not in err[0].lower() and "crepe" not in err[0].lower(), err
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # nothing written
