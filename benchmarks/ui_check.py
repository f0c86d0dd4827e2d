"""`diffsvc ui` end to end in a real browser, on the offline demo's project and on a real-format one.

    python benchmarks/ui_check.py [--demo-dir DIR] [--only demo|real] [--workdir DIR]

Not a test: it needs a `diffsvc demo` run (minutes) and release-size model files (hundreds of MB).
It starts `python -m diffsvc ui` on a free port in each project's folder (its own process group,
killed at the end however the script ends: tests/procs.py) and drives the system's Chromium
(headless, Playwright) through the whole workflow of issue #17, asserting each step:

(a) demo: what `diffsvc demo` leaves in its workdir (config.yaml, raw/singer_a, raw/singer_b,
    models/duet: a two-singer model on stand-ins). Without --demo-dir a short demo runs first
    (`diffsvc demo --steps 200 --minutes 0.5`).
(b) real: an original-Diff-SVC project folder (tests/fixtures/original_config_nsf.yaml, all 167
    keys, copied untouched, and a checkpoint of its size, 20 x 384, in the original layout) beside
    release-size HuBERT-soft and NSF-HiFiGAN files (random weights, real file formats, built by
    benchmarks/pipeline.py `make_project`).

Steps: page, models check, convert (with the progress bar; the output's duration is the input's;
the page plays it, the download link serves the same bytes, the mel+f0 picture shows), the singer
and blend picker (demo), f0 edits (an octave up and convert again: the f0 the reconversion used is
doubled in the range and untouched elsewhere; semitones; unvoiced; the curve's CSV downloaded and
uploaded again), an unreadable upload (one line naming the file), the dataset check and preprocess,
training (start, live loss curve, validation mel, checkpoint list, a second start refused, stop,
resume from the saved step), evaluation (its table and best checkpoint), a reopened page.

Writes benchmarks/results/ui-check.md (step, project, passed, seconds, note) and screenshots to
benchmarks/results/ui-check/ (not committed). Seconds are wall time on whatever else the machine
is doing: a record of what a user waited, not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))
from ui_fixture import choose  # noqa: E402

SR = 44100
LONG = 600_000  # ms: a conversion or a training start of the full-size model on a busy machine (a timeout)
RESULTS = HERE / "results"
SHOTS = RESULTS / "ui-check"


# ---------------------------------------------------------------- the record

class Record:
    """Each step: project, name, passed, seconds, note. A failed step is recorded with its one-line
    reason and a screenshot; the run goes on with the next step."""

    def __init__(self):
        self.rows: list[list] = []
        self.page = None
        self.project = ""

    @contextlib.contextmanager
    def step(self, name: str):
        note: dict = {"text": ""}
        start = time.perf_counter()
        print(f"[{self.project}] {name} ...", file=sys.stderr, flush=True)
        try:
            yield note
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on
            seconds = time.perf_counter() - start
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
            traceback.print_exc()
            self.rows.append([name, self.project, "FAILED", f"{seconds:.1f}", reason])
            self.shot(f"failed-{name}")
            print(f"[{self.project}] {name}: FAILED {reason}", file=sys.stderr, flush=True)
        else:
            seconds = time.perf_counter() - start
            self.rows.append([name, self.project, "yes", f"{seconds:.1f}", note["text"]])
            print(f"[{self.project}] {name}: ok ({seconds:.1f} s) {note['text']}", file=sys.stderr, flush=True)

    def shot(self, name: str) -> None:
        if self.page is None:
            return
        with contextlib.suppress(Exception):
            slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
            self.page.screenshot(path=str(SHOTS / f"{self.project}-{slug}.png"), full_page=True)


def check(condition, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# ---------------------------------------------------------------- the projects

def run_demo(workdir: Path) -> Path:
    """A short `diffsvc demo` run (stand-ins, 200 steps, half a minute of singing)."""
    from procs import run

    cmd = [sys.executable, "-m", "diffsvc", "demo", "--workdir", str(workdir), "--steps", "200", "--minutes", "0.5",
           "--device", "cpu"]
    print("running", " ".join(cmd), file=sys.stderr, flush=True)
    result = run(cmd, timeout=3600, cwd=workdir.parent, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if result.returncode != 0:
        raise SystemExit(f"diffsvc demo failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return workdir


def make_takes(folder: Path, n: int, seconds: float, seed: int) -> None:
    import soundfile as sf

    from audio_synth import synth_voice

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        take, _ = synth_voice(seconds, SR, f0=200.0 + 20 * i, seed=seed + i)
        sf.write(folder / f"take {i}.wav", take, SR)


def make_check_folder(folder: Path) -> None:
    """Recordings with the faults the dataset check reports: a clipped take, a very quiet take and a
    file that is not audio, beside ordinary takes."""
    import soundfile as sf

    from audio_synth import synth_voice

    make_takes(folder, 3, 5.0, seed=20)
    loud, _ = synth_voice(5.0, SR, f0=230.0, seed=31)
    sf.write(folder / "clipped.wav", np.clip(loud / np.abs(loud).max() * 3.0, -1.0, 1.0), SR)
    quiet, _ = synth_voice(5.0, SR, f0=240.0, seed=32)
    sf.write(folder / "quiet.wav", quiet / np.abs(quiet).max() * 0.003, SR)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")


def make_songs(root: Path, seconds: float) -> Path:
    import soundfile as sf

    from audio_synth import synth_voice

    songs = root / "songs"
    songs.mkdir(parents=True, exist_ok=True)
    wav, _ = synth_voice(seconds, SR, f0=200.0, seed=3, consonants=False)
    sf.write(songs / "phrase.wav", wav, SR)
    (songs / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    return songs


def make_real_project(root: Path) -> dict:
    """models/nyaru: the original's config_nsf.yaml untouched and a 20 x 384 checkpoint in the original
    layout (step 30000); models/hubert-soft-0d54a1f4.pt and models/nsf_hifigan/ at release size."""
    import torch
    import yaml

    from diffsvc.checkpoint import save_model
    from diffsvc.config import load_config
    from diffsvc.model.diffusion import GaussianDiffusion
    from pipeline import make_project

    original = REPO / "tests" / "fixtures" / "original_config_nsf.yaml"
    project = root / "models" / "nyaru"
    if (project / "model_ckpt_steps_30000.ckpt").is_file():  # built by an earlier run: only its results go
        for old in (root / "models" / ".ui", root / "models" / "nyaru-ft", root / "raw", root / "check-raw"):
            shutil.rmtree(old, ignore_errors=True)
    else:
        shutil.rmtree(root, ignore_errors=True)
        bench = make_project(root, tiny=False)
        shutil.rmtree(bench)  # our own layout; the project checked here is the original's
        project.mkdir(parents=True)
        shutil.copyfile(original, project / "config.yaml")
        torch.manual_seed(0)
        model = GaussianDiffusion.from_config(load_config(original))
        with torch.no_grad():
            model.denoise_fn.output_projection.weight.normal_(0, 0.02)
        save_model(project / "model_ckpt_steps_30000.ckpt", model, 30000)
    # a new project trained from this page: the original's config with a short validation interval and
    # small batches (the original's 88 pieces and validation every 2000 steps are for a GPU)
    data = yaml.safe_load(original.read_text())
    data.update(val_check_interval=3, num_valid_plots=1, max_sentences=2, num_ckpt_keep=3)
    (root / "train-config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    make_takes(root / "raw", 3, 5.0, seed=10)
    make_check_folder(root / "check-raw")
    make_songs(root, 4.0)
    return {"kind": "real", "root": root, "project": "nyaru", "song": root / "songs" / "phrase.wav",
            "broken": root / "songs" / "broken.wav", "check_dir": root / "check-raw",
            "check_config": root / "train-config.yaml", "check_content": None,
            "train_project": "nyaru-ft", "train_data": root / "raw", "train_config": root / "train-config.yaml",
            "prepare_train_data": True, "singers": [], "f0": "parselmouth", "sampling_steps": 10}


def demo_project(demo: Path) -> dict:
    """The demo's workdir as it is; only songs/ and check-raw/ are added beside it (songs to convert)."""
    for needed in ("config.yaml", "raw/singer_a", "raw/singer_b", "models/duet"):
        if not (demo / needed).exists():
            raise SystemExit(f"{demo}: no {needed}; give the workdir of a finished `diffsvc demo` run")
    extra = demo / "ui-check"
    if extra.exists():
        shutil.rmtree(extra)
    make_songs(extra, 4.0)
    make_check_folder(extra / "check-raw")
    phrase = demo / "input" / "singer_c_phrase.wav"
    return {"kind": "demo", "root": demo, "project": "duet", "song": phrase if phrase.exists() else extra / "songs" /
            "phrase.wav", "broken": extra / "songs" / "broken.wav", "check_dir": extra / "check-raw",
            "check_config": demo / "config.yaml", "check_content": "stand-in",
            "train_project": "duet", "train_data": demo / "raw", "train_config": None, "prepare_train_data": False,
            "singers": ["singer_a", "singer_b"], "f0": "parselmouth", "sampling_steps": 0}


