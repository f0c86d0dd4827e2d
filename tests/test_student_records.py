"""A distilled student's record and where users meet it (found by a tester trying it as a user would;
each test failed before its fix):

- a hand-edited student config.yaml whose `distill` record is wrong (its prediction disagreeing with
  the config's, an interval count or EMA rate that is not a number, or missing, or out of range) is one
  clear line naming the file, exit 2, no traceback and no checkpoint written;
- the clean-mel / noise conversions of a denoiser output (GaussianDiffusion.x0_from, eps_from) keep
  their coefficient maths in fp32 under bf16 autocast ("the sampler's sums stay fp32");
- `diffsvc distill --help` names README sections that exist;
- `diffsvc models` lists students; the web UI converts with the consistency sampler.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO, tiny_config
from diffsvc.checkpoint import find_checkpoints
from diffsvc.cli.main import main
from diffsvc.distill.student import student_root
from prepared_fixture import write_prepared

DISTILL = ["--device", "cpu", "--workers", "0", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


@pytest.fixture(scope="module")
def made_student(tmp_path_factory) -> Path:
    """A working folder with models/singer (an original-layout eps teacher, tiny) and its v student
    distilled for 1 step by the command."""
    import os

    from infer_fixture import write_project

    root = tmp_path_factory.mktemp("made")
    write_project(root, "singer", steps=(1000,), val_check_interval=100, num_valid_plots=0)
    write_prepared(root / "raw" / ".diffsvc", n_mels=128, lengths=(40, 48), valid_lengths=(30,))
    before = Path.cwd()
    os.chdir(root)
    try:
        assert main(["distill", "--project", "singer", "--steps", "1", *DISTILL]) == 0
    finally:
        os.chdir(before)
    return root


# (what the user changed in the student's config.yaml, a word the one line must contain)
BAD_RECORDS = {
    "record-prediction-disagrees": (lambda c: c["distill"].update(prediction="x0"), "prediction"),
    "intervals-not-a-number": (lambda c: c["distill"].update(intervals="twenty"), "intervals"),
    "intervals-missing": (lambda c: c["distill"].pop("intervals"), "intervals"),
    "ema-not-a-number": (lambda c: c["distill"].update(ema="fast"), "ema"),
    "ema-above-one": (lambda c: c["distill"].update(ema=2.0), "ema"),
    "weighting-misspelt": (lambda c: c["distill"].update(weighting="sqrt_alpha"), "weighting"),  # holds today
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_hand_edited_distill_record_is_one_clear_line(case, made_student, tmp_path, monkeypatch, capsys):
    edit, word = BAD_RECORDS[case]
    shutil.copytree(made_student, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    student = student_root(tmp_path / "models" / "singer")
    path = student / "config.yaml"
    config = yaml.safe_load(path.read_text())
    assert config["prediction"] == "v" and config["distill"]["prediction"] == "v"
    edit(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    capsys.readouterr()
    try:
        rc = main(["distill", "--project", "singer", "--steps", "2", *DISTILL])
    except Exception as e:  # noqa: BLE001 - what the user sees is a traceback
        pytest.fail(f"{case}: traceback instead of one line: {type(e).__name__}: {e}")
    err = capsys.readouterr().err
    assert rc == 2, f"{case}: accepted (rc {rc}); the student trained on with a record that is wrong"
    assert err.count("\n") == 1 and "config.yaml" in err and word in err, err
    assert sorted(find_checkpoints(student)) == [1]  # nothing written


@pytest.mark.parametrize("prediction,convert", [("v", "x0_from"), ("eps", "x0_from"),
                                                ("v", "eps_from"), ("x0", "eps_from")])
def test_conversions_of_a_bf16_output_keep_fp32_maths(prediction, convert):
    """Under bf16 autocast (infer's CPU default `cpu_runtime: auto` on bf16 CPUs, and train/distill's
    default mixed precision on GPUs) the denoiser's output is bf16. x0_from / eps_from cast sqrt(a),
    sqrt(1-a) to the output's dtype, so the coefficients and their products are rounded to bf16 too,
    against the pipeline's "the sampler's sums stay fp32": the result differs from the same
    conversion of that very output in fp32 by up to 0.01-0.1 (mel range [-1, 1]). Where it matters:
    the consistency sampler reads a v or x0 student through eps_from; on a tiny random student, 2-
    and 4-step sampling under bf16 moved 0.013-0.015 log-mel RMS from fp32 with this rounding and
    0.008-0.010 with fp32 coefficients. For an eps student (x0_from in the distillation loss) the
    network's own bf16 error, magnified by sqrt(1-a)/sqrt(a), is far larger, so there it is minor."""
    from diffsvc.model.diffusion import GaussianDiffusion

    torch.manual_seed(0)
    model = GaussianDiffusion.from_config(tiny_config(prediction=prediction, timesteps=1000, K_step=1000)).eval()
    with torch.no_grad():
        model.denoise_fn.output_projection.weight.normal_(0, 0.3)
    frames = 32
    units = torch.randn(3, frames, 256)
    mel2ph = torch.arange(1, frames + 1).expand(3, -1)
    f0 = torch.log2(torch.full((3, frames), 220.0))
    t = torch.tensor([249, 499, 749])
    x = torch.randn(3, 1, model.n_mels, frames)
    with torch.no_grad():
        cond = model.condition(units, mel2ph, f0).cond
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.denoise_fn(x, t, cond, None)
            assert out.dtype == torch.bfloat16
            got = getattr(model, convert)(out, x, t)
        want = getattr(model, convert)(out.float(), x, t)  # the same output, converted in fp32
    torch.testing.assert_close(got.float(), want, rtol=1e-4, atol=1e-4)


