"""What makes the pipeline fast on the CPU keeps its numbers (benchmarks/pipeline.py measures the speed):
evened-out windows, a whole section per window on the CPU, the conditioner projections computed
once per sampling run, and the vocoder's in-place inference path."""

from __future__ import annotations

import torch

from conftest import tiny_config
from diffsvc.inference.windows import WindowPlan, estimated_bytes_per_frame, plan_windows
from diffsvc.model.diffusion import GaussianDiffusion
from diffsvc.sampling import make_sampler
from diffsvc.vocoder.windowed import balanced_spans, window_spans


def test_windows_are_evened_out_so_no_window_is_mostly_padding():
    # 30 s of song (2584 frames) in windows of up to 1500: two of about 1300, not 1500 and 1100,
    # so a batch of them (padded to the longest) or a fixed-length vocoder run wastes little
    windows = plan_windows(2584, WindowPlan(window_frames=1500, batch_size=2, context_frames=32, crossfade_frames=16))
    lengths = [w.length for w in windows]
    assert len(windows) == len(window_spans(2584, 1500, 16)) == 2
    assert windows[0].start == 0 and windows[-1].end == 2584
    assert all(b.start == a.end - 16 for a, b in zip(windows, windows[1:]))
    assert max(lengths) - min(lengths) <= 64 and max(lengths) <= 1500 + 32
    for n, w, c in ((10_000, 1000, 8), (1001, 1000, 8), (5000, 300, 16), (130, 50, 10)):
        spans = balanced_spans(n, w, c, 32)
        assert len(spans) == len(window_spans(n, w, c)) and spans[0][0] == 0 and spans[-1][1] == n
        assert all(e - s <= w for s, e in spans) and all(b[0] == a[1] - c for a, b in zip(spans, spans[1:]))


def test_a_cpu_converter_samples_a_whole_section_in_one_window(tmp_path, monkeypatch):
    from infer_fixture import write_project
    from test_infer import converter_for

    write_project(tmp_path, "singer")
    monkeypatch.chdir(tmp_path)
    conv = converter_for(tmp_path)
    plan = conv.window_plan(5168)  # a 60 s section (SECTION_MAX_S) at hop 512
    assert plan.window_frames >= 5168 and plan.batch_size == 1


def test_conditioner_projections_are_computed_once_per_sampling_run():
    torch.manual_seed(0)
    model = GaussianDiffusion.from_config(tiny_config(residual_channels=8, residual_layers=3)).eval()
    with torch.no_grad():
        model.denoise_fn.output_projection.weight.normal_(0, 0.2)
    calls = []
    for layer in model.denoise_fn.residual_layers:
        layer.conditioner_projection.register_forward_hook(lambda *args: calls.append(1))
    units = torch.randn(2, 20, 256)
    mel2ph = (torch.arange(40) // 2 + 1)[None].repeat(2, 1)
    f0 = torch.full((2, 40), 8.0)
    noise = torch.randn(2, 1, 128, 40)
    sampler = make_sampler("ddim", model.schedule(), 5)
    with torch.inference_mode():
        fast = model.sample(units, mel2ph, f0, sampler, noise=noise, lengths=torch.tensor([40, 31]))
        assert len(calls) == 3  # once per layer, not once per layer and step
        cond = model.condition(units, mel2ph, f0).cond
        mask = model.frame_mask(mel2ph, torch.tensor([40, 31]))
        x = sampler.sample(lambda x_, t_: model.denoise_fn(x_, t_, cond, mask[:, 0]), noise * mask, model.K_step,
                           mask=mask)
        plain = model.denorm_spec(x[:, 0].transpose(1, 2)) * (mel2ph > 0)[..., None]
    torch.testing.assert_close(fast, plain, rtol=0, atol=0)


def test_planner_counts_the_kept_projections():
    small = GaussianDiffusion.from_config(tiny_config(residual_channels=8, residual_layers=2))
    deep = GaussianDiffusion.from_config(tiny_config(residual_channels=8, residual_layers=12))
    # ten more layers: ten more kept projections of 2 x 8 floats per frame (float32, x2 slack); the
    # forward's own activations do not grow with the depth
    assert estimated_bytes_per_frame(deep) - estimated_bytes_per_frame(small) == 2 * 4 * 10 * 2 * 8


def test_vocoder_inference_path_gives_the_training_paths_numbers():
    from test_vocoder import small_generator, voiced_inputs

    generator = small_generator().remove_weight_norm().eval()
    mel_ln, f0 = voiced_inputs(40)
    phase = generator.m_source.l_sin_gen.draw_initial_phase(1, "cpu")
    torch.manual_seed(3)
    with torch.enable_grad():
        graph = generator(mel_ln, f0, initial_phase=phase).detach()  # out of place, as the original
    torch.manual_seed(3)
    with torch.inference_mode():
        inplace = generator(mel_ln, f0, initial_phase=phase)
    torch.testing.assert_close(inplace, graph, rtol=0, atol=0)
