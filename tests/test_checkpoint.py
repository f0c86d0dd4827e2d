"""Original-layout checkpoints: key layout, loading original files with their config.yaml, our
round trip, safety, and every error path as one clear message."""

import json

import pytest
import torch
import yaml

from diffsvc.checkpoint import find_checkpoints, latest_checkpoint, load_model, save_model
from diffsvc.config import Config
from diffsvc.errors import CheckpointError
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.safe_load import safe_torch_load
from diffsvc.sampling import make_sampler

from conftest import tiny_config


@pytest.fixture(scope="module")
def pndm(fixtures_dir):
    return torch.load(fixtures_dir / "pndm_small.pt", weights_only=True)


def _original_project(tmp_path, pndm, step=30000, **extra):
    """An original Diff-SVC project folder: config.yaml with DiffSinger leftovers + a checkpoint."""
    h = dict(pndm["hparams"])
    h.update(task_cls="training.task.SVC_task.SVCTask", binarizer_cls="preprocessing.SVCpre.SVCBinarizer",
             enc_layers=4, num_heads=2, cwt_hidden_size=128, datasets=[], work_dir="checkpoints/nyaru", **extra)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(h))
    path = tmp_path / f"model_ckpt_steps_{step}.ckpt"
    torch.save(dict(pndm["ckpt"], epoch=3, global_step=step, checkpoint_callback_best=float("inf"),
                    optimizer_states=[], lr_schedulers=[]), path)
    return path


def test_state_dict_keys_equal_the_original(fixtures_dir):
    ref = json.loads((fixtures_dir / "diffsvc_keys.json").read_text())
    model = GaussianDiffusion.from_config(Config())
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == ref["state_dict_shapes"]
    assert sum(p.numel() for p in model.parameters()) == ref["num_params_total"]


def test_saved_checkpoint_has_the_original_layout(fixtures_dir, tmp_path):
    ref = json.loads((fixtures_dir / "diffsvc_keys.json").read_text())
    model = GaussianDiffusion.from_config(Config())
    path = save_model(tmp_path / "model_ckpt_steps_2000.ckpt", model, 2000)
    ckpt = torch.load(path, weights_only=True)
    # the original's keys, plus our record of the prediction target (a top-level key the original
    # reads past, as it does spk_map and our resume record)
    assert sorted(ckpt) == sorted(ref["checkpoint_format"]["top_level_keys"] + ["prediction"])
    assert ckpt["prediction"] == "eps"
    assert {k: list(v.shape) for k, v in ckpt["state_dict"].items()} == ref["checkpoint_state_dict_shapes"]


def test_original_checkpoint_loads_and_gives_the_original_numbers(tmp_path, pndm):
    path = _original_project(tmp_path, pndm)
    loaded = load_model(path)
    assert loaded.global_step == 30000
    assert loaded.model.spec_min.shape == (1, 1, 128)
    assert loaded.config.loss_mask is False  # an original project keeps the original loss
    run = pndm["runs"]["speedup20"]
    i = pndm["inputs"]
    with torch.no_grad():
        mel = loaded.model.sample(i["hubert"], i["mel2ph"], i["f0"], make_sampler("plms", loaded.model.schedule(),
                                                                                      speedup=20), noise=run["x_init"])
    torch.testing.assert_close(mel, run["mel_out"], rtol=1e-4, atol=1e-5 * float(run["mel_out"].abs().max()))


def test_schedule_buffers_come_from_the_checkpoint(tmp_path, pndm):
    # Config says max_beta 0.01 (the original's import-time default); the checkpoint's 0.02 buffers win.
    path = _original_project(tmp_path, pndm, max_beta=0.01)
    loaded = load_model(path)
    torch.testing.assert_close(loaded.model.betas, pndm["state_dict"]["betas"])


def test_placeholder_spec_stats_of_shape_1_load(tmp_path, pndm):
    ckpt = dict(pndm["ckpt"])
    state = dict(ckpt["state_dict"])
    state["model.spec_min"] = torch.full((1, 1, 1), -5.0)
    state["model.spec_max"] = torch.zeros(1, 1, 1)
    _original_project(tmp_path, pndm)
    torch.save({"state_dict": state, "global_step": 10}, tmp_path / "model_ckpt_steps_10.ckpt")
    loaded = load_model(tmp_path / "model_ckpt_steps_10.ckpt")
    assert loaded.model.spec_min.shape == (1, 1, 1) and float(loaded.model.spec_min) == -5.0


def test_round_trip_and_newest(tmp_path):
    config = tiny_config()
    model = GaussianDiffusion.from_config(config)
    from diffsvc.config import save_config
    save_config(config, tmp_path / "config.yaml")
    for step in (100, 2000, 300):
        save_model(tmp_path / f"model_ckpt_steps_{step}.ckpt", model, step)
    (tmp_path / ".model_ckpt_steps_9000.part.ckpt").write_bytes(b"half")
    assert list(find_checkpoints(tmp_path)) == [100, 300, 2000]
    assert latest_checkpoint(tmp_path).name == "model_ckpt_steps_2000.ckpt"
    loaded = load_model(latest_checkpoint(tmp_path))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[k], v)


def test_legacy_and_mismatched_checkpoints_are_refused_clearly(tmp_path, pndm):
    _original_project(tmp_path, pndm)
    state = dict(pndm["ckpt"]["state_dict"])
    state["model.fs2.encoder.layers.0.op.layer_norm1.weight"] = torch.ones(16)
    torch.save({"state_dict": state}, tmp_path / "model_ckpt_steps_1.ckpt")
    with pytest.raises(CheckpointError, match="no_fs2"):
        load_model(tmp_path / "model_ckpt_steps_1.ckpt")
    # A config that does not match: residual_channels differ.
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    cfg["residual_channels"] = 64
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointError, match="does not match its config.*residual_channels"):
        load_model(tmp_path / "model_ckpt_steps_30000.ckpt")


def test_missing_config_foreign_and_truncated_files(tmp_path, pndm):
    lonely = tmp_path / "lonely" / "model_ckpt_steps_5.ckpt"
    lonely.parent.mkdir()
    torch.save(pndm["ckpt"], lonely)
    with pytest.raises(CheckpointError, match="no config.yaml beside it"):
        load_model(lonely)
    proj = tmp_path / "proj"
    proj.mkdir()
    good = _original_project(proj, pndm)
    data = good.read_bytes()
    (proj / "model_ckpt_steps_7.ckpt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        load_model(proj / "model_ckpt_steps_7.ckpt")
    (proj / "model_ckpt_steps_8.ckpt").write_text("hello, not a model")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(proj / "model_ckpt_steps_8.ckpt")
    torch.save({"generator": {}}, proj / "model_ckpt_steps_9.ckpt")
    with pytest.raises(CheckpointError, match="not a Diff-SVC checkpoint"):
        load_model(proj / "model_ckpt_steps_9.ckpt")


class Payload:
    """Unpickling this runs code (a stand-in for a malicious checkpoint)."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_code_running_pickles_are_refused_unless_trusted(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused for safety.*--trust-checkpoint"):
        safe_torch_load(path)
    assert "pwned" not in capsys.readouterr().out
    safe_torch_load(path, allow_unsafe=True)
    assert "pwned" in capsys.readouterr().out
