"""A tiny project whose converted output sings exactly the conditioning f0, for the web page's tests.

The diffusion model of infer_fixture.write_project is random, so its mel says nothing about pitch.
Here the NSF-HiFiGAN vocoder (real architecture, tiny size) is wired by hand so that its output is
its own harmonic source: every path from the mel is zero, the last stage's source injection and
the output convolution pass the fundamental through. The output's pitch is then the f0 that the
conversion was conditioned on, so a test can re-track it with Praat and see an edited f0 curve
arrive in the audio.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path
from subprocess import STDOUT

import torch

from infer_fixture import TINY_NSF, write_project


def _set_weight_norm(conv, weight: torch.Tensor | None) -> None:
    """Make a weight-normed conv's effective weight `weight` (None: zero), bias zero."""
    p = conv.parametrizations.weight
    if weight is None:
        p.original0.zero_()  # g = 0: weight = 0 (v stays finite)
    else:
        p.original1.copy_(weight)
        dims = tuple(range(1, weight.dim()))
        p.original0.copy_(weight.norm(dim=dims, keepdim=True))
    if conv.bias is not None:
        conv.bias.zero_()


def f0_follower_generator():
    from diffsvc.vocoder import Generator

    gen = Generator.from_config(TINY_NSF)
    with torch.no_grad():
        for conv in [gen.conv_pre, *gen.ups, *[c for block in gen.resblocks for c in block.modules()
                                              if isinstance(c, torch.nn.Conv1d)]]:
            if hasattr(conv, "parametrizations"):
                _set_weight_norm(conv, None)
        for i, conv in enumerate(gen.noise_convs):
            conv.weight.zero_()
            conv.bias.zero_()
            if i == len(gen.noise_convs) - 1:
                conv.weight[0, 0, :] = 1.0 / conv.weight.shape[-1]
        lin = gen.m_source.l_linear
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[0, 0] = 1.0  # the fundamental only
        post = torch.zeros_like(gen.conv_post.weight)
        post[0, 0, post.shape[-1] // 2] = 5.0
        _set_weight_norm(gen.conv_post, post)
    return gen


def write_f0_project(root: str | Path, name: str = "singer", **overrides) -> Path:
    """models/NAME with the f0-follower vocoder at root/models/nsf_hifigan; returns the project folder."""
    from diffsvc.config import load_config, save_config
    from diffsvc.vocoder import save_vocoder

    root = Path(root)
    folder = write_project(root, name, vocoder="nsf-hifigan", **overrides)
    save_vocoder(f0_follower_generator(), TINY_NSF, root / "models" / "nsf_hifigan")
    config = load_config(folder / "config.yaml")
    save_config(config.replace(vocoder_ckpt=str((root / "models" / "nsf_hifigan" / "model").resolve())),
                folder / "config.yaml")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_group(pid: int) -> None:
    """SIGTERM, then SIGKILL, the process group led by `pid`, waiting up to 5 s for each."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        for _ in range(50):
            try:
                os.killpg(pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)


@contextlib.contextmanager
def ui_server(root: Path, *, start_timeout_s: float = 120.0, env: dict | None = None):
    """`diffsvc ui` started in `root` on a free port (tests/procs.py `started`: its process group is
    killed on leaving, also on error); yields its URL once it answers. On leaving, the background
    jobs the page started (each leads its own process group) are ended too. The server's output
    goes to root/ui-server.log, quoted in the RuntimeError when it does not start."""
    from procs import started

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = Path(root) / "ui-server.log"
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log, started([sys.executable, "-m", "diffsvc", "ui", "--port", str(port)], cwd=root,
                                              stdout=log, stderr=STDOUT, env=env) as proc:
        try:
            deadline = time.time() + start_timeout_s
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"diffsvc ui did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            for job in (Path(root) / "models" / ".ui" / "jobs").glob("*/job.json"):
                pid = json.loads(job.read_text()).get("pid")
                if pid:
                    kill_group(pid)  # background jobs lead their own groups


CHROMIUM = os.environ.get("DIFFSVC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def browser_page(url: str, *, timeout_ms: int = 30_000, console_log: Path | None = None):
    """The system's Chromium (headless, playwright) on the page at `url`, its Convert tab loaded.
    `page.outside_requests` lists every request that left the page's own server (the page must
    fetch nothing from elsewhere); `console_log`: the page's console messages are written there.
    RuntimeError when Chromium is missing (`make browser` installs it)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: install the system's Chromium (make browser does: "
                           "apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as p, contextlib.ExitStack() as stack:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url))
        if console_log is not None:
            console = stack.enter_context(open(console_log, "w", encoding="utf-8"))
            page.on("console", lambda m: console.write(f"{time.strftime('%H:%M:%S')} {m.type}: {m.text}\n"))
        page.set_default_timeout(timeout_ms)
        page.outside_requests = outside
        page.goto(url)
        page.get_by_role("tab", name="Convert").wait_for()
        yield page


def choose(page, field: str, value: str) -> None:
    """Pick `value` in the dropdown `field` (a CSS selector of its block)."""
    page.locator(f"{field} input").click()
    page.get_by_role("option", name=value, exact=True).click()
