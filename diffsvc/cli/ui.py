"""`diffsvc ui`: the whole workflow in a local web page (Gradio; `pip install diffsvc[ui]`).

    diffsvc ui                          # http://127.0.0.1:7860
    diffsvc ui --host 0.0.0.0 --port 8080

Listens on this machine only unless --host says otherwise; a public share link only with --share.
Nothing is downloaded: Gradio's analytics are off and the page uses system fonts.
"""

from __future__ import annotations

import argparse
import os

from diffsvc.errors import DiffSvcError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--models-dir", default="models", help="where projects live (default: models)")
    parser.add_argument("--state-dir", default=None,
                        help="where the page keeps its jobs, uploads and results (default: MODELS_DIR/.ui)")


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_port_free(host: str, port: int) -> None:
    """DiffSvcError (one line) when nothing can listen on host:port (in use, or an address this
    machine does not have), before the page is built and its address printed."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise DiffSvcError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror or e}); another "
                               "program (or another diffsvc ui) uses it: choose another with --port") from None


def listening_lines(host: str, port: int, models_dir, share: bool) -> list[str]:
    """What `diffsvc ui` prints on start: the address to open and, when it listens beyond this
    machine, a warning (the page converts, trains and writes files for whoever reaches it)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    lines = [f"diffsvc ui: http://{shown}:{port} (models in {models_dir})"
             + ("; a public share link follows" if share else "")]
    if host not in LOCAL_HOSTS:
        lines.append(f"diffsvc ui: WARNING: listening on {host}: anyone who can reach this machine on port {port} "
                     f"can open the page, convert, train and write files under {models_dir}; "
                     "leave out --host to keep it to this machine")
    return lines


def run(args: argparse.Namespace) -> int:
    from diffsvc.ui.app import UiContext

    if not 0 < args.port < 65536:
        raise DiffSvcError(f"--port {args.port}: must be 1..65535")
    ctx = UiContext(args.models_dir, args.state_dir)
    # before gradio is imported: no usage reports or version check, nothing from the Hub, and
    # uploads kept beside the page's other files rather than in a shared /tmp/gradio
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_TEMP_DIR", str(ctx.state_dir / "uploads"))
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise DiffSvcError("the web page needs the ui extra: pip install 'diffsvc[ui]'") from None
    from diffsvc.ui.app import serve

    check_port_free(args.host, args.port)
    for line in listening_lines(args.host, args.port, ctx.models_dir, args.share):
        print(line, flush=True)
    serve(ctx, args.host, args.port, args.share)
    return 0
