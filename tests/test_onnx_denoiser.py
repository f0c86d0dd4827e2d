"""The denoiser in ONNX Runtime (diffsvc.model.onnx_denoiser; cpu_runtime onnxruntime, and auto
where ONNX Runtime is installed): torch fp32's numbers within float rounding for every registered
backbone, through the sampler and the whole converter; a backbone that does not export is one log
line and the torch path. benchmarks/pipeline.py measures the speed."""

from __future__ import annotations

import logging

import pytest
import torch

from conftest import tiny_config
from diffsvc.model.backbones import BACKBONES, DiffNet, make_backbone
from diffsvc.model.onnx_denoiser import TOLERANCE, OnnxDenoiser, onnx_denoiser


def random_backbone(name: str, seed: int = 0):
    """A tiny `name` backbone with every weight random (the zero-initialised output projection
    would make both runtimes agree on zeros)."""
    torch.manual_seed(seed)
    net = make_backbone(tiny_config(diff_decoder_type=name, lynxnet_layers=2, lynxnet_channels=16)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape) * (p.shape[1] if p.dim() > 1 else 4) ** -0.5)
    return net


def inputs(net, batch: int, frames: int, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    spec = torch.randn(batch, 1, net.in_dims, frames, generator=g)
    t = torch.randint(0, 100, (batch,), generator=g)
    cond = torch.randn(batch, net.cond_dims, frames, generator=g)
    mask = torch.ones(batch, 1, frames)
    mask[0, :, frames - frames // 3:] = 0  # a padded item
    return spec, t, cond, mask


@pytest.mark.parametrize("name", BACKBONES.names())
def test_onnx_denoiser_equals_torch_for_every_backbone(name):
    net = random_backbone(name)
    ort = OnnxDenoiser(net)
    for batch, frames in [(1, 9), (3, 130)]:  # other batch sizes and lengths than it was built with
        spec, t, cond, mask = inputs(net, batch, frames)
        with torch.no_grad():
            reference = net(spec, t, cond, mask)
            original = net(spec, t, cond, None)  # mask None: the original's behaviour
        for got, want in [(ort(spec, t, cond, mask), reference), (ort(spec, t, cond, None), original)]:
            assert got.shape == want.shape and got.dtype == torch.float32
            assert (got - want).abs().max() <= TOLERANCE * want.abs().max()
        assert reference.abs().max() > 0.1  # not two zeros compared
    if isinstance(net, DiffNet):  # the projections computed once per sampling run, as torch does
        spec, t, cond, mask = inputs(net, 2, 40)
        got = ort(spec, t, cond, mask, cond_proj=ort.project_condition(cond))
        with torch.no_grad():
            want = net(spec, t, cond, mask, cond_proj=net.project_condition(cond))
        assert (got - want).abs().max() <= TOLERANCE * want.abs().max()


def test_the_session_is_kept_per_backbone_and_rebuilt_when_its_weights_change():
    net = random_backbone("wavenet")
    first = onnx_denoiser(net)
    assert onnx_denoiser(net) is first
    with torch.no_grad():
        net.output_projection.weight.mul_(2)  # in place, as load_state_dict does
    second = onnx_denoiser(net)
    assert second is not first
    spec, t, cond, mask = inputs(net, 1, 20)
    with torch.no_grad():
        want = net(spec, t, cond, mask)
    assert (second(spec, t, cond, mask) - want).abs().max() <= TOLERANCE * want.abs().max()


class _NoExport(DiffNet):
    """DiffNet's numbers through an op ONNX (opset 17) has no counterpart for (i0(0) = 1)."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        return torch.special.i0(out * 0) * out


def _converters(tmp_path):
    from infer_fixture import write_project

    from diffsvc.inference.components import load_content_encoder_for, load_vocoder_for
    from diffsvc.inference.pipeline import InferenceSettings, SongConverter
    from diffsvc.inference.project import choose_checkpoint, load_checkpoint

    write_project(tmp_path, "singer", vocoder="nsf-hifigan")
    loaded = load_checkpoint(choose_checkpoint(tmp_path / "models", "singer"), torch.device("cpu"))
    with torch.no_grad():  # the prediction reaches the mel (the output projection starts at zero)
        projection = loaded.model.denoise_fn.output_projection.weight
        projection.copy_(torch.randn(projection.shape, generator=torch.Generator().manual_seed(0))
                         * projection.shape[1] ** -0.5)
    encoder, vocoder = load_content_encoder_for(loaded.config, "cpu"), load_vocoder_for(loaded.config, "cpu")

    def make(runtime: str, sampler: str = "ddim"):
        settings = InferenceSettings(sampler=sampler, sampling_steps=4, f0_method="parselmouth", cpu_runtime=runtime)
        return SongConverter(loaded, encoder, vocoder, "cpu", settings)

    return loaded, make


@pytest.mark.parametrize("sampler", ["ddim", "plms"])
def test_a_conversion_with_the_denoiser_in_onnxruntime_gives_torchs_mel(tmp_path, monkeypatch, sampler):
    from audio_synth import synth_voice

    _loaded, make = _converters(tmp_path)
    wav = synth_voice(1.5, 44100, seed=1)[0].astype("float32")
    calls = []
    real_call = OnnxDenoiser.__call__
    monkeypatch.setattr(OnnxDenoiser, "__call__", lambda self, *a, **k: calls.append(1) or real_call(self, *a, **k))
    torch_conv, ort_conv = make("torch", sampler), make("onnxruntime", sampler)
    reference = torch_conv.convert(wav, torch_conv.analyse(wav), seed=0)
    assert calls == []
    got = ort_conv.convert(wav, ort_conv.analyse(wav), seed=0)
    assert ort_conv.denoiser_runtime == "onnxruntime"
    assert len(calls) >= ort_conv.denoiser_calls()  # the sampler ran the session, every step
    spread = reference.mel_out.max() - reference.mel_out.min()
    assert spread > 0.5  # the mel moves with the prediction: a wrong denoiser would show
    assert abs(got.mel_out - reference.mel_out).max() <= TOLERANCE * spread


def test_a_backbone_that_does_not_export_runs_in_torch_after_one_log_line(tmp_path, caplog):
    loaded, make = _converters(tmp_path)
    original = loaded.model.denoise_fn
    net = _NoExport(original.in_dims, original.channels, len(original.residual_layers), original.cond_dims, 2)
    net.load_state_dict(original.state_dict())
    loaded.model.denoise_fn = net.eval()
    wav = (torch.sin(torch.arange(33075) / 44100 * 2 * torch.pi * 220) * 0.3).numpy()
    reference_conv = make("torch")
    reference = reference_conv.convert(wav, reference_conv.analyse(wav), seed=0)
    conv = make("onnxruntime")
    with caplog.at_level(logging.WARNING):
        got = conv.convert(wav, conv.analyse(wav), seed=0)
        got_again = conv.convert(wav, conv.analyse(wav), seed=0)
    lines = [r.getMessage() for r in caplog.records if "denoiser" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "_NoExport" in lines[0] and "aten::i0" in lines[0] and lines[0].endswith("it runs in torch")
    assert conv.denoiser_runtime == "torch" and conv.cpu_runtime == "onnxruntime"  # the vocoder stays in ORT
    assert (got.mel_out == reference.mel_out).all() and (got_again.mel_out == reference.mel_out).all()


def test_auto_runs_the_denoiser_in_onnxruntime_where_torchs_threads_spin(monkeypatch):
    """auto: bf16 for the denoiser on native-bf16 CPUs where torch's threads wait passively or
    there is one thread (bf16 then does less work), ONNX Runtime where they spin-wait (it then
    does less); ONNX Runtime on other CPUs as before."""
    import sys

    import diffsvc.cpu_runtime as cpu_runtime
    from diffsvc.cpu_runtime import denoiser_runtime

    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: True)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert denoiser_runtime("auto", "cpu") == "onnxruntime"  # next to bf16 for the other models
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert denoiser_runtime("auto", "cpu") == "bf16"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert denoiser_runtime("auto", "cpu") == "onnxruntime"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert denoiser_runtime("auto", "cpu") == "bf16"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert denoiser_runtime("bf16", "cpu") == "bf16" and denoiser_runtime("torch", "cpu") == "torch"
    assert denoiser_runtime("onnxruntime", "cuda") == "torch"
    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: False)
    assert denoiser_runtime("auto", "cpu") == "onnxruntime"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    assert denoiser_runtime("auto", "cpu") == "torch"
    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: True)
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert denoiser_runtime("auto", "cpu") == "bf16"
