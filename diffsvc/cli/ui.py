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

    print(f"diffsvc ui: http://{args.host}:{args.port} (models in {ctx.models_dir}, jobs in {ctx.state_dir})"
          + ("; a public share link follows" if args.share else ""), flush=True)
    serve(ctx, args.host, args.port, args.share)
    return 0
