"""`diffsvc models`: what pretrained weights and projects are in models/, and whether each loads.

Each file is loaded into its real architecture (not just found), so a truncated download or a
wrong file shows up here rather than halfway through a song. Nothing is ever downloaded.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from diffsvc.config import load_config
from diffsvc.errors import DiffSvcError


@dataclass
class Check:
    what: str
    path: str
    status: str  # "ok", "missing", "broken"
    detail: str
    required: bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="config whose model paths to check (default: the built-in diffsvc-44k.yaml, as in configs/)")
    parser.add_argument("--models-dir", default="models", help="where trained projects live (default: models)")


def _check(what: str, path: Path, load, required: bool, missing_hint: str) -> Check:
    if not path.exists():
        return Check(what, str(path), "missing", missing_hint, required)
    try:
        detail = load(path)
    except DiffSvcError as e:
        return Check(what, str(path), "broken", str(e), required)
    return Check(what, str(path), "ok", detail, required)


def _hubert(path: Path) -> str:
    from diffsvc.features.content.loading import load_hubert_soft

    model = load_hubert_soft(path)
    return f"HuBERT-soft, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"


def _contentvec(path: Path) -> str:
    from diffsvc.features.content.loading import load_fairseq_hubert

    model, cfg = load_fairseq_hubert(path)
    return f"fairseq HuBERT/ContentVec, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"


def _vocoder(path: Path) -> str:
    from diffsvc.vocoder import load_vocoder

    vocoder = load_vocoder(path)
    return f"NSF-HiFiGAN, {vocoder.sample_rate} Hz, hop {vocoder.hop_size}, {vocoder.n_mels} mel bins"


def _resolve(key: str, configured: str, public_name: str | None = None) -> Path:
    """Where the file of config `key` is (the original's checkpoints/ layout, then models/), or the
    configured path when it is nowhere."""
    from diffsvc.modelfile.locate import find_model_file

    return find_model_file(key, configured, public_name) or Path(configured)


def _places(key: str, configured: str) -> str:
    """'A or B': the places looked at for config `key`."""
    from diffsvc.modelfile.locate import model_file_places

    return " or ".join(str(p) for p in model_file_places(key, configured))


def _projects(models_dir: Path) -> list[str]:
    from diffsvc.checkpoint import find_checkpoints

    lines = []
    if not models_dir.is_dir():
        return lines
    for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        steps = find_checkpoints(folder)
        if not steps or not (folder / "config.yaml").exists():
            continue
        try:
            cfg = load_config(folder / "config.yaml")
            kind = f"{cfg.audio_sample_rate} Hz, {cfg.residual_layers}x{cfg.residual_channels}, {cfg.content_encoder}"
        except DiffSvcError as e:
            kind = f"config problem: {e}"
        shown = ", ".join(str(s) for s in list(steps)[-5:])
        lines.append(f"  {folder.name}: steps {shown} ({kind})")
    return lines


def pretrained_checks(config) -> list[Check]:
    """Each pretrained file the config names, loaded into its real architecture (`diffsvc models`
    and the web page's Models tab show this list)."""
    from diffsvc.features.content import CONTENTVEC_PUBLIC_NAME, HUBERT_SOFT_PUBLIC_NAME

    vocoder_file = _resolve("vocoder_ckpt", config.vocoder_ckpt)
    vocoder_dir = vocoder_file if vocoder_file.is_dir() else vocoder_file.parent
    return [
        _check("HuBERT-soft content encoder", _resolve("hubert_path", config.hubert_path, HUBERT_SOFT_PUBLIC_NAME),
               _hubert, config.content_encoder == "hubert-soft",
               f"put {HUBERT_SOFT_PUBLIC_NAME} (bshall/hubert release v0.1) at "
               f"{_places('hubert_path', config.hubert_path)} (config key hubert_path)"),
        _check("ContentVec content encoder",
               _resolve("contentvec_path", config.contentvec_path, CONTENTVEC_PUBLIC_NAME), _contentvec,
               config.content_encoder == "contentvec",
               f"optional; put {CONTENTVEC_PUBLIC_NAME} at "
               f"{_places('contentvec_path', config.contentvec_path)} "
               "to use content_encoder: contentvec"),
        _check("NSF-HiFiGAN vocoder", vocoder_dir, _vocoder, config.vocoder == "nsf-hifigan",
               f"put the nsf_hifigan_20221211 release files as {_places('vocoder_ckpt', config.vocoder_ckpt)} "
               "with its config.json beside it (config key vocoder_ckpt)"),
    ]


def project_lines(models_dir: Path) -> list[str]:
    """'  NAME: steps ... (44100 Hz, 20x384, hubert-soft)' per trained project."""
    return _projects(Path(models_dir))


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    checks = pretrained_checks(config)
    print("Pretrained weights (nothing is downloaded; see models/README.md):")
    for c in checks:
        mark = {"ok": "ok     ", "missing": "MISSING", "broken": "BROKEN "}[c.status]
        need = "" if c.required or c.status == "ok" else " (optional)"
        print(f"  [{mark}] {c.what}{need}: {c.path}\n            {c.detail}")
    projects = project_lines(Path(args.models_dir))
    print("Trained projects:" if projects else f"Trained projects: none in {args.models_dir}/ yet")
    for line in projects:
        print(line)
    problems = [c for c in checks if c.required and c.status != "ok"]
    if problems:
        print("Real conversion needs the files marked above; `diffsvc demo` runs offline with stand-ins meanwhile.")
        return 1
    return 0
