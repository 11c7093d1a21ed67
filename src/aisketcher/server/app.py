"""The HTTP API and the page: FastAPI routes over the `Sketcher`, generation off the event loop.

Every drawing request takes one of `max_jobs` slots (503 when all are taken) and runs in a small
thread pool a few decoder steps at a time, so requests share the workers fairly and the event loop
keeps answering. Streams (`.../stream`) send NDJSON lines as the model draws: `start`, `points`
(new points `[row, x, y, pen]`, pen 1 = the stroke ends there), then `done` with the finished
sketches (or `error`). A stream's drawing finishes on its own, whoever reads it; a client that
goes away cancels it. What each connection and client address may hold is in `connections`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from aisketcher.api import Sketcher
from aisketcher.errors import SketchDataError
from aisketcher.google_model_names import GOOGLE_MODELS
from aisketcher.google_models import GOOGLE_PREFIX, cached_models
from aisketcher.render import render_png, sketch_to_svg
from aisketcher.server import sampling
from aisketcher.server.body_limit import BodyLimit
from aisketcher.server.connection_limits import ConnectionLimits
from aisketcher.server.connections import allow_open_files, make_server
from aisketcher.server.jobs import Jobs
from aisketcher.server.models import ModelShelf, label
from aisketcher.server.sampling import StepSampler
from aisketcher.server.schemas import (
    CompleteRequest,
    DrawRequest,
    HealRequest,
    Health,
    InterpolateRequest,
    ModelChoices,
    ModelInfo,
    ReconstructRequest,
    RenderRequest,
    Sampling,
    SketchesOut,
    TranslateRequest,
    limits,
)

log = logging.getLogger("aisketcher.server")

PAGE_POLICY = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'"
ERRORS = {
    413: {"description": "request body too large"},
    422: {"description": "invalid request: `detail` says what is wrong"},
    503: {"description": "busy: every drawing slot is taken; retry after `Retry-After` s"},
}
STREAM_DESCRIPTION = (
    "NDJSON, one event per line: {type: start, operation, labels}, then {type: points, points: "
    "[[row, x, y, pen], ...]} as the model draws (pen 1: the stroke ends after the point), then "
    "{type: done, sketches: [...]} as the non-streaming answer, or {type: error, detail}."
)


@dataclass(frozen=True)
class ServerLimits:
    """What one server takes on at once; the per-request limits are in `schemas`, those of each
    connection and client address in `connection_limits`."""

    max_body_bytes: int = 1_000_000
    body_timeout_s: float = 10.0
    workers: int = 2
    max_jobs: int = 16


def _static_dir() -> Path:
    return Path(str(resources.files("aisketcher.server") / "static"))


def create_app(
    sketcher: Sketcher, server_limits: ServerLimits | None = None, *, models_url: str | None = None
) -> FastAPI:
    """The web app for a model: the page at `/`, the JSON API under `/api/`. Requests may name
    one of Google's models instead, fetched from `models_url` (see `google_models.models_url`)."""
    cfg = server_limits or ServerLimits()
    jobs = Jobs(cfg.workers, cfg.max_jobs)
    shelf = ModelShelf(sketcher, models_url)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="aisketcher",
        summary="Draw with AI-Sketcher: from a class, finish a drawing, redraw it as another class, "
        "heal it.",
        version="1",
        docs_url=None,  # FastAPI's docs pages load scripts from a CDN; the page must work offline
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes, timeout_s=cfg.body_timeout_s)
    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if "json" not in request.headers.get("content-type", ""):
            detail = "send the request body as JSON, with Content-Type: application/json"
            return JSONResponse({"detail": detail}, 415)
        errors = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return JSONResponse({"detail": detail, "errors": errors[:20]}, 422)

    @app.exception_handler(SketchDataError)
    async def unusable(_: Request, exc: SketchDataError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        html = (_static_dir() / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/api/model", response_model=ModelInfo, tags=["model"])
    async def model_info(model: str | None = None) -> dict:
        """A model's classes (the server's own, or `model`: google:NAME, loaded now, downloaded
        on first use) and the limits of this server."""
        chosen = sketcher
        if model is not None:  # loading takes a slot and a worker, as drawing does
            jobs.acquire()
            try:
                chosen = await jobs.run(shelf.get, model)
            finally:
                jobs.release()
        return {
            "source": label(chosen),
            "classes": chosen.class_names,
            "max_seq_len": chosen.model.config.max_seq_len,
            "has_encoder": chosen.model.config.has_latent,
            "temperature": chosen.temperature,
            "limits": limits(),
        }

    @app.get("/api/models", response_model=ModelChoices, tags=["model"])
    async def model_choices() -> dict:
        """The models a request may name: the server's own (by naming none) and Google's."""
        return {
            "default": label(sketcher),
            "google": [GOOGLE_PREFIX + name for name in GOOGLE_MODELS],
            "cached": [GOOGLE_PREFIX + name for name in cached_models()],
        }

    @app.get("/api/health", response_model=Health, tags=["model"])
    async def health() -> dict:
        return {"status": "ok", "jobs": jobs.active, "max_jobs": jobs.max_jobs}

    streamed = {200: {"content": {"application/x-ndjson": {}}, "description": STREAM_DESCRIPTION}}
    for route in DRAWING_ROUTES:
        _add_drawing_route(app, route, jobs, shelf, streamed)

    @app.post(
        "/api/render",
        responses={200: {"content": {"image/svg+xml": {}, "image/png": {}}}, **ERRORS},
        response_class=Response,
        tags=["pictures"],
    )
    async def render(body: RenderRequest) -> Response:
        """A picture of one sketch; points from `highlight_from` on in the model's colour."""
        jobs.acquire()
        try:
            content = await jobs.run(_picture, body)
        finally:
            jobs.release()
        media = "image/svg+xml" if body.format == "svg" else "image/png"
        disposition = f'attachment; filename="sketch.{body.format}"'
        return Response(content, media_type=media, headers={"Content-Disposition": disposition})

    return app


@dataclass(frozen=True)
class DrawingRoute:
    """A drawing mode's endpoint `/api/<name>` and its streamed twin `/api/<name>/stream`."""

    name: str
    request: type[Sampling]
    build: Callable[[Sketcher, Any], StepSampler]  # the mode's function in `sampling`
    summary: str


DRAWING_ROUTES = (
    DrawingRoute("draw", DrawRequest, sampling.draw, "Draw sketches of a class from scratch."),
    DrawingRoute(
        "complete",
        CompleteRequest,
        sampling.complete,
        "Finish a started drawing several ways; each result starts with the user's points as "
        "sent (unless there were more than the model takes: then simplified, as it took them). "
        "Streamed, only the new points are sent.",
    ),
    DrawingRoute(
        "translate",
        TranslateRequest,
        sampling.translate,
        "Redraw one sketch as each of the given classes (the paper's Figure 2).",
    ),
    DrawingRoute(
        "reconstruct",
        ReconstructRequest,
        sampling.reconstruct,
        "Encode sketches and decode them again.",
    ),
    DrawingRoute(
        "heal",
        HealRequest,
        sampling.heal,
        "Redraw a sketch with strokes or parts rubbed out, whole, several ways, over what is "
        "left of it (in the sketch's frame). Needs a model with an encoder: one trained with "
        "damage (`train --damage`) heals, another reconstructs it and heals less.",
    ),
    DrawingRoute(
        "interpolate",
        InterpolateRequest,
        sampling.interpolate,
        "Sketches along the line from one sketch's latent to another's.",
    ),
)


def _add_drawing_route(
    app: FastAPI, route: DrawingRoute, jobs: Jobs, shelf: ModelShelf, streamed: dict
) -> None:
    """POST /api/<name> (the finished sketches) and /api/<name>/stream (NDJSON as drawn)."""

    def job(body: Any) -> Callable[[], StepSampler]:
        return lambda: route.build(shelf.get(body.model), body)

    async def collect(body: Any, request: Request) -> dict:
        return await jobs.collect(request, job(body))

    async def stream(body: Any) -> StreamingResponse:
        return await jobs.stream(route.name, job(body))

    # FastAPI reads the request's model from the annotation, which differs per route.
    collect.__annotations__ |= {"body": route.request, "request": Request, "return": dict}
    stream.__annotations__ |= {"body": route.request, "return": StreamingResponse}
    path = f"/api/{route.name}"
    app.post(
        path,
        response_model=SketchesOut,
        responses=ERRORS,
        tags=["draw"],
        name=route.name,
        description=route.summary,
    )(collect)
    app.post(
        f"{path}/stream",
        responses={**streamed, **ERRORS},
        tags=["draw"],
        name=f"{route.name}_stream",
        description=f"`{path}`, streamed as the model draws.",
    )(stream)


def _picture(body: RenderRequest) -> bytes:
    sketch, _ = body.sketch.to_sketch(simplify=False)
    if body.format == "svg":
        return sketch_to_svg(sketch, body.size, highlight_from=body.highlight_from).encode()
    buffer = io.BytesIO()
    render_png(sketch, body.size, highlight_from=body.highlight_from).save(buffer, format="PNG")
    return buffer.getvalue()


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port)."""
    try:
        return socket.create_server((host, port))
    except OSError as exc:
        raise SketchDataError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(
    app: FastAPI,
    sock: socket.socket,
    log_level: str = "info",
    limits: ConnectionLimits | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    allow_open_files()
    make_server(app, limits or ConnectionLimits(), log_level).run(sockets=[sock])


@contextlib.contextmanager
def running(
    app: FastAPI, host: str = "127.0.0.1", limits: ConnectionLimits | None = None
) -> Iterator[str]:
    """Serve `app` from a background thread on a free port; yields its URL (tests, notebooks)."""
    sock = listen(host, 0)
    background = make_server(app, limits or ConnectionLimits(), "warning")
    thread = threading.Thread(target=background.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not background.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            thread.join(0.01)
        yield url_of(sock)
    finally:
        background.should_exit = True
        thread.join(10)
        sock.close()
