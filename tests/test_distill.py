"""`diffsvc distill`: a consistency-distilled student of a tiny model trained on synthetic prepared data.

The resume is bit-exact, the student's checkpoint and config say what it is and load wherever a
denoiser loads, infer converts with it in 1, 2 and 4 steps, and the student gets closer to its
teacher's many-step solution than the teacher's DDIM does at the same number of steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import tiny_config
from diffsvc.checkpoint import find_checkpoints, load_model
from diffsvc.cli.main import main
from diffsvc.config import load_config, save_config
from diffsvc.data.batch import collate
from diffsvc.data.dataset import PieceDataset
from diffsvc.data.prepared import PreparedData
from diffsvc.distill.objective import TARGET, consistency_grid
from diffsvc.distill.student import student_root
from diffsvc.distill.trainer import distill
from diffsvc.errors import DiffSvcError
from diffsvc.evaluation.metrics import log_mel_distance
from diffsvc.sampling import make_sampler
from diffsvc.sampling.consistency import boundary_scalings, consistency_timesteps
from diffsvc.training.checkpointing import RESUME_KEY
from diffsvc.training.loop import TrainOptions, train
from diffsvc.training.project import Project
from prepared_fixture import write_prepared

N_MELS = 16
MODEL = dict(audio_num_mel_bins=N_MELS, keep_bins=N_MELS, residual_channels=16, timesteps=1000, K_step=1000)
TEACHER_STEPS = 300


def quiet(_msg: str) -> None:
    pass


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models, one thread


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_prepared(tmp_path_factory.mktemp("prepared"), n_mels=N_MELS)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data_dir) -> Path:
    """A tiny teacher trained TEACHER_STEPS steps (its students inherit its config: no validation
    in these short runs)."""
    root = tmp_path_factory.mktemp("teacher")
    base = root / "base.yaml"
    save_config(tiny_config(**MODEL, val_check_interval=100, num_ckpt_keep=1, log_interval=50, num_valid_plots=0,
                            lr=5e-3, decay_steps=600, max_sentences=4, sampler="ddim", sampling_steps=4), base)
    result = train(TrainOptions(project=Project(root / "models" / "t"), data_dir=data_dir, base_config=base,
                                max_steps=TEACHER_STEPS, device="cpu", workers=0, progress=False), log=quiet)
    return result.checkpoint


@pytest.fixture(scope="module")
def validating_teacher(tmp_path_factory, teacher) -> Path:
    """The same teacher with a config whose students validate every 3 steps, one piece plotted."""
    folder = tmp_path_factory.mktemp("validating")
    config = load_config(teacher.parent / "config.yaml").replace(val_check_interval=3, num_valid_plots=1)
    save_config(config, folder / "config.yaml")
    (folder / teacher.name).write_bytes(teacher.read_bytes())
    return folder / teacher.name


def student_options(root: Path, data_dir: Path, max_steps: int) -> TrainOptions:
    return TrainOptions(project=Project(root), data_dir=data_dir, max_steps=max_steps, device="cpu", workers=0,
                        progress=False)


def test_resume_continues_the_distillation_bit_exactly(tmp_path, data_dir, validating_teacher):
    teacher = validating_teacher
    straight = distill(student_options(tmp_path / "straight", data_dir, 6), teacher, log=quiet)
    first = distill(student_options(tmp_path / "resumed", data_dir, 4), teacher, log=quiet)
    assert first.global_step == 4  # mid-epoch (2 batches per epoch), after a validation at step 3
    second = distill(student_options(tmp_path / "resumed", data_dir, 6), log=quiet)  # the teacher it recorded
    assert [r.step for r in second.history] == [5, 6]
    for a, b in zip(straight.history[4:], second.history):
        assert a.items == b.items and a.loss == b.loss and a.lr == b.lr
    ca, cb = (torch.load(r.checkpoint, map_location="cpu", weights_only=True) for r in (straight, second))
    for key, value in ca["state_dict"].items():
        assert torch.equal(value, cb["state_dict"][key]), key
    target_a, target_b = ca[RESUME_KEY]["extras"][TARGET], cb[RESUME_KEY]["extras"][TARGET]
    for key, value in target_a.items():
        assert torch.equal(value, target_b[key]), key
    assert int(target_a["updated_at"]) >= 5  # the target network followed the student
    # the student moved away from the teacher, and its target network lags behind it
    teacher_w = load_model(teacher).model.state_dict()
    key = "denoise_fn.output_projection.weight"
    assert not torch.equal(ca["state_dict"]["model." + key], teacher_w[key])
    assert not torch.equal(target_a["model." + key], ca["state_dict"]["model." + key])
    # TensorBoard got the distillation loss and the student-vs-teacher pictures
    logs = list((tmp_path / "straight" / "logs").rglob("events.out.tfevents*"))
    assert logs and any(b"student_vs_teacher/0" in p.read_bytes() for p in logs)
    assert any(b"val/student_teacher_rms" in p.read_bytes() for p in logs)
    assert any(b"eval/" in p.read_bytes() for p in logs)  # eval's figures, sampled as the student samples


def test_the_student_says_what_it_is_and_loads_as_a_denoiser(tmp_path, data_dir, teacher):
    result = distill(student_options(tmp_path / "s", data_dir, 2), teacher, log=quiet)
    ckpt = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    record = ckpt["distill"]
    assert record["method"] == "consistency" and record["solver"] == "ddim"
    assert record["teacher"] == str(teacher) and record["teacher_step"] == TEACHER_STEPS
    assert record["sampling_steps"] == [1, 2, 4] and record["intervals"] >= 1 and 0 <= record["ema"] < 1
    config = load_config(tmp_path / "s" / "config.yaml")
    assert config.distill == record and config.sampler == "consistency" and config.sampling_steps == 2
    student, original = load_model(result.checkpoint), load_model(teacher)
    assert student.config.distill == record  # the pair loads like any model
    assert student.model.state_dict().keys() == original.model.state_dict().keys()
    torch.testing.assert_close(student.model.spec_min, original.model.spec_min)
    # a teacher asked to continue a student that is not its own is refused
    other = tmp_path / "elsewhere" / teacher.name
    other.parent.mkdir()
    other.write_bytes(teacher.read_bytes())
    (other.parent / "config.yaml").write_bytes((teacher.parent / "config.yaml").read_bytes())
    with pytest.raises(Exception, match="is a student of"):
        distill(student_options(tmp_path / "s", data_dir, 3), other, log=quiet)


class ValidationSampler:
    """The validation pieces sampled from one start noise by any model and sampler, and their
    reconstruction error (eval's log-mel distance to the real mels)."""

    def __init__(self, data_dir: Path):
        valid = PieceDataset(PreparedData.find(data_dir), "valid")
        self.batch = collate([valid[i] for i in range(len(valid))])
        b = self.batch
        self.noise = torch.randn(b.items, 1, N_MELS, b.mel2ph.shape[1], generator=torch.Generator().manual_seed(0))

    @torch.no_grad()
    def __call__(self, model, name: str, steps: int) -> torch.Tensor:
        b = self.batch
        return model.sample(b.units, b.mel2ph, b.f0, make_sampler(name, model.schedule(), steps), lengths=b.lengths,
                            noise=self.noise)

    def reconstruction(self, mel: torch.Tensor) -> float:
        b = self.batch
        return float(np.mean([log_mel_distance(mel[i, :n].numpy(), b.mel[i, :n].numpy())
                              for i, n in enumerate(b.lengths.tolist())]))


def test_the_student_beats_the_teachers_ddim_at_the_same_steps(tmp_path, data_dir, teacher):
    """Distance to the teacher's 1000-step DDIM solution from the same start noise, on the
    validation pieces, of a student that outputs what its (eps) teacher outputs: the consistency
    objective and sampler themselves. (Most of its lead at 2 steps comes from where its steps lie:
    see benchmarks/distill.py, which also samples the teacher at the student's steps.)"""
    result = distill(student_options(tmp_path / "s", data_dir, 100), teacher, log=quiet,
                     record_options={"prediction": "eps"})
    t_model, s_model = load_model(teacher).model, load_model(result.checkpoint).model
    assert s_model.prediction == "eps"
    sample = ValidationSampler(data_dir)
    reference = sample(t_model, "ddim", 1000)
    distance = {(name, n): float((sample(model, name, n) - reference).pow(2).mean().sqrt())
                for name, model in (("ddim", t_model), ("consistency", s_model)) for n in (1, 2)}
    assert distance["consistency", 2] < 0.9 * distance["ddim", 2], distance
    assert distance["consistency", 1] < 1.2 * distance["ddim", 1], distance  # 1 step: no worse than 20% off


def test_the_default_student_of_an_eps_teacher_predicts_v_and_reconstructs_better(tmp_path, data_dir, teacher):
    """An eps teacher's student outputs v (its x0 estimate is not its noise estimate magnified
    158x at the noisiest step): in 2 steps it reconstructs the validation pieces better than the
    teacher's DDIM in 20 (benchmarks/distill.py measures it at a larger size, with the texture)."""
    result = distill(student_options(tmp_path / "s", data_dir, 100), teacher, log=quiet)
    student = load_model(result.checkpoint)
    assert load_model(teacher).model.prediction == "eps"
    assert student.model.prediction == "v" and student.config.distill["prediction"] == "v"
    assert torch.load(result.checkpoint, map_location="cpu", weights_only=True)["prediction"] == "v"
    sample = ValidationSampler(data_dir)
    teacher_error = sample.reconstruction(sample(load_model(teacher).model, "ddim", 20))
    student_error = sample.reconstruction(sample(student.model, "consistency", 2))
    assert student_error < 0.8 * teacher_error, (student_error, teacher_error)
    # a student keeps what it predicts: asking a running one for another is refused, in one line
    with pytest.raises(DiffSvcError, match="predicts v, not eps.*--reset"):
        distill(student_options(tmp_path / "s", data_dir, 101), teacher, log=quiet,
                record_options={"prediction": "eps"})


def test_the_student_of_an_x0_teacher_predicts_x0(tmp_path, data_dir, teacher):
    folder = tmp_path / "x0teacher"
    folder.mkdir()
    ckpt = torch.load(teacher, map_location="cpu", weights_only=True)
    ckpt["prediction"] = "x0"  # the same weights read as an x0 model: what distill chooses depends on the record
    torch.save(ckpt, folder / teacher.name)
    save_config(load_config(teacher.parent / "config.yaml").replace(prediction="x0"), folder / "config.yaml")
    result = distill(student_options(tmp_path / "s", data_dir, 1), folder / teacher.name, log=quiet)
    assert load_model(result.checkpoint).model.prediction == "x0"
    assert load_config(tmp_path / "s" / "config.yaml").distill["weighting"] == "uniform"


def test_consistency_sampler_parts():
    c_skip, c_out = boundary_scalings(torch.tensor([0, 1, 500]))
    assert float(c_skip[0]) == 1.0 and float(c_out[0]) == 0.0  # f(x, 0) = x: the boundary condition
    assert float(c_skip[1]) < 0.01 and float(c_out[2]) > 0.999  # elsewhere the network's x0 estimate
    assert consistency_timesteps(1000, 1) == [999]
    assert consistency_timesteps(1000, 2) == [999, 100]
    assert consistency_timesteps(1000, 4) == [999, 699, 400, 100]
    assert consistency_timesteps(50, 2) == [49, 5]  # shallow diffusion: the same places in a shorter range
    assert consistency_timesteps(3, 8) == [2, 1, 0]
    grid = consistency_grid(1000, 20)
    assert grid[0] == 0 and grid[-1] == 999 and len(grid) == 21 and bool((grid.diff() > 0).all())


def test_consistency_sampler_on_a_padded_batch_equals_one_at_a_time():
    torch.manual_seed(0)
    config = tiny_config(spec_min=[-5.0] * 128, spec_max=[0.0] * 128, sampler="consistency",
                         distill={"method": "consistency"})
    from diffsvc.model.diffusion import GaussianDiffusion

    model = GaussianDiffusion.from_config(config).eval()
    torch.nn.init.normal_(model.denoise_fn.output_projection.weight, std=0.3)
    lengths = [23, 9, 16]
    g = torch.Generator().manual_seed(0)
    units = torch.randn(3, 23, 256, generator=g)
    mel2ph = torch.zeros(3, 23, dtype=torch.long)
    for i, n in enumerate(lengths):
        mel2ph[i, :n] = torch.arange(1, n + 1)
    f0 = torch.log2(torch.full((3, 23), 220.0))
    noise = torch.randn(3, 1, 128, 23, generator=g)
    for steps in (1, 2, 4):
        sampler = make_sampler("consistency", model.schedule(), steps)
        assert sampler.num_denoiser_calls(model.K_step) == steps
        with torch.no_grad():
            batched = model.sample(units, mel2ph, f0, sampler, lengths=torch.tensor(lengths), noise=noise)
            for i, n in enumerate(lengths):
                single = model.sample(units[i:i + 1, :n], mel2ph[i:i + 1, :n], f0[i:i + 1, :n], sampler,
                                      lengths=torch.tensor([n]), noise=noise[i:i + 1, ..., :n])
                torch.testing.assert_close(batched[i:i + 1, :n], single, rtol=1e-4, atol=1e-4)
                assert (batched[i, n:] == 0).all()


# --- the commands -----------------------------------------------------------------------------

def test_distill_then_infer_and_eval_with_the_student(tmp_path, monkeypatch, capsys):
    """A 44.1 kHz project (the infer fixture's tiny random model) distilled by the command, then
    converted by infer with --sampler consistency in 1, 2 and 4 steps: the output has the input's
    length; eval scores the student (its report in the student's folder); a project without a
    student and a student asked for another sampler are one clear line each."""
    from audio_synth import synth_voice
    from infer_fixture import write_project

    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "singer", steps=(1000,), val_check_interval=2, num_valid_plots=0)
    write_prepared(tmp_path / "raw" / ".diffsvc", n_mels=128, lengths=(40, 48), valid_lengths=(30,))
    wav, _ = synth_voice(1.5, 44100, f0=[(1.0, 220.0), (0.5, 0.0)], seed=0)
    sf.write(tmp_path / "song.wav", wav, 44100)

    assert main(["infer", "song.wav", "--project", "singer", "--sampler", "consistency", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "diffsvc distill --project singer" in err

    assert main(["distill", "--project", "singer", "--steps", "2", "--device", "cpu", "--workers", "0",
                 "--no-progress"]) == 0
    capsys.readouterr()
    student = student_root(tmp_path / "models" / "singer")
    assert sorted(find_checkpoints(student)) == [2]
    # the teacher is an original-layout (eps) checkpoint: its student predicts v, and keeps doing so
    assert load_model(student / "model_ckpt_steps_2.ckpt").model.prediction == "v"
    assert main(["distill", "--project", "singer", "--steps", "3", "--prediction", "eps", "--device", "cpu",
                 "--workers", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "predicts v, not eps" in err and "--reset" in err
    for steps in (1, 2, 4):
        rc = main(["infer", "song.wav", "--project", "singer", "--sampler", "consistency", "--sampling-steps",
                   str(steps), "--seed", "0", "--out", f"out{steps}.wav", "--quiet"])
        assert rc == 0, capsys.readouterr().err
        out, sr = sf.read(tmp_path / f"out{steps}.wav")
        assert sr == 44100 and len(out) == len(wav) and np.abs(out).max() > 0
        assert f"consistency {steps} steps" in capsys.readouterr().err
    # the student's own checkpoint samples with the consistency sampler by default, and only with it
    ckpt = str(student / "model_ckpt_steps_2.ckpt")
    assert main(["infer", "song.wav", "--ckpt", ckpt, "--out", "own.wav", "--seed", "0", "--quiet"]) == 0
    assert "consistency 2 steps" in capsys.readouterr().err
    assert main(["infer", "song.wav", "--ckpt", ckpt, "--sampler", "ddim", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "distilled student" in err and "--sampler consistency" in err
    # eval picks the student the same way
    assert main(["eval", "--project", "singer", "--sampler", "consistency", "--sampling-steps", "1", "--device",
                 "cpu"]) == 0, capsys.readouterr().err
    report = json.loads((student / "eval.json").read_text())
    assert [r["step"] for r in report["rows"]] == [2] and report["settings"]["sampler"] == "consistency"
    assert report["rows"][0]["recon_log_mel_l1"] > 0
    assert not (tmp_path / "models" / "singer" / "eval.json").exists()


def test_multi_singer_distillation_logs_validation_figures(tmp_path, monkeypatch, capsys):
    """The student's validation figures load each piece with its singer, as training's do."""
    from infer_fixture import write_project
    from prepared_fixture import write_prepared

    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "duo", speakers=["alto", "tenor"], val_check_interval=2, num_valid_plots=0)
    write_prepared(tmp_path / "raw" / ".diffsvc", n_mels=128, lengths=(40, 48, 44, 52), valid_lengths=(30, 34),
                   singers=("alto", "tenor"))
    assert main(["distill", "--project", "duo", "--steps", "2", "--device", "cpu", "--workers", "0",
                 "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "validation figures disabled" not in out.out + out.err


def _student_of(project: Path) -> Path:
    """models/NAME/student/ made by hand from the project's own checkpoint (the layout `diffsvc distill`
    writes: the student config with its distill record, a checkpoint beside it); no distillation run."""
    import shutil

    from diffsvc.distill.student import distill_record, student_config

    teacher = project / "model_ckpt_steps_1000.ckpt"
    folder = student_root(project)
    folder.mkdir()
    config = load_config(project / "config.yaml")
    # the teacher's own weights: the student predicts what they were trained to
    save_config(student_config(config, distill_record(teacher, 1000, prediction=config.prediction)),
                folder / "config.yaml")
    shutil.copy(teacher, folder / "model_ckpt_steps_2.ckpt")
    return folder


def test_a_step_count_the_student_was_not_distilled_for_runs_with_one_warning(tmp_path, monkeypatch, capsys):
    """Consistency sampling runs at any count, so infer does not refuse 3 steps of a student distilled for
    [1, 2, 4]: it converts and says so in one warning line (none for 2); eval warns the same way. Below 1
    is refused in one line, for the student and for every teacher sampler alike, and so is the library's
    make_sampler (which took 0 for a default, or -3 for one step)."""
    from audio_synth import synth_voice
    from cli_checks import one_error_line
    from infer_fixture import write_project

    monkeypatch.chdir(tmp_path)
    _student_of(write_project(tmp_path, "singer"))
    wav, _ = synth_voice(1.0, 44100, f0=220.0, seed=0)
    sf.write(tmp_path / "song.wav", wav, 44100)
    common = ["--project", "singer", "--sampler", "consistency", "--seed", "0", "--quiet"]

    assert main(["infer", "song.wav", *common, "--sampling-steps", "3", "--out", "three.wav"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1, err
    assert "3 steps" in warnings[0] and "1, 2, 4" in warnings[0], warnings
    assert "consistency 3 steps" in err and len(sf.read(tmp_path / "three.wav")[0]) == len(wav)
    assert main(["infer", "song.wav", *common, "--sampling-steps", "2", "--out", "two.wav"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["infer", "song.wav", *common, "--out", "default.wav"]) == 0  # the student's own 2
    assert "warning" not in capsys.readouterr().err

    # eval: the same line before its own work (here: nothing to evaluate, which is its error)
    assert main(["eval", "--project", "singer", "--sampler", "consistency", "--sampling-steps", "3"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("diffsvc eval: warning:") and "1, 2, 4" in err[0], err

    for sampler in ("consistency", "ddim", "dpm-solver++", "plms", "ddpm"):
        for steps in ("0", "-1"):
            one_error_line(main(["infer", "song.wav", "--project", "singer", "--sampler", sampler, "--sampling-steps",
                                 steps, "--quiet"]), capsys.readouterr().err,
                           f"--sampling-steps must be at least 1, got {steps}")
    from diffsvc.errors import DiffSvcError
    from diffsvc.model.diffusion import GaussianDiffusion

    model = GaussianDiffusion.from_config(tiny_config(**MODEL))
    for sampler in ("consistency", "ddim", "dpm-solver++", "plms", "ddpm"):
        for steps in (0, -3):
            with pytest.raises(DiffSvcError, match=f"sampling steps must be at least 1, got {steps}"):
                make_sampler(sampler, model.schedule(), steps)
