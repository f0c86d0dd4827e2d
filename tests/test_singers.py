"""Several singers in one model: the singer table, training, blending, init-from, errors (issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
from test_training import MODEL, N_MELS, write_config

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
    return write_config(path, **{"val_check_interval": 5, "num_ckpt_keep": 3, **overrides})


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
    assert any(k.startswith("eval/") for k in logged), logged  # eval's figures use each piece's singer


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
    ("alto:1e308,alto:1e308", "too large to add up"),  # each finite, their sum is not
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


def test_huge_blend_weights_are_shares_like_any_other():
    """Weights are scaled by the largest before they are added: 1e308 + 1e308 would be inf (and every
    weight 0, the label empty)."""
    for text in ("alto:1e308,ténor:1e308", "alto:1.7e308,ténor:1.7e308"):
        choice = parse_speaker(text, ["alto", "ténor"])
        assert choice.weights == pytest.approx((0.5, 0.5)) and choice.label == "alto50-ténor50"
    choice = parse_speaker("alto:3e307,ténor:1e307", ["alto", "ténor"])
    assert choice.weights == pytest.approx((0.75, 0.25)) and choice.label == "alto75-ténor25"


def test_different_choices_never_share_an_output_name():
    """A blend keeps the digits of its percentages; singers whose names are made alike for a file
    name (`a b`, `a_b`) are told apart by a hash of their spelling."""
    table = ["alto", "ténor"]
    labels = {parse_speaker(t, table).label
              for t in ("alto:0.704,ténor:0.296", "alto:0.7,ténor:0.3", "alto:0.705,ténor:0.295", "alto:1,ténor:2")}
    assert len(labels) == 4 and "alto70-ténor30" in labels and "alto70.4-ténor29.6" in labels
    assert parse_speaker("alto:1e-9,ténor:1", table).label != parse_speaker("ténor", table).label
    spaced = ["a b", "a_b", "c"]
    names = {parse_speaker(t, spaced).label for t in ("a b", "a_b", "a b:1,c:1", "a_b:1,c:1")}
    assert len(names) == 4 and all(n.startswith("a_b") for n in names)
    assert parse_speaker("c", spaced).label == "c" and parse_speaker("Tenor Ñ", ["Tenor Ñ", "x"]).label == "Tenor_Ñ"


def test_a_config_that_disagrees_with_the_checkpoint_table_is_refused(tmp_path, trained):
    root, _ = trained
    config = Project(root).load_config().replace(speakers=["ténor", "alto"])
    with pytest.raises(CheckpointError, match="sings as alto, ténor but its config.yaml lists ténor, alto"):
        load_model(root / "model_ckpt_steps_40.ckpt", config)


# --- infer and models ---------------------------------------------------------------------------

SR = 44100


@pytest.fixture
def duo(tmp_path, monkeypatch):
    """models/duo: a tiny random two-singer project (alto at 220 Hz, tenor at 110 Hz) and song.wav at 220 Hz."""
    import json

    import soundfile as sf

    from audio_synth import synth_voice
    from infer_fixture import write_project

    monkeypatch.chdir(tmp_path)
    folder = write_project(tmp_path, "duo", steps=(1000,), speakers=["alto", "tenor"])
    stats = {"f0_median_hz": 155.6, "speakers": {"alto": {"f0_median_hz": 220.0}, "tenor": {"f0_median_hz": 110.0}}}
    (folder / "data_stats.json").write_text(json.dumps(stats), encoding="utf-8")
    wav, _ = synth_voice(0.8, SR, f0=220.0, seed=3)
    sf.write(tmp_path / "song.wav", wav, SR)
    return tmp_path


def infer(capsys, *args) -> tuple[int, str]:
    from diffsvc.cli.main import main

    rc = main(["infer", "song.wav", "--seed", "0", "--quiet", *args])
    return rc, capsys.readouterr().err


def test_infer_converts_to_each_singer_and_blend_with_the_singer_in_the_name(duo, capsys):
    import soundfile as sf

    out = duo / "output"
    for spec in ("alto", "tenor", "alto:0.5,tenor:0.5"):
        rc, err = infer(capsys, "--speaker", spec)
        assert rc == 0, err
    alto, _ = sf.read(out / "song_duo_alto_steps_1000.wav")
    tenor, _ = sf.read(out / "song_duo_tenor_steps_1000.wav")
    blend, _ = sf.read(out / "song_duo_alto50-tenor50_steps_1000.wav")
    assert not np.array_equal(alto, tenor)
    rc, err = infer(capsys, "--speaker", "alto:1,tenor:0", "--overwrite")  # weight 1.0: the pure singer
    assert rc == 0, err
    assert np.array_equal(sf.read(out / "song_duo_alto_steps_1000.wav")[0], alto)
    assert not np.array_equal(blend, alto) and not np.array_equal(blend, tenor)
    assert sorted(p.name for p in out.iterdir()) == ["song_duo_alto50-tenor50_steps_1000.wav",
                                                     "song_duo_alto_steps_1000.wav", "song_duo_tenor_steps_1000.wav"]


def test_infer_key_auto_uses_the_chosen_singers_f0(duo, capsys):
    rc, err = infer(capsys, "--speaker", "tenor", "--key", "auto", "--out", "t.wav")
    assert rc == 0 and "key -12 semitones" in err, err
    rc, err = infer(capsys, "--speaker", "alto:0.5,tenor:0.5", "--key", "auto", "--out", "b.wav")
    assert rc == 0 and "key -6 semitones" in err, err  # halfway in semitones
    rc, err = infer(capsys, "--speaker", "alto", "--key", "auto", "--out", "a.wav")
    assert rc == 0 and "key +0 semitones" in err, err


@pytest.mark.parametrize("args, message", [
    ((), "several singers; choose one with --speaker NAME.*singers: alto, tenor"),
    (("--speaker", "bass"), "no singer named 'bass'.*singers: alto, tenor"),
    (("--speaker", "alto:lots"), "weight of 'alto' must be a number"),
])
def test_infer_speaker_errors_are_one_line_before_any_work(duo, capsys, args, message):
    import re

    rc, err = infer(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0 and len(lines) == 1 and re.search(message, lines[0]), err
    assert not (duo / "output").exists()


def test_a_single_singer_model_refuses_speaker(tmp_path, monkeypatch, capsys):
    import soundfile as sf

    from audio_synth import synth_voice
    from infer_fixture import write_project

    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, "solo")
    sf.write(tmp_path / "song.wav", synth_voice(1.0, SR, f0=220.0, seed=3)[0], SR)
    rc, err = infer(capsys, "--speaker", "alto")
    assert rc != 0 and "single singer" in err
    rc, err = infer(capsys)
    assert rc == 0 and (tmp_path / "output" / "song_solo_steps_1000.wav").exists()


def test_models_lists_each_projects_singers(duo, capsys):
    from diffsvc.cli.main import main

    main(["models"])
    out = capsys.readouterr().out
    assert "duo: steps 1000" in out and "2 singers: alto, tenor" in out


# --- preprocess ---------------------------------------------------------------------------------

def test_preprocess_finds_one_singer_per_sub_folder(tmp_path):
    import soundfile as sf

    from audio_synth import synth_voice
    from diffsvc.config import Config
    from diffsvc.data.prepared import PreparedData
    from diffsvc.data.preprocess import PreprocessOptions, SliceSettings, preprocess, summary_table
    from diffsvc.features.f0 import make_f0_extractor

    raw = tmp_path / "raw"
    for rel, seconds, f0 in (("alto/a.wav", 7.0, 220.0), ("alto/deeper/b.wav", 5.0, 233.0),
                             ("Ténor 歌/c.wav", 7.0, 130.0), ("Ténor 歌/d.wav", 5.0, 123.0)):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(raw / rel, synth_voice(seconds, SR, f0=f0, seed=len(rel))[0], SR)
    lines: list[str] = []
    options = PreprocessOptions(content="stand-in", slicing=SliceSettings(min_s=2.0, max_s=3.0, drop_shorter_s=1.0))
    result = preprocess(raw, Config(), options, f0_extractor=make_f0_extractor("parselmouth"), log=lines.append,
                        progress=False)
    data = PreparedData.find(raw)
    assert data.manifest.speakers == ["Ténor 歌", "alto"]
    singers = {p.id: data.manifest.speaker_of(p) for p in data.pieces()}
    assert {s for p, s in singers.items() if "b-" in p} == {"alto"}  # deeper folders stay inside their singer
    assert {data.manifest.speaker_of(p) for p in data.pieces("valid")} == {"alto", "Ténor 歌"}
    stats = data.stats["speakers"]
    assert 200 < stats["alto"]["f0_median_hz"] < 250 and 115 < stats["Ténor 歌"]["f0_median_hz"] < 140
    text = "\n".join(lines)
    assert "2 singers" in text and "alto: 2 file(s)" in text and "Ténor 歌: 2 file(s)" in text
    assert text.count("WARNING: little audio") == 2  # 12 s each is far too little
    table = "\n".join(summary_table(result))
    assert "singer alto" in table and "singer Ténor 歌" in table and "valid pieces; f0" in table

    # A dataset laid out for one singer stays one: a single sub-folder, or audio at the top.
    from diffsvc.data.singers import detect_singers
    assert detect_singers(["only/a.wav", "only/x/b.wav"]) == []
    assert detect_singers(["a.wav", "alto/b.wav", "tenor/c.wav"]) == []
    assert detect_singers(["tenor/c.wav", "alto/x/b.wav"]) == ["alto", "tenor"]


# --- eval ---------------------------------------------------------------------------------------

def test_eval_reconstructs_each_piece_as_its_singer_and_converts_songs_to_the_chosen_one(tmp_path, monkeypatch,
                                                                                        capsys):
    import json

    import soundfile as sf

    from audio_synth import synth_voice
    from diffsvc.cli.main import main
    from diffsvc.data.prepared import PreparedData
    from diffsvc.evaluation.reconstruction import reconstruction_figures
    from infer_fixture import write_project

    monkeypatch.chdir(tmp_path)
    folder = write_project(tmp_path, "duo", steps=(1000,), speakers=["alto", "ténor"])
    data = PreparedData(write_prepared(tmp_path / "data", lengths=(40, 48), valid_lengths=(40, 56),
                                       singers=("alto", "ténor")))
    sf.write(tmp_path / "song.wav", synth_voice(0.8, SR, f0=220.0, seed=0)[0], SR)
    # Reconstruction takes each piece's singer: other rows give other mels.
    model = load_model(folder / "model_ckpt_steps_1000.ckpt").model
    pieces = [dict(data.load(p), speaker=i) for i, p in enumerate(data.pieces("valid"))]
    own = reconstruction_figures(model, pieces, sampling_steps=2).figures
    swapped = reconstruction_figures(model, [dict(p, speaker=1 - p["speaker"]) for p in pieces],
                                     sampling_steps=2).figures
    assert own != swapped
    # Songs need a singer: one line listing them; with --speaker the songs are converted to it.
    rc = main(["eval", "--device", "cpu", "--project", "duo", "--data", "data", "song.wav"])
    err = capsys.readouterr().err
    assert rc == 2 and "singers: alto, ténor" in err and len(err.strip().splitlines()) == 1, err
    rc = main(["eval", "--device", "cpu", "--project", "duo", "--data", "data", "--speaker", "ténor", "song.wav"])
    err = capsys.readouterr().err
    assert rc == 0, err
    result = json.loads((folder / "eval.json").read_text())
    assert result["speaker"] == "ténor"
    row = result["rows"][0]
    assert row["recon_pieces"] == 2 and row["recon_mcd_db"] > 0 and "speaker_sim_target" in row


# --- distill ------------------------------------------------------------------------------------

def test_distill_a_two_singer_project_and_convert_as_each_singer(duo, capsys):
    """The teacher and the student are conditioned on each item's singer; the student keeps the
    table (config and checkpoint), so `infer --sampler consistency --speaker X` converts as X."""
    import soundfile as sf

    from diffsvc.cli.main import main

    from diffsvc.config import load_config

    write_prepared(duo / "data", n_mels=128, lengths=(40, 48, 44, 52), valid_lengths=(30, 34),
                   singers=("alto", "tenor"))
    config_path = duo / "models" / "duo" / "config.yaml"  # validate at step 2: the student's and teacher's samples
    save_config(load_config(config_path).replace(val_check_interval=2, num_valid_plots=2), config_path)
    rc = main(["distill", "--project", "duo", "--data", "data", "--steps", "2", "--device", "cpu", "--workers", "0",
               "--no-progress", "--batch-size", "2"])
    assert rc == 0, capsys.readouterr().err
    student = duo / "models" / "duo" / "student"
    ckpt = torch.load(student / "model_ckpt_steps_2.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["spk_map"] == {"alto": 0, "tenor": 1} and EMBED_KEY in ckpt["state_dict"]
    outs = {}
    for singer in ("alto", "tenor"):
        rc, err = infer(capsys, "--project", "duo", "--sampler", "consistency", "--sampling-steps", "1",
                        "--speaker", singer)
        assert rc == 0, err
        outs[singer] = sf.read(duo / "output" / f"song_duo_student_{singer}_steps_2.wav")[0]
    assert not np.array_equal(outs["alto"], outs["tenor"])


def test_a_distillation_that_fails_before_its_first_checkpoint_leaves_no_student(duo, monkeypatch):
    """A half-made student (config.yaml, no checkpoint) would be taken for one to continue."""
    from diffsvc.distill.objective import ConsistencyDistillationLoss
    from diffsvc.distill.trainer import distill

    def broken(self, batch, stream=0):
        raise RuntimeError("broken loss")

    monkeypatch.setattr(ConsistencyDistillationLoss, "__call__", broken)
    data = write_prepared(duo / "data", n_mels=128, lengths=(40, 48), valid_lengths=(30, 34), singers=("alto", "tenor"))
    student = duo / "models" / "duo" / "student"
    opts = TrainOptions(project=Project(student), data_dir=data, max_steps=2, progress=False, device="cpu", workers=0)
    with pytest.raises(RuntimeError, match="broken loss"):
        distill(opts, teacher=duo / "models" / "duo" / "model_ckpt_steps_1000.ckpt", log=quiet)
    assert not student.exists() and (duo / "models" / "duo" / "model_ckpt_steps_1000.ckpt").is_file()


# --- a checkpoint without its config.yaml -------------------------------------------------------

def test_a_multi_singer_checkpoint_without_config_is_never_called_one_singer(duo, capsys):
    """No config.yaml beside the checkpoint: infer (--speaker or not), the UI's check and `models`
    say the config is missing, not "a single singer"."""
    import shutil

    from diffsvc.cli.main import main

    (duo / "lone").mkdir()
    shutil.copy(duo / "models" / "duo" / "model_ckpt_steps_1000.ckpt", duo / "lone" / "model_ckpt_steps_1000.ckpt")
    (duo / "models" / "duo" / "config.yaml").unlink()
    for args in (("--ckpt", "lone/model_ckpt_steps_1000.ckpt", "--speaker", "alto"),
                 ("--ckpt", "lone/model_ckpt_steps_1000.ckpt"), ("--project", "duo", "--speaker", "alto")):
        rc, err = infer(capsys, *args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc != 0 and len(lines) == 1 and "no config.yaml beside it" in lines[0], err
        assert "single singer" not in err
    from diffsvc.ui.app import UiContext, check_settings

    with pytest.raises(DiffSvcError, match="no config.yaml beside it"):
        check_settings(UiContext(models_dir=duo / "models"), "duo", None, "0", None, None, singer=None, blend=None)
    main(["models"])
    out = capsys.readouterr().out
    assert "duo: steps 1000" in out and "no config.yaml" in out


def test_audio_beside_singer_folders_is_named_and_warned_about(tmp_path, capsys):
    """raw/alto/, raw/tenor/ and a stray raw/stray.wav: read as one singer (a real layout for one
    singer's sessions), but the dataset check names the stray file and says what to do."""
    import re

    import soundfile as sf

    from audio_synth import synth_voice
    from diffsvc.cli.main import main
    from diffsvc.data.singers import audio_beside_singer_folders

    raw = tmp_path / "raw"
    for i, (rel, f0) in enumerate((("alto/a.wav", 220.0), ("tenor/b.wav", 110.0), ("stray.wav", 330.0))):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(raw / rel, synth_voice(2.0, SR, f0=f0, seed=i)[0], SR)
    (tmp_path / "c.yaml").write_text("content_encoder: stand-in\nf0_extractor: parselmouth\n")
    rc = main(["preprocess", str(raw), "--config", str(tmp_path / "c.yaml"), "--f0", "parselmouth"])
    out = capsys.readouterr()
    text = (out.out + out.err).replace(str(tmp_path), "")  # the tmp path holds the test's name
    warning = [line for line in text.splitlines() if "stray.wav" in line]
    assert rc == 0 and len(warning) == 1 and "WARNING" in warning[0], text
    assert "ONE singer" in warning[0] and "alto, tenor" in warning[0] and "move" in warning[0]
    assert "Traceback" not in text and re.search(r"^singers +ONE \(WARNING", text, re.M), text  # the summary too
    # the kind: only top-level audio beside two or more sub-folders
    assert audio_beside_singer_folders(["x.wav", "a/1.wav", "b/2.wav"]) == ["x.wav"]
    assert audio_beside_singer_folders(["x.wav", "a/1.wav", "a/b/2.wav"]) == []
    assert audio_beside_singer_folders(["x.wav", "y.wav"]) == []
    assert audio_beside_singer_folders(["a/1.wav", "b/2.wav"]) == []


# --- Unicode forms of a name --------------------------------------------------------------------

NFD_TENOR = "te\u0301nor"  # "ténor" as a folder made on macOS spells it


def test_a_singer_name_is_the_same_in_either_unicode_form():
    """Names are made NFC (a macOS NFD folder gives the name a keyboard types) and compared as
    NFC everywhere: --speaker, blends, the data's table against the project's, f0 statistics."""
    from diffsvc.data.singers import detect_singers, singer_of
    from diffsvc.model.speakers import blended_median_hz, row_of, same_singers

    assert detect_singers([f"{NFD_TENOR}/a.wav", "alto/b.wav"]) == ["alto", "ténor"]
    assert singer_of(f"{NFD_TENOR}/x/a.wav", ["alto", "ténor"]) == "ténor"
    assert singer_of("ténor/a.wav", ["alto", NFD_TENOR]) == NFD_TENOR  # an older table keeps its own form
    for table, typed in ((["alto", NFD_TENOR], "ténor"), (["alto", "ténor"], NFD_TENOR)):
        assert parse_speaker(typed, table).weights == (0.0, 1.0)
        assert parse_speaker(f"alto:1,{typed}:3", table).weights == (0.25, 0.75)
        assert row_of(typed, table) == 1
    assert same_singers(["alto", NFD_TENOR], ["alto", "ténor"]) and not same_singers(["alto"], ["ténor"])
    choice = parse_speaker("ténor", ["alto", NFD_TENOR])
    assert blended_median_hz(choice, {"alto": 220.0, "ténor": 110.0}) == pytest.approx(110.0)


def test_the_summary_table_lines_up_names_in_any_script():
    from diffsvc.data.report import display_width, format_table

    lines = format_table([(f"singer {NFD_TENOR}", "a"), ("singer 歌手", "b"), ("singer alto", "c")])[1:-1]
    assert len({display_width(line[:-1]) for line in lines}) == 1, lines
