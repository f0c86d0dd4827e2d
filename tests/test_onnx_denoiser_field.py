"""The denoiser in ONNX Runtime (cpu_runtime onnxruntime / auto) as users meet it (found by a
tester; each failed before its fix): a converter reused after its model's weights or backbone
change, a model loaded under inference_mode, a broken ONNX install under `auto`, weights written
through `.data`, the session's memory after its model is gone, what eval.json reports after a
fallback. Tiny models, one thread."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest
import torch

from audio_synth import synth_voice
from diffsvc.model.onnx_denoiser import TOLERANCE, OnnxDenoiser, onnx_denoiser
from test_onnx_denoiser import _converters, inputs, random_backbone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mel_error(got, want) -> float:
    """max |got - want| relative to want's spread (the measure test_onnx_denoiser uses)."""
    spread = float(want.max() - want.min())
    assert spread > 0.5  # the mel moves with the prediction: a wrong denoiser would show
    return float(abs(got - want).max()) / spread


def test_a_reused_converter_follows_weights_loaded_in_place(tmp_path):
    """The UI's and eval's way: one SongConverter, then the model's weights replaced in place
    (load_state_dict, as onnx_denoiser's own docstring promises to follow). The torch converter
    follows; the onnxruntime one keeps sampling with the session it built at its first convert."""
    loaded, make = _converters(tmp_path)
    wav = synth_voice(1.5, 44100, seed=1)[0].astype("float32")
    conv = make("onnxruntime")
    conv.convert(wav, conv.analyse(wav), seed=0)  # builds the session
    changed = {k: v * 1.5 if k.endswith("weight") else v for k, v in loaded.model.state_dict().items()}
    loaded.model.load_state_dict(changed)  # another checkpoint of the same model, loaded in place
    got = conv.convert(wav, conv.analyse(wav), seed=0)
    reference = make("torch")
    want = reference.convert(wav, reference.analyse(wav), seed=0)
    assert conv.denoiser_runtime == "onnxruntime"
    assert _mel_error(got.mel_out, want.mel_out) <= TOLERANCE


def test_onnx_denoiser_follows_weights_written_through_data():
    """`p.data.copy_(w)` (the pre-no_grad idiom of EMA code and user scripts, and what
    vector_to_parameters-style code does) changes the weights without bumping `_version`: the kept
    session then answers with the old weights."""
    net = random_backbone("wavenet")
    first = onnx_denoiser(net)
    for p in net.parameters():
        p.data.copy_(p.data * 2)
    spec, t, cond, mask = inputs(net, 1, 20)
    with torch.no_grad():
        want = net(spec, t, cond, mask)
    kept = onnx_denoiser(net)
    got = kept(spec, t, cond, mask)
    assert (got - want).abs().max() <= TOLERANCE * want.abs().max(), f"kept the old session: {kept is first}"


