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


def test_auto_is_bf16_on_native_bf16_cpus_else_onnxruntime_and_torch_off_the_cpu(monkeypatch):
    import diffsvc.cpu_runtime as cpu_runtime

    assert onnxruntime_available()  # `make test` installs diffsvc[fast]
    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: True)
    assert resolve_cpu_runtime("auto", "cpu") == "bf16"
    assert resolve_cpu_runtime("onnxruntime", "cpu") == "onnxruntime"
    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: False)
    assert resolve_cpu_runtime("auto", "cpu") == "onnxruntime"
    assert resolve_cpu_runtime("bf16", "cpu") == "bf16"  # asked for: runs (emulated, slower)
    assert resolve_cpu_runtime("torch", "cpu") == "torch"
    assert resolve_cpu_runtime("onnxruntime", torch.device("cuda", 0)) == "torch"  # a CPU setting


def test_without_onnxruntime_auto_falls_back_to_torch_and_a_named_request_is_one_line(tmp_path, monkeypatch):
    import diffsvc.cpu_runtime as cpu_runtime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: False)  # a CPU without bf16
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


def test_bf16_vocoder_stays_within_the_tolerance_of_fp32():
    """bf16 rounds (8 bits of mantissa): accepted when the audio keeps >= 30 dB SNR against fp32
    (measured 50 dB here and on the release-size vocoder; the source's noise under another seed
    alone gives 22 dB: benchmarks/results/cpu-quality.md)."""
    reference = vocode(tiny_vocoder(64), 150)
    fast = tiny_vocoder(64).use_cpu_runtime("bf16")
    assert fast.cpu_runtime == "bf16"
    out = vocode(fast, 150)
    assert out.dtype == torch.float32 and out.shape == reference.shape
    error = (out - reference).pow(2).sum()
    assert 0 < error and 10 * torch.log10(reference.pow(2).sum() / error) >= 30  # rounded, not exact, not broken


def test_the_pipeline_in_bf16_or_onnxruntime_stays_within_the_tolerance_of_fp32(tmp_path, monkeypatch):
    """Whole conversions of a tiny model (NSF-HiFiGAN vocoder, the denoiser's output projection
    randomised so that its prediction reaches the mel): onnxruntime's audio equals torch's within
    float rounding; bf16's sampled mel moves less than a tenth as far as another seed moves it
    under torch fp32 (the spread nobody hears as another conversion), and its audio keeps the
    vocoder's 30 dB SNR. Measured: 0.003 against 2.2 (log10 units), SNR 48 dB."""
    from audio_synth import synth_voice
    from diffsvc.inference.components import load_content_encoder_for, load_vocoder_for
    from diffsvc.inference.pipeline import InferenceSettings, SongConverter
    from diffsvc.inference.project import choose_checkpoint, load_checkpoint
    from infer_fixture import write_project

    write_project(tmp_path, "singer", vocoder="nsf-hifigan")
    monkeypatch.chdir(tmp_path)
    loaded = load_checkpoint(choose_checkpoint(tmp_path / "models", "singer"), torch.device("cpu"))
    with torch.no_grad():
        projection = loaded.model.denoise_fn.output_projection.weight
        projection.copy_(torch.randn(projection.shape, generator=torch.Generator().manual_seed(0))
                         * projection.shape[1] ** -0.5)
    c = loaded.config
    encoder, vocoder = load_content_encoder_for(c, "cpu"), load_vocoder_for(c, "cpu")
    wav, _ = synth_voice(2.0, c.audio_sample_rate, seed=1)
    wav = wav.astype("float32")

    def convert(runtime: str, seed: int = 0):
        settings = InferenceSettings(sampler="ddim", sampling_steps=4, f0_method="parselmouth", cpu_runtime=runtime)
        conv = SongConverter(loaded, encoder, vocoder, "cpu", settings)
        assert conv.cpu_runtime == runtime == vocoder.cpu_runtime
        return conv.convert(wav, conv.analyse(wav), seed=seed)

    reference = convert("torch")
    spread = abs(convert("torch", seed=1).mel_out - reference.mel_out).mean()
    onnx = convert("onnxruntime")
    assert abs(onnx.audio - reference.audio).max() <= TOLERANCE * abs(reference.audio).max()
    spread_mel = reference.mel_out.max() - reference.mel_out.min()  # the denoiser in ORT too: float rounding
    assert abs(onnx.mel_out - reference.mel_out).max() <= TOLERANCE * spread_mel
    bf16 = convert("bf16")
    assert 0 < abs(bf16.mel_out - reference.mel_out).mean() < spread / 10
    error = ((bf16.audio - reference.audio) ** 2).sum()
    assert 0 < error and 10 * torch.log10(torch.tensor((reference.audio ** 2).sum() / error)) >= 30


