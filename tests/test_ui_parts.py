"""The web page's own parts, without a browser: the f0 edit, the training progress file, the job
runner (exit status, the one error line, one training at a time) and the command's defaults."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from diffsvc.errors import DiffSvcError
from diffsvc.training.progress_file import ProgressFile, read_progress
from diffsvc.ui.f0edit import shift_range, unvoice_range
from diffsvc.ui.jobs import JobStore, error_line


def test_shift_moves_only_voiced_frames_in_the_range():
    times = np.arange(10) * 0.1
    f0 = np.array([100, 100, 0, 100, 100, 100, 0, 100, 100, 100], dtype=np.float32)
    up = shift_range(f0, times, 0.25, 0.65, 12)
    np.testing.assert_allclose(up, [100, 100, 0, 200, 200, 200, 0, 100, 100, 100])
    down = shift_range(f0, times, 0.0, 0.15, -7)
    np.testing.assert_allclose(down[:2], 100 * 2 ** (-7 / 12), rtol=1e-6)
    assert np.array_equal(unvoice_range(f0, times, 0.3, 0.5), [100, 100, 0, 0, 0, 100, 0, 100, 100, 100])
    assert f0[3] == 100  # the input is not changed
    with pytest.raises(DiffSvcError, match="end must come after"):
        shift_range(f0, times, 0.5, 0.5, 12)
    with pytest.raises(DiffSvcError, match="holds no frame"):
        unvoice_range(f0, times, 5.0, 6.0)


def test_progress_file_appends_across_runs_and_keeps_the_last_row_per_step(tmp_path):
    path = tmp_path / "p.csv"
    rec = lambda step, loss: SimpleNamespace(step=step, loss=loss, lr=1e-3, grad_norm=1.0, seconds=0.1)  # noqa: E731
    first = ProgressFile(path)
    for s in (1, 2, 3):
        first(rec(s, 1.0 / s))
    first.close()
    again = ProgressFile(path)  # a resumed run starts again from its checkpoint's step
    again(rec(3, 0.25))
    again(rec(4, 0.2))
    again.close()
    with open(path, "a") as f:
        f.write("5,0.1")  # a half-written row while the trainer writes... still a number
        f.write("\n6,")  # ... and one cut off
    steps, losses = read_progress(path)
    assert steps == [1, 2, 3, 4, 5] and losses[2] == 0.25 and losses[-1] == 0.1
    assert read_progress(tmp_path / "missing.csv") == ([], [])


def _wait(job, timeout=60):
    deadline = time.time() + timeout
    while job.state() == "running" and time.time() < deadline:
        time.sleep(0.1)
    return job.state()


def test_a_failing_command_gives_its_own_error_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = JobStore(tmp_path / "state")
    job = store.start("convert", "convert nothing", [["infer", str(tmp_path / "missing.wav")]])
    assert _wait(job) == "failed"
    assert job.error() == f"diffsvc infer: error: {tmp_path / 'missing.wav'}: audio file not found; check the path"
    assert error_line("x\r  3%|#  | 1/30\rdiffsvc train: error: out of disk\n") == "diffsvc train: error: out of disk"


def test_one_training_at_a_time(tmp_path):
    from procs import started

    from diffsvc.ui.jobs import Job

    store = JobStore(tmp_path / "state")
    done = store.start("train", "training a", [["--version"]])
    assert _wait(done) == "done"  # a finished training does not block the next
    # a training still at work: a process in its own group, named by its job folder like the runner
    folder = store.new_folder("train")
    with started([sys.executable, "-c", "import time; time.sleep(60)", str(folder)]) as proc:
        store._write(Job(folder, "train", "training b", [], proc.pid, time.time()))
        assert store.get(folder.name).state() == "running"
        with pytest.raises(DiffSvcError, match=r"a training is already running \(training b\)"):
            store.start("train", "training c", [["--version"]])
        store.stop(store.get(folder.name))
        proc.wait(timeout=10)
        assert store.get(folder.name).state() == "stopped"
        assert store.running("train") == []


def test_stop_signals_the_runner_and_leaves_its_workers_to_it(tmp_path):
    """Stop on a training with data-loader workers (the original's config has ds_workers: 4): the
    runner gets SIGTERM and its children are still alive when it handles it (the trainer saves a
    checkpoint, then ends its workers). Signalling the whole group killed the workers first and
    `diffsvc train` failed with "DataLoader worker ... is killed by signal" and no checkpoint."""
    from procs import started

    from diffsvc.ui.jobs import Job

    store = JobStore(tmp_path / "state")
    folder = store.new_folder("train")
    # the runner's worker stays in the runner's process group, which `started` kills on leaving
    runner = ("import signal, subprocess, sys, time\n"
              "child = getattr(subprocess, 'Popen')([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "def stop(*_):\n"
              "    time.sleep(0.5)\n"
              "    open(sys.argv[1] + '/worker-alive', 'w').write(str(child.poll() is None))\n"
              "    child.terminate()\n"
              "    sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, stop)\n"
              "open(sys.argv[1] + '/ready', 'w').close()\n"
              "time.sleep(60)\n")
    with started([sys.executable, "-c", runner, str(folder)]) as proc:
        deadline = time.time() + 60
        while not (folder / "ready").exists() and time.time() < deadline:
            time.sleep(0.05)
        store._write(Job(folder, "train", "training w", [], proc.pid, time.time()))
        store.stop(store.get(folder.name))
        assert proc.wait(timeout=30) == 0
    assert (folder / "worker-alive").read_text() == "True"


def test_ui_listens_on_this_machine_only_by_default():
    from diffsvc.cli.main import _parser_with_arguments

    args = _parser_with_arguments(["ui"]).parse_args(["ui"])
    assert args.host == "127.0.0.1" and args.share is False
    args = _parser_with_arguments(["ui"]).parse_args(["ui", "--host", "0.0.0.0", "--port", "8080", "--share"])
    assert (args.host, args.port, args.share) == ("0.0.0.0", 8080, True)


def test_latest_validation_is_read_back_from_the_tensorboard_logs(tmp_path):
    import io

    import soundfile as sf
    import torch

    from diffsvc.training.logging import TrainLogger
    from diffsvc.ui.tblog import latest_validation

    assert latest_validation(tmp_path / "none") == (None, None, None)
    logger = TrainLogger(tmp_path / "logs")
    mel = np.zeros((20, 8), dtype=np.float32)
    for step in (10, 20):
        logger.mel_image("mel/0", mel, mel + step, step)
        logger.audio("audio/0_sampled", torch.full((441 * step,), 0.1), step, 44100)
    logger.close()
    step, png, wav = latest_validation(tmp_path / "logs")
    assert step == 20 and png.startswith(b"\x89PNG")
    assert sf.info(io.BytesIO(wav)).frames == 441 * 20


def test_the_loss_curve_keeps_the_steps_trained_before_the_page_started_training(tmp_path):
    """A project trained at a terminal (`diffsvc demo`, `diffsvc train`) and resumed from the page:
    its curve starts at step 1 (TensorBoard's train/loss every log_interval steps), not at the
    resumed step; where the page's own progress file has rows, those win."""
    from diffsvc.training.logging import TrainLogger
    from diffsvc.ui.tblog import logged_loss, loss_curve

    assert logged_loss(tmp_path / "none") == ([], [])
    logger = TrainLogger(tmp_path / "logs")
    for step in range(20, 201, 20):
        logger.scalars({"train/loss": 1.0 / step, "train/lr": 1e-3}, step)
    logger.close()
    rec = lambda step, loss: SimpleNamespace(step=step, loss=loss, lr=1e-3, grad_norm=1.0, seconds=0.1)  # noqa: E731
    progress = ProgressFile(tmp_path / "p.csv")
    for step in (181, 182, 201, 202):
        progress(rec(step, 0.5))
    progress.close()
    logged = logged_loss(tmp_path / "logs")
    assert logged[0] == list(range(20, 201, 20)) and logged[1][0] == pytest.approx(1 / 20)
    steps, losses = loss_curve(read_progress(tmp_path / "p.csv"), logged)
    assert steps == [20, 40, 60, 80, 100, 120, 140, 160, 180, 181, 182, 201, 202]
    assert losses[:2] == pytest.approx([1 / 20, 1 / 40]) and losses[-4:] == [0.5] * 4
    assert loss_curve(([], []), logged) == logged  # nothing trained from the page yet
    assert loss_curve(read_progress(tmp_path / "p.csv"), ([], []))[0] == [181, 182, 201, 202]


def test_the_conversion_picture_labels_f0_in_plain_hz(tmp_path, monkeypatch):
    """The mel+f0 picture the Convert tab shows (`infer --plot`): a sung f0 curve spans less than a
    decade, where a log axis's default labels read 2 x 10^2; the Pitch tab's picture and this one
    share one f0 axis, labelled 200, 210, ..."""
    import re

    import matplotlib.figure

    from diffsvc.inference.plot import write_plot

    labels: list[str] = []
    save = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        fig.canvas.draw()
        f0_ax = fig.axes[2]
        labels.extend(t.get_text() for t in f0_ax.get_yticklabels() + f0_ax.get_yticklabels(minor=True)
                      if t.get_text())
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    t = np.arange(200)
    f0 = (200 + 5 * np.sin(t / 10)).astype(np.float32)
    mel = np.zeros((200, 16), dtype=np.float32)
    write_plot(tmp_path / "p.png", mel, mel, f0, f0, 512, 44100)
    assert labels and all(re.fullmatch(r"\d+(\.\d+)?", label) for label in labels), labels


def _eval_result(steps, mcd):
    rows = [{"step": s, "checkpoint": f"model_ckpt_steps_{s}.ckpt", "recon_log_mel_l1": 0.5, "recon_mcd_db": m,
             "recon_pieces": 2, "peak_memory_mib": 512.0} for s, m in zip(steps, mcd)]
    from diffsvc.evaluation.runner import best_step

    return {"project": "singer", "settings": {}, "rows": rows, "songs": [], "best_step": best_step(rows),
            "unavailable": ["song figures: pitch, speaker, content, speed (no SONG given)"]}


def test_the_page_reads_the_table_and_best_checkpoint_that_eval_wrote(tmp_path):
    from diffsvc.evaluation.report import write_report
    from diffsvc.ui.evaltable import BEST_MARK, read_eval

    assert read_eval(tmp_path) is None  # never evaluated
    write_report(_eval_result([1000, 2000, 3000], [6.0, 4.5, float("nan")]), tmp_path)
    view = read_eval(tmp_path)
    assert view.head == ["step", "L1", "MCD", "mem"]
    assert [row[0] for row in view.body] == ["1000", f"2000{BEST_MARK}", "3000"]
    assert view.body[2][2] == "n/a" and view.body[1][2] == "4.5"
    assert (view.best_step, view.best_checkpoint) == (2000, "model_ckpt_steps_2000.ckpt")
    assert view.legend[1] == "MCD: reconstruction MCD (dB, lower is better)"
    assert view.unavailable == ["song figures: pitch, speaker, content, speed (no SONG given)"]
    assert view.plot == tmp_path / "eval.png" and view.plot.read_bytes()[:4] == b"\x89PNG"
    # a later run of one checkpoint writes no figure: the older eval.png is not shown with it
    write_report(_eval_result([3000], [5.0]), tmp_path)
    view = read_eval(tmp_path)
    assert view.plot is None and view.best_step == 3000 and view.body == [[f"3000{BEST_MARK}", "0.5", "5", "512"]]
    (tmp_path / "eval.json").write_text('{"rows": [{"no step": 1}]}')
    with pytest.raises(DiffSvcError, match=r"eval\.json: not an evaluation written by diffsvc eval"):
        read_eval(tmp_path)


def test_the_page_asks_eval_for_what_its_fields_say(tmp_path):
    from diffsvc.cli.main import _parser_with_arguments
    from diffsvc.ui.evaltable import eval_command

    argv = eval_command(tmp_path / "models", "singer", tmp_path / "raw", True, 2, 0, "cpu", [tmp_path / "a b.wav"])
    args = _parser_with_arguments(argv).parse_args(argv)
    assert (args.project, args.models_dir, args.data, args.all_steps) == ("singer", str(tmp_path / "models"),
                                                                          tmp_path / "raw", True)
    assert (args.max_pieces, args.sampling_steps, args.device, args.songs) == (2, None, "cpu", [str(tmp_path / "a b.wav")])
    argv = eval_command(tmp_path / "models", "singer", tmp_path / "raw", False, None, 4, "auto")
    args = _parser_with_arguments(argv).parse_args(argv)
    assert (args.all_steps, args.max_pieces, args.sampling_steps, args.device, args.songs) == (False, 8, 4, "auto", [])


def test_a_multi_singer_project_gets_its_singers_and_the_command_carries_speaker(tmp_path, monkeypatch, capsys):
    """The Convert tab reads the singer table from the project and passes the choice (or the blend)
    to `diffsvc infer --speaker`; a bad choice is infer's own line, before any job starts."""
    import soundfile as sf

    from audio_synth import synth_voice
    from diffsvc.cli.main import main
    from diffsvc.ui.app import UiContext, check_settings, infer_command, singer_choices
    from infer_fixture import write_project

    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "duo", steps=(1000,), speakers=["alto", "tenor"])
    write_project(tmp_path, "solo", steps=(1000,))
    ctx = UiContext(tmp_path / "models", tmp_path / "state")
    assert singer_choices(ctx, "duo") == ["alto", "tenor"]
    assert singer_choices(ctx, "solo") == [] and singer_choices(ctx, None) == []

    def command(project, singer=None, blend=None):
        settings = check_settings(ctx, project, None, "0", 0, 0, singer, blend)
        settings.update(format="wav", device="cpu")
        return settings, infer_command(ctx, tmp_path / "song.wav", tmp_path / "out.wav", settings)

    _, argv = command("duo", "tenor")
    assert argv[argv.index("--speaker") + 1] == "tenor"
    settings, argv = command("duo", "tenor", " alto:0.7,tenor:0.3 ")  # a typed blend wins over the dropdown
    assert argv[argv.index("--speaker") + 1] == "alto:0.7,tenor:0.3" and settings["singer_label"] == "alto70-tenor30"
    _, argv = command("solo", "tenor", "alto:1")  # hidden fields of a previous project are not sent
    assert "--speaker" not in argv

    # errors: the same line infer itself prints (its parse_speaker), checked before any job starts
    for blend, message in (("bass:1", "no singer named 'bass'"), ("alto:lots", "weight of 'alto' must be a number")):
        with pytest.raises(DiffSvcError, match=message) as caught:
            command("duo", "alto", blend)
        bad = {"project": "duo", "step": 1000, "key": "0", "format": "wav", "speaker": blend}
        sf.write(tmp_path / "song.wav", synth_voice(0.3, 44100, f0=220.0, seed=3)[0], 44100)
        assert main(infer_command(ctx, tmp_path / "song.wav", tmp_path / "bad.wav", bad)) != 0
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"diffsvc infer: error: {caught.value}"

    # the real command accepts what the page builds and converts as the chosen singer
    _, argv = command("duo", "alto")
    assert main(argv + ["--quiet"]) == 0, capsys.readouterr().err
    assert sf.info(tmp_path / "out.wav").duration == pytest.approx(0.3, abs=0.02)


def test_a_port_in_use_is_one_line_before_anything_is_printed(tmp_path, monkeypatch, capsys):
    """The port is taken: `diffsvc ui` said it listened, then ended in gradio's traceback."""
    import socket

    from diffsvc.cli.main import main

    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["ui", "--port", str(port)])
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and f"--port {port}: cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in out.err and "http://" not in out.out