# ---------------------------------------------------------------- the server and the page

@contextlib.contextmanager
def ui_server(root: Path):
    """`diffsvc ui` on a free port in `root` (the tests' fixture, with this checkout on PYTHONPATH)."""
    from ui_fixture import ui_server as started_ui

    with started_ui(root, start_timeout_s=300, env=dict(os.environ, PYTHONPATH=str(REPO))) as url:
        yield url


@contextlib.contextmanager
def browser_page(url: str):
    """The tests' Chromium page (tests/ui_fixture.py) with a longer timeout for real-size models;
    Chromium missing is one line."""
    from ui_fixture import CHROMIUM, browser_page as open_page

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} not found: install the system's Chromium (make browser)")
    with open_page(url, timeout_ms=60_000) as page:
        yield page


def fill(page, field: str, value) -> None:
    box = page.locator(f"{field} input, {field} textarea").first
    box.fill(str(value))
    box.press("Tab")


def upload(page, selector: str, path: Path) -> None:
    clear = page.locator(f"{selector} button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator(f"{selector} input[type=file]").first.set_input_files(str(path))
    page.wait_for_function(f"document.querySelector({selector!r}).innerText.replace(/\\s/g, '')"
                           f".includes({path.name.replace(' ', '')!r})", timeout=120_000)


def wait_for_end(page, status: str, done_text: str, timeout_s: float = LONG / 1000, new_job=None) -> dict:
    """Poll the status box until it holds `done_text` or an error; what the progress bar said on the way.
    new_job=(root, kind, count before the click): also wait for that job to have ended (the box still
    says the last job's "done" while the next one starts)."""
    seen: list[str] = []
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if new_job is not None:
            folders = jobs(new_job[0], new_job[1])
            if len(folders) <= new_job[2] or not (folders[-1] / "rc.json").exists():
                finished = False
            else:
                finished = True
        else:
            finished = True
        state = page.evaluate("""(sel) => {
            const box = document.querySelector(sel);
            const pending = document.querySelectorAll('.eta-bar, .progress-text, .progress-level').length > 0;
            const bars = [...document.querySelectorAll('[class*=progress], [class*=meta-text]')]
                .map(e => (e.innerText || '').trim()).filter(t => t.includes('%'));
            const err = box && box.querySelector('.diffsvc-error');
            return {text: box ? box.innerText : '', error: err ? err.innerText : null, bars, pending};
        }""", status)
        seen += [b for b in state["bars"] if b not in seen]
        # the event itself must have ended too: until then the page ignores a new click on its button
        # (Gradio's trigger_mode "once"), even when the job it follows has written its result
        finished = finished and not state["pending"]
        if finished and state["error"]:
            raise AssertionError(f"the page says: {state['error']}")
        if finished and done_text in state["text"]:
            return {"progress": seen, "text": state["text"]}
        time.sleep(0.25)
    raise TimeoutError(f"{status} never said {done_text!r}")


def link_bytes(page, selector: str, name: str) -> bytes:
    """The bytes the page's download link for file `name` serves."""
    href = page.evaluate("""([sel, name]) => {
        const links = [...document.querySelectorAll(sel + ' a')];
        const a = links.find(a => (a.href + a.innerText + (a.download || '')).replace(/%20/g, ' ').includes(name));
        return a ? a.href : null;
    }""", [selector, name])
    check(href, f"no download link for {name} in {selector}")
    response = page.request.get(href)
    check(response.ok, f"download of {name}: HTTP {response.status}")
    return response.body()


def jobs(root: Path, kind: str) -> list[Path]:
    return sorted((root / "models" / ".ui" / "jobs").glob(f"*-{kind}-*"), key=lambda p: p.name)


def newest_output(root: Path, suffix: str = ".wav") -> Path:
    outs = sorted(jobs(root, "convert")[-1].glob(f"out/*{suffix}"))
    check(outs, f"no output in {jobs(root, 'convert')[-1]}")
    return outs[-1]


def read_curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = list(csv.reader(io.StringIO(Path(path).read_text() if isinstance(path, Path) else path)))
    body = [r for r in rows if r and not r[0].startswith("time")]
    return np.array([float(r[0]) for r in body]), np.array([float(r[1]) for r in body])


def curve(text: str) -> tuple[np.ndarray, np.ndarray]:
    return read_curve(text)


def train_step(page) -> int:
    text = page.locator("#train-status").inner_text()
    import re

    m = re.findall(r"step (\d+), loss", text)
    return int(m[-1]) if m else -1


def wait_step(page, at_least: int, timeout_s: float = 900) -> int:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        step = train_step(page)
        if step >= at_least:
            return step
        err = page.locator("#train-status .diffsvc-error")
        if err.count():
            raise AssertionError(f"the page says: {err.first.inner_text()}")
        time.sleep(1)
    raise TimeoutError(f"training never reached step {at_least} (last seen {train_step(page)})")


def saved_steps(project: Path) -> list[int]:
    return sorted(int(p.stem.rsplit("_", 1)[1]) for p in project.glob("model_ckpt_steps_*.ckpt"))


# ---------------------------------------------------------------- the workflow

def workflow(rec: Record, page, p: dict) -> None:
    import soundfile as sf

    root = p["root"]
    song = p["song"]
    rec.page = page

    with rec.step("page opens") as note:
        page.get_by_role("tab", name="Convert").wait_for()
        project_value = page.locator("#project input").input_value()
        check(project_value == p["project"], f"project picker shows {project_value!r}")
        note["text"] = f"project {project_value}, newest checkpoint {page.locator('#step input').input_value()}"
        rec.shot("01-start")

    with rec.step("models check") as note:
        page.get_by_role("tab", name="Models").click()
        page.locator("#models-button").click()
        page.locator("#models-status div").first.wait_for(timeout=LONG)
        page.locator("#models-projects").get_by_text("Trained projects").wait_for()
        status = page.locator("#models-status").inner_text()
        table = page.locator("#models-table").inner_text()
        projects = page.locator("#models-projects").inner_text()
        check(p["project"] in projects, f"project {p['project']} not listed: {projects[:200]!r}")
        if p["kind"] == "demo":
            check("MISSING" in table and "stand-ins" in status, f"demo: the stand-ins are not named: {status}")
        else:
            check("all required files load" in status, f"real files: {status} / {table[:400]}")
        note["text"] = status.strip().splitlines()[0][:120]
        page.wait_for_timeout(500)
        rec.shot("02-models")

    page.get_by_role("tab", name="Convert").click()
    with rec.step("convert with progress") as note:
        upload(page, "#songs", song)
        choose(page, "#f0-method", p["f0"])
        if p["sampling_steps"]:
            fill(page, "#sampling-steps", p["sampling_steps"])
        n = len(jobs(root, "convert"))
        page.locator("#convert-button").click()
        end = wait_for_end(page, "#convert-status", "done", new_job=(root, "convert", n))
        out = newest_output(root)
        check(sf.info(out).frames == sf.info(song).frames,
              f"output {sf.info(out).frames} samples, input {sf.info(song).frames}")
        moving = [t for t in end["progress"] if not t.strip().endswith(" 0.0%")]
        check(moving, f"the progress bar never moved: {end['progress']}")
        note["text"] = (f"{sf.info(out).duration:.2f} s out = in; progress bar: {len(set(end['progress']))} states, "
                        f"e.g. '{moving[len(moving) // 2].strip()}'")

    with rec.step("play and download") as note:
        out = newest_output(root)
        page.locator("#result-audio audio, #result-audio [data-testid^='waveform']").first.wait_for(state="attached")
        page.wait_for_function(f"document.querySelector('#result-files').innerText.replace(/\\s/g, '')"
                               f".includes({out.name!r})")
        data = link_bytes(page, "#result-files", out.name)
        check(data == out.read_bytes(), "the download differs from the output file")
        note["text"] = f"{out.name}, {len(data) / 1e3:.0f} kB served = file"

    with rec.step("mel and f0 picture") as note:
        img = page.locator("#result-plot img")
        img.wait_for(timeout=LONG)
        size = page.evaluate("document.querySelector('#result-plot img').naturalWidth")
        check(size > 200, f"picture {size} px wide")
        note["text"] = f"{out.with_suffix('.png').name}, {size} px wide"
        rec.shot("03-converted")

    with rec.step("pitch: octave up, convert again") as note:
        before = newest_output(root)
        page.get_by_role("tab", name="Pitch").click()
        page.locator("#pitch-plot").locator("img, svg, canvas").first.wait_for(timeout=LONG)
        start, end_s = 1.0, 2.0
        fill(page, "#pitch-start", start)
        fill(page, "#pitch-end", end_s)
        page.locator("#octave-up").click()
        page.locator("#pitch-status").get_by_text("moved by +12 semitones").wait_for()
        n = len(jobs(root, "convert"))
        page.locator("#reconvert").click()
        wait_for_end(page, "#pitch-status", "done", new_job=(root, "convert", n))
        after = newest_output(root)
        check(after != before and sf.info(after).frames == sf.info(before).frames, "reconverted output: wrong length")
        page.locator("#reconvert-audio audio, #reconvert-audio [data-testid^='waveform']").first.wait_for(
            state="attached")
        t, f0_used = read_curve(after.with_suffix(".f0.csv"))
        _, f0_orig = read_curve(before.with_suffix(".f0.csv"))
        voiced = (f0_orig > 0) & (f0_used > 0)
        inside = voiced & (t >= start) & (t < end_s)
        outside = voiced & ((t < start) | (t >= end_s))
        check(inside.sum() > 20 and outside.sum() > 20, f"too few voiced frames: {inside.sum()}, {outside.sum()}")
        r_in = np.median(f0_used[inside] / f0_orig[inside])
        r_out = np.median(f0_used[outside] / f0_orig[outside])
        check(abs(r_in - 2.0) < 0.01 and abs(r_out - 1.0) < 0.01, f"f0 used: x{r_in:.3f} inside, x{r_out:.3f} outside")
        from test_ui_browser import track

        tb, fb = track(before)
        ta, fa = track(after)
        both = (fb > 0) & (fa > 0)
        a_in = both & (tb > start + 0.1) & (tb < end_s - 0.1)
        audio = (f"; output audio (Praat): x{np.median(fa[a_in] / fb[a_in]):.2f} in the range" if a_in.sum() > 5
                 else "; output audio: too few voiced frames to track")
        note["text"] = f"f0 used x{r_in:.2f} in {start:g}-{end_s:g} s, x{r_out:.2f} outside" + audio
        rec.shot("04-octave")

    with rec.step("pitch: semitones and unvoiced") as note:
        item_csv = next(jobs(root, "convert")[-2].glob("out/*.edited.csv"))
        _, base = read_curve(item_csv)
        fill(page, "#pitch-start", 2.5)
        fill(page, "#pitch-end", 3.0)
        fill(page, "#pitch-semitones", -3)
        page.locator("#move-semitones").click()
        page.locator("#pitch-status").get_by_text("moved by -3 semitones").wait_for()
        t, moved = read_curve(item_csv)
        rng = (t >= 2.5) & (t < 3.0) & (base > 0)
        check(rng.sum() > 5 and np.allclose(moved[rng] / base[rng], 2 ** (-3 / 12), rtol=1e-3),
              "semitone move not in the curve")
        fill(page, "#pitch-start", 0.2)
        fill(page, "#pitch-end", 0.5)
        page.locator("#unvoice").click()
        page.locator("#pitch-status").get_by_text("marked unvoiced").wait_for()
        t, unv = read_curve(item_csv)
        check(np.all(unv[(t >= 0.2) & (t < 0.5)] == 0), "range not unvoiced")
        check(np.allclose(unv[rng], moved[rng]), "an edit undid the previous one")
        note["text"] = f"-3 semitones in 2.5-3 s (x{2 ** (-3 / 12):.3f}), 0.2-0.5 s unvoiced; earlier octave kept"
        rec.shot("05-pitch-edits")

    with rec.step("pitch: CSV download and upload") as note:
        item_csv = next(jobs(root, "convert")[-2].glob("out/*.edited.csv"))
        data = link_bytes(page, "#pitch-download", item_csv.name)
        check(data == item_csv.read_bytes(), "the downloaded curve is not the edited one")
        t, f0 = curve(data.decode())
        changed = f0.copy()
        sel = (t >= 3.0) & (t < 3.5)
        changed[sel] = changed[sel] / 2
        upload_file = root / "models" / ".ui" / "my curve.csv"
        upload_file.write_text("time_s,f0_hz\n" + "".join(f"{a:.6f},{b:.4f}\n" for a, b in zip(t, changed)))
        page.locator("#pitch-upload input[type=file]").set_input_files(str(upload_file))
        page.locator("#pitch-status").get_by_text("curve loaded from my curve.csv").wait_for(timeout=LONG)
        _, loaded = read_curve(item_csv)
        check(np.allclose(loaded, changed, atol=1e-3), "the uploaded curve is not what the page keeps")
        n = len(jobs(root, "convert"))
        page.locator("#reconvert").click()
        wait_for_end(page, "#pitch-status", "done", new_job=(root, "convert", n))
        used_t, used = read_curve(newest_output(root).with_suffix(".f0.csv"))
        check(np.allclose(used, changed, atol=1e-2), "the reconversion did not use the uploaded curve")
        note["text"] = "download = edited CSV; an uploaded CSV (3-3.5 s an octave down) is what the reconversion used"

    if p["singers"]:
        page.get_by_role("tab", name="Convert").click()
        with rec.step("singer and blend picker") as note:
            page.locator("#singer").wait_for()
            page.locator("#singer input").click()
            options = [o.split()[-1] for o in page.locator("#singer").get_by_role("option").all_inner_texts()]
            check(options == p["singers"], f"singers offered: {options}")
            page.get_by_role("option", name=p["singers"][1], exact=True).click()
            upload(page, "#songs", song)
            n = len(jobs(root, "convert"))
            page.locator("#convert-button").click()
            wait_for_end(page, "#convert-status", "done", new_job=(root, "convert", n))
            one = newest_output(root)
            check(p["singers"][1] in one.name, f"output {one.name} does not name {p['singers'][1]}")
            fill(page, "#blend", f"{p['singers'][0]}:0.5,{p['singers'][1]}:0.5")
            n = len(jobs(root, "convert"))
            page.locator("#convert-button").click()
            wait_for_end(page, "#convert-status", "done", new_job=(root, "convert", n))
            two = newest_output(root)
            check(f"{p['singers'][0]}50-{p['singers'][1]}50" in two.name, f"blend output {two.name}")
            check(sf.info(two).frames == sf.info(song).frames, "blend output: wrong length")
            check(not np.allclose(sf.read(one)[0], sf.read(two)[0]), "the blend sounds exactly like the singer")
            note["text"] = f"{one.name}; {two.name}"
            fill(page, "#blend", "")
            rec.shot("06-singers")

    with rec.step("unreadable file") as note:
        page.reload()  # a fresh page (the run once hung here after the blend conversions, not understood yet)
        page.get_by_role("tab", name="Convert").wait_for()
        upload(page, "#songs", p["broken"])
        page.locator("#convert-button").click()
        error = page.locator("#convert-status .diffsvc-error")
        error.wait_for(timeout=120_000)
        text = error.inner_text()
        check("broken.wav" in text and "Traceback" not in text and len(text.splitlines()) == 1, text)
        note["text"] = text[:160]
        rec.shot("07-unreadable")

    page.get_by_role("tab", name="Data & training").click()
    with rec.step("dataset check and preprocess") as note:
        fill(page, "#raw-dir", p["check_dir"])
        fill(page, "#base-config", p["check_config"])
        choose(page, "#pre-f0", "parselmouth")
        if p["check_content"]:
            choose(page, "#pre-content", p["check_content"])
        n = len(jobs(root, "preprocess"))
        page.locator("#preprocess-button").click()
        # an unreadable recording stops preprocess with one line naming it (nothing half-prepared is used)
        try:
            wait_for_end(page, "#preprocess-status", "done", new_job=(root, "preprocess", n))
            raise AssertionError("preprocess went on with an unreadable file")
        except AssertionError as e:
            text = str(e).removeprefix("the page says: ")
        check("broken.wav" in text and len(text.splitlines()) == 1 and "Traceback" not in text, text)
        log = page.locator("#preprocess-log").get_by_role("textbox").input_value()
        for needle in ("Dataset check:", "FAILED to read", "broken.wav", "clipped: ", "very quiet: ", "quiet.wav"):
            check(needle in log, f"the check does not say {needle!r}:\n{log[-600:]}")
        rec.shot("08-dataset-check")
        (p["check_dir"] / "broken.wav").unlink()  # as the line says: remove it and run again
        n = len(jobs(root, "preprocess"))
        page.locator("#preprocess-button").click()
        wait_for_end(page, "#preprocess-status", "done", new_job=(root, "preprocess", n))
        log = page.locator("#preprocess-log").get_by_role("textbox").input_value()
        check("Next: diffsvc train" in log and "clipped: " in log, f"preprocess did not finish:\n{log[-600:]}")
        first = next(line for line in log.splitlines() if line.startswith("Dataset check"))
        note["text"] = (f"unreadable file: {text.strip()[:90]}...; the check lists it and the clipped and quiet "
                        f"files; without it: done ({first.strip()})")
        rec.shot("08-preprocessed")

    if p["prepare_train_data"]:
        with rec.step("preprocess the training data") as note:
            fill(page, "#raw-dir", p["train_data"])
            fill(page, "#base-config", p["train_config"])
            n = len(jobs(root, "preprocess"))
            page.locator("#preprocess-button").click()
            wait_for_end(page, "#preprocess-status", "done", new_job=(root, "preprocess", n))
            note["text"] = f"{p['train_data'].name}/ with the project's content encoder (hubert-soft)"

    project_dir = root / "models" / p["train_project"]
    with rec.step("train: start, live loss, validation, checkpoints") as note:
        fill(page, "#train-project", p["train_project"])
        fill(page, "#train-data", p["train_data"])
        fill(page, "#base-config", p["train_config"] or "")
        fill(page, "#train-steps", 100000)
        if p["kind"] == "real":
            fill(page, "#train-batch", 2)
        before = saved_steps(project_dir) if project_dir.is_dir() else []
        page.locator("#train-start").click()
        page.locator("#train-message").get_by_text(f"training {p['train_project']}: started").wait_for()
        first = wait_step(page, (before[-1] if before else 0) + 1)
        page.locator("#loss-plot").locator("img, svg, canvas").first.wait_for()
        step = wait_step(page, first + 3)
        page.locator("#val-mel img").wait_for(timeout=LONG)
        page.locator("#val-audio audio, #val-audio [data-testid^='waveform']").first.wait_for(state="attached",
                                                                                            timeout=LONG)
        page.wait_for_function("document.querySelector('#checkpoints').innerText.includes('model_ckpt_steps_')",
                               timeout=LONG)
        note["text"] = (f"from step {before[-1] if before else 0}: live to step {step}, loss curve, validation mel "
                        f"and audio, checkpoints {saved_steps(project_dir)}")
        rec.shot("09-training")

    with rec.step("second training refused") as note:
        page.locator("#train-start").click()
        msg = page.locator("#train-message")
        msg.get_by_text("already running").wait_for()
        note["text"] = msg.inner_text().strip()[:160]

    with rec.step("stop saves a checkpoint") as note:
        at = train_step(page)
        page.locator("#train-stop").click()
        page.locator("#train-status").get_by_text("stopped").first.wait_for(timeout=LONG)
        steps = saved_steps(project_dir)
        check(steps and steps[-1] >= at, f"checkpoints {steps}, stopped at {at}")
        page.wait_for_function(f"document.querySelector('#checkpoints').innerText"
                               f".includes('model_ckpt_steps_{steps[-1]}')",
                               timeout=60_000)
        note["text"] = f"stopped at step {steps[-1]}; checkpoints {steps}"
        stopped_at = steps[-1]
        rec.shot("10-stopped")

    with rec.step("resume") as note:
        page.locator("#train-start").click()
        page.locator("#train-message").get_by_text(f"training {p['train_project']}: started").wait_for()
        step = wait_step(page, stopped_at + 1)
        log = page.locator("#train-log").get_by_role("textbox").input_value()
        page.locator("#train-stop").click()
        page.locator("#train-status").get_by_text("stopped").first.wait_for(timeout=LONG)
        check(step > stopped_at, f"step {step} after resuming from {stopped_at}")
        resumed = [line for line in log.splitlines() if "resum" in line.lower()]
        note["text"] = f"went on from {stopped_at} to {step}" + (f" ({resumed[0].strip()[:80]})" if resumed else "")

    with rec.step("evaluate: table and best checkpoint") as note:
        fill(page, "#eval-pieces", 1)
        fill(page, "#eval-sampling-steps", 4)
        page.locator("#eval-which").get_by_text("all checkpoints").click()
        page.locator("#eval-button").click()
        wait_for_end(page, "#eval-status", f"evaluate {p['train_project']}: done", timeout_s=1800)
        result = json.loads((project_dir / "eval.json").read_text())
        check(result.get("best_step") in saved_steps(project_dir), f"best step {result.get('best_step')}")
        page.wait_for_function("document.querySelector('#eval-table').innerText.includes('(best)')")
        note["text"] = (f"table of {len(result['rows'])} checkpoints "
                        f"({', '.join(str(r['step']) for r in result['rows'])}), best {result['best_step']} "
                        f"(lowest reconstruction MCD)")
        page.locator("#eval-table").scroll_into_view_if_needed()
        rec.shot("11-evaluated")

    with rec.step("reopened page shows the jobs") as note:
        page.reload()
        page.get_by_role("tab", name="Convert").wait_for()
        # the last conversion was the unreadable file: its line again
        page.locator("#convert-status .diffsvc-error").get_by_text("broken.wav").wait_for(timeout=60_000)
        page.get_by_role("tab", name="Data & training").click()
        page.locator("#eval-status").get_by_text("best checkpoint").wait_for(timeout=60_000)
        check(page.outside_requests == [], f"the page fetched from elsewhere: {page.outside_requests}")
        note["text"] = ("the last conversion's line (the unreadable file) and the evaluation shown; "
                        "no request left this machine")


# ---------------------------------------------------------------- main

def write_report(rec: Record, started: float, notes: list[str], out: Path) -> Path:
    from common import markdown_table

    passed = sum(1 for r in rec.rows if r[2] == "yes")
    lines = ["# `diffsvc ui` on the demo project and on a real-format project", "",
             f"`python benchmarks/ui_check.py` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): "
             f"{passed} of {len(rec.rows)} steps passed, {time.time() - started:.0f} s in all.", "",
             "A real headless Chromium (the system's, via Playwright) drives `diffsvc ui` started on a free port "
             "in each project's folder. Seconds are wall time on a 2-core machine shared with other jobs: what a "
             "user waited, not a measurement.", ""]
    lines += [f"- {n}" for n in notes] + [""]
    lines.append(markdown_table(["step", "project", "passed", "seconds", "note"],
                                [[c.replace("|", "/") for c in map(str, row)] for row in rec.rows]))
    out.write_text("\n".join(lines) + "\n")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", type=Path, help="the workdir of a finished `diffsvc demo` run (default: run one)")
    ap.add_argument("--only", choices=["demo", "real"], help="check one project only")
    ap.add_argument("--workdir", type=Path, help="where to build the projects (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=RESULTS / "ui-check.md", help="the results file")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the server and its jobs
    os.environ["PYTHONPATH"] = str(REPO)
    SHOTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rec = Record()
    notes = []
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ui-check-")))
        work.mkdir(parents=True, exist_ok=True)
        projects = []
        if args.only in (None, "demo"):
            demo = args.demo_dir.resolve() if args.demo_dir else run_demo(work / "demo")
            projects.append(demo_project(demo))
            notes.append("demo: the workdir of `diffsvc demo --steps 200 --minutes 0.5` (two singers, stand-in "
                         "content units and Griffin-Lim); the song is the demo's singer_c phrase")
        if args.only in (None, "real"):
            real = work / "real project"
            projects.append(make_real_project(real))
            notes.append("real: models/nyaru = tests/fixtures/original_config_nsf.yaml untouched + a 20 x 384 "
                         "checkpoint in the original layout (random weights); models/hubert-soft-0d54a1f4.pt and "
                         "models/nsf_hifigan/ "
                         "at release size (benchmarks/pipeline.py make_project); f0 by parselmouth, 10 sampling steps; "
                         "training a new project from that config with validation every 3 steps and batches of 2")
        for p in projects:
            rec.project = p["kind"]
            with ui_server(p["root"]) as url, browser_page(url) as page:
                workflow(rec, page, p)
    out = write_report(rec, started, notes, args.out)
    print(out.read_text())
    return 0 if all(r[2] == "yes" for r in rec.rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
