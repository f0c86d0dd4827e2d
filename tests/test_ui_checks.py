"""`diffsvc ui` in a real browser: what the page says when a step cannot go ahead.

Each job validates before it announces anything (a training on data never preprocessed is its one
line, no "started" and no job); a folder without audio is said before any model file is looked for;
a file dropped in the page is named as the user knows it (never gradio's /tmp/gradio/<hash>/ path);
a multi-singer checkpoint without its config.yaml shows why there is no singer to choose where the
picker would be. Same server and browser set-up as test_ui_browser.py (system Chromium, Playwright),
on a smaller workspace; screenshots go to tests/artifacts/ui/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf

from audio_synth import synth_voice
from infer_fixture import write_project
from prepared_fixture import write_prepared
from test_ui_browser import ARTIFACTS, LONG, SR, shot, upload
from ui_fixture import browser_page, choose, ui_server, write_f0_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ui-checks") / "my project"
    write_f0_project(root, "singer", f0_extractor="parselmouth")
    bare = write_project(root, "zbare", speakers=["alto", "tenor"])  # listed after "singer"
    (bare / "config.yaml").unlink()  # the checkpoint alone (its spk_map) knows the singers
    write_prepared(root / "prepared" / ".diffsvc", lengths=(40, 48), valid_lengths=(30,))  # fits "singer"
    broken = root / "models" / "zbroken"  # a project whose checkpoint to resume from is damaged
    broken.mkdir()
    shutil.copy(root / "models" / "singer" / "config.yaml", broken / "config.yaml")
    (broken / "model_ckpt_steps_5.ckpt").write_bytes(b"not a checkpoint")
    wav, _ = synth_voice(2.0, SR, f0=200.0, seed=3, consonants=False)
    (root / "songs").mkdir()
    sf.write(root / "songs" / "phrase.wav", wav, SR)
    (root / "empty").mkdir()
    (root / "curves").mkdir()
    (root / "curves" / "my curve.csv").write_text("time_s,f0_hz\nnot,numbers\n")
    return root


@pytest.fixture(scope="module")
def page(workspace):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with ui_server(workspace) as url, browser_page(url) as pg:
        yield pg


def jobs(workspace: Path, kind: str) -> list[Path]:
    return sorted((workspace / "models" / ".ui" / "jobs").glob(f"*-{kind}-*"))


def test_a_multi_singer_checkpoint_without_its_config_says_so_where_the_singer_picker_would_be(page, workspace):
    note = page.locator("#singer-note")
    assert not note.locator(".diffsvc-error").count()  # "singer" has its config: nothing to say
    choose(page, "#project", "zbare")
    error = note.locator(".diffsvc-error")
    error.wait_for()
    text = error.inner_text()
    assert "no config.yaml beside it" in text and "zbare" in text and len(text.splitlines()) == 1, text
    assert not page.locator("#singer").is_visible() and not page.locator("#blend").is_visible()
    shot(page, "checks-1-no-config")
    choose(page, "#project", "singer")
    error.wait_for(state="detached")
    # a reopened page reads the project's files as they are now, not as they were when the server started
    config = workspace / "models" / "singer" / "config.yaml"
    config.rename(config.with_suffix(".away"))
    try:
        page.reload()
        error.wait_for()
        assert "singer/model_ckpt_steps_1000.ckpt: no config.yaml beside it" in error.inner_text()
    finally:
        config.with_suffix(".away").rename(config)
    page.reload()
    page.get_by_role("tab", name="Convert").wait_for()
    page.locator("#singer-note").wait_for(state="attached")
    error.wait_for(state="detached")


def test_a_training_that_cannot_start_is_its_one_line_only(page, workspace):
    """Data never preprocessed, or a negative step to stop at: the page says so and starts nothing (it
    said "started" first, and the job's error came after). A training that fails once started (its
    checkpoint is damaged) has its line replace "started"."""
    page.get_by_role("tab", name="Data & training").click()
    message = page.locator("#train-message")
    for project, data, stop_at, needles in (("fresh", "songs", "0", ("no prepared data", "songs")),
                                            ("fresh", "prepared", "-5", ("Stop at step must be 0 (the default) "
                                                                         "or more, got -5",))):
        page.locator("#train-project").get_by_role("textbox").fill(project)
        page.locator("#train-data").get_by_role("textbox").fill(str(workspace / data))
        page.locator("#train-steps input").fill(stop_at)
        page.locator("#train-start").click()
        message.locator(".diffsvc-error").get_by_text(needles[0]).wait_for(timeout=LONG)
        text = message.inner_text()
        assert all(n in text for n in needles) and len(text.splitlines()) == 1 and "started" not in text, text
        assert jobs(workspace, "train") == [] and not (workspace / "models" / "fresh").exists()
    shot(page, "checks-2-train-refused")

    page.locator("#train-project").get_by_role("textbox").fill("zbroken")
    page.locator("#train-steps input").fill("0")
    page.locator("#train-start").click()
    page.locator("#train-status .diffsvc-error").wait_for(timeout=LONG)
    assert "zbroken/model_ckpt_steps_5.ckpt" in page.locator("#train-status").inner_text()
    page.wait_for_function("!document.querySelector('#train-message').innerText.includes('started')", timeout=LONG)
    assert len(jobs(workspace, "train")) == 1
    shot(page, "checks-2-train-failed-later")


def test_preprocess_of_a_folder_without_audio_says_that_first(page, workspace):
    """The project's defaults (crepe, HuBERT-soft, neither in this workspace): the empty folder is the
    line, not the missing weights, and nothing is written in it."""
    page.get_by_role("tab", name="Data & training").click()
    page.locator("#raw-dir").get_by_role("textbox").fill(str(workspace / "empty"))
    page.locator("#preprocess-button").click()
    error = page.locator("#preprocess-status .diffsvc-error")
    error.wait_for(timeout=LONG)
    text = error.inner_text()
    assert "no audio files found" in text and str(workspace / "empty") in text, text
    assert "hubert" not in text.lower() and len(text.splitlines()) == 1, text
    assert list((workspace / "empty").iterdir()) == []
    shot(page, "checks-3-no-audio")


def test_a_dropped_file_is_named_as_the_user_knows_it(page, workspace):
    """A curve dropped in the Pitch tab that is no curve: its line names `my curve.csv`, not the
    upload's temporary path."""
    page.get_by_role("tab", name="Convert").click()
    if page.locator("#project input").input_value() != "singer":
        choose(page, "#project", "singer")
    upload(page, "#songs", workspace / "songs" / "phrase.wav")
    page.locator("#convert-button").click()
    page.locator("#convert-status").get_by_text("done").wait_for(timeout=LONG)
    page.get_by_role("tab", name="Pitch").click()
    page.locator("#pitch-plot").locator("img, svg, canvas").first.wait_for(timeout=LONG)
    page.locator("#pitch-upload input[type=file]").set_input_files(str(workspace / "curves" / "my curve.csv"))
    error = page.locator("#pitch-status .diffsvc-error")
    error.wait_for(timeout=LONG)
    text = error.inner_text()
    assert text.startswith("Error: my curve.csv: line 2:"), text
    assert "gradio" not in text and "/" not in text.split(": line")[0], text
    shot(page, "checks-4-upload-name")
