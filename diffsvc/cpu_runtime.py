"""How inference runs on the CPU: torch fp32, ONNX Runtime, or bfloat16.

The config key `cpu_runtime` (and `diffsvc infer --cpu-runtime`) chooses:

- `torch`: torch's eager fp32 kernels everywhere (what the original did; its exact numbers);
- `onnxruntime`: the denoiser (diffsvc.model.onnx_denoiser) and the NSF-HiFiGAN vocoder's
  convolution stack in ONNX Runtime (`pip install diffsvc[fast]`), fp32: torch's modules
  exported in memory with `torch.onnx.export` (nothing written to disk or downloaded); their
  outputs equal torch's within float rounding (measured 2e-7 absolute on the release-size
  vocoder, 6e-8 on DiffNet 384 x 20). The content encoder and the sampler's arithmetic stay
  torch fp32. A denoiser backbone that does not export runs in torch after one log line;
- `bf16`: the content encoder (autocast), the denoiser (autocast) and the vocoder's convolution
  stack (a bfloat16 copy of its weights) in bfloat16 through oneDNN; the vocoder's harmonic
  source, the sampler's arithmetic and everything between stages stay float32. On CPUs with
  native bf16 (AVX512-BF16, AMX) this halves the work of each of the three models; elsewhere it
  runs, emulated and slower;
- `auto` (the default): on CPUs with native bf16 the content encoder and the vocoder in bf16,
  and the denoiser too where torch's threads wait passively (as `diffsvc infer` sets them) or
  there is one thread, else the denoiser in ONNX Runtime when installed; on other CPUs as
  `onnxruntime` when installed, else torch (`resolve_cpu_runtime`, `denoiser_runtime`).

Why the denoiser's choice depends on how torch's threads wait: it is called once per sampling
step, and torch's OpenMP threads spin-wait between the many short kernels of a step by default.
On a 2-core machine shared with other jobs (benchmarks/results/pipeline-30s.md) the sampling
stage of a 30 s song (DDIM 20, DiffNet 384 x 20) cost in CPU s per s of song: bf16 0.72 and ONNX
Runtime 0.47 with torch's default spinning waits (ONNX Runtime's threads are set not to spin),
bf16 0.26 and ONNX Runtime 0.44 with OMP_WAIT_POLICY=passive, which `diffsvc infer` and `diffsvc
eval` set before torch loads (OpenMP reads it then; diffsvc/cli/main.py). A library user's process is left as
it is: there `auto` takes ONNX Runtime for the denoiser unless the user set passive waits.

On a GPU torch runs as configured (the setting is about the CPU). bf16 against fp32 at full size
(benchmarks/cpu_quality.py -> benchmarks/results/cpu-quality.md, random weights): content units
0.8 % relative error, one denoiser call 1.1 %, the sampled mel 0.16 dB, the vocoder 45 dB SNR,
the whole song 0.7 dB log-mel distance, where the same fp32 pipeline under another seed moves
2.0 dB. The tolerance accepted: every bf16 difference below that seed-to-seed spread, the whole
pipeline's below half of it (where `auto` runs the denoiser in ONNX Runtime it is fp32, and the
sampled mel moves only with the content units). Speed: benchmarks/pipeline.py ->
benchmarks/results/pipeline-30s.md.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from pathlib import Path
from typing import Sequence

import torch

from diffsvc.config import CPU_RUNTIMES
from diffsvc.errors import ConfigError

INSTALL_HINT = "pip install 'diffsvc[fast]' (onnxruntime and onnx)"


def import_onnxruntime():
    """The onnxruntime module, imported with its telemetry off: without ORT_DISABLE_TELEMETRY=1
    the import itself writes a device id and an event database under ~/.cache/Microsoft and a
    `.ses` file in the temporary folder (onnxruntime 1.2x), and diffsvc writes nothing the user did
    not ask for. ImportError when it is not installed."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


def onnxruntime_problem() -> str | None:
    """None when both onnxruntime (to run) and onnx (torch.onnx.export needs it) import, else what
    is wrong: "is not installed", or "cannot be imported (ERROR)" for a broken install (a protobuf
    mismatch raises TypeError, a missing shared library OSError)."""
    try:
        import onnx  # noqa: F401

        import_onnxruntime()
    except ImportError:
        return "is not installed"
    except Exception as e:  # noqa: BLE001 - a broken install is any error at import time
        first = " ".join(str(e).split())[:160]
        return f"cannot be imported ({type(e).__name__}: {first})"
    return None


def onnxruntime_available() -> bool:
    """True when onnxruntime and onnx import (onnxruntime_problem is None)."""
    return onnxruntime_problem() is None


@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (the avx512_bf16 or amx_bf16 flag, Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_cpu_runtime(name: str, device: torch.device | str) -> str:
    """'torch', 'onnxruntime' or 'bf16' for the setting `name` on `device` (see the module doc).

    Any setting gives 'torch' off the CPU. Errors: ConfigError for an unknown name, or for
    'onnxruntime' when it is not installed."""
    if name not in CPU_RUNTIMES:
        raise ConfigError(f"cpu_runtime: {name!r} is not one of {', '.join(CPU_RUNTIMES)}")
    if torch.device(device).type != "cpu" or name == "torch":
        return "torch"
    if name == "bf16" or (name == "auto" and native_bf16()):
        return "bf16"
    problem = onnxruntime_problem()
    if problem is None:
        return "onnxruntime"
    if name == "onnxruntime":
        raise ConfigError(f"cpu_runtime: onnxruntime {problem}; {INSTALL_HINT}, "
                          "or choose auto (--cpu-runtime auto, or cpu_runtime: auto in config.yaml), which "
                          "uses what this machine has")
    return "torch"


def openmp_spins() -> bool:
    """True when torch's CPU threads spin-wait between parallel regions: more than one thread and
    OMP_WAIT_POLICY not passive (GNU OpenMP's default; `diffsvc infer` and `eval` set passive before
    torch loads: diffsvc/cli/main.py)."""
    return torch.get_num_threads() > 1 and os.environ.get("OMP_WAIT_POLICY", "").strip().lower() != "passive"


def denoiser_runtime(name: str, device: torch.device | str) -> str:
    """Who runs the denoiser (the sampler's model, called once per step) under the setting `name`:
    'onnxruntime' for onnxruntime, and for auto where ONNX Runtime is installed unless the other
    models run bf16 and torch's threads do not spin (`openmp_spins`), where bf16 does less work
    (see the module doc); otherwise resolve_cpu_runtime's choice. Errors as resolve_cpu_runtime."""
    runtime = resolve_cpu_runtime(name, device)
    if name == "auto" and runtime == "bf16" and openmp_spins() and onnxruntime_available():
        return "onnxruntime"
    return runtime


def autocast_for(runtime: str):
    """The context a model call runs in under `runtime`: bf16 autocast on the CPU, else nothing."""
    if runtime == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _quiet_exporter():
    """The TorchScript exporter prints the whole traced graph to stdout when an export fails
    (torch 2.x, `_jit_onnx_log`, on whatever its logging setting); the caller reports the error
    in one line instead, so that print is silenced while exporting."""
    log = getattr(torch._C, "_jit_onnx_log", None)
    if log is None:
        yield
        return
    torch._C._jit_onnx_log = lambda *args: None
    try:
        yield
    finally:
        torch._C._jit_onnx_log = log


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
        ort = import_onnxruntime()
        buffer = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings(), _quiet_exporter():
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
        feeds = {name: x.detach().cpu().contiguous().numpy() for name, x in zip(self.input_names, inputs)}
        outputs = [torch.from_numpy(o) for o in self.session.run(None, feeds)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)