def test_listening_beyond_this_machine_is_said_and_the_address_is_one_to_open():
    from diffsvc.cli.ui import listening_lines

    local = listening_lines("127.0.0.1", 7860, "models", False)
    assert local == ["diffsvc ui: http://127.0.0.1:7860 (models in models)"]
    wide = listening_lines("0.0.0.0", 7860, "models", False)
    assert wide[0].startswith("diffsvc ui: http://127.0.0.1:7860")
    assert "WARNING: listening on 0.0.0.0" in wide[1] and "anyone who can reach this machine" in wide[1]


@pytest.mark.parametrize("value, message", [(None, "Semitones: empty"), ("", "Semitones: empty"),
                                            ("abc", "is not a number"), (float("inf"), "not a finite number")])
def test_an_empty_or_nonsense_pitch_field_is_refused_not_taken_as_zero(value, message):
    from diffsvc.ui.app import number_field

    with pytest.raises(DiffSvcError, match=message):
        number_field(value, "Semitones")
    assert number_field("-3", "Semitones") == -3.0 and number_field(0, "From") == 0.0


def test_a_training_that_cannot_start_is_refused_before_any_job(tmp_path):
    """What `diffsvc train` refuses before its first step is checked by the page before it starts a
    job (and says "started"): no folder, no prepared data, data of other singers than the project's,
    a missing base config; data that fits passes."""
    from diffsvc.ui.app import UiContext, check_training
    from infer_fixture import write_project
    from prepared_fixture import write_prepared

    write_project(tmp_path, "duo", steps=(1000,), speakers=["alto", "tenor"])
    write_project(tmp_path, "solo", steps=(1000,))
    write_prepared(tmp_path / "raw" / ".diffsvc")  # one singer
    (tmp_path / "songs").mkdir()
    ctx = UiContext(tmp_path / "models", tmp_path / "state")
    for name, data, config, message in (
            ("solo", str(tmp_path / "nowhere"), "", "nowhere: no such folder"),
            ("solo", str(tmp_path / "songs"), "", "songs/.diffsvc: no prepared data here"),
            ("duo", str(tmp_path / "raw"), "", "the data holds one singer but .* was made for the singers alto, tenor"),
            ("new", str(tmp_path / "raw"), str(tmp_path / "base.yaml"), "base.yaml: config file not found")):
        with pytest.raises(DiffSvcError, match=message):
            check_training(ctx, name, data, config)
    for max_steps, batch, message in ((-5, 0, "Stop at step must be 0 .* got -5"), (0, -1, "Batch size must be 0")):
        with pytest.raises(DiffSvcError, match=message):
            check_training(ctx, "solo", str(tmp_path / "raw"), "", max_steps, batch)
    check_training(ctx, "solo", str(tmp_path / "raw"), "", 0, 0)
    assert ctx.jobs.all() == []