def test_onnxruntime_writes_nothing_under_home_or_tmp(tmp_path):
    """`import onnxruntime` with its telemetry on writes a device id and an event database under
    ~/.cache/Microsoft and a .ses file in $TMPDIR; diffsvc imports it with telemetry off."""
    import os

    from infer_fixture import write_project
    from procs import run

    write_project(tmp_path, "nsf", vocoder="nsf-hifigan")
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(), tmp.mkdir()
    code = ("import torch; from diffsvc.vocoder.loading import load_vocoder; "
            f"v = load_vocoder({str(tmp_path / 'models' / 'nsf_hifigan' / 'model')!r}, 'cpu')"
            ".use_cpu_runtime('onnxruntime'); assert v.cpu_runtime == 'onnxruntime'; "
            "v.vocode(torch.full((20, 128), -3.0), torch.full((20,), 220.0))")
    env = dict(os.environ, HOME=str(home), TMPDIR=str(tmp), XDG_CACHE_HOME=str(home / ".cache"), OMP_NUM_THREADS="1")
    env.pop("ORT_DISABLE_TELEMETRY", None)
    done = run([sys.executable, "-c", code], timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(str(p.relative_to(tmp_path)) for root in (home, tmp) for p in root.rglob("*") if p.is_file()) == []


def test_a_converter_keeps_its_own_vocoder_runtime(tmp_path):
    """Two converters sharing one vocoder: the second's runtime must not become the first's."""
    from infer_fixture import write_project

    from diffsvc.inference.components import load_content_encoder_for, load_vocoder_for
    from diffsvc.inference.pipeline import InferenceSettings, SongConverter
    from diffsvc.inference.project import choose_checkpoint, load_checkpoint

    write_project(tmp_path, "nsf", vocoder="nsf-hifigan")
    loaded = load_checkpoint(choose_checkpoint(tmp_path / "models", "nsf"), torch.device("cpu"))
    vocoder = load_vocoder_for(loaded.config, "cpu")
    encoder = load_content_encoder_for(loaded.config, "cpu")
    wav = (torch.sin(torch.arange(44100) / 44100 * 2 * torch.pi * 220) * 0.3).numpy()
    a = SongConverter(loaded, encoder, vocoder, "cpu", InferenceSettings("ddim", 2, cpu_runtime="torch"))
    alone = a.convert(wav, a.analyse(wav), seed=1).audio
    SongConverter(loaded, encoder, vocoder, "cpu", InferenceSettings("ddim", 2, cpu_runtime="bf16"))
    assert a.cpu_runtime == "torch"
    assert (a.convert(wav, a.analyse(wav), seed=1).audio == alone).all()  # bf16 would move it
    assert vocoder.cpu_runtime == "torch"


def test_a_broken_onnxruntime_install_falls_back_under_auto_and_is_one_line_when_named(tmp_path, monkeypatch):
    """onnxruntime imports but cannot build or run the session (a broken install, an export it
    rejects): `auto` chose it only because it imported, so it goes on in torch; a named request
    is one ConfigError line."""
    import diffsvc.cpu_runtime as cpu_runtime
    import diffsvc.vocoder.windowed as windowed

    def broken(*_args, **_kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : broken install")

    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: False)
    monkeypatch.setattr(cpu_runtime, "onnxruntime_available", lambda: True)
    monkeypatch.setattr(windowed, "_onnx_decode", broken)
    vocoder = tiny_vocoder().use_cpu_runtime("auto")
    assert vocoder.cpu_runtime == "torch"
    torch.testing.assert_close(vocode(vocoder, 40), vocode(tiny_vocoder(), 40), rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"cpu_runtime onnxruntime: the vocoder cannot run this way here "
                                          r"\(\[ONNXRuntimeError\].*\); use cpu_runtime: torch") as error:
        tiny_vocoder().use_cpu_runtime("onnxruntime")
    assert "\n" not in str(error.value)


def test_a_converter_under_auto_goes_on_when_onnxruntime_cannot_run(tmp_path, monkeypatch):
    """The converter hands the vocoder the setting (auto), not auto's choice: with a broken ONNX
    Runtime it converts in torch instead of stopping on the named choice's error."""
    import diffsvc.cpu_runtime as cpu_runtime
    import diffsvc.vocoder.windowed as windowed
    from infer_fixture import write_project

    from diffsvc.inference.components import load_content_encoder_for, load_vocoder_for
    from diffsvc.inference.pipeline import InferenceSettings, SongConverter
    from diffsvc.inference.project import choose_checkpoint, load_checkpoint

    def broken(*_args, **_kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : broken install")

    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: False)
    monkeypatch.setattr(cpu_runtime, "onnxruntime_available", lambda: True)
    monkeypatch.setattr(windowed, "_onnx_decode", broken)
    write_project(tmp_path, "nsf", vocoder="nsf-hifigan")
    loaded = load_checkpoint(choose_checkpoint(tmp_path / "models", "nsf"), torch.device("cpu"))
    vocoder = load_vocoder_for(loaded.config, "cpu")
    converter = SongConverter(loaded, load_content_encoder_for(loaded.config, "cpu"), vocoder, "cpu",
                              InferenceSettings("ddim", 2, cpu_runtime="auto"))
    wav = (torch.sin(torch.arange(22050) / 44100 * 2 * torch.pi * 220) * 0.3).numpy()
    assert converter.convert(wav, converter.analyse(wav), seed=1).audio.shape == wav.shape
    assert vocoder.cpu_runtime == "torch"


def test_infer_makes_openmp_wait_passively_unless_told_otherwise_and_only_before_torch_loads():
    """`diffsvc infer` sets OMP_WAIT_POLICY=PASSIVE before torch loads (spinning threads nearly
    tripled the bf16 sampling stage's CPU time on a busy machine: diffsvc/cli/main.py); a value in
    the environment wins, other commands and a process that already loaded torch are left alone;
    `eval` too, so that it scores the runtime infer ships."""
    import os

    from procs import run

    code = ("import os, sys\n"
            "if sys.argv[2] == 'torch-first': import torch\n"
            "import diffsvc.cli.infer as infer, diffsvc.cli.models as models, diffsvc.cli.eval as evaluate\n"
            "def report(args): print(os.environ.get('OMP_WAIT_POLICY', 'unset'), 'torch' in sys.modules); return 0\n"
            "infer.run = models.run = evaluate.run = report\n"
            "from diffsvc.cli.main import main\n"
            "sys.exit(main([sys.argv[1]] + (['song.wav'] if sys.argv[1] == 'infer' else [])))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}

    def policy(command: str, order: str = "-", **extra) -> str:
        done = run([sys.executable, "-c", code, command, order], timeout=120, env=dict(env, **extra))
        assert done.returncode == 0, done.stderr
        return done.stdout.split()[0]

    assert policy("infer") == "PASSIVE"
    assert policy("eval") == "PASSIVE"  # eval converts as infer does: auto picks the same denoiser runtime
    assert policy("infer", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert policy("infer", "torch-first") == "unset"
    assert policy("models") == "unset"
