"""`diffsvc train`: a tiny model trained for a few steps on the CPU on synthetic prepared data."""

from __future__ import annotations

import io
import math
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import REPO, tiny_config
from diffsvc.checkpoint import PREFIX, find_checkpoints, load_model
from diffsvc.config import load_config, save_config
from diffsvc.errors import DiffSvcError
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.training import batch_size as bs
from diffsvc.training.project import Project
from diffsvc.data.batch import collate
from diffsvc.training.checkpointing import RESUME_KEY
from diffsvc.training.loop import Trainer, TrainingStopped, TrainOptions, train
from diffsvc.training.objective import LossModule, batch_loss
from diffsvc.training.step import split_batch
from prepared_fixture import write_prepared
from procs import run

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_prepared(tmp_path_factory.mktemp("prepared"), n_mels=N_MELS)


# 16 mel bins (the data's too) and 16 channels: a denoiser small enough to learn in a few dozen
# CPU steps; the full 1000-step schedule, since a short one leaves too little noise to predict.
N_MELS = 16
MODEL = dict(audio_num_mel_bins=N_MELS, keep_bins=N_MELS, residual_channels=16, timesteps=1000, K_step=1000)


def write_config(path: Path, **overrides) -> Path:
    values = dict(MODEL, val_check_interval=3, num_ckpt_keep=2, log_interval=1, num_valid_plots=0, lr=1e-2,
                  max_sentences=4, pndm_speedup=100)
    values.update(overrides)
    save_config(tiny_config(**values), path)
    return path


def options(tmp_path: Path, data_dir: Path, name: str = "p", **kw) -> TrainOptions:
    base = kw.pop("base_config", None) or write_config(tmp_path / f"{name}-base.yaml")
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    kw.setdefault("workers", 0)
    return TrainOptions(project=Project(tmp_path / "models" / name), data_dir=data_dir, base_config=base, **kw)


def quiet(_msg: str) -> None:
    pass


def weights(model_or_path) -> dict[str, torch.Tensor]:
    if isinstance(model_or_path, Path):
        return load_model(model_or_path).model.state_dict()
    return model_or_path.state_dict()


def test_loss_falls_and_checkpoints_are_in_the_original_layout(tmp_path, data_dir):
    base = write_config(tmp_path / "base.yaml", val_check_interval=10, num_ckpt_keep=2, num_valid_plots=1)
    opts = options(tmp_path, data_dir, base_config=base, max_steps=30)
    trainer = Trainer(opts, log=quiet)
    trainer.build()
    before = trainer.validate()  # fixed noise per validation piece: comparable across steps
    result = trainer.run()
    after = trainer.validate()
    assert after < 0.95 * before, (before, after)
    losses = [r.loss for r in result.history]
    assert len(losses) == 30
    assert sum(losses[-10:]) < sum(losses[:10])

    project = opts.project
    assert sorted(find_checkpoints(project.root)) == [20, 30]  # every 10 steps, newest 2 kept
    assert (project.root / "config.yaml").exists() and any((project.root / "logs").iterdir())
    ckpt = torch.load(project.root / "model_ckpt_steps_30.ckpt", map_location="cpu", weights_only=True)
    for key in ("epoch", "global_step", "checkpoint_callback_best", "optimizer_states", "lr_schedulers", "state_dict"):
        assert key in ckpt
    assert ckpt["global_step"] == 30
    assert all(k.startswith(PREFIX) for k in ckpt["state_dict"])
    assert "model.denoise_fn.input_projection.weight" in ckpt["state_dict"]
    assert ckpt["lr_schedulers"][0]["step_size"] == 40000 and ckpt["lr_schedulers"][0]["gamma"] == 0.5
    assert ckpt["optimizer_states"][0]["param_groups"][0]["betas"] == (0.9, 0.98)
    # The project's config carries the data's per-bin statistics, and the pair loads as a model.
    loaded = load_model(project.root / "model_ckpt_steps_30.ckpt")
    assert len(loaded.config.spec_min) == N_MELS
    assert loaded.model.spec_min.shape == (1, 1, N_MELS)
    assert loaded.global_step == 30
    for k, v in trainer.state.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[k], v)
    x = loaded.model.spec_max - loaded.model.spec_min
    assert bool((x > 0).all())


