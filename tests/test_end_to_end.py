"""The whole story as a user runs it, through the `diffsvc` command in a fresh folder whose name
has spaces: preprocess, train, kill training, train again (it resumes), infer with --steps, infer
a folder, models, and a few mistakes (each one line on stderr, non-zero exit, nothing written)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from diffsvc.demo.corpus import SINGER_A, SINGER_B, song
from procs import run, started

TINY = {"residual_layers": 2, "residual_channels": 16, "crop_frames": 86, "max_sentences": 4,
        "val_check_interval": 3, "num_ckpt_keep": 2, "log_interval": 1, "num_valid_plots": 0, "ds_workers": 0,
        "content_encoder": "stand-in", "vocoder": "griffin-lim", "sampling_steps": 4}


def diffsvc(*args: str, cwd: Path, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = run([sys.executable, "-m", "diffsvc", *args], cwd=cwd, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"diffsvc {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e") / "my singer project"
    (root / "raw" / "takes 1").mkdir(parents=True)
    for i in range(3):
        wav, _ = song(SINGER_B, 12.0, seed=100 + i)
        sf.write(root / "raw" / "takes 1" / f"take {i}.wav", wav, 44100)
    (root / "songs").mkdir()
    for name, seed in (("phrase one", 1), ("phrase two", 2)):
        wav, _ = song(SINGER_A, 3.0, seed=seed)
        sf.write(root / "songs" / f"{name}.wav", wav, 44100)
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return root


def test_the_whole_story(workspace):
    root = workspace
    out = diffsvc("preprocess", "raw", "--config", "tiny.yaml", "--f0", "parselmouth", "--content", "stand-in",
                  "--min-seconds", "3", "--max-seconds", "6", "--yes", cwd=root)
    assert (root / "raw" / ".diffsvc" / "manifest.json").exists()
    assert "parselmouth" in out.stdout

    # Train in the background and kill it hard once it has saved a checkpoint.
    cmd = [sys.executable, "-m", "diffsvc", "train", "--project", "b", "--config", "tiny.yaml", "--max-steps", "1000",
           "--no-progress"]
    project = root / "models" / "b"
    with started(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        deadline = time.time() + 240
        while time.time() < deadline and not list(project.glob("model_ckpt_steps_*.ckpt")):
            time.sleep(0.5)
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    saved = sorted(int(p.stem.rsplit("_", 1)[1]) for p in project.glob("model_ckpt_steps_*.ckpt"))
    assert saved, "training saved no checkpoint before it was killed"
    killed_at = max(saved)

    # The next run resumes from the newest whole checkpoint and goes on.
    resumed = diffsvc("train", "--project", "b", "--config", "tiny.yaml", "--max-steps", str(killed_at + 3),
                      "--no-progress", cwd=root)
    assert f"model_ckpt_steps_{killed_at + 3}.ckpt" in resumed.stdout + resumed.stderr
    assert (project / f"model_ckpt_steps_{killed_at + 3}.ckpt").exists()
    assert (project / "config.yaml").exists() and (project / "data_stats.json").exists()

    # infer one song with --steps: output named song_PROJECT_steps_N.wav, same length as the input.
    diffsvc("infer", "songs/phrase one.wav", "--steps", str(killed_at + 3), "--f0", "parselmouth", "--seed", "1",
            cwd=root)
    result = root / "output" / f"phrase one_b_steps_{killed_at + 3}.wav"
    assert result.exists()
    assert sf.info(result).frames == sf.info(root / "songs" / "phrase one.wav").frames

    # infer a whole folder (newest checkpoint), then `models` lists the project.
    diffsvc("infer", "songs", "--f0", "parselmouth", "--out", "converted", "--seed", "1", cwd=root)
    assert sorted(p.name for p in (root / "converted").glob("*.wav")) == [
        f"phrase one_b_steps_{killed_at + 3}.wav", f"phrase two_b_steps_{killed_at + 3}.wav"]
    listing = diffsvc("models", cwd=root, check=False)
    assert "b: steps" in listing.stdout and str(killed_at + 3) in listing.stdout


def test_user_mistakes_are_one_clear_line(workspace, tmp_path):
    root = workspace
    before = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert "no such folder" in one_line_error(diffsvc("preprocess", "nope", cwd=root, check=False))
    line = one_line_error(diffsvc("infer", "missing.wav", cwd=root, check=False))
    assert "missing.wav" in line
    (tmp_path / "empty.wav").write_bytes(b"")
    assert "empty.wav" in one_line_error(diffsvc("infer", str(tmp_path / "empty.wav"), cwd=root, check=False))
    (tmp_path / "bad.yaml").write_text("hop_sise: 512\n")
    line = one_line_error(diffsvc("train", "--project", "x", "--config", str(tmp_path / "bad.yaml"), cwd=root,
                                  check=False))
    assert "hop_sise" in line and "bad.yaml" in line
    after = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert after == before  # nothing half-written anywhere
