"""DiffNet, schedules, the conditioning, PLMS and the losses against the original's numbers."""

import numpy as np
import pytest
import torch

from diffsvc.model.conditioning import ConditioningEmbedding
from diffsvc.model.diffnet import DiffNet
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.model.schedule import SCHEDULE_BUFFERS, cosine_betas, linear_betas, schedule_buffers
from diffsvc.sampling import make_sampler
from diffsvc.sampling.ddpm import DDPMSampler


@pytest.fixture(scope="module")
def pndm(fixtures_dir):
    return torch.load(fixtures_dir / "pndm_small.pt", weights_only=True)


@pytest.fixture(scope="module")
def small_model(pndm):
    h = pndm["hparams"]
    model = GaussianDiffusion(DiffNet(128, 32, 4, 16, 4), ConditioningEmbedding(16), linear_betas(1000, 0.02),
                              h["spec_min"], h["spec_max"])
    model.load_state_dict(pndm["state_dict"], strict=True)
    return model.eval()


def test_diffnet_forward(fixtures_dir):
    ref = torch.load(fixtures_dir / "diffnet_small.pt", weights_only=True)
    c = ref["config"]
    net = DiffNet(128, c["residual_channels"], c["residual_layers"], c["hidden_size"], c["dilation_cycle_length"])
    net.load_state_dict(ref["state_dict"], strict=True)
    with torch.no_grad():
        out = net(ref["spec"], ref["step"], ref["cond"])
    torch.testing.assert_close(out, ref["out"], rtol=1e-5, atol=1e-5)


def test_full_size_diffnet_parameter_count():
    assert sum(p.numel() for p in DiffNet().parameters()) == 31_956_224


def test_schedules(fixtures_dir):
    ref = np.load(fixtures_dir / "diffusion_sched.npz")
    np.testing.assert_allclose(linear_betas(1000, 0.02), ref["linear_0.02/betas"], rtol=1e-12)
    np.testing.assert_allclose(linear_betas(1000, 0.01), ref["linear_0.01/betas"], rtol=1e-12)
    np.testing.assert_allclose(cosine_betas(1000), ref["cosine/betas"], rtol=1e-12)
    for prefix, betas in (("buffers_linear_0.02_f32", linear_betas(1000, 0.02)), ("buffers_cosine_f32", cosine_betas(1000))):
        buffers = schedule_buffers(betas)
        for name in SCHEDULE_BUFFERS:
            np.testing.assert_allclose(buffers[name].numpy(), ref[f"{prefix}/{name}"], rtol=1e-6, err_msg=name)


def test_conditioning_matches_fs2(pndm, small_model):
    i = pndm["inputs"]
    out = small_model.condition(i["hubert"], i["mel2ph"], i["f0"])
    torch.testing.assert_close(out.cond.transpose(1, 2), pndm["fs2"]["decoder_inp"], atol=1e-6, rtol=0)
    assert out.pitch.reshape(-1).tolist() == pndm["fs2"]["pitch_coarse"].reshape(-1).tolist()


def _close_to_scale(ours, ref):
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("run_name", ["speedup10", "speedup20"])
def test_plms_reproduces_original(pndm, small_model, run_name):
    run = pndm["runs"][run_name]
    i = pndm["inputs"]
    sampler = make_sampler("plms", small_model.schedule(), speedup=run["pndm_speedup"])
    calls = []
    denoise = small_model.denoise_fn

    class Spy(torch.nn.Module):
        def forward(self, x, t, cond, mask=None):
            calls.append(int(t[0]))
            return denoise(x, t, cond, mask)

    small_model.denoise_fn = Spy()
    try:
        with torch.no_grad():
            mel = small_model.sample(i["hubert"], i["mel2ph"], i["f0"], sampler, noise=run["x_init"])
    finally:
        small_model.denoise_fn = denoise
    assert len(calls) == run["n_denoise_calls"] == sampler.num_denoiser_calls(1000)
    assert sampler.timesteps(1000) == list(run["timesteps_visited"])
    _close_to_scale(mel, run["mel_out"])


