"""The web page: Convert, Pitch, Data & training (with evaluation) and Models tabs (Gradio Blocks).

Nothing here converts, preprocesses, trains or evaluates: every step is the `diffsvc` command itself, run as a
background job (jobs.py) with the options a user would type, and its files are shown. What the
page computes itself is only what the command line leaves to an editor: the f0 edit (f0edit.py)
and the pictures.

Every handler returns one readable line on failure (`_fail`), never a stack trace.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from diffsvc.errors import DiffSvcError
from diffsvc.ui.jobs import Job, JobStore

F0_METHODS = ("crepe", "crepe-tiny", "parselmouth", "fcpe")
SAMPLERS = ("ddim", "dpm-solver++", "plms", "ddpm")
CONTENT = ("hubert-soft", "contentvec", "stand-in")
DEFAULT = "project default"
POLL_S = 0.5
LOG_LINES = 40
EVAL_WHICH = {"all checkpoints": True, "newest only": False}  # label -> diffsvc eval --all-steps


class UiContext:
    """Where things are: the models folder (projects) and the page's state folder (jobs)."""

    def __init__(self, models_dir: str | os.PathLike = "models", state_dir: str | os.PathLike | None = None):
        self.models_dir = Path(models_dir).resolve()
        self.state_dir = Path(state_dir).resolve() if state_dir else self.models_dir / ".ui"
        self.jobs = JobStore(self.state_dir)


# ---------------------------------------------------------------- messages

def _ok(text: str) -> str:
    return f'<div class="diffsvc-ok">{_escape(text)}</div>' if text else ""


def _fail(text: str) -> str:
    return f'<div class="diffsvc-error" role="alert"><b>Error:</b> {_escape(upload_names(text))}</div>'


def _warn(text: str) -> str:
    return f'<div class="diffsvc-warn">{_escape(text)}</div>'


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _message_of(e: BaseException) -> str:
    if isinstance(e, DiffSvcError):
        return str(e)
    return f"unexpected {type(e).__name__}: {e}"


