"""`diffsvc ui` in a real browser: the system's Chromium driven by Playwright, on a tiny project.

One server (started as `python -m diffsvc ui` on a free port, in its own process group) and one
page serve the whole module, in order: convert a clip (same duration out), move a range of its f0
curve up an octave and convert again (Praat finds the output's pitch doubled there and only there),
an unreadable upload (one readable line), preprocess and train with a live loss curve, a second
training refused, stop, then evaluate that project's checkpoints (`diffsvc eval`). Screenshots go
to tests/artifacts/ui/ (not committed) for a person to look at.

`make test` installs Chromium (Debian package; `make browser` alone) and Playwright (the test extra);
the browser is never downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from audio_synth import synth_voice
from test_end_to_end import TINY
from infer_fixture import write_project
from ui_fixture import CHROMIUM, browser_page, choose, ui_server, write_f0_project  # noqa: F401 (CHROMIUM: for others)

ARTIFACTS = Path(__file__).parent / "artifacts" / "ui"
SR = 44100
LONG = 300_000  # ms: a conversion or a training start on a busy 2-core machine (a timeout, not a measure)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ui") / "my project"
    write_f0_project(root, "singer", f0_extractor="parselmouth")
    write_project(root, "zduo", speakers=["alto", "tenor"])  # multi-singer; listed after "singer"
    wav, _ = synth_voice(3.0, SR, f0=200.0, seed=3, consonants=False)
    (root / "songs").mkdir()
    sf.write(root / "songs" / "phrase.wav", wav, SR)
    (root / "songs" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    (root / "raw").mkdir()
    for i in range(2):
        take, _ = synth_voice(6.0, SR, f0=220.0, seed=10 + i)
        sf.write(root / "raw" / f"take {i}.wav", take, SR)
    (root / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "val_check_interval": 5, "num_valid_plots": 1,
                                                             "num_ckpt_keep": 3}))
    return root


@pytest.fixture(scope="module")
def server(workspace):
    with ui_server(workspace) as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # the page's own console messages go to artifacts/ui/console.log, for a person
    with browser_page(server, console_log=ARTIFACTS / "console.log") as pg:
        yield pg


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def newest_output(workspace: Path, suffix: str = ".wav") -> Path:
    jobs = sorted((workspace / "models" / ".ui" / "jobs").glob("*-convert-*"), key=lambda p: p.name)
    outs = sorted(jobs[-1].glob(f"out/*{suffix}"))
    assert outs, f"no output in {jobs[-1]}"
    return outs[-1]


def track(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import parselmouth

    y, sr = sf.read(path)
    pitch = parselmouth.Sound(y, sr).to_pitch(time_step=0.01, pitch_floor=60, pitch_ceiling=1100)
    return pitch.xs(), pitch.selected_array["frequency"]


def upload(page, selector: str, path: Path) -> None:
    page.locator(f"{selector} input[type=file]").set_input_files(str(path))
    try:
        page.wait_for_function(f"document.querySelector({selector!r}).innerText.replace(/\\s/g, '')"
                               f".includes({path.name.replace(' ', '')!r})", timeout=LONG)
    except Exception:
        shot(page, f"failed-upload-{path.stem}")
        raise


def test_convert_a_clip(page, workspace):
    shot(page, "01-start")
    song = workspace / "songs" / "phrase.wav"
    upload(page, "#songs", song)
    page.locator("#convert-button").click()
    status = page.locator("#convert-status")
    status.get_by_text("done").wait_for(timeout=LONG)
    out = newest_output(workspace)
    assert sf.info(out).frames == sf.info(song).frames
    assert sf.info(out).samplerate == SR
    # the page plays and offers that file
    page.locator("#result-audio audio, #result-audio [data-testid='waveform-Converted']").first.wait_for(state="attached")
    assert out.name in page.locator("#result-files").inner_text().replace("\n", "")
    shot(page, "02-converted")
    # a reopened page shows the last conversion
    page.reload()
    page.locator("#convert-status").get_by_text("done").wait_for()
    page.wait_for_function(f"document.querySelector('#result-files').innerText.replace(/\\n/g, '')"
                           f".includes({out.name!r})")
    assert page.outside_requests == [], f"the page fetched from elsewhere: {page.outside_requests}"


def test_shift_an_octave_and_convert_again(page, workspace):
    before = newest_output(workspace)
    page.get_by_role("tab", name="Pitch").click()
    page.locator("#pitch-plot").locator("img, svg, canvas").first.wait_for(timeout=LONG)
    start, end = 1.0, 2.0
    for field, value in (("#pitch-start", start), ("#pitch-end", end)):
        box = page.locator(f"{field} input")
        box.fill(str(value))
        box.press("Tab")
    page.locator("#octave-up").click()
    page.locator("#pitch-status").get_by_text("moved by +12 semitones").wait_for()
    page.locator("#reconvert").click()
    page.locator("#pitch-status").get_by_text("done").wait_for(timeout=LONG)
    after = newest_output(workspace)
    assert after != before and sf.info(after).frames == sf.info(before).frames
    shot(page, "03-pitch-edited")

    t0, f0_before = track(before)
    t1, f0_after = track(after)
    assert np.allclose(t0, t1)
    both = (f0_before > 0) & (f0_after > 0)
    inside = both & (t0 > start + 0.1) & (t0 < end - 0.1)
    outside = both & ((t0 < start - 0.1) | (t0 > end + 0.1))
    assert inside.sum() > 30 and outside.sum() > 30
    ratio_in = np.median(f0_after[inside] / f0_before[inside])
    ratio_out = np.median(f0_after[outside] / f0_before[outside])
    assert abs(12 * np.log2(ratio_in) - 12) < 0.5, ratio_in  # an octave up, within half a semitone
    assert abs(12 * np.log2(ratio_out)) < 0.5, ratio_out  # untouched elsewhere


def test_unreadable_upload_gives_one_line(page, workspace):
    page.get_by_role("tab", name="Convert").click()
    clear = page.locator("#songs button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    upload(page, "#songs", workspace / "songs" / "broken.wav")
    page.locator("#convert-button").click()
    error = page.locator("#convert-status .diffsvc-error")
    error.wait_for(timeout=LONG)
    text = error.inner_text()
    assert "broken.wav" in text and "Traceback" not in text and len(text.splitlines()) == 1, text
    shot(page, "04-unreadable")


def test_models_tab(page, workspace):
    page.get_by_role("tab", name="Models").click()
    page.locator("#models-button").click()
    # no HuBERT-soft in this folder: the check says so and names where it goes; the vocoder loads
    page.locator("#models-status .diffsvc-warn").get_by_text("MISSING").wait_for(timeout=LONG)
    table = page.locator("#models-table").inner_text()
    assert "MISSING" in table and "hubert" in table.lower() and "OK" in table, table
    page.wait_for_timeout(500)  # the table's fade-in, for the screenshot only
    shot(page, "07-models")


def test_preprocess_and_train(page, workspace):
    page.get_by_role("tab", name="Data & training").click()
    page.locator("#raw-dir").get_by_role("textbox").fill(str(workspace / "raw"))
    page.locator("#base-config").get_by_role("textbox").fill(str(workspace / "tiny.yaml"))
    for field, value in (("#pre-f0", "parselmouth"), ("#pre-content", "stand-in")):
        page.locator(f"{field} input").click()
        page.get_by_role("option", name=value, exact=True).click()
    page.locator("#preprocess-button").click()
    page.locator("#preprocess-status").get_by_text("done").wait_for(timeout=LONG)
    assert "Next: diffsvc train" in page.locator("#preprocess-log").get_by_role("textbox").input_value()

    page.locator("#train-project").get_by_role("textbox").fill("fresh")
    page.locator("#train-data").get_by_role("textbox").fill(str(workspace / "raw"))
    page.locator("#train-steps input").fill("100000")
    page.locator("#train-start").click()
    status = page.locator("#train-status")
    message = page.locator("#train-message")
    message.get_by_text("training fresh: started").wait_for()
    # the live view: steps and loss appear while it runs
    page.wait_for_function("(m => m !== null && Number(m[1]) >= 3)"
                           "(document.querySelector('#train-status').innerText.match(/step (\\d+), loss/))",
                           timeout=LONG)
    page.locator("#loss-plot").locator("img, svg, canvas").first.wait_for()
    # the latest validation (every 5 steps here): its mel picture and audio, from the TensorBoard logs
    page.locator("#val-mel img").wait_for(timeout=LONG)
    page.locator("#val-audio audio, #val-audio [data-testid^='waveform']").first.wait_for(state="attached", timeout=LONG)
    # a step past that validation's checkpoint, so that Stop saves a second one (evaluated below)
    page.wait_for_function("(m => m !== null && Number(m[1]) >= 6)"
                           "(document.querySelector('#train-status').innerText.match(/step (\\d+), loss/))",
                           timeout=LONG)
    # one training at a time
    page.locator("#train-start").click()
    message.get_by_text("already running").wait_for()
    shot(page, "05-training")
    page.locator("#train-stop").click()
    status.get_by_text("stopped").first.wait_for(timeout=LONG)
    assert list((workspace / "models" / "fresh").glob("model_ckpt_steps_*.ckpt")), "stop saved no checkpoint"
    page.wait_for_function("document.querySelector('#checkpoints').innerText.includes('model_ckpt_steps_')")
    shot(page, "06-training-stopped")
    assert page.outside_requests == [], f"the page fetched from elsewhere: {page.outside_requests}"


def test_evaluate_the_checkpoints(page, workspace):
    """After test_preprocess_and_train: `diffsvc eval` of its project as a job, its table, the best
    checkpoint and its figure; a folder with no prepared data gives eval's own one line."""
    project = workspace / "models" / "fresh"
    saved = sorted(int(p.stem.rsplit("_", 1)[1]) for p in project.glob("model_ckpt_steps_*.ckpt"))
    assert len(saved) >= 2, saved  # a validation checkpoint and the one Stop saved
    data = page.locator("#train-data").get_by_role("textbox")
    data.fill(str(workspace / "songs"))  # audio, never preprocessed
    page.locator("#eval-pieces input").fill("1")
    page.locator("#eval-button").click()
    error = page.locator("#eval-status .diffsvc-error")
    error.wait_for(timeout=LONG)
    text = error.inner_text()
    assert "diffsvc eval: error:" in text and "songs" in text and "Traceback" not in text, text
    assert len(text.splitlines()) == 1 and not (project / "eval.json").exists(), text

    data.fill(str(workspace / "raw"))
    page.locator("#eval-button").click()
    status = page.locator("#eval-status")
    status.get_by_text("evaluate fresh: done").wait_for(timeout=LONG)
    result = json.loads((project / "eval.json").read_text())
    assert [r["step"] for r in result["rows"]] == saved and result["best_step"] in saved
    best = result["best_step"]
    assert f"best checkpoint by reconstruction (lowest MCD): step {best} (model_ckpt_steps_{best}.ckpt)" \
        in status.inner_text()
    page.wait_for_function("document.querySelector('#eval-table').innerText.includes('(best)')")
    cells = [line.strip() for line in page.locator("#eval-table").inner_text().splitlines()]
    assert "MCD" in cells and [c for c in cells if "(best)" in c] == [f"{best} (best)"], cells
    assert all(str(step) in cells for step in saved if step != best), cells
    assert "MCD: reconstruction MCD (dB, lower is better)" in page.locator("#eval-legend").inner_text()
    page.locator("#eval-plot img").wait_for()
    page.locator("#eval-table").scroll_into_view_if_needed()
    shot(page, "08-evaluated")
    assert page.outside_requests == [], f"the page fetched from elsewhere: {page.outside_requests}"


