"""`aisketcher serve`: the web app, a page to draw together with the model, and its JSON API."""

from __future__ import annotations

import argparse

from aisketcher.cli import arguments
from aisketcher.cli.arguments import non_negative_int, port, positive_float, positive_int
from aisketcher.cli.models import MODEL_HELP, add_models_url
from aisketcher.server.connection_limits import ConnectionLimits


def cmd_serve(args: argparse.Namespace) -> int:
    import torch

    from aisketcher.api import Sketcher
    from aisketcher.devices import resolve_device
    from aisketcher.server.app import ServerLimits, create_app, listen, serve, url_of

    # Sampling is a chain of small operations: one thread each is fastest, and workers run side by side.
    torch.set_num_threads(1)
    device = str(resolve_device(args.device))
    sketcher = Sketcher.load(args.model, device=device, models_url=args.models_url)
    limits = ServerLimits(workers=args.workers, max_jobs=args.max_jobs)
    app = create_app(sketcher, limits, models_url=args.models_url)
    sock = listen(args.host, args.port)
    print(
        f"aisketcher: drawing with {sketcher.source} at {url_of(sock)}  (Ctrl-C to stop)",
        flush=True,
    )
    connections = ConnectionLimits(
        header_timeout_s=args.header_timeout, per_client=args.max_connections_per_client
    )
    serve(app, sock, log_level=args.log_level, limits=connections)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="the web app: draw with the model in a browser",
        description="Serves a page where you sketch with a mouse, pen or finger and the model "
        "finishes the drawing, redraws it as another class, or draws one from scratch, point by "
        "point; the page also offers Google's pretrained Sketch-RNN models, downloaded by the "
        "server on first use. The JSON API it uses is described at /api/openapi.json. The page "
        "loads nothing from other sites. Listens on the loopback address unless --host says "
        "otherwise.",
        epilog="examples:\n  aisketcher serve                       # then open http://127.0.0.1:8000/\n"
        "  aisketcher serve --run runs/demo --port 8080",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", "--model", dest="model", default=None, help=MODEL_HELP)
    add_models_url(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument(
        "--workers", type=positive_int, default=2, help="threads that draw side by side (default 2)"
    )
    p.add_argument(
        "--max-jobs",
        type=positive_int,
        default=16,
        help="drawings in progress or waiting before new ones get 503 (default 16)",
    )
    p.add_argument(
        "--header-timeout",
        type=positive_float,
        default=ConnectionLimits.header_timeout_s,
        metavar="SECONDS",
        help="a request whose headers are not all in this long after its first byte gets 408 "
        f"and its connection is closed (default {ConnectionLimits.header_timeout_s:g})",
    )
    p.add_argument(
        "--max-connections-per-client",
        type=non_negative_int,
        default=ConnectionLimits.per_client,
        metavar="N",
        help="open connections one client address may hold; one more gets 429 and is closed "
        f"(default {ConnectionLimits.per_client}; 0: no cap, e.g. behind a reverse proxy that "
        "caps them itself, since every connection then comes from the proxy)",
    )
    p.add_argument("--device", default="cpu", type=arguments.device, help=arguments.DEVICE_HELP)
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="how much the server logs (default info: one line per request)",
    )
    p.set_defaults(func=cmd_serve)
