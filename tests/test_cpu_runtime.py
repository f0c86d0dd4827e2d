"""ONNX Runtime for the vocoder on the CPU (config cpu_runtime, diffsvc.cpu_runtime): the same
numbers as torch's fp32 within float rounding, the fall-back to torch when it is not installed,
and one clear line when it was asked for by name. benchmarks/pipeline.py measures the speed."""

from __future__ import annotations

import sys

import pytest
import torch

from diffsvc.config import Config, config_from_dict
from diffsvc.cpu_runtime import OnnxModule, onnxruntime_available, resolve_cpu_runtime
from diffsvc.errors import ConfigError
from diffsvc.vocoder import NsfHifiGan, save_vocoder
from diffsvc.vocoder.loading import mel_settings
from test_vocoder import SMALL_CONFIG, small_generator

# ONNX Runtime's fp32 kernels sum in another order than torch's: float rounding, far below this
# (measured 2e-7 absolute on the release-size vocoder, peak ~1). 1e-4 of the peak is -80 dB, below
# anything audible, and a wrong graph (a lost residual add, a swapped slope) misses it by orders.
TOLERANCE = 1e-4


def tiny_vocoder(window_frames: int = 1000) -> NsfHifiGan:
    generator = small_generator().remove_weight_norm().eval()
    return NsfHifiGan(generator, mel_settings(SMALL_CONFIG), window_frames=window_frames)


def vocode(vocoder: NsfHifiGan, frames: int, seed: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mel_log10 = torch.randn(frames, 128, generator=gen) * 0.3 - 2.5
    f0 = torch.full((frames,), 220.0)
    f0[frames // 3: frames // 2] = 0  # an unvoiced stretch: the noise-only source
    torch.manual_seed(seed)  # the excitation's draws (torch's, on both paths)
    return vocoder.vocode(mel_log10, f0)


@pytest.mark.parametrize("frames, window", [(40, 1000), (150, 64)], ids=["one-pass", "windows"])
def test_onnxruntime_vocoder_equals_torch_fp32(frames, window):
    reference = vocode(tiny_vocoder(window), frames)
    fast = tiny_vocoder(window).use_cpu_runtime("onnxruntime")
    assert fast.cpu_runtime == "onnxruntime" and isinstance(fast._decode, OnnxModule)
    out = vocode(fast, frames)
    assert out.shape == reference.shape == (frames * 512,) and out.dtype == torch.float32
    assert (out - reference).abs().max() <= TOLERANCE * reference.abs().max()
    assert reference.abs().max() > 0.01  # the comparison is not between two silences


def test_auto_is_onnxruntime_on_the_cpu_and_torch_elsewhere():
    assert onnxruntime_available()  # `make test` installs diffsvc[fast]
    assert resolve_cpu_runtime("auto", "cpu") == "onnxruntime"
    assert resolve_cpu_runtime("torch", "cpu") == "torch"
    assert resolve_cpu_runtime("onnxruntime", torch.device("cuda", 0)) == "torch"  # a CPU setting


def test_without_onnxruntime_auto_falls_back_to_torch_and_a_named_request_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    assert not onnxruntime_available()
    folder = tmp_path / "nsf_hifigan"
    generator = small_generator()
    save_vocoder(generator, SMALL_CONFIG, folder)
    config = Config().replace(vocoder_ckpt=str(folder / "model"))
    assert config.cpu_runtime == "auto"
    vocoder = NsfHifiGan.for_config(config, "cpu")
    assert vocoder.cpu_runtime == "torch"
    torch.testing.assert_close(vocode(vocoder, 40), vocode(tiny_vocoder(), 40), rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"cpu_runtime: onnxruntime is not installed; pip install 'diffsvc\[fast\]'"):
        NsfHifiGan.for_config(config.replace(cpu_runtime="onnxruntime"), "cpu")


def test_cpu_runtime_setting_is_checked():
    with pytest.raises(ConfigError, match="config.yaml.*cpu_runtime"):
        config_from_dict({"cpu_runtime": "tensorrt"}, "config.yaml")
    with pytest.raises(ConfigError, match="not one of auto, torch, onnxruntime"):
        resolve_cpu_runtime("tensorrt", "cpu")