def test_files_dropped_in_the_page_keep_their_names_in_its_lines(tmp_path, monkeypatch):
    """Gradio keeps an upload at GRADIO_TEMP_DIR/<hash>/NAME; a line naming it names NAME. A job's copy
    keeps the name too (two same-named files: the second in in/1/), so the command's line, shortened
    by the page, names the file as dropped (eval's copies were 0_NAME, 1_NAME)."""
    from diffsvc.ui.app import UiContext, _fail, _short, copy_uploads

    uploads = tmp_path / "gradio-tmp"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    dropped = []
    for digest in ("3f2a9c", "77b0e1"):
        (uploads / digest).mkdir(parents=True)
        (uploads / digest / "take 1.wav").write_bytes(digest.encode())
        dropped.append(str(uploads / digest / "take 1.wav"))
    line = _fail(f"{dropped[0]}: line 2: expected 'time_s,f0_hz' numbers")
    assert "take 1.wav: line 2" in line and str(uploads) not in line and "3f2a9c" not in line, line

    ctx = UiContext(tmp_path / "models", tmp_path / "state")
    folder = ctx.jobs.new_folder("eval")
    copies = copy_uploads([dropped[0], SimpleNamespace(name=dropped[1])], folder / "in")
    assert [c.read_bytes() for c in copies] == [b"3f2a9c", b"77b0e1"]
    for copy in copies:
        assert _short(ctx, f"diffsvc eval: error: {copy}: not a readable audio file") == \
            "diffsvc eval: error: take 1.wav: not a readable audio file"


def test_a_multi_singer_checkpoint_without_its_config_is_said_where_the_singers_would_be(tmp_path):
    from diffsvc.ui.app import UiContext, singer_choices, singer_problem
    from infer_fixture import write_project

    write_project(tmp_path, "duo", steps=(1000,), speakers=["alto", "tenor"])
    write_project(tmp_path, "solo", steps=(1000,))
    ctx = UiContext(tmp_path / "models", tmp_path / "state")
    assert singer_problem(ctx, "duo") == singer_problem(ctx, "solo") == singer_problem(ctx, None) == ""
    (tmp_path / "models" / "duo" / "config.yaml").unlink()
    assert singer_choices(ctx, "duo") == []  # nothing to pick from...
    assert "model_ckpt_steps_1000.ckpt: no config.yaml beside it" in singer_problem(ctx, "duo")  # ...and why
