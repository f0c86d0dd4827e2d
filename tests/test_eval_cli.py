"""`diffsvc eval` end to end on a tiny random-weight project (tests/infer_fixture.py) and a tiny
prepared-data folder (tests/prepared_fixture.py), on the CPU."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from audio_synth import synth_voice
from diffsvc.cli.main import main
from infer_fixture import write_project
from prepared_fixture import write_prepared

SR = 44100


@pytest.fixture
def work(tmp_path, monkeypatch):
    """models/singer (steps 1000 and 2000, the same weights), data/ (two validation pieces) and song.wav."""
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "singer", steps=(1000, 2000))
    write_prepared(tmp_path / "data", lengths=(40, 48), valid_lengths=(40, 56))
    wav, _ = synth_voice(1.5, SR, f0=[(0.6, 220.0), (0.3, 0.0), (0.6, 330.0)], seed=0)
    sf.write(tmp_path / "song.wav", wav, SR)
    return tmp_path


def run_cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(["eval", "--device", "cpu", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_error_line(rc: int, out: str, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("diffsvc eval: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def no_report(root: Path) -> None:
    folder = root / "models" / "singer"
    assert not any(folder.glob("eval*")) and not any(folder.glob(".*part*"))


def test_all_steps_with_data_and_a_song(work, capsys):
    rc, out, err = run_cli(capsys, "--project", "singer", "--data", "data", "--all-steps", "song.wav")
    assert rc == 0, err
    folder = work / "models" / "singer"
    result = json.loads((folder / "eval.json").read_text())
    rows = result["rows"]
    assert [r["step"] for r in rows] == [1000, 2000]
    for r in rows:
        assert r["recon_pieces"] == 2
        assert r["recon_mcd_db"] > 0 and r["recon_log_mel_l1"] > 0
        for key in ("recon_rpa", "recon_voicing_recall", "rpa", "voicing_recall", "speaker_sim_target",
                    "speaker_sim_source", "content_distance", "rtf_sampling", "rtf_total", "peak_memory_mib"):
            assert key in r, key
        assert r["rtf_total"] > 0 and r["peak_memory_mib"] > 0
        assert 0.0 <= r["content_distance"] <= 2.0
    # the two checkpoints hold the same weights and the start noise is seeded: figures compare
    assert rows[0]["recon_mcd_db"] == rows[1]["recon_mcd_db"]
    assert result["best_step"] in (1000, 2000)
    assert result["settings"]["f0_retracked_with"] != result["settings"]["f0_conditioning"]
    assert result["unavailable"] == []
    with open(folder / "eval.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["step"]) for r in table] == [1000, 2000]
    assert float(table[0]["recon_mcd_db"]) == pytest.approx(rows[0]["recon_mcd_db"])
    assert (folder / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not any(folder.glob(".*part*"))
    assert "MCD" in out and "1000" in out and "2000" in out and "best by reconstruction" in out


def test_without_the_extra_the_rest_is_computed(work, capsys, monkeypatch):
    import diffsvc.evaluation.runner as runner

    monkeypatch.setattr(runner, "load_speaker_encoder", lambda device: None)
    rc, out, err = run_cli(capsys, "--data", "data", "--steps", "2000")
    assert rc == 0, err
    assert "not computed: speaker similarity (pip install 'diffsvc[eval]'" in err
    assert "not computed: song figures" in err  # no SONG given
    result = json.loads((work / "models" / "singer" / "eval.json").read_text())
    (row,) = result["rows"]
    assert row["step"] == 2000 and math.isfinite(row["recon_mcd_db"]) and "recon_rpa" in row
    assert not any(k.startswith("speaker") or k == "recon_speaker_sim" for k in row)
    assert not (work / "models" / "singer" / "eval.png").exists()  # one checkpoint: no plot


def test_an_original_diffsvc_config_is_evaluated(work, capsys):
    """The original's config.yaml keys (task_cls, use_crepe, ...) beside the checkpoints."""
    path = work / "models" / "singer" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg.update(task_cls="training.task.SVC_task.SVCTask", binarizer_cls="preprocessing.SVCpre.SVCBinarizer",
               use_crepe=False, enc_layers=4, datasets=[], raw_data_dir="data/raw/singer")
    cfg.pop("f0_extractor", None)
    path.write_text(yaml.safe_dump(cfg))
    rc, out, err = run_cli(capsys, "--data", "data", "--steps", "1000", "--max-pieces", "1")
    assert rc == 0, err
    result = json.loads((work / "models" / "singer" / "eval.json").read_text())
    assert result["settings"]["f0_conditioning"] == "parselmouth"
    assert result["rows"][0]["recon_pieces"] == 1


