"""Field cases of files and disks (issue 11, items 4, 5, 8 and 9): a folder with bad inputs, a rerun
of a folder, truncated audio, a full or read-only disk, two inputs with one output name, a source
replaced by other audio of the same size and time stamp.

Full and read-only disks are real where the tests may mount a tmpfs (root on Linux) and simulated
through diffsvc.fileio's system calls everywhere else; the `disk` fixtures run both ways where
they can, and never skip: a machine that cannot mount runs the simulated way twice."""

from __future__ import annotations

import errno
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import procs
from audio_synth import synth_voice
from cli_checks import one_error_line
from diffsvc import fileio
from diffsvc.audio.load import check_audio, iter_audio_blocks, load_audio, probe_audio
from diffsvc.cli.main import main
from diffsvc.errors import AudioError, WriteError
from infer_fixture import write_project

SR = 44100
MELODY = [(0.6, 220.0), (0.4, 0.0), (0.5, 330.0)]


# --- helpers ----------------------------------------------------------------------------------

def song(path: Path, seconds: float = 1.5, seed: int = 0, **kwargs) -> Path:
    wav, _ = synth_voice(seconds, SR, f0=MELODY, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, SR, **kwargs)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut the file, header untouched: the header declares more data than the file holds."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path




def no_files_left(folder: Path) -> None:
    """Nothing written there at all: no output, no temporary .part file."""
    assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()], list(folder.rglob("*"))


def infer(capsys, *args) -> tuple[int, str]:
    rc = main(["infer", *args, "--quiet", "--seed", "0"])
    return rc, capsys.readouterr().err


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "singer", steps=(1000,))
    return tmp_path


@pytest.fixture
def models_never_load(monkeypatch):
    """Fails the test if a checkpoint is loaded (for errors that must come before any model)."""
    from diffsvc.inference import project

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(project, "load_checkpoint", refuse)


# --- real and simulated disks -----------------------------------------------------------------

def _mount_tmpfs(folder: Path, size: str) -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    done = procs.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(folder)], timeout=60)
    return done.returncode == 0


def _umount(folder: Path) -> None:
    procs.run(["umount", "-l", str(folder)], timeout=60)