def test_a_multi_singer_project_offers_its_singers_and_a_blend(page, workspace):
    """Last (it changes the project): the singer picker shows only for a multi-singer project, a bad
    blend is infer's own line, and a blend reaches `diffsvc infer --speaker` (the output names it)."""
    page.get_by_role("tab", name="Convert").click()
    assert not page.locator("#singer").is_visible() and not page.locator("#blend").is_visible()
    choose(page, "#project", "zduo")
    page.locator("#singer").wait_for()
    assert page.locator("#singer input").input_value() == "alto"
    page.locator("#singer input").click()
    options = page.locator("#singer").get_by_role("option").all_inner_texts()
    assert [o.split()[-1] for o in options] == ["alto", "tenor"]  # a ✓ marks the chosen one
    page.get_by_role("option", name="tenor", exact=True).click()
    clear = page.locator("#songs button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    upload(page, "#songs", workspace / "songs" / "phrase.wav")
    blend = page.locator("#blend").get_by_role("textbox")
    blend.fill("alto:lots")
    page.locator("#convert-button").click()
    error = page.locator("#convert-status .diffsvc-error")
    error.get_by_text("weight of 'alto' must be a number").wait_for(timeout=LONG)
    assert len(error.inner_text().splitlines()) == 1 and "singers: alto, tenor" in error.inner_text()
    blend.fill("alto:0.7,tenor:0.3")
    page.locator("#convert-button").click()
    page.locator("#convert-status").get_by_text("done").wait_for(timeout=LONG)
    out = newest_output(workspace)
    assert out.name == "phrase_zduo_alto70-tenor30_steps_1000.wav"
    assert sf.info(out).frames == sf.info(workspace / "songs" / "phrase.wav").frames
    shot(page, "09-singers")
    choose(page, "#project", "singer")
    page.locator("#singer").wait_for(state="hidden")
    assert not page.locator("#blend").is_visible()
