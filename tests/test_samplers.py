"""Every sampler on padded batches, shallow diffusion with every sampler, and convergence."""

import pytest
import torch

from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.sampling import SAMPLERS, make_sampler, spaced_timesteps

from conftest import tiny_config

LENGTHS = [23, 9, 16]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GaussianDiffusion.from_config(tiny_config(spec_min=[-5.0] * 128, spec_max=[0.0] * 128))
    # The original zero-inits the output projection; give it weights so the tests see real outputs.
    torch.nn.init.normal_(m.denoise_fn.output_projection.weight, std=0.3)
    return m.eval()


def _batch(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    t_max = max(lengths)
    b = len(lengths)
    units = torch.randn(b, t_max, 256, generator=g)
    mel2ph = torch.zeros(b, t_max, dtype=torch.long)
    for i, n in enumerate(lengths):
        mel2ph[i, :n] = torch.arange(1, n + 1)
    f0 = torch.log2(torch.full((b, t_max), 220.0)) + 0.1 * torch.randn(b, t_max, generator=g)
    ref_mel = -5 + 5 * torch.rand(b, t_max, 128, generator=g)
    noise = torch.randn(b, 1, 128, t_max, generator=g)
    return units, mel2ph, f0, ref_mel, noise, torch.tensor(lengths)


@pytest.mark.parametrize("name", ["plms", "ddim", "dpm-solver++"])
def test_batched_equals_one_at_a_time(model, name):
    units, mel2ph, f0, _, noise, lengths = _batch(LENGTHS)
    sampler = make_sampler(name, model.schedule(), steps=10)
    with torch.no_grad():
        batched = model.sample(units, mel2ph, f0, sampler, lengths=lengths, noise=noise)
        for i, n in enumerate(LENGTHS):
            single = model.sample(units[i:i + 1, :n], mel2ph[i:i + 1, :n], f0[i:i + 1, :n], sampler,
                                  lengths=lengths[i:i + 1], noise=noise[i:i + 1, ..., :n])
            torch.testing.assert_close(batched[i:i + 1, :n], single, rtol=1e-4, atol=1e-4)
            assert (batched[i, n:] == 0).all()


def test_ddpm_batch_is_masked_and_finite(model):
    units, mel2ph, f0, _, noise, lengths = _batch(LENGTHS)
    with torch.no_grad():
        mel = model.sample(units, mel2ph, f0, make_sampler("ddpm", model.schedule()), lengths=lengths, noise=noise,
                           generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(mel).all()
    for i, n in enumerate(LENGTHS):
        assert (mel[i, n:] == 0).all() and (mel[i, :n] != 0).any()


def test_without_mask_padding_leaks_into_real_frames(model):
    """Why the mask exists: the original's unmasked batch changes the real frames of short items."""
    units, mel2ph, f0, _, noise, lengths = _batch(LENGTHS)
    sampler = make_sampler("ddim", model.schedule(), steps=5)
    with torch.no_grad():
        unmasked = model.sample(units, mel2ph, f0, sampler, noise=noise)
        single = model.sample(units[1:2, :9], mel2ph[1:2, :9], f0[1:2, :9], sampler, noise=noise[1:2, ..., :9])
    assert (unmasked[1:2, :9] - single).abs().max() > 1e-3


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_shallow_diffusion_from_a_low_step_keeps_the_input(model, name):
    units, mel2ph, f0, ref_mel, noise, lengths = _batch(LENGTHS)
    sampler = make_sampler(name, model.schedule(), steps=2)
    with torch.no_grad():
        out = model.sample(units, mel2ph, f0, sampler, lengths=lengths, ref_mel=ref_mel, shallow_step=2,
                           noise=noise, generator=torch.Generator().manual_seed(0))
        far = model.sample(units, mel2ph, f0, sampler, lengths=lengths, ref_mel=ref_mel, shallow_step=90,
                           noise=noise, generator=torch.Generator().manual_seed(0))
    for i, n in enumerate(LENGTHS):
        near_err = (out[i, :n] - ref_mel[i, :n]).abs().mean()
        far_err = (far[i, :n] - ref_mel[i, :n]).abs().mean()
        assert near_err < 0.15, (name, float(near_err))  # 5 log10 units of range: 3% of it
        assert far_err > 2 * near_err
        assert (out[i, n:] == 0).all()


def test_fast_samplers_converge_to_the_ode_solution():
    """DDIM and DPM-Solver++ approach a 1000-step DDIM reference (the original's schedule) as their
    step count grows, and DPM-Solver++ (second order) gets closer than DDIM (first order)."""
    torch.manual_seed(0)
    model = GaussianDiffusion.from_config(tiny_config(spec_min=[-5.0] * 128, spec_max=[0.0] * 128,
                                                      timesteps=1000, K_step=1000)).eval()
    torch.nn.init.normal_(model.denoise_fn.output_projection.weight, std=0.3)
    units, mel2ph, f0, _, noise, lengths = _batch([12])
    with torch.no_grad():
        ref = model.sample(units, mel2ph, f0, make_sampler("ddim", model.schedule(), steps=1000), noise=noise)

        def err(name, steps):
            out = model.sample(units, mel2ph, f0, make_sampler(name, model.schedule(), steps=steps), noise=noise)
            return float((out - ref).pow(2).mean().sqrt())

        errors = {(name, n): err(name, n) for name in ("ddim", "dpm-solver++") for n in (5, 20, 50)}
    for name in ("ddim", "dpm-solver++"):
        assert errors[name, 50] < errors[name, 20] < errors[name, 5]
    assert errors["dpm-solver++", 20] < errors["ddim", 20]
    assert errors["dpm-solver++", 50] < errors["ddim", 50]


def test_spaced_timesteps_and_call_counts(model):
    assert spaced_timesteps(100, 5) == [99, 74, 50, 25, 0]
    assert spaced_timesteps(3, 10) == [2, 1, 0]
    plms = make_sampler("plms", model.schedule(), speedup=20)
    assert plms.timesteps(100) == [80, 60, 40, 20, 0] and plms.num_denoiser_calls(100) == 6
    assert make_sampler("ddpm", model.schedule()).num_denoiser_calls(100) == 100
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("euler", model.schedule())


def test_masked_loss_ignores_padding(model):
    """Appending padding to an item does not change its masked loss (the original's would change)."""
    units, mel2ph, f0, ref_mel, noise, lengths = _batch([10])
    t = torch.tensor([40])
    pad = 7
    p_units = torch.cat([units, torch.zeros(1, pad, 256)], 1)
    p_mel2ph = torch.cat([mel2ph, torch.zeros(1, pad, dtype=torch.long)], 1)
    p_f0 = torch.cat([f0, torch.zeros(1, pad)], 1)
    p_mel = torch.cat([ref_mel, torch.zeros(1, pad, 128)], 1)
    p_noise = torch.cat([noise, torch.randn(1, 1, 128, pad)], 3)
    with torch.no_grad():
        short = model.loss(ref_mel, units, mel2ph, f0, lengths, t=t, noise=noise)
        padded = model.loss(p_mel, p_units, p_mel2ph, p_f0, torch.tensor([10]), t=t, noise=p_noise)
        original = model.loss(p_mel, p_units, p_mel2ph, p_f0, None, t=t, noise=p_noise)
    torch.testing.assert_close(short, padded, rtol=1e-5, atol=1e-6)
    assert abs(float(original - short)) > 1e-3