def test_the_readme_sections_distill_names_exist():
    """`diffsvc distill --help` names README sections; each must be one (a dangling "Few-step
    students" was found), and the README documents --prediction."""
    from diffsvc.cli import distill as cli

    source = Path(cli.__file__).read_text()
    named = re.findall(r'README section "([^"]+)"', source)
    assert named, "distill's help no longer points to the README"
    readme = (REPO / "README.md").read_text()
    headings = [line.lstrip("#").strip() for line in readme.splitlines() if line.startswith("#")]
    for name in named:
        assert any(name in h for h in headings), f"README has no section {name!r}"
    assert "--prediction v|x0|eps" in readme


def test_models_lists_the_projects_student(made_student, monkeypatch, capsys):
    """`diffsvc models` lists a project's distilled student (models/NAME/student, what `infer
    --sampler consistency` converts with): its steps and what it predicts (it did not mention
    students at all)."""
    monkeypatch.chdir(made_student)
    main(["models"])  # exit 1 here: the pretrained weights are missing, which it says too
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip().startswith("student:")]
    assert len(lines) == 1 and "steps 1 " in lines[0] and "predicts v" in lines[0], out
    assert "infer --sampler consistency" in lines[0]


def test_the_pages_convert_with_the_consistency_sampler_uses_the_student(made_student, tmp_path, monkeypatch, capsys):
    """The web UI's Convert tab offers the consistency sampler. With the step left at its default,
    check_settings fills in the teacher's newest step (1000); infer_command passed it as --steps,
    which for `--sampler consistency` picks the student's checkpoint of that step: there was none
    (the student has step 1), so every conversion with a student from the page failed."""
    import soundfile as sf

    from audio_synth import synth_voice
    from diffsvc.ui.app import UiContext, check_settings, infer_command

    monkeypatch.chdir(made_student)
    ctx = UiContext(made_student / "models", tmp_path / "state")
    settings = check_settings(ctx, "singer", None, "0", 1, 0)  # step: the page's default (none chosen)
    settings.update(sampler="consistency", sampling_steps=1, format="wav", device="cpu")
    sf.write(tmp_path / "song.wav", synth_voice(0.5, 44100, f0=220.0, seed=3)[0], 44100)
    argv = infer_command(ctx, tmp_path / "song.wav", tmp_path / "out.wav", settings)
    capsys.readouterr()
    rc = main(argv)
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "out.wav").is_file()