def _under(path, folder: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
        return True
    except ValueError:
        return False


def _on(fd: int, folder: Path) -> bool:
    """Whether the open file `fd` lies under `folder` (Linux: /proc; elsewhere every file counts)."""
    try:
        return _under(os.readlink(f"/proc/self/fd/{fd}"), folder)
    except OSError:
        return True


@pytest.fixture(params=["tmpfs", "simulated"])
def full_disk(request, tmp_path, monkeypatch):
    """make(folder, room_bytes, fill=callable) -> the folder on a disk that fills after about
    `room_bytes` more bytes: a real tmpfs where one can be mounted, else diffsvc.fileio's write
    call raising ENOSPC once the budget is spent. `fill(folder)` puts files there first."""
    mounted = []

    def make(folder: Path, room_bytes: int, fill=None) -> Path:
        folder = tmp_path / folder
        if fill is not None:
            staging = tmp_path / "staging"
            staging.mkdir()
            fill(staging)
            used = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
        if request.param == "tmpfs" and _mount_tmpfs(folder, f"{(used if fill else 0) + room_bytes + 8192}"):
            mounted.append(folder)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            spent = [0]
            real = fileio._write_some

            def write_some(fd, data):
                if not _on(fd, folder):  # the spooled song in TMPDIR and other writes elsewhere
                    return real(fd, data)
                if spent[0] + len(data) > room_bytes:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                spent[0] += len(data)
                return real(fd, data)

            monkeypatch.setattr(fileio, "_write_some", write_some)
        if fill is not None:
            for p in staging.iterdir():
                shutil.move(str(p), str(folder / p.name))
        return folder

    yield make
    for folder in mounted:
        _umount(folder)


@pytest.fixture(params=["tmpfs", "simulated"])
def read_only(request, tmp_path, monkeypatch):
    """make(folder, fill=callable) -> a read-only folder holding what `fill` put there: a tmpfs
    remounted read-only where possible, else diffsvc.fileio's mkdir/mkstemp raising EROFS there
    (root ignores chmod, so mode bits would prove nothing)."""
    mounted = []

    def make(folder: Path, fill=None) -> Path:
        folder = tmp_path / folder
        real = request.param == "tmpfs" and _mount_tmpfs(folder, "4m")
        folder.mkdir(parents=True, exist_ok=True)
        if fill is not None:
            fill(folder)
        if real:
            mounted.append(folder)
            done = procs.run(["mount", "-o", "remount,ro", str(folder)], timeout=60)
            real = done.returncode == 0
        if not real:
            real_calls = {"_mkdir": fileio._mkdir, "_mkstemp": fileio._mkstemp}

            def guarded(name):
                def call(path, *args):
                    if _under(path, folder):
                        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
                    return real_calls[name](path, *args)
                return call

            for name in real_calls:
                monkeypatch.setattr(fileio, name, guarded(name))
        return folder

    yield make
    for folder in mounted:
        _umount(folder)


# --- fileio: every writer, a full disk at any byte count --------------------------------------

WRITERS = {
    "npy": lambda p: fileio.atomic_np_save(p, np.arange(50_000, dtype=np.float32)),
    "txt": lambda p: fileio.atomic_write_text(p, "x" * 200_000),
    "pt": lambda p: fileio.atomic_torch_save({"w": __import__("torch").arange(50_000.0)}, p),
    "wav": lambda p: _sound(p, "WAV"),
    "flac": lambda p: _sound(p, "FLAC"),
}


def _sound(path, fmt):
    wav, _ = synth_voice(2.0, SR, f0=220.0, seed=0)
    with fileio.atomic_sound_file(path, SR, 1, "PCM_16", fmt) as write:
        for i in range(0, len(wav), 4096):
            write(wav[i:i + 4096])


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_a_full_disk_is_one_write_error_and_the_old_file_stays(suffix, tmp_path, monkeypatch):
    target = tmp_path / f"out.{suffix}"
    target.write_bytes(b"the previous version")
    for room in (0, 100, 5000, 60_000):
        spent = [0]
        real = fileio._write_some

        def write_some(fd, data, room=room):
            if spent[0] + len(data) > room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            spent[0] += len(data)
            return real(fd, data)

        monkeypatch.setattr(fileio, "_write_some", write_some)
        with pytest.raises(WriteError) as caught:
            WRITERS[suffix](target)
        message = str(caught.value)
        assert str(target) in message and "No space left on device" in message and "\n" not in message
        assert target.read_bytes() == b"the previous version"
        assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary file
        monkeypatch.setattr(fileio, "_write_some", real)
    WRITERS[suffix](target)  # with room it writes
    assert target.stat().st_size > 1000


def test_writable_check_names_the_folder_and_reason(read_only, tmp_path):
    folder = read_only("ro")
    for call in (lambda: fileio.check_writable(folder / "sub"), lambda: fileio.check_writable(folder),
                 lambda: fileio.atomic_write_text(folder / "a.txt", "x")):
        with pytest.raises(WriteError, match="Read-only file system"):
            call()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(WriteError, match="Not a directory.*a file stands where a folder should be"):
        fileio.make_dirs(tmp_path / "afile" / "sub")


def test_a_folder_names_its_subfolders_which_are_not_searched(tmp_path, capsys):
    from diffsvc.cli.infer import collect_inputs
    from diffsvc.errors import DiffSvcError

    song(tmp_path / "songs" / "a.wav")
    song(tmp_path / "songs" / "sub" / "b.wav")
    (tmp_path / "songs" / "x.wav").mkdir()  # a folder named like a song
    assert collect_inputs([str(tmp_path / "songs")]) == [tmp_path / "songs" / "a.wav"]
    err = capsys.readouterr().err
    assert "subfolders (sub, x.wav) are not searched" in err, err
    (tmp_path / "songs" / "a.wav").unlink()
    with pytest.raises(DiffSvcError, match=r"no audio files in this folder .*subfolders \(sub, x.wav\)"):
        collect_inputs([str(tmp_path / "songs")])


def test_out_and_format_must_agree():
    """The writer follows --out's suffix, so `--out x.wav --format flac` would write a WAV: refused."""
    from diffsvc.cli.infer import output_paths
    from diffsvc.errors import DiffSvcError

    with pytest.raises(DiffSvcError, match=r"--out x.wav names a .wav file but --format flac was asked"):
        output_paths([Path("a.wav")], "x.wav", "flac", "p_steps_1")
    assert output_paths([Path("a.wav")], "x.FLAC", None, "t")[0] == [Path("x.FLAC")]
    assert output_paths([Path("a.wav")], "x", "flac", "t")[0] == [Path("x.flac")]
    assert output_paths([Path("a.wav")], None, None, "t")[0] == [Path("output/a_t.wav")]


def test_an_output_never_replaces_an_input_song(work, capsys, models_never_load):
    """--overwrite replaces outputs; an --out naming the song itself, or another input of the same
    run, is refused before any model loads and the song is left as it was."""
    kept = song(work / "take.wav").read_bytes()
    one_error_line(*infer(capsys, "take.wav", "--out", "./take.wav", "--overwrite"),
                   "take.wav", "would replace the song itself", "choose another --out")
    assert (work / "take.wav").read_bytes() == kept
    song(work / "take_singer_steps_1000.wav", seed=2)
    other = (work / "take_singer_steps_1000.wav").read_bytes()
    from diffsvc.cli.infer import output_paths
    _, problems = output_paths([Path("take.wav"), Path("take_singer_steps_1000.wav")], ".", None, "singer_steps_1000")
    assert "would replace the input take_singer_steps_1000.wav" in problems[Path("take.wav")]
    assert (work / "take_singer_steps_1000.wav").read_bytes() == other


# --- item 5: truncated audio -------------------------------------------------------------------

def _flac_cut_at_a_frame(path: Path) -> Path:
    """A FLAC cut exactly where a frame starts: it decodes cleanly, just fewer frames than its
    STREAMINFO declares."""
    data = path.read_bytes()
    starts = [i for i in range(64, len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xF8]
    path.write_bytes(data[:starts[len(starts) // 2]])
    return path


def test_truncated_files_of_every_container_are_refused(tmp_path):
    cases = {
        "wav": truncate(song(tmp_path / "t.wav", subtype="PCM_16")),
        "wav24": truncate(song(tmp_path / "t24.wav", subtype="PCM_24")),
        "rf64": truncate(song(tmp_path / "t.rf64", format="RF64", subtype="PCM_16")),
        "aiff": truncate(song(tmp_path / "t.aiff", format="AIFF", subtype="PCM_16")),
        "flac": _flac_cut_at_a_frame(song(tmp_path / "t.flac")),
        "flac-mid-frame": truncate(song(tmp_path / "m.flac")),
    }
    for name, path in cases.items():
        for read in (check_audio, load_audio, probe_audio, lambda p: list(iter_audio_blocks(p))):
            with pytest.raises(AudioError, match="truncated|cut short") as caught:
                read(path)
            assert str(path) in str(caught.value), name
    assert "declares 1.50 s" in str(pytest.raises(AudioError, check_audio, cases["wav"]).value)
    # the same files whole are fine, and a WAV whose writer never filled the size in still loads
    for path in (song(tmp_path / "ok.wav"), song(tmp_path / "ok.rf64", format="RF64"),
                 song(tmp_path / "ok.aiff", format="AIFF"), song(tmp_path / "ok.flac")):
        assert check_audio(path).duration == pytest.approx(1.5, abs=1e-3)
    open_ended = song(tmp_path / "stream.wav", subtype="PCM_16")
    data = bytearray(open_ended.read_bytes())
    at = data.index(b"data")
    data[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFFF)
    open_ended.write_bytes(bytes(data))
    assert check_audio(open_ended).duration == pytest.approx(1.5, abs=1e-3)


def test_truncated_ogg_is_refused(tmp_path):
    """Ogg declares no length: a cut file is known by its last page (whole, end-of-stream flag)."""
    vorbis = song(tmp_path / "ok.ogg", format="OGG", subtype="VORBIS")
    opus = tmp_path / "ok.opus"
    sf.write(opus, np.zeros(48000, np.float32) + 0.1 * np.sin(np.arange(48000) / 20), 48000,
             format="OGG", subtype="OPUS")
    for path in (vorbis, opus):
        assert check_audio(path).duration > 0.9
    data = vorbis.read_bytes()
    at_page = tmp_path / "page.ogg"
    at_page.write_bytes(data[:data.rfind(b"OggS")])  # cut where the last page starts
    for path in (truncate(song(tmp_path / "mid.ogg", format="OGG", subtype="VORBIS")), at_page):
        for read in (check_audio, load_audio):
            with pytest.raises(AudioError, match=f"{path}: truncated"):
                read(path)


def test_infer_refuses_a_truncated_wav_with_one_line_and_writes_nothing(work, capsys, models_never_load):
    truncate(song(work / "cut.wav", seconds=2.0))
    line = one_error_line(*infer(capsys, "cut.wav"), "cut.wav", "truncated", "2.00 s", "1.00 s")
    assert "copy or export it again" in line
    no_files_left(work / "output")


def test_preprocess_lists_a_truncated_wav_among_failed_files(tmp_path):
    from diffsvc.config import Config
    from diffsvc.data.preprocess import PreprocessOptions, SliceSettings, preprocess
    from diffsvc.features.f0 import make_f0_extractor

    raw = tmp_path / "raw"
    wav, _ = synth_voice(5.0, SR, f0=220.0, seed=1)
    raw.mkdir()
    sf.write(raw / "good.wav", wav, SR)
    sf.write(raw / "cut.wav", wav, SR)
    truncate(raw / "cut.wav")
    lines = []
    result = preprocess(raw, Config(), PreprocessOptions(content="stand-in", slicing=SliceSettings(
        min_s=2.0, max_s=4.0, drop_shorter_s=1.0)), f0_extractor=make_f0_extractor("parselmouth"),
        log=lines.append, progress=False)
    assert [f["source"] for f in result.check.failed] == ["cut.wav"]
    assert "truncated" in result.check.failed[0]["error"]
    assert [f.source for f in result.check.files] == ["good.wav"]
    assert any(line.startswith("  FAILED to read cut.wav") for line in lines)


# --- item 4: a folder with bad inputs, reruns ---------------------------------------------------

def test_a_folder_with_bad_inputs_converts_the_good_ones_and_reruns(work, capsys):
    songs = work / "songs"
    song(songs / "a.wav", seed=1)
    (songs / "b.wav").write_text("not audio at all " * 20)
    song(songs / "c.wav", seed=2)
    truncate(song(songs / "d.wav", seed=3))
    rc, err = infer(capsys, "songs")
    assert rc != 0 and "Traceback" not in err
    lines = err.splitlines()
    bad = [i for i, line in enumerate(lines) if line.startswith("diffsvc infer: error: songs/")]
    assert [lines[i].split(":")[2].strip() for i in bad] == ["songs/b.wav", "songs/d.wav"]
    assert "not a readable audio file" in lines[bad[0]] and "truncated" in lines[bad[1]]
    converted = [i for i, line in enumerate(lines) if line.startswith("output/")]
    assert len(converted) == 2 and max(bad) < min(converted)  # all listed before the work
    assert "2 of 4 input(s) not converted" in lines[-1] and "songs/b.wav, songs/d.wav" in lines[-1]
    out = work / "output"
    assert sorted(p.name for p in out.iterdir()) == ["a_singer_steps_1000.wav", "c_singer_steps_1000.wav"]

    # the rerun after removing the bad files leaves the outputs alone and says so
    (songs / "b.wav").unlink()
    (songs / "d.wav").unlink()
    song(songs / "e.wav", seed=4)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    rc, err = infer(capsys, "songs")
    assert rc == 0, err
    assert "output/a_singer_steps_1000.wav: exists, left alone (--overwrite redoes it)" in err
    assert "output/c_singer_steps_1000.wav: exists, left alone" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name in before} == before
    assert (out / "e_singer_steps_1000.wav").is_file()

    rc, err = infer(capsys, "songs")
    assert rc == 0 and "nothing to convert: all 3 output(s) exist" in err
    rc, err = infer(capsys, "songs", "--overwrite")
    assert rc == 0 and "left alone" not in err
    assert all(p.stat().st_mtime_ns != before[p.name] for p in out.iterdir() if p.name in before)


def test_a_folder_converted_into_itself_and_run_again_leaves_its_outputs_out(work, capsys):
    songs = work / "songs"
    song(songs / "a.wav", seed=1)
    rc, err = infer(capsys, "songs", "--out", "songs")
    assert rc == 0, err
    assert sorted(p.name for p in songs.iterdir()) == ["a.wav", "a_singer_steps_1000.wav"]
    rc, err = infer(capsys, "songs", "--out", "songs")  # before: the output was converted as a new song
    assert rc == 0, err
    assert "songs/a_singer_steps_1000.wav: left out: it is the output of songs/a.wav" in err
    assert sorted(p.name for p in songs.iterdir()) == ["a.wav", "a_singer_steps_1000.wav"]


def test_a_folder_of_only_bad_inputs_loads_no_model(work, capsys, models_never_load):
    songs = work / "songs"
    (songs).mkdir()
    (songs / "x.wav").write_text("text")
    (songs / "y.flac").write_bytes(b"")
    rc, err = infer(capsys, "songs", "missing.wav")
    assert rc != 0 and "Traceback" not in err
    assert "songs/x.wav: not a readable" in err and "songs/y.flac: file is empty" in err
    assert "missing.wav: audio file not found" in err
    assert err.splitlines()[-1].startswith("diffsvc infer: error: 3 of 3 input(s) not converted")
    no_files_left(work / "output")


def test_take_wav_and_take_flac_in_one_folder(work, capsys):
    songs = work / "songs"
    song(songs / "take.wav", seed=1)
    song(songs / "take.flac", seed=2)
    song(songs / "other.wav", seed=3)
    rc, err = infer(capsys, "songs")
    assert rc != 0 and "Traceback" not in err
    clash = [line for line in err.splitlines() if "would write the same output" in line]
    assert len(clash) == 2 and all("songs/take.flac and songs/take.wav" in line for line in clash)
    assert "different folders" not in err and "rename one of them" in clash[0]
    assert sorted(p.name for p in (work / "output").iterdir()) == ["other_singer_steps_1000.wav"]
    # the way out it gives works: rename one, rerun
    (songs / "take.wav").rename(songs / "take-wav.wav")
    rc, err = infer(capsys, "songs")
    assert rc == 0, err
    assert sorted(p.name for p in (work / "output").iterdir()) == [
        "other_singer_steps_1000.wav", "take-wav_singer_steps_1000.wav", "take_singer_steps_1000.wav"]


# --- item 8: full and read-only disks -------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_infer_on_a_full_disk_is_one_line_and_leaves_nothing(fmt, work, capsys, full_disk):
    song(work / "song.wav", seconds=3.0)
    disk = full_disk("disk", room_bytes=40_000)
    out = disk / f"song.{fmt}"
    one_error_line(*infer(capsys, "song.wav", "--out", str(out), "--format", fmt), str(out),
                   "No space left on device")
    no_files_left(disk)


def test_infer_to_a_read_only_folder_fails_before_any_model(work, capsys, read_only, models_never_load):
    song(work / "song.wav")
    folder = read_only("ro")
    for target in (folder / "song.wav", folder / "new" / "song.flac"):
        one_error_line(*infer(capsys, "song.wav", "--out", str(target)), str(folder), "Read-only file system")
    song(work / "songs" / "a.wav")
    one_error_line(*infer(capsys, "songs", "--out", str(folder)), str(folder), "Read-only file system")
    no_files_left(folder)


PREPROCESS = ["--f0", "parselmouth", "--content", "stand-in", "--min-seconds", "2", "--max-seconds", "4",
              "--min-piece", "1"]


def _recordings(folder: Path) -> None:
    wav, _ = synth_voice(6.0, SR, f0=220.0, seed=1)
    sf.write(folder / "a.wav", wav, SR, subtype="PCM_16")


def test_preprocess_on_a_read_only_folder_fails_before_the_work(read_only, capsys, monkeypatch):
    from diffsvc.data import preprocess as pre

    raw = read_only("raw", fill=_recordings)
    monkeypatch.setattr(pre, "prepare_source", lambda job: pytest.fail("work started on a read-only folder"))
    rc = main(["preprocess", str(raw), *PREPROCESS])
    one_error_line(rc, capsys.readouterr().err, str(raw / ".diffsvc"), "Read-only file system")
    assert not (raw / ".diffsvc").exists()


def test_preprocess_on_a_full_disk_is_one_line_and_leaves_no_partial_file(full_disk, capsys):
    raw = full_disk("raw", room_bytes=200_000, fill=_recordings)
    rc = main(["preprocess", str(raw), *PREPROCESS])
    line = one_error_line(rc, capsys.readouterr().err, str(raw / ".diffsvc"), "No space left on device")
    assert "free space" in line
    assert not [p for p in raw.rglob(".*.part*")]
    assert not (raw / ".diffsvc" / "manifest.json").exists()


# --- item 9: the source cache keys on content -------------------------------------------------

def test_a_source_replaced_by_other_audio_of_the_same_size_and_time_is_redone(tmp_path):
    from diffsvc.config import Config
    from diffsvc.data.prepared import PreparedData
    from diffsvc.data.preprocess import PreprocessOptions, SliceSettings, preprocess
    from diffsvc.features.f0 import make_f0_extractor

    raw = tmp_path / "raw"
    raw.mkdir()
    path = raw / "a.wav"
    first, _ = synth_voice(5.0, SR, f0=220.0, seed=1)
    sf.write(path, first, SR, subtype="PCM_16")
    options = PreprocessOptions(content="stand-in", slicing=SliceSettings(min_s=2.0, max_s=4.0, drop_shorter_s=1.0))

    def run():
        return preprocess(raw, Config(), options, f0_extractor=make_f0_extractor("parselmouth"),
                          log=lambda line: None, progress=False)

    run()
    hashes = [p.id for p in PreparedData.find(raw).pieces()]
    stat = path.stat()
    size = stat.st_size
    second, _ = synth_voice(5.0, SR, f0=330.0, seed=2)
    sf.write(path, second, SR, subtype="PCM_16")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == size and path.stat().st_mtime_ns == stat.st_mtime_ns
    result = run()
    assert result.sources_decoded == 1 and result.sources_cached == 0
    data = PreparedData.find(raw)
    piece = data.pieces()[0]
    np.testing.assert_allclose(data.load_audio(piece), second[piece.start:piece.end], atol=1e-4)
    assert hashes  # the first run made pieces too
    assert run().sources_cached == 1  # unchanged now: not redone


def test_a_full_temporary_folder_while_spooling_is_one_line_and_is_cleaned(tmp_path, monkeypatch):
    from diffsvc.audio.spool import spool_audio

    path = song(tmp_path / "song.wav")
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio, "_write_some", full)
    with pytest.raises(AudioError, match="temporary folder .*No space left on device.*TMPDIR"):
        spool_audio(path, SR, temp_dir=spool_dir)
    assert not any(spool_dir.iterdir())