def number_field(value, name: str) -> float:
    """A number typed in the page, as float; DiffSvcError (one line naming the field) when it is
    empty or not a finite number (an empty field is not 0: a shift by nothing would count as an edit)."""
    import math

    if value is None or (isinstance(value, str) and not value.strip()):
        raise DiffSvcError(f"{name}: empty; type a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DiffSvcError(f"{name}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DiffSvcError(f"{name}: {value!r} is not a finite number")
    return number


def friendly(n_outputs: int):
    """A handler whose first output is the status line: any exception becomes that one line and
    the other outputs stay as they are."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            import gradio as gr

            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - shown as one line, never a trace
                return (_fail(_message_of(e)),) + tuple(gr.skip() for _ in range(n_outputs - 1))
        return inner
    return wrap


def upload_folders() -> list[str]:
    """Where gradio keeps the files dropped in the page (gradio.utils.get_upload_folder: GRADIO_TEMP_DIR,
    else TMPDIR/gradio resolved), each file in a folder named by its hash; as given and resolved."""
    import tempfile

    folder = os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")
    return sorted({folder.rstrip(os.sep), os.path.realpath(folder)}, key=len, reverse=True)


def upload_names(text: str) -> str:
    """Paths of uploads in a message (UPLOADS/<hash>/take 1.wav; `diffsvc ui` sets GRADIO_TEMP_DIR to
    STATE_DIR/uploads) shortened to the file's own name, the one the user dropped; nothing else changes."""
    for folder in upload_folders():
        text = re.sub(re.escape(folder) + r"/[^/\s]+/", "", text)
    return text


def _short(ctx: UiContext, text: str) -> str:
    """Job-folder paths in messages shortened to the file's own name (an input copied into the job's
    in/ folder, or into in/N/ when two dropped files share a name)."""
    return re.sub(re.escape(str(ctx.jobs.root)) + r"/[^/\s]+/(in|out)/(\d+/)?", "", text)


def copy_uploads(files, folder: Path) -> list[Path]:
    """Copy files dropped in the page into a job's folder, each under its own name (the one the user
    knows, which the command's messages then give): folder/NAME, or folder/N/NAME for the N-th file
    when an earlier one has that name."""
    copied = []
    for i, f in enumerate(files or []):
        source = Path(f if isinstance(f, (str, os.PathLike)) else f.name)  # a path, or gradio's file object
        target = folder / source.name
        if target.exists():
            target = folder / str(i) / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied.append(target)
    return copied


def log_tail(job: Job, lines: int = LOG_LINES) -> str:
    """The end of a job's log as a terminal would show it (a progress bar's \\r updates collapsed)."""
    text = job.log_text(60_000)
    shown = [line.rsplit("\r", 2)[-2] if line.endswith("\r") and line.count("\r") > 1 else line.rsplit("\r", 1)[-1]
             for line in text.split("\n")]
    return "\n".join(line for line in shown[-lines:])


def _state_line(ctx: UiContext, job: Job) -> str:
    state = job.state()
    if state == "failed":
        return _fail(_short(ctx, job.error()))
    if state == "running":
        frac, desc = job.progress()
        return _ok(f"{job.title}: running, {desc} ({frac:.0%})")
    if state == "stopped":
        return _ok(f"{job.title}: stopped")
    return _ok(f"{job.title}: done")


def _wait(job: Job, progress, measure=None) -> None:
    """Follow a job in the page's progress bar until it ends (the job goes on if the tab closes);
    measure(job) -> (fraction, description) when the job's log has no progress bar to read."""
    while job.state() == "running":
        frac, desc = (measure or Job.progress)(job)
        progress(frac, desc=desc)
        time.sleep(POLL_S)


# ---------------------------------------------------------------- projects

def project_choices(ctx: UiContext) -> list[str]:
    from diffsvc.inference.project import list_projects

    return list_projects(ctx.models_dir)


def step_choices(ctx: UiContext, project: str | None) -> list[str]:
    from diffsvc.checkpoint import find_checkpoints

    if not project:
        return []
    return [str(s) for s in sorted(find_checkpoints(ctx.models_dir / project), reverse=True)]


def singer_choices(ctx: UiContext, project: str | None) -> list[str]:
    """The project's singers (its config.yaml's table, row order); [] for a one-singer project."""
    from diffsvc.inference.singers import project_singers

    return project_singers(ctx.models_dir / project) if project else []


def singer_problem(ctx: UiContext, project: str | None) -> str:
    """Why the project's singers cannot be read ('' when they can): the line infer gives for its newest
    checkpoint (no config.yaml beside it, an unreadable one). The page shows it where the singer
    picker would be, so that a multi-singer checkpoint without its config is never offered as a
    model with no singer to choose."""
    from diffsvc.inference.project import choose_checkpoint
    from diffsvc.inference.singers import singers_beside

    if not project:
        return ""
    try:
        singers_beside(choose_checkpoint(ctx.models_dir, project, None).path)
    except DiffSvcError as e:
        return str(e)
    return ""


def project_config(ctx: UiContext, project: str):
    from diffsvc.config import load_config

    return load_config(ctx.models_dir / project / "config.yaml")


# ---------------------------------------------------------------- convert

def infer_command(ctx: UiContext, song: Path, out: Path, settings: dict, f0_in: Path | None = None) -> list[str]:
    """The `diffsvc infer` command line for one song: the same options a user would type."""
    argv = ["infer", str(song), "--models-dir", str(ctx.models_dir), "--project", settings["project"],
            "--key", str(settings["key"]), "--format", settings["format"], "--out", str(out), "--plot",
            "--f0-out", str(out.with_suffix(".f0.csv")), "--progress", "--overwrite"]
    if settings.get("step") and settings.get("sampler") != "consistency":
        # the page's step is one of the teacher's checkpoints; with the consistency sampler infer's
        # --steps picks the *student's* checkpoint, so the project's newest student converts instead
        argv += ["--steps", str(settings["step"])]
    if settings.get("f0_method") not in (None, "", DEFAULT):
        argv += ["--f0", settings["f0_method"]]
    if settings.get("sampler") not in (None, "", DEFAULT):
        argv += ["--sampler", settings["sampler"]]
    if settings.get("sampling_steps"):
        argv += ["--sampling-steps", str(int(settings["sampling_steps"]))]
    if settings.get("shallow"):
        argv += ["--shallow", str(int(settings["shallow"]))]
    if settings.get("device") not in (None, "", "auto"):
        argv += ["--device", settings["device"]]
    if settings.get("speaker"):
        argv += ["--speaker", settings["speaker"]]
    if f0_in is not None:
        argv += ["--f0-in", str(f0_in)]
    return argv


def speaker_text(singers: list[str], singer: str | None, blend: str | None) -> str | None:
    """What the page passes as `diffsvc infer --speaker`: the blend when one is typed, else the
    chosen singer; None for a one-singer project (infer refuses --speaker there)."""
    if len(singers) < 2:
        return None
    blend = (blend or "").strip()
    return blend or (singer or None)


def check_settings(ctx: UiContext, project: str | None, step: str | None, key: str, sampling_steps, shallow,
                   singer: str | None = None, blend: str | None = None) -> dict:
    """Everything cheap to check before a job starts (the command checks again). A multi-singer
    project's singer or blend is checked by infer's own parse_speaker (its one line)."""
    from diffsvc.inference.keyshift import parse_key
    from diffsvc.inference.project import choose_checkpoint
    from diffsvc.model.speakers import parse_speaker

    if not project:
        projects = project_choices(ctx)
        if not projects:
            raise DiffSvcError(f"{ctx.models_dir}: no trained project yet; train one in the Data & training tab")
        raise DiffSvcError("choose a project")
    parse_key(str(key).strip() or "0")
    choice = choose_checkpoint(ctx.models_dir, project, int(step) if step else None)
    for name, value in (("sampling steps", sampling_steps), ("shallow start", shallow)):
        if value not in (None, "") and int(value) < 0:
            raise DiffSvcError(f"{name} must be 0 (the default) or more, got {value}")
    from diffsvc.inference.singers import singers_beside

    singers = singers_beside(choice.path)  # no config.yaml: that line, never "one singer"
    speaker = speaker_text(singers, singer, blend)
    chosen = parse_speaker(speaker, singers)
    return {"project": project, "step": choice.step, "key": str(key).strip() or "0", "speaker": speaker,
            "singer_label": chosen.label if chosen is not None else ""}


def blend_example(singers: list[str]) -> str:
    """The blend box's hint, in `--speaker`'s syntax, with the project's own singer names."""
    if len(singers) < 2:
        return ""
    return f"e.g. {singers[0]}:0.7,{singers[1]}:0.3"


def start_conversion(ctx: UiContext, songs: list[Path], settings: dict, f0_in: dict | None = None,
                     title: str | None = None) -> Job:
    """One job converting each song in turn (a failing song does not stop the others)."""
    if not songs:
        raise DiffSvcError("drop one or more songs first")
    folder = ctx.jobs.new_folder("convert")
    (folder / "in").mkdir()
    (folder / "out").mkdir()
    commands, outputs = [], []
    for song, target in zip(songs, copy_uploads(songs, folder / "in")):
        name = Path(song).name
        tag = "_".join(filter(None, (settings["project"], settings.get("singer_label"))))  # as infer names it
        out = folder / "out" / target.parent.relative_to(folder / "in") / \
            f"{target.stem}_{tag}_steps_{settings['step']}.{settings['format']}"
        out.parent.mkdir(parents=True, exist_ok=True)
        edited = (f0_in or {}).get(str(song))
        commands.append(infer_command(ctx, target, out, settings, Path(edited) if edited else None))
        outputs.append({"song": name, "input": str(target), "output": str(out)})
    names = ", ".join(o["song"] for o in outputs)
    return ctx.jobs.start("convert", title or f"convert {names}", commands,
                          meta={"settings": settings, "outputs": outputs, "keep_going": True}, folder=folder)


def conversion_results(job: Job | None) -> list[dict]:
    """The finished outputs of a conversion job: song, output, f0 CSV, plot."""
    if job is None:
        return []
    results = []
    for item in job.meta.get("outputs", []):
        out = Path(item["output"])
        if out.is_file():
            results.append({**item, "f0": str(out.with_suffix(".f0.csv")), "plot": str(out.with_suffix(".png")),
                            "label": f"{item['song']} -> {os.path.relpath(out, job.folder / 'out')}"})
    return results


# ---------------------------------------------------------------- pitch

def load_curve(ctx: UiContext, item: dict, settings: dict, edited: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(times s, f0 Hz) of a converted song: its edited curve when there is one, else as extracted."""
    from diffsvc.inference.f0_io import frame_times, read_f0_csv

    config = project_config(ctx, settings["project"])
    original = Path(item["f0"])
    n_frames = sum(1 for _ in open(original, encoding="utf-8")) - 1
    path = edited_path(item) if edited and edited_path(item).is_file() else original
    f0 = read_f0_csv(path, n_frames, config.hop_size, config.audio_sample_rate)
    return frame_times(n_frames, config.hop_size, config.audio_sample_rate), f0


def edited_path(item: dict) -> Path:
    return Path(item["f0"]).with_suffix("").with_suffix(".edited.csv")


def save_curve(ctx: UiContext, item: dict, settings: dict, f0: np.ndarray) -> Path:
    from diffsvc.inference.f0_io import write_f0_csv

    config = project_config(ctx, settings["project"])
    return write_f0_csv(edited_path(item), f0, config.hop_size, config.audio_sample_rate)


def f0_figure(times: np.ndarray, original: np.ndarray, edited: np.ndarray, span: tuple[float, float] | None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(times, np.where(original > 0, original, np.nan), lw=1, color="0.6", label="extracted")
    ax.plot(times, np.where(edited > 0, edited, np.nan), lw=1.4, color="C1", label="used for conversion")
    if span is not None:
        ax.axvspan(span[0], span[1], color="C0", alpha=0.12, label="selected range")
    from diffsvc.inference.plot import f0_axis

    f0_axis(ax)  # 200, 300, not 2 x 10^2
    ax.set_xlabel("seconds")
    ax.set_ylabel("f0 (Hz)")
    ax.set_xlim(0, float(times[-1]) if len(times) else 1.0)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    plt.close(fig)
    return fig


# ---------------------------------------------------------------- training

def progress_file(ctx: UiContext, project: str) -> Path:
    return ctx.state_dir / "train" / f"{project}.progress.csv"


def loss_figure(steps: list[int], losses: list[float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    if steps:
        ax.plot(steps, losses, lw=0.8, color="0.7", label="loss per step")
        if len(losses) >= 5:
            k = max(2, len(losses) // 20)
            smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, lw=1.6, color="C0", label=f"mean of {k}")
        if max(losses) > 10 * min(losses) > 0:
            ax.set_yscale("log")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def checkpoint_rows(ctx: UiContext, project: str | None) -> list[list]:
    from diffsvc.checkpoint import find_checkpoints

    if not project or not (ctx.models_dir / project).is_dir():
        return []
    rows = []
    for step, path in sorted(find_checkpoints(ctx.models_dir / project).items(), reverse=True):
        stat = path.stat()
        rows.append([step, path.name, f"{stat.st_size / 1e6:.1f} MB",
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(stat.st_mtime))])
    return rows


def train_command(ctx: UiContext, project: str, data: str, max_steps, batch_size, device: str) -> list[str]:
    argv = ["train", "--project", project, "--data", str(Path(data).expanduser().resolve()), "--models-dir",
            str(ctx.models_dir), "--progress-file", str(progress_file(ctx, project))]
    if max_steps:
        argv += ["--max-steps", str(int(max_steps))]
    if batch_size:
        argv += ["--batch-size", str(int(batch_size))]
    if device and device != "auto":
        argv += ["--device", device]
    return argv


def _config_option(path: str | None) -> list[str]:
    path = (path or "").strip()
    if not path:
        return []
    if not Path(path).expanduser().is_file():
        raise DiffSvcError(f"{path}: config file not found")
    return ["--config", str(Path(path).expanduser().resolve())]


def check_training(ctx: UiContext, name: str, data: str, config_v: str | None, max_steps=None,
                   batch_size=None) -> None:
    """What `diffsvc train` would refuse before its first step, checked before the page starts it
    (so a training that cannot start is its one line, never "started" first): the step and batch
    fields, the data folder, its prepared data (the line train gives), the base config, and that the
    data fits the project (its singers and mel settings: an existing project's config.yaml, or the
    one a new project gets). Loading the checkpoint to resume from is left to the job."""
    from diffsvc.config import load_config
    from diffsvc.data.prepared import PreparedData
    from diffsvc.training.project import Project, check_data_matches, config_with_data_stats

    for label, value in (("Stop at step", max_steps), ("Batch size", batch_size)):
        if value not in (None, "") and int(value) < 0:
            raise DiffSvcError(f"{label} must be 0 (the default) or more, got {value}")
    folder = Path((data or "").strip()).expanduser()
    if not str(data or "").strip() or not folder.is_dir():
        raise DiffSvcError(f"{(data or '').strip() or '(empty)'}: no such folder; preprocess the recordings first")
    prepared = PreparedData.find(folder.resolve())
    config_option = _config_option(config_v)
    project = Project.named(name, ctx.models_dir)
    if project.exists():
        config, source = project.load_config(), str(project.config_path)
    else:
        base = config_option[1] if config_option else None
        config = config_with_data_stats(load_config(base), prepared)
        source = base or "the default config"
    check_data_matches(config, prepared, source)


def _project_name(name: str) -> str:
    name = (name or "").strip()
    if not name or not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
        raise DiffSvcError(f"project name {name!r}: use letters, digits, '-', '_' or '.' (it becomes models/NAME)")
    return name


# ---------------------------------------------------------------- evaluation

def eval_progress(job: Job) -> tuple[float, str]:
    """(fraction, description) of a `diffsvc eval` job: it logs "evaluating FILE (step N)" as it
    starts each checkpoint."""
    n = max(1, int(job.meta.get("checkpoints", 1)))
    started_ = job.log_text().count("\nevaluating ")
    if started_ == 0:
        return 0.0, "loading"
    return min(started_ - 1, n) / n, f"checkpoint {min(started_, n)} of {n}"


def eval_outputs(ctx: UiContext, project: str | None) -> tuple:
    """(status lines, table, legend, plot) of a project's last evaluation; empty when it has none."""
    import pandas as pd

    from diffsvc.ui.evaltable import read_eval

    view = read_eval(ctx.models_dir / project) if project and (ctx.models_dir / project).is_dir() else None
    if view is None:
        return "", None, "", None
    if view.best_step is not None:
        lines = _ok(f"best checkpoint by reconstruction (lowest MCD): step {view.best_step} "
                    f"({view.best_checkpoint}); evaluated {view.written}")
    else:
        lines = _warn(f"no best checkpoint: the evaluation of {view.written} has no reconstruction figures")
    lines += "".join(_warn(f"not computed: {what}") for what in view.unavailable)
    legend = "  \n".join(view.legend)
    return lines, pd.DataFrame(view.body, columns=view.head), legend, str(view.plot) if view.plot else None


# ---------------------------------------------------------------- page

CSS = """
.diffsvc-error { color: #8a1010; background: #fdecec; border: 1px solid #e6a3a3; border-radius: 6px; padding: 8px 12px; }
.diffsvc-warn { color: #6b4a00; background: #fff6e0; border: 1px solid #e8cf8a; border-radius: 6px; padding: 8px 12px; }
.diffsvc-ok { color: #1d4f1d; background: #eef7ee; border: 1px solid #b5d8b5; border-radius: 6px; padding: 8px 12px; }
"""


def build(ctx: UiContext):
    import gradio as gr

    projects = project_choices(ctx)
    first = projects[0] if projects else None

    with gr.Blocks(title="diffsvc") as page:
        gr.Markdown("# diffsvc\nSinging voice conversion with Diff-SVC: convert songs, fix their pitch, "
                    "prepare data and train, all on this machine.")
        results_state = gr.State([])
        settings_state = gr.State({})

        # ------------------------------------------------------------ Convert
        with gr.Tab("Convert", id="convert"):
            with gr.Row():
                with gr.Column(scale=3):
                    songs = gr.File(label="Songs (drop one or several)", file_count="multiple", elem_id="songs")
                with gr.Column(scale=2):
                    with gr.Row():
                        project = gr.Dropdown(projects, value=first, label="Project", elem_id="project",
                                              allow_custom_value=False)
                        steps = step_choices(ctx, first)
                        step = gr.Dropdown(steps, value=steps[0] if steps else None, label="Checkpoint (step)",
                                           elem_id="step")
                        refresh = gr.Button("Refresh", size="sm", scale=0)
                    singers = singer_choices(ctx, first)
                    with gr.Row():
                        singer = gr.Dropdown(singers, value=singers[0] if singers else None, label="Singer",
                                             elem_id="singer", visible=len(singers) > 1)
                        blend = gr.Textbox("", label="Blend (optional, overrides the singer)",
                                           placeholder=blend_example(singers), elem_id="blend",
                                           visible=len(singers) > 1)
                    problem = singer_problem(ctx, first)
                    singer_note = gr.HTML(_fail(problem) if problem else "", elem_id="singer-note")
                    with gr.Row():
                        key = gr.Textbox("0", label="Key (semitones, or auto)", elem_id="key")
                        f0_method = gr.Dropdown([DEFAULT, *F0_METHODS], value=DEFAULT, label="f0 method", elem_id="f0-method")
                    with gr.Row():
                        sampler = gr.Dropdown([DEFAULT, *SAMPLERS], value=DEFAULT, label="Sampler", elem_id="sampler")
                        sampling_steps = gr.Number(0, label="Sampling steps (0 = project's)", precision=0,
                                                   elem_id="sampling-steps")
                        shallow = gr.Number(0, label="Shallow start K (0 = off)", precision=0)
                    with gr.Row():
                        fmt = gr.Radio(["wav", "flac"], value="wav", label="Format")
                        device = gr.Dropdown(["auto", "cpu", "cuda"], value="auto", label="Device")
                    convert = gr.Button("Convert", variant="primary", elem_id="convert-button")
            convert_status = gr.HTML(elem_id="convert-status")
            with gr.Row():
                with gr.Column():
                    result_pick = gr.Dropdown([], label="Result", elem_id="result-pick")
                    result_audio = gr.Audio(label="Converted", type="filepath", interactive=False,
                                            elem_id="result-audio")
                    result_files = gr.File(label="Download", file_count="multiple", interactive=False,
                                           elem_id="result-files")
                with gr.Column():
                    result_plot = gr.Image(label="Input and output mel, f0", type="filepath", interactive=False,
                                           elem_id="result-plot")

        # ------------------------------------------------------------ Pitch
        with gr.Tab("Pitch", id="pitch"):
            gr.Markdown("Fix the f0 curve of a converted song (e.g. a note tracked an octave off), then convert "
                        "it again with the edited curve. Times in seconds.")
            with gr.Row():
                pitch_pick = gr.Dropdown([], label="Converted song", elem_id="pitch-pick", scale=3)
                pitch_start = gr.Number(0.0, label="From (s)", elem_id="pitch-start")
                pitch_end = gr.Number(1.0, label="To (s)", elem_id="pitch-end")
                pitch_semi = gr.Number(12, label="Semitones", elem_id="pitch-semitones")
            with gr.Row():
                up = gr.Button("Octave up", elem_id="octave-up")
                down = gr.Button("Octave down", elem_id="octave-down")
                by = gr.Button("Move by semitones", elem_id="move-semitones")
                unvoice = gr.Button("Mark unvoiced", elem_id="unvoice")
                reset = gr.Button("Reset to extracted", elem_id="reset-f0")
            pitch_status = gr.HTML(elem_id="pitch-status")
            pitch_plot = gr.Plot(label="f0 curve", elem_id="pitch-plot")
            with gr.Row():
                pitch_download = gr.File(label="Download the curve (CSV: time_s,f0_hz)", interactive=False,
                                         elem_id="pitch-download")
                pitch_upload = gr.File(label="Upload a curve (CSV)", file_types=[".csv"], elem_id="pitch-upload")
            reconvert = gr.Button("Convert again with this curve", variant="primary", elem_id="reconvert")
            re_audio = gr.Audio(label="Converted with the edited curve", type="filepath", interactive=False,
                                elem_id="reconvert-audio")
            re_plot = gr.Image(label="Input and output mel, f0", type="filepath", interactive=False)

        # ------------------------------------------------------------ Data & training
        with gr.Tab("Data & training", id="train"):
            gr.Markdown("### 1. Prepare the recordings\nA folder of one singer's recordings on this machine "
                        "(any format, sub-folders welcome). The dataset check comes first in the log.")
            with gr.Row():
                raw_dir = gr.Textbox("raw", label="Recordings folder", elem_id="raw-dir", scale=3)
                base_config = gr.Textbox("", label="Config for a new project (empty: configs/diffsvc-44k.yaml)",
                                         elem_id="base-config", scale=2)
                pre_f0 = gr.Dropdown([DEFAULT, *F0_METHODS], value=DEFAULT, label="f0 method", elem_id="pre-f0")
                pre_content = gr.Dropdown([DEFAULT, *CONTENT], value=DEFAULT, label="Content encoder",
                                          elem_id="pre-content")
                pre_button = gr.Button("Check and preprocess", elem_id="preprocess-button")
            pre_status = gr.HTML(elem_id="preprocess-status")
            pre_log = gr.Textbox(label="Preprocess log", lines=10, max_lines=20, interactive=False,
                                 elem_id="preprocess-log")
            gr.Markdown("### 2. Train\nStart again to resume where it stopped; Stop saves a checkpoint.")
            with gr.Row():
                train_project = gr.Textbox(first or "", label="Project name", elem_id="train-project")
                train_data = gr.Textbox("raw", label="Data (the recordings folder)", elem_id="train-data")
                train_steps = gr.Number(0, label="Stop at step (0 = config's)", precision=0, elem_id="train-steps")
                train_batch = gr.Number(0, label="Batch size (0 = auto)", precision=0, elem_id="train-batch")
                train_device = gr.Dropdown(["auto", "cpu", "cuda"], value="auto", label="Device")
            with gr.Row():
                train_start = gr.Button("Start / resume training", variant="primary", elem_id="train-start")
                train_stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
            train_message = gr.HTML(elem_id="train-message")
            train_status = gr.HTML(elem_id="train-status")
            with gr.Row():
                loss_plot = gr.Plot(label="Loss", elem_id="loss-plot")
                with gr.Column():
                    val_mel = gr.Image(label="Latest validation: target and sampled mel", type="filepath",
                                       interactive=False, elem_id="val-mel")
                    val_audio = gr.Audio(label="Latest validation audio", type="filepath", interactive=False,
                                         elem_id="val-audio")
            checkpoints = gr.Dataframe(headers=["step", "file", "size", "written"], label="Checkpoints",
                                       interactive=False, elem_id="checkpoints")
            train_log = gr.Textbox(label="Training log", lines=8, max_lines=16, interactive=False,
                                   elem_id="train-log")
            timer = gr.Timer(2.0)
            gr.Markdown("### 3. Evaluate the checkpoints\n`diffsvc eval` on the project and data above: each "
                        "checkpoint reconstructs the singer's validation pieces from noise (and converts the songs "
                        "dropped here); the best checkpoint by reconstruction (lowest MCD) is marked.")
            with gr.Row():
                eval_which = gr.Radio(list(EVAL_WHICH), value=next(iter(EVAL_WHICH)), label="Checkpoints",
                                      elem_id="eval-which")
                eval_pieces = gr.Number(8, label="Validation pieces", precision=0, elem_id="eval-pieces")
                eval_sampling = gr.Number(0, label="Sampling steps (0 = project's)", precision=0,
                                          elem_id="eval-sampling-steps")
                eval_device = gr.Dropdown(["auto", "cpu", "cuda"], value="auto", label="Device")
                eval_songs = gr.File(label="Songs to convert and score (optional)", file_count="multiple",
                                     elem_id="eval-songs", scale=2)
            eval_button = gr.Button("Evaluate", elem_id="eval-button")
            eval_status = gr.HTML(elem_id="eval-status")
            eval_table = gr.Dataframe(label="Evaluation", interactive=False, wrap=True, elem_id="eval-table")
            eval_legend = gr.Markdown(elem_id="eval-legend")
            eval_plot = gr.Image(label="Figures against the training step (dashed: best checkpoint)",
                                 type="filepath", interactive=False, elem_id="eval-plot")

        # ------------------------------------------------------------ Models
        with gr.Tab("Models", id="models"):
            gr.Markdown("The pretrained files in `models/`, each loaded into its real architecture "
                        "(`diffsvc models`). Nothing is ever downloaded.")
            models_button = gr.Button("Check models", elem_id="models-button")
            models_status = gr.HTML(elem_id="models-status")
            models_table = gr.Dataframe(headers=["file", "status", "path", "detail"], interactive=False,
                                        elem_id="models-table")
            projects_md = gr.Markdown(elem_id="models-projects")

        # ============================================================ handlers

        def show_result(results, label):
            item = next((r for r in results if r["label"] == label), results[0] if results else None)
            if item is None:
                return None, None
            plot = item["plot"] if Path(item["plot"]).is_file() else None
            return item["output"], plot

        def results_outputs(job, results):
            labels = [r["label"] for r in results]
            audio, plot = show_result(results, labels[0] if labels else None)
            files = [r["output"] for r in results] or None
            settings = job.meta.get("settings", {}) if job else {}
            return (results, settings, gr.update(choices=labels, value=labels[0] if labels else None), audio, files,
                    plot, gr.update(choices=labels, value=labels[0] if labels else None))

        @friendly(8)
        def do_convert(files, project_v, step_v, singer_v, blend_v, key_v, f0_v, sampler_v, steps_v, shallow_v, fmt_v,
                       device_v, progress=gr.Progress()):
            settings = check_settings(ctx, project_v, step_v, key_v, steps_v, shallow_v, singer_v, blend_v)
            settings.update(f0_method=f0_v, sampler=sampler_v, sampling_steps=int(steps_v or 0),
                            shallow=int(shallow_v or 0), format=fmt_v, device=device_v)
            paths = [Path(f if isinstance(f, str) else f.name) for f in (files or [])]
            job = start_conversion(ctx, paths, settings)
            _wait(job, progress)
            return (_state_line(ctx, job),) + results_outputs(job, conversion_results(job))

        convert.click(do_convert, [songs, project, step, singer, blend, key, f0_method, sampler, sampling_steps,
                                   shallow, fmt, device],
                      [convert_status, results_state, settings_state, result_pick, result_audio, result_files,
                       result_plot, pitch_pick])
        result_pick.change(show_result, [results_state, result_pick], [result_audio, result_plot])

        def singer_view(project_v):
            """The singer dropdown and blend box: shown with the project's singers, hidden for one singer;
            when the singers cannot be read (no config.yaml beside the checkpoint), that line in their place."""
            names = singer_choices(ctx, project_v)
            several = len(names) > 1
            problem = singer_problem(ctx, project_v)
            return (gr.update(choices=names, value=names[0] if names else None, visible=several),
                    gr.update(value="", placeholder=blend_example(names), visible=several),
                    _fail(problem) if problem else "")

        def do_refresh(project_v):
            names = project_choices(ctx)
            current = project_v if project_v in names else (names[0] if names else None)
            steps_now = step_choices(ctx, current)
            return (gr.update(choices=names, value=current),
                    gr.update(choices=steps_now, value=steps_now[0] if steps_now else None)) + singer_view(current)

        # one at a time, in the order asked (the page's opening view of the first project must not land
        # after a project chosen at once, showing that project with the first one's singers)
        one_view = dict(concurrency_id="singer-view", concurrency_limit=1)
        refresh.click(do_refresh, [project], [project, step, singer, blend, singer_note], **one_view)
        project.change(lambda p: (gr.update(choices=step_choices(ctx, p), value=(step_choices(ctx, p) or [None])[0]),)
                       + singer_view(p), [project], [step, singer, blend, singer_note], **one_view)

        # ------------------------------------------------------------ pitch handlers
        def _item(results, label):
            item = next((r for r in results if r["label"] == label), None)
            if item is None:
                raise DiffSvcError("convert a song first (Convert tab), then pick it here")
            return item

        def _pitch_view(item, settings, span=None, message=""):
            times, f0 = load_curve(ctx, item, settings)
            _, original = load_curve(ctx, item, settings, edited=False)
            download = edited_path(item) if edited_path(item).is_file() else Path(item["f0"])
            return _ok(message), f0_figure(times, original, f0, span), str(download)

        @friendly(3)
        def pitch_show(results, settings, label):
            if not label:
                return "", None, None
            return _pitch_view(_item(results, label), settings)

        pitch_pick.change(pitch_show, [results_state, settings_state, pitch_pick],
                          [pitch_status, pitch_plot, pitch_download])

        def make_edit(kind):
            @friendly(3)
            def edit(results, settings, label, start, end, semitones):
                from diffsvc.ui.f0edit import shift_range, unvoice_range

                item = _item(results, label)
                if kind == "reset":
                    edited_path(item).unlink(missing_ok=True)
                    return _pitch_view(item, settings, message="curve reset to the extracted one")
                times, f0 = load_curve(ctx, item, settings)
                start, end = number_field(start, "From"), number_field(end, "To")
                if kind == "unvoice":
                    f0 = unvoice_range(f0, times, start, end)
                    what = "marked unvoiced"
                else:
                    shift = {"up": 12.0, "down": -12.0}.get(kind) or number_field(semitones, "Semitones")
                    f0 = shift_range(f0, times, start, end, shift)
                    what = f"moved by {shift:+g} semitones"
                save_curve(ctx, item, settings, f0)
                return _pitch_view(item, settings, (start, end), f"{start:g}-{end:g} s {what}")
            return edit

        for button, kind in ((up, "up"), (down, "down"), (by, "by"), (unvoice, "unvoice"), (reset, "reset")):
            button.click(make_edit(kind), [results_state, settings_state, pitch_pick, pitch_start, pitch_end,
                                           pitch_semi], [pitch_status, pitch_plot, pitch_download])

        @friendly(3)
        def pitch_upload_csv(results, settings, label, upload):
            from diffsvc.inference.f0_io import read_f0_csv

            if upload is None:
                return gr.skip(), gr.skip(), gr.skip()
            item = _item(results, label)
            config = project_config(ctx, settings["project"])
            n_frames = sum(1 for _ in open(item["f0"], encoding="utf-8")) - 1
            path = upload if isinstance(upload, str) else upload.name
            f0 = read_f0_csv(path, n_frames, config.hop_size, config.audio_sample_rate)
            save_curve(ctx, item, settings, f0)
            return _pitch_view(item, settings, message=f"curve loaded from {Path(path).name}")

        pitch_upload.upload(pitch_upload_csv, [results_state, settings_state, pitch_pick, pitch_upload],
                            [pitch_status, pitch_plot, pitch_download])

        @friendly(3)
        def do_reconvert(results, settings, label, progress=gr.Progress()):
            item = _item(results, label)
            if not edited_path(item).is_file():
                raise DiffSvcError("the curve is not edited yet; move a range or upload a curve first")
            job = start_conversion(ctx, [Path(item["input"])], settings,
                                   f0_in={item["input"]: str(edited_path(item))},
                                   title=f"convert {item['song']} with the edited f0")
            _wait(job, progress)
            done = conversion_results(job)
            if not done:
                return _fail(_short(ctx, job.error() or "the conversion wrote no output")), None, None
            plot = done[0]["plot"] if Path(done[0]["plot"]).is_file() else None
            return _state_line(ctx, job), done[0]["output"], plot

        reconvert.click(do_reconvert, [results_state, settings_state, pitch_pick], [pitch_status, re_audio, re_plot])

        # ------------------------------------------------------------ data & training handlers
        @friendly(2)
        def do_preprocess(folder, config_v, f0_v, content_v, progress=gr.Progress()):
            folder = (folder or "").strip()
            if not folder or not Path(folder).expanduser().is_dir():
                raise DiffSvcError(f"{folder or '(empty)'}: no such folder; give the folder that holds the recordings")
            argv = ["preprocess", str(Path(folder).expanduser().resolve()), "--yes"] + _config_option(config_v)
            if f0_v != DEFAULT:
                argv += ["--f0", f0_v]
            if content_v != DEFAULT:
                argv += ["--content", content_v]
            if ctx.jobs.running("preprocess"):
                raise DiffSvcError("a preprocess is already running; wait until it ends")
            job = ctx.jobs.start("preprocess", f"preprocess {folder}", [argv])
            _wait(job, progress)
            return _state_line(ctx, job), log_tail(job)

        pre_button.click(do_preprocess, [raw_dir, base_config, pre_f0, pre_content], [pre_status, pre_log])

        @friendly(1)
        def do_train(name, data, config_v, max_steps, batch, device_v):
            name = _project_name(name)
            check_training(ctx, name, data, config_v, max_steps, batch)  # cannot start: its line, no "started"
            data = data.strip()
            argv = train_command(ctx, name, data, max_steps, batch, device_v) + _config_option(config_v)
            job = ctx.jobs.start("train", f"training {name}", [argv], meta={"project": name})
            return _ok(f"{job.title}: started")

        train_start.click(do_train, [train_project, train_data, base_config, train_steps, train_batch, train_device],
                          [train_message])

        @friendly(1)
        def do_stop():
            running = ctx.jobs.running("train")
            if not running:
                return _ok("no training is running")
            for job in running:
                ctx.jobs.stop(job)
            return _ok(f"{running[0].title}: stopping (a checkpoint is saved first)")

        train_stop.click(do_stop, [], [train_message])

        def _view_signature(project_name: str, job) -> tuple:
            """What the training view shows changes only when one of these does."""
            def mtime(path: Path) -> float:
                try:
                    return path.stat().st_mtime
                except OSError:
                    return 0.0

            logs = ctx.models_dir / project_name / "logs"
            return (project_name, job.id if job else None, job.state() if job else None,
                    mtime(progress_file(ctx, project_name)), mtime(ctx.models_dir / project_name),
                    max((mtime(p) for p in logs.glob("events.*")), default=0.0) if logs.is_dir() else 0.0,
                    mtime(job.log_path) if job else 0.0)

        @friendly(8)
        def train_view(name, last_signature):
            from diffsvc.training.progress_file import read_progress
            from diffsvc.ui.tblog import latest_validation, logged_loss, loss_curve

            job = ctx.jobs.latest("train")
            project_name = job.meta.get("project") if job and job.state() == "running" else (name or "").strip()
            if not project_name:
                return ("",) + tuple(gr.skip() for _ in range(7))
            signature = _view_signature(project_name, job)
            if signature == last_signature:
                return tuple(gr.skip() for _ in range(8))
            own = job is not None and job.meta.get("project") == project_name
            status = _state_line(ctx, job) if own else ""
            live = read_progress(progress_file(ctx, project_name))
            if live[0]:
                status += _ok(f"step {live[0][-1]}, loss {live[1][-1]:.4f}")
            steps_, losses = loss_curve(live, logged_loss(ctx.models_dir / project_name / "logs"))
            step_v, png, wav = latest_validation(ctx.models_dir / project_name / "logs")
            mel_path = audio_path = None
            if png:
                mel_path = ctx.state_dir / "train" / f"{project_name}.val_{step_v}.png"
                if not mel_path.exists():
                    mel_path.write_bytes(png)
            if wav:
                audio_path = ctx.state_dir / "train" / f"{project_name}.val_{step_v}.wav"
                if not audio_path.exists():
                    audio_path.write_bytes(wav)
            log = log_tail(job, 16) if own else ""
            # a training that failed after it started: its line (in the status) replaces "started"
            message = "" if own and job.state() == "failed" else gr.skip()
            return (status, loss_figure(steps_, losses), str(mel_path) if mel_path else None,
                    str(audio_path) if audio_path else None, checkpoint_rows(ctx, project_name), log, signature,
                    message)

        view_signature = gr.State(None)
        train_outputs = [train_status, loss_plot, val_mel, val_audio, checkpoints, train_log, view_signature,
                         train_message]
        timer.tick(train_view, [train_project, view_signature], train_outputs)

        # ------------------------------------------------------------ evaluation handlers
        eval_view = [eval_status, eval_table, eval_legend, eval_plot]

        @friendly(4)
        def do_eval(name, data, which, pieces, sampling, device_v, files, progress=gr.Progress()):
            from diffsvc.ui.evaltable import eval_command

            name = _project_name(name)
            if not (ctx.models_dir / name).is_dir():
                raise DiffSvcError(f"{ctx.models_dir / name}: no such project; train it first (section 2)")
            data = (data or "").strip()
            if not data or not Path(data).expanduser().is_dir():
                raise DiffSvcError(f"{data or '(empty)'}: no such folder; give the singer's recordings folder "
                                   "(preprocessed) under Data in section 2")
            for label, value in (("validation pieces", pieces), ("sampling steps", sampling)):
                if value not in (None, "") and int(value) < 0:
                    raise DiffSvcError(f"{label} must be 0 (the default) or more, got {value}")
            running = ctx.jobs.running("eval")
            if running:
                raise DiffSvcError(f"an evaluation is already running ({running[0].title}); wait until it ends")
            all_steps = EVAL_WHICH.get(which, True)
            folder = ctx.jobs.new_folder("eval")
            songs_in = copy_uploads(files, folder / "in")  # under their own names, as the user knows them
            argv = eval_command(ctx.models_dir, name, Path(data).expanduser().resolve(), all_steps, pieces, sampling,
                                device_v, songs_in)
            n = len(step_choices(ctx, name)) if all_steps else 1
            job = ctx.jobs.start("eval", f"evaluate {name}", [argv], meta={"project": name, "checkpoints": n},
                                 folder=folder)
            _wait(job, progress, eval_progress)
            if job.state() != "done":
                return (_state_line(ctx, job),) + tuple(gr.skip() for _ in range(3))
            lines, table, legend, plot = eval_outputs(ctx, name)
            return (_state_line(ctx, job) + lines, table, legend, plot)

        eval_button.click(do_eval, [train_project, train_data, eval_which, eval_pieces, eval_sampling, eval_device,
                                    eval_songs], eval_view)

        def show_eval(name, job=None):
            """The project's last evaluation (a broken eval.json: its one line)."""
            try:
                lines, table, legend, plot = eval_outputs(ctx, (name or "").strip())
            except DiffSvcError as e:
                lines, table, legend, plot = _fail(str(e)), None, "", None
            head = _state_line(ctx, job) if job is not None and job.meta.get("project") == (name or "").strip() \
                else ""
            return head + lines, table, legend, plot

        train_project.blur(show_eval, [train_project], eval_view)

        # ------------------------------------------------------------ models handler
        @friendly(3)
        def do_models():
            from diffsvc.cli.models import pretrained_checks, project_lines
            from diffsvc.config import load_config

            checks = pretrained_checks(load_config(None))
            rows = [[c.what + ("" if c.required or c.status == "ok" else " (optional)"), c.status.upper(), c.path,
                     c.detail] for c in checks]
            lines = project_lines(ctx.models_dir)
            missing = [c for c in checks if c.required and c.status != "ok"]
            head = _warn("real conversion needs the files marked MISSING or BROKEN (put them in models/ yourself); "
                         "the offline demo runs with stand-ins meanwhile") if missing else _ok("all required files load")
            text = ("**Trained projects**\n\n" + "\n".join(f"- {line.strip()}" for line in lines)) if lines else \
                f"**Trained projects:** none in `{ctx.models_dir}` yet"
            return head, rows, text

        models_button.click(do_models, [], [models_status, models_table, projects_md])

        # ------------------------------------------------------------ reopening the page
        def on_load(train_name):
            """A reopened page shows the last conversion, the last evaluation and the state of every job."""
            job = ctx.jobs.latest("convert")
            results = conversion_results(job)
            status = _state_line(ctx, job) if job else ""
            pre = ctx.jobs.latest("preprocess")
            evaluation = ctx.jobs.latest("eval")
            return ((status,) + results_outputs(job, results)
                    + ((_state_line(ctx, pre), log_tail(pre)) if pre else ("", ""))
                    + show_eval(evaluation.meta.get("project") if evaluation else train_name, evaluation))

        page.load(on_load, [train_project], [convert_status, results_state, settings_state, result_pick, result_audio,
                                             result_files, result_plot, pitch_pick, pre_status, pre_log, *eval_view])
        page.load(singer_view, [project], [singer, blend, singer_note], **one_view)  # the project's files as now
    return page


def serve(ctx: UiContext, host: str = "127.0.0.1", port: int = 7860, share: bool = False):
    """Start the page (blocks until stopped)."""
    import gradio as gr

    page = build(ctx)
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    (ctx.state_dir / "train").mkdir(exist_ok=True)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    page.queue(default_concurrency_limit=4)
    page.launch(server_name=host, server_port=port, share=share, inbrowser=False, ssr_mode=False, quiet=True,
                allowed_paths=[str(ctx.state_dir)], theme=theme, css=CSS, show_error=False, footer_links=[])
