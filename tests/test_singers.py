"""Several singers in one model: the singer table, training, blending, init-from, errors (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from diffsvc.checkpoint import PREFIX, load_model
from diffsvc.config import save_config
from diffsvc.errors import CheckpointError, DiffSvcError
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.model.speakers import parse_speaker
from diffsvc.sampling import make_sampler
from diffsvc.training.loop import Trainer, TrainOptions, train
from diffsvc.training.project import Project
from prepared_fixture import write_prepared

N_MELS = 16
MODEL = dict(audio_num_mel_bins=N_MELS, keep_bins=N_MELS, residual_channels=16, timesteps=1000, K_step=1000)
SINGERS = ("alto", "ténor")  # any Unicode name
EMBED_KEY = PREFIX + "fs2.spk_embed_proj.weight"


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def two_singers(tmp_path_factory) -> Path:
    return write_prepared(tmp_path_factory.mktemp("two"), n_mels=N_MELS, singers=SINGERS,
                          lengths=(40, 56, 64, 72, 80, 96, 48, 60))


@pytest.fixture(scope="module")
def one_singer(tmp_path_factory) -> Path:
    return write_prepared(tmp_path_factory.mktemp("one"), n_mels=N_MELS)


def base_config(path: Path, **overrides) -> Path:
    values = dict(MODEL, val_check_interval=5, num_ckpt_keep=3, log_interval=1, num_valid_plots=0, lr=1e-2,
                  max_sentences=4, pndm_speedup=100)
    values.update(overrides)
    save_config(tiny_config(**values), path)
    return path


def options(tmp_path: Path, data: Path, name: str, **kw) -> TrainOptions:
    base = kw.pop("base_config", None) or base_config(tmp_path / f"{name}-base.yaml")
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    kw.setdefault("workers", 0)
    return TrainOptions(project=Project(tmp_path / "models" / name), data_dir=data, base_config=base, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, two_singers):
    """A two-singer project trained 40 steps on the CPU."""
    tmp = tmp_path_factory.mktemp("trained")
    result = train(options(tmp, two_singers, "duo", max_steps=40), log=quiet)
    return tmp / "models" / "duo", result


def sample(model, speaker, seed=0, frames=48):
    """Sample one fixed item with `speaker` (blend weights [1, n] or None), the same noise each time."""
    g = torch.Generator().manual_seed(seed)
    units = torch.randn(1, 12, 256, generator=g)
    mel2ph = torch.arange(frames)[None] * 12 // frames + 1
    f0 = torch.full((1, frames), 7.8)
    noise = torch.randn(1, 1, model.n_mels, frames, generator=g)
    sampler = make_sampler("ddim", model.schedule(), 10)
    with torch.no_grad():
        return model.sample(units, mel2ph, f0, sampler, noise=noise, speaker=speaker)[0]


def test_a_two_singer_project_trains_and_keeps_its_table_in_config_and_checkpoint(trained):
    root, result = trained
    losses = [r.loss for r in result.history]
    assert len(losses) == 40 and sum(losses[-10:]) < sum(losses[:10])
    assert Project(root).load_config().speakers == sorted(SINGERS)
    ckpt = torch.load(root / "model_ckpt_steps_40.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["spk_map"] == {"alto": 0, "ténor": 1}
    # The original layout plus one key: the embedding, [n_singers, hidden_size].
    single_keys = set(PREFIX + k for k in GaussianDiffusion.from_config(tiny_config(**MODEL)).state_dict())
    assert set(ckpt["state_dict"]) - single_keys == {EMBED_KEY}
    assert ckpt["state_dict"][EMBED_KEY].shape == (2, 256)
    # The checkpoint alone says who it sings as: loaded with a config.yaml that lists no singers.
    bare = tiny_config(**MODEL, spec_min=[-5.0] * N_MELS, spec_max=[0.0] * N_MELS)
    loaded = load_model(root / "model_ckpt_steps_40.ckpt", bare)
    assert loaded.config.speakers == ["alto", "ténor"] and loaded.config.use_spk_id


def test_batches_mix_singers_and_validation_is_logged_per_singer(tmp_path, two_singers):
    from diffsvc.training.logging import TrainLogger

    seen = []
    trainer = Trainer(options(tmp_path, two_singers, "mix", max_steps=4), log=quiet, on_step=seen.append)
    trainer.build()
    speakers = {trainer.data.train_set.speaker(i) for i in range(len(trainer.data.train_set))}
    assert speakers == {0, 1}
    batch = next(trainer.stream.from_position(0, 0))[0]
    assert batch.speaker is not None and set(batch.speaker.tolist()) == {0, 1}
    logged = {}
    real = TrainLogger.scalars

    def spy(self, values, step):
        logged.update(values)
        return real(self, values, step)

    TrainLogger.scalars = spy
    try:
        trainer.validate()
    finally:
        TrainLogger.scalars = real
    assert {"val/loss", "val/loss/alto", "val/loss/ténor"} <= set(logged)


def test_each_singer_sounds_different_and_blends_lie_between(trained):
    root, _ = trained
    model = load_model(root / "model_ckpt_steps_40.ckpt").model
    alto = sample(model, parse_speaker("alto", ["alto", "ténor"]).tensor())
    tenor = sample(model, parse_speaker("ténor", ["alto", "ténor"]).tensor())
    by_index = sample(model, torch.tensor([0]))
    assert torch.equal(alto, by_index)  # weight 1.0 is exactly the singer's row
    pure = sample(model, parse_speaker("alto:1.0,ténor:0", ["alto", "ténor"]).tensor())
    assert torch.equal(pure, alto)
    apart = (alto - tenor).pow(2).mean().sqrt()
    assert apart > 0.05, apart  # the singers differ
    mid = sample(model, parse_speaker("alto:0.5,ténor:0.5", ["alto", "ténor"]).tensor())
    to_alto, to_tenor = (mid - alto).pow(2).mean().sqrt(), (mid - tenor).pow(2).mean().sqrt()
    assert to_alto < apart and to_tenor < apart, (to_alto, to_tenor, apart)
    # The timbre the data gave each singer: alto's spectrum tilts up, the tenor's down.
    tilt = torch.linspace(-1, 1, N_MELS)
    assert float(((alto - tenor).mean(0) * tilt).sum()) > 0


def test_resume_keeps_the_table_and_continues_exactly(tmp_path, two_singers):
    base = base_config(tmp_path / "base.yaml")
    straight = train(options(tmp_path, two_singers, "straight", base_config=base, max_steps=6), log=quiet)
    train(options(tmp_path, two_singers, "resumed", base_config=base, max_steps=3), log=quiet)
    second = train(options(tmp_path, two_singers, "resumed", base_config=base, max_steps=6), log=quiet)
    assert [r.step for r in second.history] == [4, 5, 6]
    for a, b in zip(straight.history[3:], second.history):
        assert a.items == b.items and a.loss == pytest.approx(b.loss, rel=1e-6, abs=1e-7)
    wa = load_model(straight.checkpoint).model.state_dict()
    wb = load_model(second.checkpoint).model.state_dict()
    torch.testing.assert_close(wa["fs2.spk_embed_proj.weight"], wb["fs2.spk_embed_proj.weight"])
    assert torch.load(second.checkpoint, weights_only=True)["spk_map"] == {"alto": 0, "ténor": 1}


def test_init_from_a_single_singer_checkpoint_starts_a_multi_singer_project(tmp_path, one_singer, two_singers):
    solo = train(options(tmp_path, one_singer, "solo", max_steps=2), log=quiet)
    assert "spk_map" not in torch.load(solo.checkpoint, weights_only=True)
    trainer = Trainer(options(tmp_path, two_singers, "duo", max_steps=1, init_from=solo.checkpoint), log=quiet)
    trainer.build()
    model = trainer.state.model
    assert model.fs2.spk_embed_proj.names == ["alto", "ténor"]
    # The embedding is new (zero: the start converts as the single-singer model did); the rest is the source's.
    assert torch.equal(model.fs2.spk_embed_proj.weight, torch.zeros(2, 256))
    source = load_model(solo.checkpoint).model.state_dict()
    for key, value in source.items():
        if key not in ("spec_min", "spec_max"):
            torch.testing.assert_close(model.state_dict()[key], value)
    result = trainer.run()
    assert torch.load(result.checkpoint, weights_only=True)["spk_map"] == {"alto": 0, "ténor": 1}


def test_adding_a_singer_later_keeps_the_trained_rows(tmp_path, trained):
    root, _ = trained
    trio = write_prepared(tmp_path / "trio", n_mels=N_MELS, singers=("alto", "ténor", "bass"))
    old = load_model(root / "model_ckpt_steps_40.ckpt").model.fs2.spk_embed_proj
    # The old project refuses data with another set of singers, pointing at --init-from.
    with pytest.raises(DiffSvcError, match="init-from"):
        Trainer(TrainOptions(project=Project(root), data_dir=trio, device="cpu", workers=0, progress=False,
                             max_steps=41), log=quiet).build()
    trainer = Trainer(options(tmp_path, trio, "trio", max_steps=1, init_from=root / "model_ckpt_steps_40.ckpt"),
                      log=quiet)
    trainer.build()
    table = trainer.state.model.fs2.spk_embed_proj
    assert table.names == ["alto", "bass", "ténor"]
    torch.testing.assert_close(table.weight[0], old.weight[0])  # alto keeps its row
    torch.testing.assert_close(table.weight[2], old.weight[1])  # so does the tenor, at its new index
    torch.testing.assert_close(table.weight[1], old.weight.mean(0))  # bass starts at the mean
    assert Project(tmp_path / "models" / "trio").load_config().speakers == ["alto", "bass", "ténor"]


@pytest.mark.parametrize("text, message", [
    (None, "choose one with --speaker NAME .*singers: alto, ténor"),
    ("soprano", "no singer named 'soprano'.*singers: alto, ténor"),
    ("alto:x,ténor:1", "weight of 'alto' must be a number >= 0.*singers: alto, ténor"),
    ("alto:-1,ténor:1", "weight of 'alto' must be a number >= 0"),
    ("alto:nan", "must be a number >= 0"),
    ("alto:0,ténor:0", "add up to 0"),
])
def test_speaker_errors_are_one_line_listing_the_singers(text, message):
    with pytest.raises(DiffSvcError, match=message) as err:
        parse_speaker(text, ["alto", "ténor"])
    assert "\n" not in str(err.value)


def test_blend_weights_are_normalised():
    choice = parse_speaker("alto:3, ténor:1", ["alto", "ténor"])
    assert choice.weights == (0.75, 0.25) and choice.label == "alto75-ténor25"
    assert parse_speaker("ténor", ["alto", "ténor"]).weights == (0.0, 1.0)
    assert parse_speaker(None, []) is None
    with pytest.raises(DiffSvcError, match="single singer"):
        parse_speaker("alto", [])


def test_a_config_that_disagrees_with_the_checkpoint_table_is_refused(tmp_path, trained):
    root, _ = trained
    config = Project(root).load_config().replace(speakers=["ténor", "alto"])
    with pytest.raises(CheckpointError, match="sings as alto, ténor but its config.yaml lists ténor, alto"):
        load_model(root / "model_ckpt_steps_40.ckpt", config)