def test_bad_inputs_get_one_line(work, capsys):
    one_error_line(*run_cli(capsys, "--project", "nobody", "--data", "data"), "nobody")
    one_error_line(*run_cli(capsys, "--steps", "5", "--data", "data"), "no checkpoint for step 5", "1000, 2000")
    one_error_line(*run_cli(capsys, "--data", "nowhere"), "nowhere", "no prepared data")
    one_error_line(*run_cli(capsys), "nothing to evaluate", "--data")
    one_error_line(*run_cli(capsys, "--data", "data", "missing.wav"), "missing.wav", "not found")
    (work / "text.wav").write_text("not audio at all " * 20)
    one_error_line(*run_cli(capsys, "--data", "data", "text.wav"), "text.wav", "not a readable audio file")
    one_error_line(*run_cli(capsys, "--data", "data", "--sampling-steps", "0"), "--sampling-steps")
    (work / "models" / "singer" / "model_ckpt_steps_3000.ckpt").write_bytes(b"not a checkpoint")
    one_error_line(*run_cli(capsys, "--data", "data", "--steps", "3000"), "model_ckpt_steps_3000.ckpt")
    no_report(work)


def test_data_made_with_other_mel_settings_is_refused(work, capsys):
    manifest = work / "data" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["mel"]["hop_size"] = 256
    manifest.write_text(json.dumps(data))
    one_error_line(*run_cli(capsys, "--data", "data"), "hop_size=256")
    no_report(work)


def test_silent_song_is_scored_without_errors(work, capsys):
    sf.write(work / "silence.wav", np.zeros(SR, dtype=np.float32), SR)
    rc, out, err = run_cli(capsys, "--steps", "1000", "silence.wav")
    assert rc == 0, err
    (row,) = json.loads((work / "models" / "singer" / "eval.json").read_text())["rows"]
    assert row["voicing_recall"] is None and row["rpa"] is None  # nothing voiced: n/a, not a crash
    assert row["voicing_false_alarm"] == 0.0
    assert "n/a" in out


def test_eval_report_names_the_cpu_runtime_it_ran(tmp_path, monkeypatch):
    """`auto` picks bf16, onnxruntime or torch by machine: the report says which ran."""
    from diffsvc.cpu_runtime import resolve_cpu_runtime
    from infer_fixture import eval_settings_of_a_tone

    monkeypatch.chdir(tmp_path)
    settings = eval_settings_of_a_tone(tmp_path, "nsf", vocoder="nsf-hifigan")
    assert settings["cpu_runtime"] == resolve_cpu_runtime("auto", "cpu")


def test_a_song_folder_without_audio_is_said_before_the_model_is_looked_for(tmp_path, monkeypatch, capsys):
    """As preprocess and infer: the most basic input problem first (no models/ here at all, which eval
    said instead), naming the folder and what to do."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "songs").mkdir()
    (tmp_path / "songs" / "notes.txt").write_text("lyrics")
    for command in ("eval", "infer"):
        rc = main([command, "songs", "--device", "cpu"])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert rc == 2 and len(err) == 1, err
        assert err[0].startswith(f"diffsvc {command}: error: songs: no audio files in this folder"), err
        assert "name the songs, or a folder that holds them" in err[0] and "project" not in err[0], err
