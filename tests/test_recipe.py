"""The training recipe: the weight average (EMA) through save, resume and inference; the min-SNR
weighting; the v-prediction target; the config keys; the original recipe one setting away."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import tiny_config
from diffsvc.checkpoint import load_model
from diffsvc.config import DEFAULT_CONFIG, Config, load_config
from diffsvc.errors import ConfigError
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.training.checkpointing import RAW_WEIGHTS_KEY, RESUME_KEY
from diffsvc.training.ema import EMA_NAME, WeightAverage
from diffsvc.training.loop import Trainer, train
from diffsvc.training.weighting import min_snr_weights
from test_training import N_MELS, data_dir, options, quiet, write_config  # noqa: F401 - data_dir is a fixture

NEW = dict(ema_decay=0.9, loss_weighting="min-snr", min_snr_gamma=5.0)
DEFAULT_RECIPE = dict(ema_decay=0.9, loss_weighting="clamped-snr", min_snr_gamma=5.0, prediction="x0")  # configs/


# --- the weight average ---
def test_weight_average_follows_the_formula_and_swaps_back_exactly():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    avg = WeightAverage(model, 0.99)
    with torch.no_grad():
        model.weight.fill_(3.0)
    avg.update(model)  # decay min(0.99, 1/10) = 0.1: 0.1*1 + 0.9*3
    assert float(avg.averages()["weight"][0, 0]) == pytest.approx(2.8)
    avg.update(model)  # decay 2/11
    assert float(avg.averages()["weight"][0, 0]) == pytest.approx(2 / 11 * 2.8 + 9 / 11 * 3.0)
    before = model.weight.detach().clone()
    with avg.swapped_into(model):
        assert torch.equal(model.weight, avg.averages()["weight"])
    assert torch.equal(model.weight, before)


@pytest.mark.parametrize("recipe", [NEW, DEFAULT_RECIPE], ids=["min-snr", "the-default"])
def test_resume_with_a_weight_average_is_bit_exact(tmp_path, data_dir, recipe):
    base = write_config(tmp_path / "base.yaml", **recipe)
    straight = train(options(tmp_path, data_dir, "straight", base_config=base, max_steps=6), log=quiet)
    train(options(tmp_path, data_dir, "resumed", base_config=base, max_steps=3), log=quiet)
    second = train(options(tmp_path, data_dir, "resumed", base_config=base, max_steps=6), log=quiet)
    assert [r.loss for r in second.history] == [r.loss for r in straight.history[3:]]
    a = torch.load(straight.checkpoint, map_location="cpu", weights_only=True)
    b = torch.load(second.checkpoint, map_location="cpu", weights_only=True)
    for k in a["state_dict"]:  # the averaged weights
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for k in a[RESUME_KEY][RAW_WEIGHTS_KEY]:  # and the raw ones
        assert torch.equal(a[RESUME_KEY][RAW_WEIGHTS_KEY][k], b[RESUME_KEY][RAW_WEIGHTS_KEY][k]), k
    assert int(b[RESUME_KEY]["extras"][EMA_NAME]["num_updates"]) == 6


def test_the_checkpoint_hands_inference_the_averaged_weights(tmp_path, data_dir):
    base = write_config(tmp_path / "base.yaml", **NEW)
    trainer = Trainer(options(tmp_path, data_dir, base_config=base, max_steps=4), log=quiet)
    result = trainer.run()
    state = trainer.state
    averages = state.extras[EMA_NAME].averages()
    loaded = load_model(result.checkpoint)  # what `diffsvc infer` loads (and the original reads)
    name = "denoise_fn.output_projection.weight"
    assert torch.equal(loaded.model.state_dict()[name], averages[name])
    assert not torch.equal(averages[name], state.model.state_dict()[name])  # the average differs from the raw
    raw = torch.load(result.checkpoint, map_location="cpu", weights_only=True)[RESUME_KEY][RAW_WEIGHTS_KEY]
    assert torch.equal(raw[name], state.model.state_dict()[name])  # the run trains on from the raw weights
    # validation sees the averages, and leaves the raw weights in place
    seen = {}
    original = trainer.validator.__class__.__call__

    def spy(self, model, loss, step):
        seen["w"] = model.state_dict()[name].clone()
        return original(self, model, loss, step)

    trainer.validator.__class__.__call__ = spy
    try:
        trainer.validate()
    finally:
        trainer.validator.__class__.__call__ = original
    assert torch.equal(seen["w"], averages[name])
    assert torch.equal(state.model.state_dict()[name], raw[name])


def test_an_original_checkpoint_resumed_with_averaging_starts_the_average_from_its_weights(tmp_path, data_dir):
    plain = write_config(tmp_path / "plain.yaml")
    first = train(options(tmp_path, data_dir, "p", base_config=plain, max_steps=3), log=quiet)
    ckpt = torch.load(first.checkpoint, map_location="cpu", weights_only=True)
    assert RAW_WEIGHTS_KEY not in ckpt[RESUME_KEY]  # the original recipe writes the plain layout
    project = options(tmp_path, data_dir, "p").project
    config = yaml.safe_load(project.config_path.read_text())
    config.update(NEW)
    project.config_path.write_text(yaml.safe_dump(config))
    trainer = Trainer(options(tmp_path, data_dir, "p", base_config=plain, max_steps=3), log=quiet)
    state = trainer.build()
    name = "denoise_fn.output_projection.weight"
    assert torch.equal(state.extras[EMA_NAME].averages()[name], ckpt["state_dict"]["model." + name])
    assert torch.equal(state.model.state_dict()[name], ckpt["state_dict"]["model." + name])


# --- the weighting ---
def test_min_snr_weights_match_known_values():
    ac = torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)  # SNR 1, 9, 99
    t = torch.tensor([0, 1, 2])
    eps = min_snr_weights(ac, t, 5.0, "eps")
    v = min_snr_weights(ac, t, 5.0, "v")
    torch.testing.assert_close(eps, torch.tensor([1.0, 5 / 9, 5 / 99]))
    torch.testing.assert_close(v, torch.tensor([0.5, 0.5, 5 / 100]))
    # clamped-snr: clean-mel weight clamp(SNR, 1, gamma); a high-noise step (SNR 1/99) keeps about 1 in v
    ac = torch.tensor([0.01, 0.5, 0.9, 0.99], dtype=torch.float64)
    t = torch.arange(4)
    torch.testing.assert_close(min_snr_weights(ac, t, 5.0, "v", floor=1.0),
                               torch.tensor([0.99, 0.5, 0.5, 5 / 100]))
    torch.testing.assert_close(min_snr_weights(ac, t, 5.0, "eps", floor=1.0), torch.tensor([99.0, 1.0, 5 / 9, 5 / 99]))
    assert float(min_snr_weights(ac, t, 5.0, "v")[0]) == pytest.approx(0.01)  # what min-snr gives it
    # x0: the clean-mel weight itself
    torch.testing.assert_close(min_snr_weights(ac, t, 5.0, "x0"), torch.tensor([1 / 99, 1.0, 5.0, 5.0]))
    torch.testing.assert_close(min_snr_weights(ac, t, 5.0, "x0", floor=1.0), torch.tensor([1.0, 1.0, 5.0, 5.0]))


def test_min_snr_weights_each_items_loss_by_its_step():
    torch.manual_seed(0)
    model = GaussianDiffusion.from_config(tiny_config(audio_num_mel_bins=N_MELS, keep_bins=N_MELS))
    b, frames = 2, 12
    mel = torch.rand(b, frames, N_MELS) * -4
    units = torch.randn(b, frames, 256)
    mel2ph = torch.arange(1, frames + 1).repeat(b, 1)
    f0 = torch.full((b, frames), 8.0)
    t = torch.tensor([1, 90])  # low noise (SNR >> 5) and high noise (SNR < 5)
    noise = torch.randn(b, 1, N_MELS, frames)
    w = min_snr_weights(model.alphas_cumprod, t, 5.0)
    assert float(w[0]) < 0.1 and float(w[1]) == pytest.approx(1.0)
    per_item = [model.loss(mel[i:i + 1], units[i:i + 1], mel2ph[i:i + 1], f0[i:i + 1], t=t[i:i + 1],
                           noise=noise[i:i + 1]) for i in range(b)]
    weighted = model.loss(mel, units, mel2ph, f0, t=t, noise=noise, weights=w)
    torch.testing.assert_close(weighted, (w[0] * per_item[0] + w[1] * per_item[1]) / b)


def test_the_original_recipe_trains_as_before(tmp_path, data_dir):
    # a config without the recipe keys is the original's: the same losses as the explicit original
    plain = write_config(tmp_path / "plain.yaml")
    explicit = write_config(tmp_path / "explicit.yaml", ema_decay=0.0, loss_weighting="none", prediction="eps")
    a = train(options(tmp_path, data_dir, "a", base_config=plain, max_steps=2), log=quiet)
    b = train(options(tmp_path, data_dir, "b", base_config=explicit, max_steps=2), log=quiet)
    c = train(options(tmp_path, data_dir, "c", base_config=write_config(tmp_path / "n.yaml", **NEW), max_steps=2),
              log=quiet)
    assert [r.loss for r in a.history] == [r.loss for r in b.history]
    assert c.history[0].loss < a.history[0].loss  # min-snr down-weights the low-noise items


# --- v prediction ---
def test_v_prediction_hands_the_samplers_the_noise():
    model = GaussianDiffusion.from_config(tiny_config(prediction="v"))
    x0 = torch.rand(3, 1, 128, 5) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 50, 99])
    x_t = model.q_sample(x0, t, noise)
    torch.testing.assert_close(model.eps_from(model.target(x0, t, noise), x_t, t), noise)
    eps_model = GaussianDiffusion.from_config(tiny_config())
    assert torch.equal(eps_model.target(x0, t, noise), noise)


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_a_v_or_x0_model_checkpoint_loads_as_such(tmp_path, data_dir, prediction):
    base = write_config(tmp_path / "base.yaml", prediction=prediction)
    result = train(options(tmp_path, data_dir, base_config=base, max_steps=1), log=quiet)
    assert load_model(result.checkpoint).model.prediction == prediction


# --- config ---
@pytest.mark.parametrize("data, message", [
    ({"ema_decay": 1.0}, r"ema_decay: 1.0 must be below 1"),
    ({"ema_decay": -0.1}, r"ema_decay: -0.1 is too small"),
    ({"loss_weighting": "snr"}, r"loss_weighting: 'snr' is not one of none, min-snr, clamped-snr"),
    ({"min_snr_gamma": 0}, r"min_snr_gamma: 0.0 is too small"),
    ({"prediction": "x1"}, r"prediction: 'x1' is not one of eps, v, x0"),
])
def test_recipe_config_errors_name_the_key(tmp_path, data, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_new_projects_get_the_new_recipe_and_original_configs_the_original():
    new = load_config(DEFAULT_CONFIG)  # ours, as measured in benchmarks/results/recipe*.md
    assert (new.ema_decay, new.loss_weighting, new.prediction) == (0.999, "clamped-snr", "x0")
    demo = load_config(DEFAULT_CONFIG.parent / "demo.yaml")
    assert (demo.ema_decay, demo.loss_weighting, demo.prediction) == (0.999, "clamped-snr", "x0")
    assert (Config().ema_decay, Config().loss_weighting, Config().prediction) == (0.0, "none", "eps")
    original = {"task_cls": "training.task.SVC_task.SVCTask", "lr": 0.0008}
    from diffsvc.config import config_from_dict

    loaded = config_from_dict(original, strict=False)
    assert (loaded.ema_decay, loaded.loss_weighting, loaded.prediction) == (0.0, "none", "eps")


def test_a_v_model_samples_through_the_samplers_as_a_noise_model_would():
    # a perfect v denoiser for a known clean mel: one DDIM step from pure noise must land on that mel,
    # which it does only if sample() turns the v output into the noise the samplers take
    from diffsvc.sampling import make_sampler

    model = GaussianDiffusion.from_config(tiny_config(prediction="v"))
    frames = 6
    x0 = torch.rand(1, 1, 128, frames) * 1.6 - 0.8

    class PerfectV(torch.nn.Module):
        def forward(self, x, t, cond, mask):
            a = model.sqrt_alphas_cumprod[t].reshape(-1, 1, 1, 1)
            b = model.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1, 1, 1)
            eps = (x - a * x0) / b
            return a * eps - b * x0

    model.denoise_fn = PerfectV()
    mel2ph = torch.arange(1, frames + 1)[None]
    mel = model.sample(torch.zeros(1, frames, 256), mel2ph, torch.full((1, frames), 8.0),
                       make_sampler("ddim", model.schedule(), 1), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.norm_spec(mel).transpose(1, 2)[:, None], x0, rtol=1e-4, atol=1e-4)


class _FromEps(torch.nn.Module):
    """A v or x0 denoiser made from an eps denoiser (x0 = (x - sqrt(1-a) eps) / sqrt(a) implied by
    eps; v = sqrt(a) eps - sqrt(1-a) x0). Its model must give, through every path, exactly what the
    eps model gives."""

    def __init__(self, eps_fn, model, prediction):
        super().__init__()
        self.eps_fn, self.prediction = eps_fn, prediction
        self.a, self.b = model.sqrt_alphas_cumprod.clone(), model.sqrt_one_minus_alphas_cumprod.clone()

    def forward(self, x, t, cond, mask=None, **extra):
        eps = self.eps_fn(x, t, cond, mask, **extra)
        a, b = self.a[t].reshape(-1, 1, 1, 1), self.b[t].reshape(-1, 1, 1, 1)
        x0 = (x - b * eps) / a
        return x0 if self.prediction == "x0" else a * eps - b * x0

    def project_condition(self, cond):
        return self.eps_fn.project_condition(cond)


def _twins(prediction):
    torch.manual_seed(0)
    eps_model = GaussianDiffusion.from_config(tiny_config())
    torch.nn.init.normal_(eps_model.denoise_fn.output_projection.weight, std=0.3)  # not the zero init
    twin = GaussianDiffusion.from_config(tiny_config(prediction=prediction))
    twin.load_state_dict(eps_model.state_dict())
    twin.denoise_fn = _FromEps(eps_model.denoise_fn, twin, prediction)
    return eps_model.eval(), twin.eval()


@pytest.mark.parametrize("prediction", ["v", "x0"])
@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver++", "plms", "ddpm", "consistency"])
def test_every_sampler_samples_a_v_or_x0_model_as_its_noise_twin(sampler, prediction):
    from diffsvc.sampling import make_sampler

    eps_model, twin = _twins(prediction)
    frames = 7
    args = (torch.randn(1, frames, 256), torch.arange(1, frames + 1)[None], torch.full((1, frames), 8.0))
    out = [m.sample(*args, make_sampler(sampler, m.schedule(), 4), generator=torch.Generator().manual_seed(3))
           for m in (eps_model, twin)]
    torch.testing.assert_close(out[1], out[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_distillation_reads_a_v_or_x0_teacher_and_student_as_their_noise_twins(prediction):
    # the consistency student and the teacher's DDIM step take the noise the denoiser implies: with
    # the raw v output taken as the noise (the fault), a v teacher taught its student nonsense
    from diffsvc.distill.objective import consistency_function, teacher_step

    eps_model, twin = _twins(prediction)
    frames = 7
    units, mel2ph, f0 = torch.randn(2, frames, 256), torch.arange(1, frames + 1)[None].repeat(2, 1), \
        torch.full((2, frames), 8.0)
    x = torch.randn(2, 1, 128, frames)
    t_hi, t_lo = torch.tensor([99, 40]), torch.tensor([60, 10])
    with torch.no_grad():
        f = [consistency_function(m, x, t_hi, units, mel2ph, f0, None) for m in (eps_model, twin)]
        cond = eps_model.condition(units, mel2ph, f0).cond
        step = [teacher_step(m, x, t_hi, t_lo, cond, None) for m in (eps_model, twin)]
    torch.testing.assert_close(f[1], f[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(step[1], step[0], rtol=1e-4, atol=1e-4)


def test_x0_prediction_learns_the_clean_mel_and_hands_the_samplers_its_noise():
    model = GaussianDiffusion.from_config(tiny_config(prediction="x0"))
    x0 = torch.rand(3, 1, 128, 5) * 2 - 1
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 50, 99])
    x_t = model.q_sample(x0, t, noise)
    assert torch.equal(model.target(x0, t, noise), x0)
    torch.testing.assert_close(model.eps_from(x0, x_t, t), noise, rtol=1e-3, atol=1e-3)


# --- the prediction target travels with the checkpoint ---
def _told(messages, tmp_path):
    return [m.replace(str(tmp_path), "<tmp>") for m in messages]  # the tmp path holds the test's name


@pytest.mark.parametrize("beside", ["config", "no-config", "no-config-no-record"])
def test_init_from_a_noise_model_makes_the_new_project_predict_noise(tmp_path, data_dir, beside):
    """An original-recipe (eps) checkpoint fine-tuned into a new project whose config says x0: the
    project follows the checkpoint (else its output layer is silently retrained), and says so;
    without a config beside the file, its record says eps, and without a record (the original's
    checkpoints) eps is assumed."""

    eps = train(options(tmp_path, data_dir, "orig", max_steps=1), log=quiet)
    source = eps.checkpoint
    if beside != "config":
        (tmp_path / "lone").mkdir()
        source = tmp_path / "lone" / eps.checkpoint.name
        ckpt = torch.load(eps.checkpoint, map_location="cpu", weights_only=True)
        assert ckpt["prediction"] == "eps"
        if beside == "no-config-no-record":
            del ckpt["prediction"]
        torch.save(ckpt, source)
    messages = []
    x0_base = write_config(tmp_path / "x0.yaml", **DEFAULT_RECIPE)
    result = train(options(tmp_path, data_dir, "new", base_config=x0_base, max_steps=2, init_from=source),
                   log=messages.append)
    assert load_model(result.checkpoint).model.prediction == "eps"
    assert load_config(result.checkpoint.parent / "config.yaml").ema_decay == DEFAULT_RECIPE["ema_decay"]
    assert any("predicts eps" in m and "x0" in m for m in _told(messages, tmp_path)), messages


def test_init_from_a_clean_mel_model_without_its_config_keeps_its_prediction(tmp_path, data_dir):
    x0 = train(options(tmp_path, data_dir, "x0", base_config=write_config(tmp_path / "x0.yaml", **DEFAULT_RECIPE),
                       max_steps=1), log=quiet)
    (tmp_path / "lone").mkdir()
    source = tmp_path / "lone" / x0.checkpoint.name
    source.write_bytes(x0.checkpoint.read_bytes())
    result = train(options(tmp_path, data_dir, "eps-project", max_steps=2, init_from=source), log=quiet)
    assert load_model(result.checkpoint).model.prediction == "x0"


def test_a_config_that_misreads_the_checkpoints_prediction_is_refused(tmp_path, data_dir):
    from diffsvc.errors import CheckpointError

    x0 = train(options(tmp_path, data_dir, "x0", base_config=write_config(tmp_path / "x0.yaml", **DEFAULT_RECIPE),
                       max_steps=1), log=quiet)
    wrong = load_model(x0.checkpoint).config.replace(prediction="eps")
    with pytest.raises(CheckpointError) as error:
        load_model(x0.checkpoint, wrong)
    message = str(error.value).replace(str(tmp_path), "<tmp>")
    assert "trained to predict x0" in message and "prediction: eps" in message and "\n" not in message


def test_switching_a_trained_projects_prediction_is_refused_on_resume(tmp_path, data_dir):
    from diffsvc.errors import CheckpointError

    first = train(options(tmp_path, data_dir, "p", max_steps=1), log=quiet)  # eps
    config_path = first.checkpoint.parent / "config.yaml"
    values = yaml.safe_load(config_path.read_text())
    values["prediction"] = "x0"  # the user edits the project towards the new recipe
    config_path.write_text(yaml.safe_dump(values))
    with pytest.raises(CheckpointError, match="trained to predict eps but its config says prediction: x0"):
        train(options(tmp_path, data_dir, "p", max_steps=2), log=quiet)
