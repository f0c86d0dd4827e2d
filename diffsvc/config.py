"""The typed configuration, read from YAML and validated with errors that name the key and the file.

Keys keep the original Diff-SVC names (`hop_size`, `residual_channels`, `spec_min`...), so an
original `config.yaml` (with its many unused DiffSinger keys) loads into the same object: unused
keys are ignored there, while in our own files an unknown key is an error (a typo must not pass
silently). Every field has a type, a default and a line saying what it changes.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from diffsvc.errors import ConfigError


def _registered(module: str, registry: str):
    """The names in `module.registry`, imported when first needed (config.py stays light)."""
    def names() -> tuple[str, ...]:
        import importlib

        return getattr(importlib.import_module(module), registry).names()
    names.__qualname__ = f"{module}.{registry}.names"
    return names


BACKBONE_NAMES = _registered("diffsvc.model.backbones", "BACKBONES")
CONTENT_ENCODER_NAMES = _registered("diffsvc.features.content", "CONTENT_ENCODERS")
F0_EXTRACTOR_NAMES = _registered("diffsvc.features.f0", "F0_EXTRACTORS")
SAMPLER_NAMES = _registered("diffsvc.sampling", "SAMPLERS")
VOCODER_NAMES = _registered("diffsvc.vocoder", "VOCODERS")
CPU_RUNTIMES = ("auto", "torch", "onnxruntime", "bf16")  # diffsvc.cpu_runtime

# The shipped configs are package data (diffsvc/configs/*.yaml, listed in pyproject.toml), found
# through the package itself, so they load wherever diffsvc is installed: a wheel, `pip install .`,
# an editable install or a clone on PYTHONPATH, from any working folder. pip installs wheels
# unzipped, so the resource is a real file with a path. The repository's top-level configs/ holds
# identical copies for readers (tests/test_install.py keeps the two equal).
CONFIG_DIR = Path(str(resources.files("diffsvc") / "configs"))
DEFAULT_CONFIG = CONFIG_DIR / "diffsvc-44k.yaml"
DEMO_CONFIG = CONFIG_DIR / "demo.yaml"


def _f(default, doc: str, *, choices=None, min=None, max=None, min_exclusive=False):
    """A config field: default, one-line doc, and the constraints checked on load. `choices` is a
    tuple, or a function returning the names of a registry (read when a value is checked)."""
    meta = {"doc": doc, "choices": choices, "min": min, "max": max, "min_exclusive": min_exclusive}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """Every setting of a project, typed, with the original Diff-SVC key names.

    Build with `load_config(path)` / `config_from_dict(data, source)` (ConfigError naming the key
    and the file for a wrong type, range or name); `validate()` checks settings that depend on each
    other; `replace(**changes)` gives a validated copy. The names that choose parts
    (diff_decoder_type, content_encoder, vocoder, f0_extractor, sampler) are checked against the
    registries of their packages. Units: Hz for rates and frequencies, samples for hop/window/FFT.
    """

    # --- audio and mel (must match the vocoder) ---
    audio_sample_rate: int = _f(44100, "sample rate of mels and output audio", min=8000)
    hop_size: int = _f(512, "samples between mel frames", min=1)
    win_size: int = _f(2048, "STFT window length", min=1)
    fft_size: int = _f(2048, "STFT size", min=1)
    audio_num_mel_bins: int = _f(128, "mel bins; also DiffNet's input/output size", min=1)
    keep_bins: int = _f(128, "mel bins the model sees (spec_min/max are cut to this)", min=1)
    fmin: float = _f(40.0, "lowest mel filter frequency (Hz)", min=0.0)
    fmax: float = _f(16000.0, "highest mel filter frequency (Hz)", min=0.0, min_exclusive=True)

    # --- the denoiser and conditioning ---
    hidden_size: int = _f(256, "conditioning width; equals the content-unit size (256)", min=1)
    residual_layers: int = _f(20, "DiffNet residual blocks", min=1)
    residual_channels: int = _f(384, "DiffNet channels", min=2)
    dilation_cycle_length: int = _f(4, "dilations 1,2,..,2^(n-1) repeat every n blocks", min=1)
    diff_decoder_type: str = _f("wavenet", "denoiser backbone: wavenet (DiffNet, the original's) or lynxnet "
                                "(ConvNeXt-style; benchmarks/results/backbones.md)", choices=BACKBONE_NAMES)
    lynxnet_layers: int = _f(6, "LYNXNet blocks (diff_decoder_type: lynxnet)", min=1)
    lynxnet_channels: int = _f(512, "LYNXNet channels", min=1)
    lynxnet_expansion: int = _f(2, "LYNXNet inner width = channels x this", min=1)
    lynxnet_kernel: int = _f(31, "LYNXNet depthwise conv kernel (frames)", min=1)
    no_fs2: bool = _f(True, "content units feed the denoiser directly (false: legacy FFT encoder)")
    use_pitch_embed: bool = _f(True, "add the coarse-f0 embedding to the conditioning (false: content only, "
                               "no fs2.pitch_embed weights, as the original)")
    use_uv: bool = _f(False, "original keeps f0 interpolated through unvoiced frames")
    use_energy_embed: bool = _f(False, "energy embedding (unsupported; must stay false)", choices=(False,))
    use_spk_id: bool = _f(False, "several singers in one model (the original's switch); set from `speakers`: "
                          "true exactly when the singer table is not empty")
    speakers: list[str] = _f([], "the singer table of a multi-singer project: singer names, a name's position is its "
                             "row in the speaker embedding (written by train from raw/<singer>/ folders; [] = one "
                             "singer, no embedding)")
    use_spk_embed: bool = _f(False, "speaker embedding (unsupported)", choices=(False,))
    pitch_type: str = _f("frame", "shape of the unused pitch predictor", choices=("frame", "ph", "cwt"))
    pitch_norm: str = _f("log", "f0 travels as log2(Hz)", choices=("log",))
    predictor_hidden: int = _f(-1, "unused pitch predictor width (-1: hidden_size)")
    predictor_layers: int = _f(5, "unused pitch predictor depth (kept for checkpoint keys)", min=1)
    predictor_kernel: int = _f(5, "unused pitch predictor kernel", min=1)
    predictor_dropout: float = _f(0.5, "unused pitch predictor dropout", min=0.0, max=1.0)
    f0_bin: int = _f(256, "coarse f0 bins", min=3)
    f0_min: float = _f(40.0, "lowest f0 (Hz) for extraction and coarse bins", min=0.0, min_exclusive=True)
    f0_max: float = _f(1100.0, "highest f0 (Hz) for extraction and coarse bins", min=0.0, min_exclusive=True)

    # --- diffusion ---
    timesteps: int = _f(1000, "diffusion steps of the noise schedule", min=1)
    K_step: int = _f(1000, "steps actually trained/sampled (<= timesteps)", min=1)
    schedule_type: str = _f("linear", "beta schedule", choices=("linear", "cosine"))
    max_beta: float = _f(0.02, "last beta of the linear schedule", min=0.0, max=1.0, min_exclusive=True)
    diff_loss_type: str = _f("l2", "noise loss", choices=("l1", "l2"))
    spec_min: list = _f([-5.0], "per-bin log10 mel minimum (written by preprocess)")
    spec_max: list = _f([0.0], "per-bin log10 mel maximum (written by preprocess)")
    mel_vmin: float = _f(-6.0, "predicted mel is clipped to [mel_vmin, mel_vmax] before vocoding")
    mel_vmax: float = _f(1.5, "see mel_vmin")
    pndm_speedup: int = _f(10, "the original's PLMS interval for validation; not read (validation samples with "
                                "sampler and sampling_steps, as infer does)", min=1)

    # --- features and model files ---
    content_encoder: str = _f("hubert-soft", "content units: hubert-soft, contentvec, or the weight-free "
                              "stand-in (offline demo only)", choices=CONTENT_ENCODER_NAMES)
    hubert_path: str = _f("models/hubert_soft.pt", "HuBERT-soft weights (hubert-soft-0d54a1f4.pt)")
    contentvec_path: str = _f("models/checkpoint_best_legacy_500.pt", "ContentVec fairseq checkpoint")
    use_vec: bool = _f(False, "original's switch for ContentVec (same as content_encoder: contentvec)")
    vocoder: str = _f("nsf-hifigan", "nsf-hifigan, or griffin-lim (weight-free stand-in, offline demo only)",
                      choices=VOCODER_NAMES)
    vocoder_ckpt: str = _f("models/nsf_hifigan/model", "NSF-HiFiGAN weights; config.json sits beside")
    use_nsf: bool = _f(True, "accepted for compatibility only: the vocoder takes f0 (NSF); false is refused")
    use_crepe: bool = _f(True, "original's switch: CREPE (true) or parselmouth (false)")
    f0_extractor: str = _f("crepe", "f0 method", choices=F0_EXTRACTOR_NAMES)
    crepe_threshold: float = _f(0.05, "CREPE periodicity below this is unvoiced", min=0.0, max=1.0)
    pe_enable: bool = _f(False, "24 kHz pitch extractor (not used at 44.1 kHz)")

    # --- training (the original recipe by default) ---
    lr: float = _f(0.0008, "AdamW learning rate", min=0.0, min_exclusive=True)
    optimizer_adam_beta1: float = _f(0.9, "AdamW beta1", min=0.0, max=1.0)
    optimizer_adam_beta2: float = _f(0.98, "AdamW beta2", min=0.0, max=1.0)
    weight_decay: float = _f(0.0, "AdamW weight decay", min=0.0)
    decay_steps: int = _f(40000, "learning rate halves every this many steps", min=1)
    clip_grad_norm: float = _f(1.0, "gradient norm clip (0: off)", min=0.0)
    accumulate_grad_batches: int = _f(1, "batches per optimizer step", min=1)
    max_sentences: int = _f(88, "most items in a batch", min=1)
    max_tokens: int = _f(128000, "most padded mel frames in a batch", min=1)
    max_frames: int = _f(42000, "mel frames kept per item", min=1)
    max_input_tokens: int = _f(60000, "content frames kept per item", min=1)
    crop_frames: int = _f(1000, "ours: items longer than this are cropped at random in training (0: off)", min=0)
    loss_mask: bool = _f(True, "ours: padded frames do not count in the loss (false: original)")
    val_check_interval: int = _f(2000, "validate and save a checkpoint every this many steps", min=1)
    num_ckpt_keep: int = _f(10, "newest checkpoints kept", min=1)
    max_updates: int = _f(1000000, "training stops after this many steps", min=1)
    log_interval: int = _f(100, "TensorBoard scalars every this many steps", min=1)
    num_valid_plots: int = _f(10, "validation items sampled and logged as images/audio", min=0)
    ds_workers: int = _f(4, "data loader worker processes", min=0)
    seed: int = _f(1234, "random seed")

    # --- the training recipe (ours; a config without these keys trains with the original's) ---
    ema_decay: float = _f(0.0, "ours: average of the weights (EMA) used for validation, inference and the saved model "
                          "(0: off, the original)", min=0.0, max=1.0)
    loss_weighting: str = _f("none", "ours: loss weight over timesteps: none (the original), min-snr "
                             "(Hang et al. 2023) or clamped-snr (min-snr with a floor; for v)",
                             choices=("none", "min-snr", "clamped-snr"))
    min_snr_gamma: float = _f(5.0, "the gamma of min-snr: weight min(SNR, gamma)/SNR (eps), /(SNR+1) (v), /1 (x0)",
                              min=0.0, min_exclusive=True)
    prediction: str = _f("eps", "what the denoiser predicts: eps (the noise, the original), v or x0 (the clean "
                         "mel) (ours; the original Diff-SVC cannot run a v or x0 model)", choices=("eps", "v", "x0"))

    # --- inference ---
    sampler: str = _f("ddim", "sampler for infer (benchmarks/sampler.py: ddim 20 is as close to the reference as "
                      "the original PLMS-50 at 2.6x fewer calls)", choices=SAMPLER_NAMES)
    sampling_steps: int = _f(20, "denoiser steps for infer (ddpm ignores it)", min=1)
    cpu_runtime: str = _f("auto", "how infer runs on the CPU: torch (fp32, the original), onnxruntime (the denoiser "
                          "and the vocoder in ONNX Runtime, fp32; diffsvc[fast]), bf16 (content encoder, denoiser and "
                          "vocoder in bfloat16), auto (bf16 on CPUs with native bf16, but the denoiser in ONNX Runtime "
                          "where torch's threads spin-wait, which infer stops; else onnxruntime when installed, else "
                          "torch; benchmarks/results/pipeline-30s.md)", choices=CPU_RUNTIMES)

    # --- a distilled student (written by `diffsvc distill`; empty for a model trained by `train`) ---
    distill: dict = _f({}, "what this model is when it is a distilled student: method, teacher (path, step), "
                           "intervals, ema, the step counts it was trained for (see diffsvc/distill)")

    def validate(self, source: str = "<config>") -> "Config":
        """Check values that depend on each other; raise ConfigError naming key and file."""
        def bad(key: str, why: str):
            raise ConfigError(f"{source}: {key}: {why}")

        if self.K_step > self.timesteps:
            bad("K_step", f"{self.K_step} is larger than timesteps ({self.timesteps})")
        if self.keep_bins > self.audio_num_mel_bins:
            bad("keep_bins", f"{self.keep_bins} is larger than audio_num_mel_bins ({self.audio_num_mel_bins})")
        if self.fmax > self.audio_sample_rate / 2:
            bad("fmax", f"{self.fmax} Hz is above the Nyquist frequency ({self.audio_sample_rate / 2:g} Hz)")
        if self.fmin >= self.fmax:
            bad("fmin", f"{self.fmin} must be below fmax ({self.fmax})")
        if self.f0_min >= self.f0_max:
            bad("f0_min", f"{self.f0_min} must be below f0_max ({self.f0_max})")
        if self.win_size > self.fft_size:
            bad("win_size", f"{self.win_size} is larger than fft_size ({self.fft_size})")
        if self.hop_size > self.win_size:
            bad("hop_size", f"{self.hop_size} is larger than win_size ({self.win_size})")
        if self.mel_vmin >= self.mel_vmax:
            bad("mel_vmin", f"{self.mel_vmin} must be below mel_vmax ({self.mel_vmax})")
        if self.ema_decay >= 1.0:
            bad("ema_decay", f"{self.ema_decay} must be below 1 (0.999 averages over about 1000 steps; 0 turns it off)")
        if self.residual_channels % 2:
            bad("residual_channels", f"{self.residual_channels} must be even")
        for key in ("spec_min", "spec_max"):
            values = getattr(self, key)
            if not values:
                bad(key, "must hold at least one value")
            if len(values) not in (1, self.keep_bins) and len(values) < self.keep_bins:
                bad(key, f"has {len(values)} values; expected 1 or keep_bins ({self.keep_bins})")
        if len(self.spec_min) == len(self.spec_max):
            for i, (lo, hi) in enumerate(zip(self.spec_min, self.spec_max)):
                if not lo < hi:
                    bad("spec_max", f"bin {i}: {hi} is not above spec_min ({lo})")
        if not self.use_nsf:
            bad("use_nsf", "false (a HiFiGAN without f0 input) is not supported: diffsvc's vocoders are "
                "NSF-HiFiGAN and the Griffin-Lim stand-in; remove the key or set it to true")
        if len(set(self.speakers)) != len(self.speakers):
            dup = next(n for n in self.speakers if self.speakers.count(n) > 1)
            bad("speakers", f"{dup!r} is listed twice; each singer needs one row")
        if self.use_spk_id and not self.speakers:
            bad("use_spk_id", "true needs the singer table (speakers: [name, ...]); diffsvc writes it when it "
                              "trains on raw/<singer>/ folders")
        self.use_spk_id = bool(self.speakers)
        if self.use_vec:
            self.content_encoder = "contentvec"
        return self

    # --- derived settings ---
    @property
    def uses_original_plms_layout(self) -> bool:
        return self.sampler == "plms"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes).validate("<override>")


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# The training recipe's keys: their defaults above are the original Diff-SVC's, so a config.yaml
# without them (the original's, or a project made before they existed) trains on as it did;
# configs/diffsvc-44k.yaml gives new projects ours (benchmarks/results/recipe.md).
RECIPE_KEYS = ("ema_decay", "loss_weighting", "min_snr_gamma", "prediction")
_TYPES = {f.name: f.type for f in dataclasses.fields(Config)}


def _spelling(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def _choice_spelling(value: str, choices) -> str:
    """The choice `value` names when case, `_` or spaces are ignored (value itself when none)."""
    for choice in choices:
        if isinstance(choice, str) and _spelling(choice) == _spelling(value):
            return choice
    return value


def _coerce(key: str, value: Any, source: str) -> Any:
    """Turn a YAML value into the field's type, or raise ConfigError naming key and file."""
    meta = FIELDS[key].metadata
    kind = _TYPES[key]

    def bad(why: str):
        raise ConfigError(f"{source}: {key}: {why}")

    if kind == "bool":
        if not isinstance(value, bool):
            bad(f"expected true or false, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()
        ):
            bad(f"expected a whole number, got {value!r}")
        value = int(value)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad(f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            bad(f"expected a finite number, got {value!r}")
    elif kind == "str":
        if not isinstance(value, str):
            bad(f"expected text, got {value!r}")
    elif kind == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            bad(f"expected a list of names, got {value!r}")
        value = [str(v) for v in value]
    elif kind == "list":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            bad(f"expected a list of numbers, got {value!r}")
        value = [float(v) for v in value]
        if not all(math.isfinite(v) for v in value):
            bad("expected finite numbers")
    elif kind == "dict":
        if not isinstance(value, dict):
            bad(f"expected a mapping of settings, got {value!r}")
    choices = meta.get("choices")
    if callable(choices):
        choices = choices()
    if choices is not None and isinstance(value, str) and value not in choices:
        value = _choice_spelling(value, choices)  # NSF-HiFiGAN, Griffin_Lim, PLMS: the names as written
    if choices is not None and value not in choices:
        bad(f"{value!r} is not one of {', '.join(map(str, choices))}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (value < lo or (meta.get("min_exclusive") and value == lo)):
        bad(f"{value!r} is too small (must be {'>' if meta.get('min_exclusive') else '>='} {lo})")
    if hi is not None and value > hi:
        bad(f"{value!r} is too large (must be <= {hi})")
    return value


# The original Diff-SVC writes class paths where diffsvc writes names: {key: {value: ours}}. The
# original's registry also took the bare class name in either case; the last dotted part is matched.
ORIGINAL_VALUES = {
    "vocoder": {"nsfhifigan": "nsf-hifigan"},
}
# Values of the original that diffsvc cannot honour: {key: {last dotted part, lower case: why}}.
ORIGINAL_UNSUPPORTED = {
    "vocoder": {
        "hifigan": "is the original's 24 kHz HiFiGAN (DiffSinger's, without NSF; training/config.yaml), which diffsvc "
                   "does not support: it converts 44.1 kHz projects made with NSF-HiFiGAN "
                   "(network.vocoders.nsf_hifigan.NsfHifiGAN, training/config_nsf.yaml)",
        "pwg": "is Parallel WaveGAN, which diffsvc does not support: it converts 44.1 kHz projects made with NSF-HiFiGAN",
    },
}


def original_value(key: str, value: Any, source: str = "<config>") -> Any:
    """The diffsvc value for a value the original Diff-SVC writes (class paths such as
    network.vocoders.nsf_hifigan.NsfHifiGAN -> nsf-hifigan); other values pass unchanged.
    Raises ConfigError naming key and file for an original value diffsvc does not support."""
    if key not in ORIGINAL_VALUES and key not in ORIGINAL_UNSUPPORTED or not isinstance(value, str):
        return value
    name = value.rsplit(".", 1)[-1].lower()
    choices = FIELDS[key].metadata.get("choices") or ()
    if callable(choices):  # a registry's names
        choices = choices()
    if name in ORIGINAL_VALUES.get(key, {}) and value not in choices:
        return ORIGINAL_VALUES[key][name]
    if name in ORIGINAL_UNSUPPORTED.get(key, {}):
        raise ConfigError(f"{source}: {key}: {value} {ORIGINAL_UNSUPPORTED[key][name]}")
    return value


def config_from_dict(data: dict[str, Any], source: str = "<config>", *, strict: bool = True) -> Config:
    """Build a Config from a mapping. strict: unknown keys are errors (our files); otherwise they
    are ignored (the original's config.yaml, full of DiffSinger keys nothing reads)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    values = {}
    for key, value in data.items():
        if key not in FIELDS:
            if strict:
                hint = difflib.get_close_matches(str(key), FIELDS, n=1)
                raise ConfigError(
                    f"{source}: {key}: unknown setting" + (f" (did you mean {hint[0]}?)" if hint else "")
                )
            continue
        if value is None:
            continue  # an explicit null keeps the default
        values[key] = _coerce(key, original_value(key, value, source), source)
    # The original's switches map onto ours when only they are given.
    if not strict:
        if "f0_extractor" not in data and data.get("use_crepe") is False:
            values["f0_extractor"] = "parselmouth"
        if "loss_mask" not in data:
            values["loss_mask"] = False  # an original project trained without the mask
    return Config(**values).validate(source)


def load_config(path: str | os.PathLike | None = None, *, strict: bool | None = None) -> Config:
    """Load a YAML config. strict=None guesses: a file with keys we do not know but which carries
    the original's markers (binarizer_cls/task_cls) is an original config and loads leniently."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None)
        line = text.splitlines()[mark.line] if mark is not None and mark.line < len(text.splitlines()) else ""
        if "\t" in line[:mark.column + 1 if mark is not None else 0]:
            why = ": a tab in the indentation (YAML indents with spaces only); replace tabs with spaces"
        else:
            why = f" ({problem})" if problem else ""
        raise ConfigError(f"{path}: not valid YAML{where}{why}") from None
    if data is None:
        data = {}
    if strict is None:
        strict = not is_original_config(data)
    return config_from_dict(data, str(path), strict=strict)


def is_original_config(data: Any) -> bool:
    """True for a config.yaml written by the original Diff-SVC (it names its task/binarizer classes)."""
    return isinstance(data, dict) and any(k in data for k in ("task_cls", "binarizer_cls", "binary_data_dir"))


def save_config(config: Config, path: str | os.PathLike) -> None:
    from diffsvc.fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def describe_fields() -> list[tuple[str, Any, str]]:
    """(key, default, doc) for every setting, for the README table and `--help` texts."""
    rows = []
    for f in dataclasses.fields(Config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((f.name, default, f.metadata["doc"]))
    return rows
