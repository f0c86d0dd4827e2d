"""A placeholder where a weight file should be (issue #11, item 6): a Git LFS pointer, a web page,
plain text, a zip or pickle cut short. For every kind of model file the command says what the file
is and that the real one must be downloaded, in one line, without torch's advice or warnings, and
suggests --trust-checkpoint only where the flag applies."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest
import soundfile as sf
import torch

from diffsvc.cli.main import main

from audio_synth import synth_voice
from infer_fixture import write_project
from procs import run

REPO = Path(__file__).resolve().parents[1]
LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4e1243bd22c66e76c2ba9eddc1f91394e57f9f83f6e2e5ad6ab1a2e5c2c5f0b1\nsize 54592524\n")
HTML_PAGE = "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n"
PLAIN_TEXT = "Error: the file you requested is no longer available.\n"


def _cut_zip(good: bytes, legacy: bytes) -> bytes:
    return good[: len(good) // 2]


def _cut_pickle(good: bytes, legacy: bytes) -> bytes:
    return legacy[:120]  # inside the pickled object of a legacy (pre-zip) torch file


PLACEHOLDERS = {  # kind: (bytes from (good zip file, good legacy file), words the message must hold)
    "lfs": (lambda good, legacy: LFS_POINTER.encode(), ("Git LFS pointer", "download")),
    "html": (lambda good, legacy: HTML_PAGE.encode(), ("web page", "download")),
    "text": (lambda good, legacy: PLAIN_TEXT.encode(), ("text file", "download")),
    "truncated-zip": (_cut_zip, ("truncated", "download")),
    "truncated-pickle": (_cut_pickle, ("truncated", "download")),
}
MODEL_FILES = {  # which file: (project to convert with, the file's path under the working folder)
    "checkpoint": ("ck", "models/ck/model_ckpt_steps_1000.ckpt"),
    "nsf-hifigan": ("voc", "models/nsf_hifigan/model"),
    "hubert-soft": ("hub", "models/hubert_soft.pt"),
    "contentvec": ("vec", "models/checkpoint_best_legacy_500.pt"),
}


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "ck")
    write_project(tmp_path, "voc", vocoder="nsf-hifigan")
    write_project(tmp_path, "hub", content_encoder="hubert-soft", hubert_path="models/hubert_soft.pt")
    write_project(tmp_path, "vec", content_encoder="contentvec", contentvec_path="models/checkpoint_best_legacy_500.pt")
    wav, _ = synth_voice(0.5, 44100, f0=220.0, seed=0)
    sf.write(tmp_path / "song.wav", wav, 44100)
    return tmp_path


def _place(work: Path, relative: str, kind: str) -> Path:
    """Put placeholder `kind` at `relative`, cut from a real file of that name where there is one."""
    target = work / relative
    good_obj = torch.load(target, weights_only=True) if target.exists() else {"w": torch.randn(64, 64)}
    torch.save(good_obj, work / "good.pt")
    torch.save(good_obj, work / "legacy.pt", _use_new_zipfile_serialization=False)
    make, _ = PLACEHOLDERS[kind]
    target.write_bytes(make((work / "good.pt").read_bytes(), (work / "legacy.pt").read_bytes()))
    return target


def _infer(capsys, project: str, *extra) -> tuple[int, str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["infer", "song.wav", "--project", project, "--f0", "parselmouth", "--quiet", *extra])
    err = capsys.readouterr().err
    assert not [w for w in caught if "torch" in str(w.filename)], [str(w.message) for w in caught]
    return rc, err


@pytest.mark.parametrize("file_kind", MODEL_FILES)
def test_each_placeholder_is_named_for_each_model_file(work, capsys, file_kind):
    project, relative = MODEL_FILES[file_kind]
    for kind, (_, words) in PLACEHOLDERS.items():
        path = _place(work, relative, kind)
        rc, err = _infer(capsys, project)
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc != 0 and len(lines) == 1, (kind, err)
        line = lines[0]
        assert str(Path(relative)) in line, (kind, line)
        for word in words:
            assert word in line, (kind, line)
        for wrong in ("--trust-checkpoint", "weights_only", "needs to run code", "Traceback", "safe_globals"):
            assert wrong not in err, (kind, line)
        path.unlink()
    assert not (work / "output").exists() or not any((work / "output").iterdir())


def test_trust_checkpoint_changes_nothing_for_a_placeholder(work, capsys):
    _place(work, MODEL_FILES["checkpoint"][1], "lfs")
    rc, err = _infer(capsys, "ck", "--trust-checkpoint")
    assert rc != 0 and "Git LFS pointer" in err and "--trust-checkpoint" not in err


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_code_running_vocoder_file_is_refused_without_offering_a_flag(work, capsys):
    torch.save({"generator": _Payload()}, work / "models" / "nsf_hifigan" / "model")
    for extra in ((), ("--trust-checkpoint",)):
        rc, err = _infer(capsys, "voc", *extra)
        assert rc != 0 and "refused" in err and "print" in err, err
        assert "--trust-checkpoint" not in err and "weights_only" not in err
    assert "pwned" not in capsys.readouterr().out


def test_models_reports_a_placeholder_without_offering_a_flag(work, capsys):
    _place(work, "models/hubert_soft.pt", "html")
    main(["models"])
    out = capsys.readouterr().out
    assert "[BROKEN ] HuBERT-soft content encoder" in out and "web page" in out
    assert "--trust-checkpoint" not in out and "weights_only" not in out


def test_the_command_prints_one_line_and_no_torch_warning(work):
    """The real command in its own process: stderr is the one error line, nothing from torch."""
    _place(work, MODEL_FILES["checkpoint"][1], "truncated-pickle")
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="default")
    proc = run([sys.executable, "-m", "diffsvc", "infer", "song.wav", "--project", "ck", "--quiet",
                "--trust-checkpoint"], cwd=work, env=env, timeout=300)
    err = proc.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1, err
    assert lines[0].startswith("diffsvc infer: error: models/ck/model_ckpt_steps_1000.ckpt: ")
    assert "truncated" in lines[0] and "download" in lines[0] and "--trust-checkpoint" not in lines[0]
