"""Running a model's inference forward in ONNX Runtime on the CPU, with torch as the fall-back.

The config key `cpu_runtime` (and `diffsvc infer --cpu-runtime`) chooses who runs the NSF-HiFiGAN
vocoder's convolution stack on the CPU:

- `auto` (the default): ONNX Runtime when it is installed (`pip install diffsvc[fast]`), else torch;
- `torch`: torch's eager fp32 kernels (what the original did);
- `onnxruntime`: ONNX Runtime, or a ConfigError naming the extra to install.

On a GPU torch always runs (the setting is about the CPU). ONNX Runtime computes the same fp32
graph (torch's module exported in memory with `torch.onnx.export`; nothing is written to disk or
downloaded): its output equals torch's within float rounding (tests/test_cpu_runtime.py checks
1e-4 of the peak on a tiny model; measured 2e-7 absolute on the release-size vocoder), and on
the CPU it ran the release-size vocoder with 2.2x less CPU time than torch (benchmarks/results/
pipeline-30s.md). Why it wins there: the vocoder's late stages are convolutions with 16 to 64
channels over 100k samples, where torch's oneDNN path spends its time in layout reorders and
separate elementwise passes (leaky ReLU, residual adds) that ONNX Runtime fuses into its kernels.

bf16 was measured too (torch.autocast / bf16 weights on avx512_bf16): less gain than ONNX Runtime
(1.9x less CPU on the vocoder) at 50 dB SNR instead of float rounding, so it is not used.
"""

from __future__ import annotations

import io
import warnings
from typing import Sequence

import torch

from diffsvc.config import CPU_RUNTIMES
from diffsvc.errors import ConfigError
INSTALL_HINT = "pip install 'diffsvc[fast]' (onnxruntime and onnx)"


def onnxruntime_available() -> bool:
    """True when both onnxruntime (to run) and onnx (torch.onnx.export needs it) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_cpu_runtime(name: str, device: torch.device | str) -> str:
    """'torch' or 'onnxruntime' for the setting `name` on `device`.

    auto: onnxruntime on the CPU when installed, else torch; any setting gives torch off the CPU.
    Errors: ConfigError for an unknown name, or for 'onnxruntime' when it is not installed."""
    if name not in CPU_RUNTIMES:
        raise ConfigError(f"cpu_runtime: {name!r} is not one of {', '.join(CPU_RUNTIMES)}")
    if torch.device(device).type != "cpu" or name == "torch":
        return "torch"
    if onnxruntime_available():
        return "onnxruntime"
    if name == "onnxruntime":
        raise ConfigError(f"cpu_runtime: onnxruntime is not installed; {INSTALL_HINT}, "
                          "or use cpu_runtime: auto (torch when it is missing)")
    return "torch"


class OnnxModule:
    """`module`'s forward as an ONNX Runtime session: call it with CPU tensors, get CPU tensors.

    module: in eval mode, its forward a plain function of its tensor inputs (no Python-side
    randomness: traced once); example_inputs: tensors of the shapes to trace with; dynamic_axes:
    {input or output name: {axis: name}} for the axes that vary between calls (batch, length).
    Threads: torch.get_num_threads() at build time (so torch's and the user's thread settings
    hold), without spin-waiting between calls (the CPU goes to torch's stages in between).
    """

    def __init__(self, module: torch.nn.Module, example_inputs: Sequence[torch.Tensor], *,
                 input_names: Sequence[str], output_names: Sequence[str], dynamic_axes: dict):
        import onnxruntime as ort

        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
            torch.onnx.export(module, tuple(example_inputs), buffer, input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=dynamic_axes, opset_version=17,
                              dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
        self.input_names = list(input_names)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        feeds = {name: x.detach().cpu().contiguous().numpy()
                 for name, x in zip(self.input_names, inputs)}
        outputs = [torch.from_numpy(o) for o in self.session.run(None, feeds)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)
