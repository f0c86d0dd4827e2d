"""Several training processes: a rank whose peer is gone or stuck stops within the bound set by
--dist-timeout, with one line naming itself and what it waited for, and a non-zero exit; it never
waits for ever (before, it waited 30 minutes per collective, and the test that hit it left both
workers hung)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, tiny_config
from diffsvc.config import save_config
from prepared_fixture import write_prepared
from procs import started

N_MELS = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(path: Path, text: str, proc: subprocess.Popen, patience: float = 300.0) -> None:
    """Until `text` appears in the file `path` (a hang guard, not a measurement)."""
    deadline = time.monotonic() + patience
    while text not in path.read_text(errors="replace"):
        assert proc.poll() is None, f"rank 0 exited {proc.returncode} early:\n{path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"'{text}' never came:\n{path.read_text()[-3000:]}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("fate", ["stalled", "killed"])
def test_a_rank_whose_peer_is_gone_or_stuck_stops_with_one_line(tmp_path, fate):
    data = write_prepared(tmp_path / "prepared", n_mels=N_MELS)
    config = tmp_path / "tiny.yaml"
    # validation far away: after the start, the ranks meet only in the collectives of each step
    save_config(tiny_config(audio_num_mel_bins=N_MELS, keep_bins=N_MELS, residual_channels=16, num_valid_plots=0,
                            val_check_interval=100000, log_interval=1000), config)
    port = _free_port()
    cmd = [sys.executable, "-m", "diffsvc", "train", "--project", "p", "--data", str(data), "--config", str(config),
           "--max-steps", "100000", "--batch-size", "2", "--device", "cpu", "--workers", "0", "--no-progress",
           "--dist-timeout", "10"]
    logs = {rank: tmp_path / f"rank{rank}.log" for rank in (0, 1)}

    def env(rank: int) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", RANK=str(rank),
                    LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))

    with open(logs[0], "w") as log0, open(logs[1], "w") as log1, \
            started(cmd, cwd=tmp_path, env=env(0), stdout=log0, stderr=subprocess.STDOUT) as rank0, \
            started(cmd, cwd=tmp_path, env=env(1), stdout=log1, stderr=subprocess.STDOUT) as rank1:
        # Rank 0 reports the batch plan once both ranks have built the model together; then they train.
        _wait_for(logs[0], "2 processes", rank0)
        os.kill(rank1.pid, signal.SIGSTOP if fate == "stalled" else signal.SIGKILL)
        code = rank0.wait(timeout=300)  # a hang guard: without the bound rank 0 would wait 30 minutes
    out = logs[0].read_text()
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert lines[-1].startswith("diffsvc train: error: rank 0 of 2 stops: "), out[-3000:]
    assert sum("error" in line for line in lines) == 1, out[-3000:]
    if fate == "stalled":
        assert "no answer from the other processes within 10 s" in lines[-1] and "--dist-timeout" in lines[-1]
    else:
        assert "the connection to another process broke" in lines[-1]


@pytest.mark.parametrize("value", ["0", "-5", "inf", "nan"])
def test_dist_timeout_must_be_a_positive_number(tmp_path, capsys, monkeypatch, value):
    from diffsvc.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--project", "p", "--dist-timeout", value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("diffsvc train: error: --dist-timeout must be a number of seconds above 0, got ") and \
        "\n" not in err
    assert not (tmp_path / "models").exists()