def _broken_package(root, name: str, error: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(f"raise {error}\n")


@pytest.mark.parametrize("package, error", [
    ("onnx", 'TypeError("Descriptors cannot be created directly. If this call came from a _pb2.py file, '
             'your generated code is out of date")'),  # onnx against a newer protobuf
    ("onnxruntime", 'OSError("libonnxruntime.so.1: cannot open shared object file")'),
])
def test_auto_runs_where_the_onnx_install_is_broken(tmp_path, monkeypatch, package, error):
    """`auto` (the default) must run with what works. Since the denoiser's choice, auto on
    native-bf16 CPUs imports onnx/onnxruntime too (it did not before), and any import error
    other than ImportError escapes onnxruntime_available: the default setting crashes the
    conversion where bf16 alone would run (and on other CPUs where torch would). Seen end to end:
    `diffsvc eval` (threads spin there) exits 1 with the TypeError's traceback on such an install;
    `diffsvc infer` (passive waits) happens to skip the import and runs."""
    import diffsvc.cpu_runtime as cpu_runtime

    _broken_package(tmp_path / "site", package, error)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in ("onnx", "onnxruntime"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: True)
    assert cpu_runtime.denoiser_runtime("auto", "cpu") == "bf16"
    monkeypatch.setattr(cpu_runtime, "native_bf16", lambda: False)
    assert cpu_runtime.resolve_cpu_runtime("auto", "cpu") == "torch"


@pytest.mark.parametrize("name", ["wavenet", "lynxnet"])
def test_the_session_goes_with_its_backbone_without_a_gc_pass(name):
    """The session holds its own copy of the weights (ONNX Runtime's memory, which Python's gc
    does not count): it should go when the model and converter go. OnnxDenoiser keeps itself alive
    in a reference cycle (`self.project_condition = self._project`, DiffNet only), so each
    converted checkpoint's session stays until a full gc pass happens to run."""
    net = random_backbone(name)
    denoiser = onnx_denoiser(net)
    gone = weakref.ref(denoiser)
    gc.disable()
    try:
        del denoiser, net
        assert gone() is None
    finally:
        gc.enable()


def test_eval_json_names_the_denoiser_runtime_that_ran(tmp_path, monkeypatch):
    """eval.json's `denoiser_runtime` is the one that ran: where the backbone does not export (one
    log line, the torch path) the report said onnxruntime (it was recomputed from the setting)."""
    from diffsvc.model.backbones import DiffNet
    from infer_fixture import eval_settings_of_a_tone

    forward = DiffNet.forward
    # an op ONNX (opset 17) cannot express, numbers unchanged (i0(0) = 1): as test_onnx_denoiser's _NoExport
    monkeypatch.setattr(DiffNet, "forward", lambda self, *a, **k: torch.special.i0(forward(self, *a, **k) * 0)
                        * forward(self, *a, **k))
    monkeypatch.chdir(tmp_path)
    settings = eval_settings_of_a_tone(tmp_path, "singer", cpu_runtime="onnxruntime")
    assert settings["denoiser_runtime"] == "torch"


def test_a_model_loaded_under_inference_mode_runs_its_denoiser_in_onnxruntime(tmp_path):
    """Serving code loads models under torch.inference_mode(); their weights are then inference
    tensors, which have no version counter. onnx_denoiser's "weights changed" key reads
    `p._version` and raises, and the converter reports it as an export failure ("cannot run in ONNX
    Runtime (Inference tensors do not track version counter.)") and runs the denoiser in torch,
    though the export itself works on these weights."""
    from infer_fixture import write_project

    from diffsvc.inference.components import load_content_encoder_for, load_vocoder_for
    from diffsvc.inference.pipeline import InferenceSettings, SongConverter
    from diffsvc.inference.project import choose_checkpoint, load_checkpoint

    write_project(tmp_path, "singer")
    with torch.inference_mode():
        loaded = load_checkpoint(choose_checkpoint(tmp_path / "models", "singer"), torch.device("cpu"))
    assert next(loaded.model.parameters()).is_inference()
    encoder, vocoder = load_content_encoder_for(loaded.config, "cpu"), load_vocoder_for(loaded.config, "cpu")
    settings = InferenceSettings(sampler="ddim", sampling_steps=4, f0_method="parselmouth", cpu_runtime="onnxruntime")
    conv = SongConverter(loaded, encoder, vocoder, "cpu", settings)
    wav = synth_voice(1.0, 44100, seed=1)[0].astype("float32")
    conv.convert(wav, conv.analyse(wav), seed=0)
    assert conv.denoiser_runtime == "onnxruntime"


def test_a_reused_converter_follows_a_backbone_swapped_in(tmp_path):
    """Same cause as the in-place load above (the converter keeps the session it built first),
    worse outcome: after `model.denoise_fn` is replaced (a student's backbone, a reloaded one) and
    the old one freed, the kept OnnxDenoiser's weak reference is dead and the next convert raises
    AttributeError ('NoneType' object has no attribute 'project_condition') from inside sampling."""
    import copy

    loaded, make = _converters(tmp_path)
    wav = synth_voice(1.0, 44100, seed=1)[0].astype("float32")
    conv = make("onnxruntime")
    conv.convert(wav, conv.analyse(wav), seed=0)
    loaded.model.denoise_fn = copy.deepcopy(loaded.model.denoise_fn)
    with torch.no_grad():
        loaded.model.denoise_fn.output_projection.weight.mul_(-1)
    gc.collect()
    got = conv.convert(wav, conv.analyse(wav), seed=0)
    reference = make("torch")
    want = reference.convert(wav, reference.analyse(wav), seed=0)
    assert _mel_error(got.mel_out, want.mel_out) <= TOLERANCE