def test_plms_intermediate_steps(pndm, small_model):
    run = pndm["runs"]["speedup10"]
    i = pndm["inputs"]
    cond = small_model.condition(i["hubert"], i["mel2ph"], i["f0"]).cond
    seen = {}
    sampler = make_sampler("plms", small_model.schedule(), speedup=10)
    # Run the loop one step at a time by truncating the schedule: check x after the first 5 steps.
    x = run["x_init"]
    with torch.no_grad():
        full = sampler.sample(lambda x_, t_: small_model.denoise_fn(x_, t_, cond), x, 1000)
    _close_to_scale(full, run["x_final_normalized"])
    for t_key in list(run["x_after_step"])[:1]:
        # after the first step (t=990) the state equals the reference
        one = make_sampler("plms", small_model.schedule(), speedup=10)
        with torch.no_grad():
            eps = small_model.denoise_fn(x, torch.tensor([990]), cond)
            x_pred = one.transfer(x, eps, torch.tensor([990]), torch.tensor([980]))
            eps2 = small_model.denoise_fn(x_pred, torch.tensor([980]), cond)
            seen[t_key] = one.transfer(x, (eps + eps2) / 2, torch.tensor([990]), torch.tensor([980]))
        _close_to_scale(seen[t_key], run["x_after_step"][t_key])


def test_shallow_diffusion_reproduces_original(pndm, small_model):
    run = pndm["runs"]["gt_mel_t500_speedup20"]
    i = pndm["inputs"]
    sampler = make_sampler("plms", small_model.schedule(), speedup=20)
    with torch.no_grad():
        mel = small_model.sample(i["hubert"], i["mel2ph"], i["f0"], sampler, ref_mel=i["ref_mels"],
                                 shallow_step=run["add_noise_step"], noise=run["initial_noise"])
        x0 = small_model.norm_spec(i["ref_mels"]).transpose(1, 2)[:, None]
        x_init = small_model.q_sample(x0, torch.tensor([run["add_noise_step"] - 1]), run["initial_noise"])
    _close_to_scale(x_init, run["x_init"])
    assert sampler.timesteps(500) == list(run["timesteps_visited"])
    _close_to_scale(mel, run["mel_out"])


def test_training_loss_and_posterior(pndm, small_model):
    p = pndm["p_losses"]
    x_noisy = small_model.q_sample(p["x_start"], p["t"], p["noise"])
    torch.testing.assert_close(x_noisy, p["x_noisy"], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        eps = small_model.denoise_fn(x_noisy, p["t"], p["cond"])
    loss = torch.nn.functional.mse_loss(p["noise"], eps)
    torch.testing.assert_close(loss, p["loss_l2"], rtol=1e-5, atol=0)

    m = pndm["p_mean_variance_t500"]
    i = pndm["inputs"]
    cond = small_model.condition(i["hubert"], i["mel2ph"], i["f0"]).cond
    with torch.no_grad():
        mean, var, log_var = DDPMSampler(small_model.schedule()).posterior(
            m["x"], small_model.denoise_fn(m["x"], m["t"], cond), m["t"])
    torch.testing.assert_close(mean, m["model_mean"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var, m["posterior_variance"], rtol=1e-5, atol=0)
    torch.testing.assert_close(log_var, m["posterior_log_variance"], rtol=1e-5, atol=0)


def test_unmasked_loss_api_equals_original_mse(pndm, small_model):
    """GaussianDiffusion.loss without lengths is the original's F.mse_loss over the padded batch."""
    i = pndm["inputs"]
    mel = i["ref_mels"]
    t = torch.tensor([123])
    noise = torch.randn(1, 1, 128, mel.shape[1], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        loss = small_model.loss(mel, i["hubert"], i["mel2ph"], i["f0"], t=t, noise=noise)
        x0 = small_model.norm_spec(mel).transpose(1, 2)[:, None]
        cond = small_model.condition(i["hubert"], i["mel2ph"], i["f0"]).cond
        eps = small_model.denoise_fn(small_model.q_sample(x0, t, noise), t, cond)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(noise, eps))