def test_resume_continues_exactly_where_it_stopped(tmp_path, data_dir):
    base = write_config(tmp_path / "base.yaml")
    straight = train(options(tmp_path, data_dir, "straight", base_config=base, max_steps=6), log=quiet)
    first = train(options(tmp_path, data_dir, "resumed", base_config=base, max_steps=3), log=quiet)
    assert first.global_step == 3  # mid-epoch: 2 batches per epoch
    second = train(options(tmp_path, data_dir, "resumed", base_config=base, max_steps=6), log=quiet)
    assert [r.step for r in second.history] == [4, 5, 6]
    for a, b in zip(straight.history[3:], second.history):
        assert a.items == b.items  # the same next batches
        assert a.loss == pytest.approx(b.loss, rel=1e-6, abs=1e-7)  # and the same losses
        assert a.lr == b.lr
    wa, wb = weights(straight.checkpoint), weights(second.checkpoint)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes_with_its_loss_scaler(tmp_path, data_dir, precision):
    # the autocast and GradScaler code CUDA uses, run on the CPU (where it is opt-in)
    base = write_config(tmp_path / "base.yaml")
    messages = []
    first = train(options(tmp_path, data_dir, precision, base_config=base, max_steps=2, precision=precision),
                  log=messages.append)
    assert any(("fp16 with a loss scaler" if precision == "fp16" else "bf16") in m for m in messages)
    assert all(math.isfinite(r.loss) for r in first.history) and len(first.history) == 2
    ckpt = torch.load(first.checkpoint, map_location="cpu", weights_only=True)
    scaler_state = ckpt[RESUME_KEY]["scaler"]
    if precision == "fp16":
        assert scaler_state["scale"] > 0  # the scaler's state travels with the checkpoint
    else:
        assert scaler_state == {}  # bf16 needs no scaler
    trainer = Trainer(options(tmp_path, data_dir, precision, base_config=base, max_steps=3, precision=precision),
                      log=quiet)
    state = trainer.build()  # builds and restores from the newest checkpoint, as run() does first
    assert state.step == 2
    if precision == "fp16":
        assert state.scaler.get_scale() == scaler_state["scale"]
    fp32 = train(options(tmp_path, data_dir, "fp32", base_config=base, max_steps=2, precision="fp32"), log=quiet)
    assert first.history[0].loss != fp32.history[0].loss  # autocast really ran in lower precision
    assert first.history[0].loss == pytest.approx(fp32.history[0].loss, rel=0.05)


