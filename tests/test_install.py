"""diffsvc installed as a user installs it: a wheel built from this tree, put into a fresh virtual
environment, runs preprocess, train, infer and models from a folder that is not the repository.
Whatever the package reads at run time must be inside it (package data), not beside it in the
repository. And the tests' own hygiene: every process a test starts is cleaned up as a group.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path
from zipfile import ZipFile

import pytest
import soundfile as sf
import yaml

from conftest import REPO
from diffsvc.config import CONFIG_DIR
from diffsvc.demo.corpus import SINGER_A, SINGER_B, song
from procs import run

TINY = {"residual_layers": 2, "residual_channels": 16, "crop_frames": 86, "max_sentences": 4,
        "val_check_interval": 1000, "log_interval": 1, "num_valid_plots": 0, "ds_workers": 0,
        "content_encoder": "stand-in", "vocoder": "griffin-lim", "sampling_steps": 4}


def test_shipped_configs_and_the_repository_copies_are_identical():
    """The package's configs (what runs) and configs/ (what a reader of the repository opens and
    copies) hold the same files, byte for byte."""
    shipped = {p.name: p.read_bytes() for p in CONFIG_DIR.glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (REPO / "configs").glob("*.yaml")}
    assert "diffsvc-44k.yaml" in shipped and "demo.yaml" in shipped
    assert sorted(copies) == sorted(shipped), "configs/ and diffsvc/configs/ must hold the same files"
    for name in shipped:
        assert copies[name] == shipped[name], (
            f"configs/{name} differs from diffsvc/configs/{name} (the one that runs): edit diffsvc/configs/{name} "
            f"and copy it over configs/{name}")


# A call that starts a process, spelled so that this file's own source does not match it.
_STARTS_PROCESS = re.compile("subprocess" + r"\.(run|Popen|call|check_call|check_output|getoutput|getstatusoutput)\s*\("
                             r"|\bos\.(system|popen|fork|forkpty|spawn\w*|exec\w*|posix_spawn\w*)\("
                             r"|\bmultiprocessing\b|\bProcessPoolExecutor\b|\bpty\.spawn\b")


def test_every_test_starts_processes_through_procs():
    """A test that starts a process kills its whole process group, also on timeout (tests/procs.py):
    no test file starts one any other way."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests.glob("*.py")):
        if path.name in ("procs.py", "test_procs.py"):  # the helper, and its test's grandchild script
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _STARTS_PROCESS.search(line.split("#", 1)[0]):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "start processes with procs.run / procs.started:\n" + "\n".join(offenders)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that points Python at this repository."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env.update(PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _ok(proc: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{what} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline from a copy of what the build reads (pyproject.toml, README.md,
    diffsvc/), so the build leaves nothing in the working tree."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "diffsvc", src / "diffsvc", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _ok(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
             "--wheel-dir", str(root / "dist"), str(src)], timeout=600, env=_clean_env()), "pip wheel")
    (found,) = (root / "dist").glob("diffsvc-*.whl")
    return found


def test_the_wheel_holds_every_file_of_the_package(wheel):
    """Modules and data alike: a file under diffsvc/ that the wheel leaves out is missing at run time."""
    package = REPO / "diffsvc"
    wanted = {p.relative_to(REPO).as_posix() for p in package.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    with ZipFile(wheel) as z:
        shipped = {name for name in z.namelist() if name.startswith("diffsvc/")}
    assert wanted - shipped == set(), f"left out of the wheel: {sorted(wanted - shipped)}"


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with only the wheel installed in it; the libraries diffsvc needs
    (torch...) come from this interpreter's site-packages through a .pth file, so nothing is
    downloaded. A .pth file only adds its lines to sys.path: the .pth files in those folders (this
    environment's editable install of diffsvc among them) are not run."""
    venv = tmp_path_factory.mktemp("fresh venv") / "venv"
    _ok(run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=300, env=_clean_env()), "venv")
    python = venv / "bin" / "python"
    purelib = Path(_ok(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           timeout=300, env=_clean_env()), "python").stdout.strip())
    libraries = {str(Path(p)) for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"],
                                       sysconfig.get_paths()["platlib"]] if Path(p).is_dir()}
    (purelib / "libraries_of_the_test_runner.pth").write_text("\n".join(sorted(libraries)) + "\n")
    # --ignore-installed: the diffsvc this interpreter has (editable) is neither looked at nor touched.
    _ok(run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "--no-compile",
             "--disable-pip-version-check", str(wheel)], timeout=600, env=_clean_env()), "pip install")
    return venv


@pytest.mark.slow
def test_an_installed_wheel_preprocesses_trains_and_infers_from_any_folder(installed, tmp_path):
    venv = installed
    work = tmp_path / "somewhere else"
    (work / "raw").mkdir(parents=True)
    for i in range(2):
        wav, _ = song(SINGER_B, 8.0, seed=200 + i)
        sf.write(work / "raw" / f"take {i}.wav", wav, 44100)
    wav, _ = song(SINGER_A, 3.0, seed=3)
    sf.write(work / "phrase.wav", wav, 44100)
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    env = _clean_env()

    def diffsvc(*args: str) -> subprocess.CompletedProcess:
        return _ok(run([str(venv / "bin" / "diffsvc"), *args], cwd=work, env=env, timeout=600),
                   f"diffsvc {' '.join(args)}")

    # The installed copy is the one imported (not this repository), and its shipped configs load.
    probe = _ok(run([str(venv / "bin" / "python"), "-c",
                     "import diffsvc, diffsvc.config as c\n"
                     "print(diffsvc.__file__); print(c.DEFAULT_CONFIG)\n"
                     "for p in sorted(c.CONFIG_DIR.glob('*.yaml')): c.load_config(p)\n"],
                    cwd=work, env=env, timeout=300), "python -c import diffsvc")
    module_file, default_config = (Path(line).resolve() for line in probe.stdout.splitlines())
    assert module_file.is_relative_to(venv.resolve()), module_file
    assert default_config.is_relative_to(venv.resolve()) and default_config.name == "diffsvc-44k.yaml"

    # preprocess with the built-in default config (no --config), train a couple of steps, infer.
    diffsvc("preprocess", "raw", "--f0", "parselmouth", "--content", "stand-in", "--min-seconds", "3",
            "--max-seconds", "6", "--yes")
    assert (work / "raw" / ".diffsvc" / "manifest.json").exists()
    diffsvc("train", "--project", "p", "--config", "tiny.yaml", "--max-steps", "2", "--no-progress")
    assert (work / "models" / "p" / "model_ckpt_steps_2.ckpt").exists()
    diffsvc("infer", "phrase.wav", "--project", "p", "--f0", "parselmouth", "--seed", "1")
    (output,) = (work / "output").glob("phrase_p*.wav")
    assert sf.info(output).frames == sf.info(work / "phrase.wav").frames
    listing = run([str(venv / "bin" / "diffsvc"), "models"], cwd=work, env=env, timeout=300)
    assert "Traceback" not in listing.stderr and "p: steps" in listing.stdout, listing.stdout + listing.stderr