def test_a_run_killed_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, data_dir):
    base = write_config(tmp_path / "base.yaml", val_check_interval=2, num_valid_plots=0)
    opts = options(tmp_path, data_dir, base_config=base, max_steps=6)
    script = textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from diffsvc.training.project import Project
        from diffsvc.training.trainer import TrainOptions, train
        real_save, calls = torch.save, []
        def dying_save(obj, f, *a, **k):
            calls.append(f)
            if len(calls) == 2:  # the second checkpoint: write half of it, then die at once
                real_save(obj, f, *a, **k)
                f.flush()
                name = f.name
                size = os.path.getsize(name)
                with open(name, "r+b") as fh:
                    fh.truncate(size // 2)
                os._exit(9)
            return real_save(obj, f, *a, **k)
        torch.save = dying_save
        train(TrainOptions(project=Project({str(opts.project.root)!r}), data_dir=Path({str(data_dir)!r}),
                           base_config=Path({str(base)!r}), max_steps=6, device="cpu", workers=0, progress=False))
    """)
    proc = run([sys.executable, "-c", script], timeout=300)
    assert proc.returncode == 9, proc.stderr
    root = opts.project.root
    assert sorted(find_checkpoints(root)) == [2]  # the half-written step-4 file never got its name
    assert any(".part" in p.name for p in root.iterdir())  # (the partial file is there, under a temporary name)
    assert load_model(root / "model_ckpt_steps_2.ckpt").global_step == 2
    # Training picks up from it, and --reset would clear the partial file too.
    result = train(options(tmp_path, data_dir, base_config=base, max_steps=3), log=quiet)
    assert [r.step for r in result.history] == [3]
    assert any(".part" in p.name for p in opts.project.reset_targets())


def test_padding_does_not_change_the_masked_loss_and_split_batches_add_up(data_dir):
    from diffsvc.data.dataset import PieceDataset
    from diffsvc.data.prepared import PreparedData

    torch.manual_seed(0)
    config = tiny_config(**MODEL, spec_min=[-6.0], spec_max=[0.0])
    model = GaussianDiffusion.from_config(config)
    fn = LossModule(model)
    data = PieceDataset(PreparedData.find(data_dir), "train")
    items = [data[i] for i in (0, 5, 2)]  # each knows its index (and epoch 0)
    kw = dict(seed=3, k_step=model.K_step, n_mels=model.n_mels, device=torch.device("cpu"))

    alone = batch_loss(fn, collate(items[:1]), masked=True, **kw)
    padded = collate(items[:1])
    extra = 37
    for key in ("mel", "f0", "mel2ph"):
        v = getattr(padded, key)
        setattr(padded, key, torch.cat([v, torch.zeros(v.shape[0], extra, *v.shape[2:], dtype=v.dtype)], dim=1))
    with torch.no_grad():
        torch.testing.assert_close(batch_loss(fn, padded, masked=True, **kw), alone, rtol=1e-5, atol=1e-6)
        # Without the mask (the original's loss) padding does change it.
        assert abs(float(batch_loss(fn, padded, masked=False, **kw)) - float(alone)) > 1e-3

        # Retrying a batch in parts (after running out of memory) gives the same loss, either way.
        batch = collate(items)
        for masked in (True, False):
            whole = batch_loss(fn, batch, masked=masked, **kw)
            for parts in (2, 3):
                total = sum(w * batch_loss(fn, c, masked=masked, **kw) for c, w in split_batch(batch, parts, masked))
                torch.testing.assert_close(total, whole, rtol=1e-5, atol=1e-6)


def test_items_keep_the_original_limits_max_frames_and_max_input_tokens():
    import numpy as np

    from diffsvc.data.dataset import make_item
    from diffsvc.features.align import align_content_to_mel

    rng = np.random.default_rng(0)
    mel = rng.standard_normal((200, 8)).astype(np.float32)
    f0 = np.full(200, 220.0, dtype=np.float32)
    units = rng.standard_normal((70, 4)).astype(np.float32)
    whole = make_item(mel, f0, units)
    assert whole.mel.shape == (200, 8) and whole.units.shape == (70, 4)
    assert make_item(mel, f0, units, max_frames=120).mel.shape[0] == 120
    cut = make_item(mel, f0, units, max_input_tokens=30)
    # the units are cut to 30, and so are the mel frames that read units past them
    assert cut.units.shape[0] == 30 and int(cut.mel2ph.max()) == 30
    frames = int((align_content_to_mel(70, 200) <= 30).sum())
    assert cut.mel.shape[0] == cut.f0.shape[0] == cut.mel2ph.shape[0] == frames < 200
    torch.testing.assert_close(cut.mel, whole.mel[:frames])
    torch.testing.assert_close(cut.mel2ph, whole.mel2ph[:frames])


def test_batch_chooser_arithmetic():
    gib, mib = 2**30, 2**20
    # Peaks measured at 1000, 2000 and 4000 frames: 2 GiB fixed, 1 MiB per frame.
    line = bs.fit_memory_line([(1000, 2 * gib + 1000 * mib), (2000, 2 * gib + 2000 * mib), (4000, 2 * gib + 4000 * mib)])
    assert line.fixed == pytest.approx(2 * gib) and line.per_frame == pytest.approx(mib)
    # 80 GiB available, 15% margin: 68 GiB - 2 GiB fixed - 1 GiB optimizer = 65 GiB = 66560 frames -> 66 items
    assert bs.choose_batch_size(80 * gib, line, 1000, extra_fixed_bytes=gib, margin=0.15, max_items=88) == 66
    assert bs.choose_batch_size(80 * gib, line, 1000, extra_fixed_bytes=gib, margin=0.15, max_items=40) == 40
    assert bs.choose_batch_size(8 * gib, line, 1000, margin=0.0) == 6  # (8 - 2) GiB / 1000 MiB
    assert bs.choose_batch_size(2 * gib, line, 1000, margin=0.0) == 0  # not even one item fits
    plan = bs.plan_for_items(6, 1000, 6000, "test")
    assert (plan.max_sentences, plan.max_tokens) == (6, 6000)
    with pytest.raises(ValueError):
        bs.fit_memory_line([(1000, gib)])
    assert bs.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not bs.is_out_of_memory(RuntimeError("shape mismatch"))


def test_out_of_memory_halves_the_batch_and_keeps_the_step(tmp_path, data_dir):
    opts = options(tmp_path, data_dir, max_steps=3)
    reference = train(options(tmp_path, data_dir, "ref", base_config=opts.base_config, max_steps=3), log=quiet)

    real_loss = GaussianDiffusion.loss
    calls = {"n": 0}

    def flaky_loss(self, mel, *a, **k):
        calls["n"] += 1
        if mel.shape[0] > 2:  # pretend that more than two items do not fit
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_loss(self, mel, *a, **k)

    messages = []
    GaussianDiffusion.loss = flaky_loss
    try:
        result = train(opts, log=messages.append)
    finally:
        GaussianDiffusion.loss = real_loss
    assert any("out of memory" in m for m in messages)
    assert [r.step for r in result.history] == [1, 2, 3]
    for a, b in zip(reference.history, result.history):
        assert a.items == b.items
        assert a.loss == pytest.approx(b.loss, rel=1e-5)


def test_nan_losses_skip_steps_then_stop_with_the_last_checkpoint_intact(tmp_path, data_dir):
    base = write_config(tmp_path / "base.yaml", val_check_interval=2, num_valid_plots=0)
    opts = options(tmp_path, data_dir, base_config=base, max_steps=2)
    train(opts, log=quiet)
    good = opts.project.root / "model_ckpt_steps_2.ckpt"
    before = good.read_bytes()
    bad_data = write_prepared(tmp_path / "nan-data", nan_pieces=8, n_mels=N_MELS)  # every training mel is NaN
    messages = []
    with pytest.raises(TrainingStopped, match="not finite for 5 steps in a row"):
        train(options(tmp_path, bad_data, base_config=base, max_steps=10), log=messages.append)
    assert sum("step skipped" in m for m in messages) == 5
    assert sorted(find_checkpoints(opts.project.root)) == [2] and good.read_bytes() == before


def test_sigterm_saves_a_checkpoint_before_exiting(tmp_path, data_dir):
    def on_step(record):
        if record.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    base = write_config(tmp_path / "base.yaml", val_check_interval=100)
    result = train(options(tmp_path, data_dir, base_config=base, max_steps=50), on_step=on_step, log=quiet)
    assert result.stopped_by_signal and result.global_step == 2
    ckpt = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert result.checkpoint.name == "model_ckpt_steps_2.ckpt" and ckpt[RESUME_KEY]["data_position"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are put back


def test_init_from_takes_the_weights_but_keeps_this_datas_statistics(tmp_path, data_dir):
    base = write_config(tmp_path / "base.yaml", val_check_interval=100)
    source = train(options(tmp_path, data_dir, "source", base_config=base, max_steps=2), log=quiet).checkpoint
    # An original-style checkpoint: weights only, no optimizer or resume state, its config beside it.
    original = tmp_path / "original" / "model_ckpt_steps_2.ckpt"
    original.parent.mkdir()
    ckpt = torch.load(source, map_location="cpu", weights_only=True)
    torch.save({k: ckpt[k] for k in ("epoch", "global_step", "checkpoint_callback_best", "state_dict")}, original)
    save_config(load_config(source.parent / "config.yaml").replace(spec_min=[-7.0], spec_max=[1.0]),
                original.parent / "config.yaml")
    trainer = Trainer(options(tmp_path, data_dir, "finetune", base_config=base, init_from=original), log=quiet)
    state = trainer.build()
    src = weights(source)
    got = state.model.state_dict()
    for k, v in src.items():
        if k in ("spec_min", "spec_max"):
            assert len(set(got[k].flatten().tolist())) > 1  # this data's per-bin values, not [-7]/[1]
        else:
            torch.testing.assert_close(got[k], v)
    assert state.step == 0
    with pytest.raises(DiffSvcError, match="already has checkpoints"):
        train(options(tmp_path, data_dir, "source", base_config=base, init_from=original, max_steps=3), log=quiet)


def test_cli_reset_asks_and_refuses_without_a_terminal(tmp_path, data_dir, monkeypatch):
    from diffsvc.cli import train as cli

    monkeypatch.chdir(tmp_path)
    base = write_config(tmp_path / "base.yaml", val_check_interval=100)
    args = ["train", "--project", "p", "--data", str(data_dir), "--config", str(base), "--max-steps", "1",
            "--device", "cpu", "--workers", "0", "--no-progress"]
    from diffsvc.cli.main import main

    assert main(args) == 0
    root = tmp_path / "models" / "p"
    assert sorted(find_checkpoints(root)) == [1]
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(args + ["--reset"]) == 2  # no terminal: refused, nothing deleted
    assert sorted(find_checkpoints(root)) == [1]
    with pytest.raises(DiffSvcError, match="cancelled"):
        tty = io.StringIO("n\n")
        tty.isatty = lambda: True
        monkeypatch.delenv("CI", raising=False)
        monkeypatch.setattr(sys, "stdin", tty)
        cli.confirm_reset(Project(root).reset_targets(), root, yes=False)
    assert main(args + ["--reset", "--yes"]) == 0
    assert sorted(find_checkpoints(root)) == [1]
    assert load_model(root / "model_ckpt_steps_1.ckpt").raw[RESUME_KEY]["data_position"] == 1


def test_two_process_ddp_agrees_with_one_process(tmp_path, data_dir):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    ddp_base = write_config(tmp_path / "ddp.yaml", val_check_interval=100, num_valid_plots=0)
    one_base = write_config(tmp_path / "one.yaml", val_check_interval=100, num_valid_plots=0, accumulate_grad_batches=2)
    # 8 pieces in 4 batches of 2: each process takes every other batch, the single process
    # accumulates two batches per step, so both see the same items in every step.
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "diffsvc", "train", "--project", "ddp",
           "--data", str(data_dir), "--config", str(ddp_base), "--max-steps", "3", "--batch-size", "2",
           "--device", "cpu", "--workers", "0", "--no-progress"]
    proc = run(cmd, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes" in proc.stderr
    ddp_root = tmp_path / "models" / "ddp"
    assert sorted(find_checkpoints(ddp_root)) == [3]
    assert len(list((ddp_root / "logs").iterdir())) == 1  # only rank 0 logs

    single = train(options(tmp_path, data_dir, "one", base_config=one_base, max_steps=3, batch_size=2), log=quiet)
    wa, wb = weights(ddp_root / "model_ckpt_steps_3.ckpt"), weights(single.checkpoint)
    for k in wa:
        # (AdamW divides by the root of tiny second moments, which magnifies float rounding)
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-3, atol=1e-4)
    # ...and the three steps did move the weights away from where both started.
    config = load_model(single.checkpoint).config
    torch.manual_seed(config.seed)
    initial = GaussianDiffusion.from_config(config).state_dict()
    key = "denoise_fn.input_projection.weight"
    assert (initial[key] - wb[key]).abs().max() > 1e-3


def test_validation_samples_and_vocodes_as_infer_would(tmp_path, data_dir, monkeypatch):
    # issue 14: validation sampled with the original's PLMS whatever the project's sampler;
    # issue 11: it vocoded with NSF-HiFiGAN from vocoder_ckpt whatever `vocoder` said.
    from diffsvc.sampling import SAMPLERS
    from diffsvc.training.logging import TrainLogger

    base = write_config(tmp_path / "base.yaml", num_valid_plots=1, sampler="ddim", sampling_steps=3,
                        vocoder="griffin-lim", vocoder_ckpt=str(tmp_path / "no-such-vocoder"))
    trainer = Trainer(options(tmp_path, data_dir, base_config=base, max_steps=1), log=quiet)
    state = trainer.build()
    samplers, calls, sample_calls, audio = [], [], [], []
    real_sample, real_denoise = GaussianDiffusion.sample, state.model.denoise_fn.forward

    def spy_sample(self, *a, **k):
        samplers.append(a[3])
        before = len(calls)
        mel = real_sample(self, *a, **k)
        sample_calls.append(len(calls) - before)
        return mel

    monkeypatch.setattr(GaussianDiffusion, "sample", spy_sample)
    monkeypatch.setattr(state.model.denoise_fn, "forward", lambda *a, **k: calls.append(1) or real_denoise(*a, **k))
    monkeypatch.setattr(TrainLogger, "audio", lambda self, tag, wav, step, sr: audio.append((tag, wav.numel(), sr)))
    assert trainer.validate() is not None
    assert type(samplers[0]) is SAMPLERS["ddim"]  # the picture: the project's sampler...
    assert sample_calls[0] == 3  # ...with its sampling_steps (one denoiser call each)
    # then eval's reconstruction figures, one cheap DDIM sample per validation piece
    n_valid = len(trainer.validator.valid_set)
    assert [type(s) for s in samplers[1:]] == [SAMPLERS["ddim"]] * n_valid and sample_calls[1:] == [4] * n_valid
    # audio from the configured vocoder (Griffin-Lim needs no file), for the target and the sample
    assert sorted(tag for tag, _, _ in audio) == ["audio/0_sampled", "audio/0_target"]
    assert all(n > 0 and sr == 44100 for _, n, sr in audio)


def test_validation_logs_eval_figures_beside_the_loss(tmp_path, data_dir, monkeypatch):
    # issue 13: every validation logs diffsvc eval's reconstruction and pitch figures
    from diffsvc.training.logging import TrainLogger

    base = write_config(tmp_path / "base.yaml", vocoder="griffin-lim", f0_extractor="crepe")
    trainer = Trainer(options(tmp_path, data_dir, base_config=base, max_steps=1), log=quiet)
    trainer.build()
    logged = {}
    monkeypatch.setattr(TrainLogger, "scalars", lambda self, values, step: logged.update(values))
    rng = torch.get_rng_state()
    assert trainer.validate() is not None
    assert torch.equal(rng, torch.get_rng_state())  # training's randomness is left as it was
    assert {"val/loss", "eval/recon_mcd_db", "eval/recon_log_mel_l1", "eval/recon_rpa",
            "eval/recon_voicing_recall"} <= set(logged)
    assert all(math.isfinite(v) for v in logged.values())
    first = dict(logged)
    trainer.validate()
    assert logged == first  # fixed noise: the figures compare across validations
    # figures that cannot be computed are said once and training goes on
    messages = []
    trainer.validator.log = messages.append
    trainer.validator._figures = None
    monkeypatch.setattr("diffsvc.evaluation.reconstruction.ValidationFigures.__call__",
                        lambda self, model, pieces: 1 / 0)
    logged.clear()
    assert trainer.validate() is not None and trainer.validate() is not None
    assert "val/loss" in logged and not any(k.startswith("eval/") for k in logged)
    assert [m for m in messages if "validation figures disabled" in m] == ["validation figures disabled (division by zero)"]


def _enospc(*_a, **_k):
    import errno

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_last_checkpoint(tmp_path, data_dir, monkeypatch, capsys):
    from diffsvc.cli.main import main

    monkeypatch.chdir(tmp_path)
    base = write_config(tmp_path / "base.yaml", val_check_interval=2)
    args = ["train", "--project", "p", "--data", str(data_dir), "--config", str(base), "--device", "cpu",
            "--workers", "0", "--no-progress"]
    assert main(args + ["--max-steps", "2"]) == 0
    root = tmp_path / "models" / "p"
    good = root / "model_ckpt_steps_2.ckpt"
    before = good.read_bytes()
    capsys.readouterr()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):  # the disk fills up halfway through the next checkpoint
        real_save({"half": torch.zeros(1000)}, f)
        f.flush()
        _enospc()

    monkeypatch.setattr(torch, "save", full_disk)
    assert main(args + ["--max-steps", "4"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in err and "Exception" not in err, err
    err = errors
    rel = Path("models") / "p"  # (the project as the command names it)
    assert str(rel / "model_ckpt_steps_4.ckpt") in err[0] and "No space left on device" in err[0]
    assert str(rel / good.name) in err[0]  # says which checkpoint is the last good one
    assert sorted(find_checkpoints(root)) == [2] and good.read_bytes() == before
    assert not any(".part" in p.name for p in root.iterdir())  # nothing partial left behind


def test_a_full_disk_for_the_logs_is_one_line(tmp_path, data_dir, monkeypatch, capsys):
    from tensorboard.summary.writer.record_writer import RecordWriter

    from diffsvc.cli.main import main

    monkeypatch.chdir(tmp_path)
    base = write_config(tmp_path / "base.yaml", val_check_interval=2)
    args = ["train", "--project", "p", "--data", str(data_dir), "--config", str(base), "--device", "cpu",
            "--workers", "0", "--no-progress", "--max-steps", "4"]
    monkeypatch.setattr(RecordWriter, "write", _enospc)  # TensorBoard's writer thread cannot write
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in err and "Exception" not in err, err
    err = errors
    assert str(Path("models") / "p" / "logs") in err[0] and "No space left on device" in err[0]
    assert not find_checkpoints(tmp_path / "models" / "p")


def test_extra_modules_in_the_state_are_checkpointed_and_resumed(tmp_path, data_dir):
    # what an average of the weights (or any module that changes with training) relies on
    from diffsvc.training.checkpointing import resume, save_checkpoint

    trainer = Trainer(options(tmp_path, data_dir, max_steps=1), log=quiet)
    state = trainer.build()
    state.extras["average"] = torch.nn.Linear(3, 2)
    state.step = 7
    path = save_checkpoint(state, trainer.options.project, world_size=1, plan=trainer.plan, keep=2)
    fresh = Trainer(options(tmp_path, data_dir, "other", base_config=trainer.options.base_config), log=quiet).build()
    fresh.extras["average"] = torch.nn.Linear(3, 2)
    resume(fresh, path, trainer.config, world_size=1, log=quiet)
    assert fresh.step == 7
    for k, v in state.extras["average"].state_dict().items():
        torch.testing.assert_close(fresh.extras["average"].state_dict()[k], v)
    assert load_model(path).global_step == 7  # and the file is still a plain original-layout checkpoint


def test_the_loop_trains_any_loss_function_it_is_given(tmp_path, data_dir):
    # the seam a distillation or multi-singer objective uses: same loop, another loss
    from diffsvc.training.loop import diffusion_loss

    base = write_config(tmp_path / "base.yaml", val_check_interval=100)
    reference = train(options(tmp_path, data_dir, "ref", base_config=base, max_steps=1), log=quiet)
    seen = []

    def doubled(state, config, device, dist):
        original = diffusion_loss(state, config, device, dist)

        def loss(batch, stream=0):
            seen.append(batch.items)
            return 2 * original(batch, stream)

        return loss

    result = Trainer(options(tmp_path, data_dir, "doubled", base_config=base, max_steps=1), log=quiet,
                     make_loss=doubled).run()
    assert seen and result.history[0].items == reference.history[0].items
    assert result.history[0].loss == pytest.approx(2 * reference.history[0].loss, rel=1e-6)
