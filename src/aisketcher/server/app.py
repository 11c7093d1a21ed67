"""The HTTP API and the page: FastAPI routes over the `Sketcher`, generation off the event loop.

Every drawing request takes one of `max_jobs` slots (503 when all are taken) and runs in a small
thread pool a few decoder steps at a time, so requests share the workers fairly and the event loop
keeps answering. Streams (`.../stream`) send NDJSON lines as the model draws: `start`, `points`
(new points `[row, x, y, pen]`, pen 1 = the stroke ends there), then `done` with the finished
sketches (or `error`). A stream's drawing finishes on its own, whoever reads it; a client that
goes away cancels it. What each connection and client address may hold is in `connections`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aisketcher.api import Sketcher
from aisketcher.errors import SketchDataError
from aisketcher.google_model_names import GOOGLE_MODELS
from aisketcher.google_models import GOOGLE_PREFIX, cached_models
from aisketcher.render import render_png, sketch_to_svg
from aisketcher.server import sampling
from aisketcher.server.connection_limits import ConnectionLimits
from aisketcher.server.connections import LINGER_S, allow_open_files, make_server
from aisketcher.server.models import ModelShelf, label
from aisketcher.server.sampling import StepSampler
from aisketcher.server.schemas import (
    MAX_ROWS,
    CompleteRequest,
    DrawRequest,
    Health,
    InterpolateRequest,
    ModelChoices,
    ModelInfo,
    ReconstructRequest,
    RenderRequest,
    SketchesOut,
    TranslateRequest,
    limits,
)

log = logging.getLogger("aisketcher.server")

# Decoder steps run in slices of this many seconds: short enough to animate smoothly and to let
# other requests' slices in between, long enough that the hops between threads cost little.
SLICE_SECONDS = 0.04
PAGE_POLICY = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'"
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


# What a refused body may still send before the answer, within LINGER_S (see _BodyLimit._drain).
LINGER_BYTES = 16 * 1024 * 1024

# UTF-8, UTF-16 and UTF-32 byte-order marks: JSON over a network must not start with one.
BYTE_ORDER_MARKS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


class _BodyLimit:
    """Reads each request body before the app does: too big is 413, too slow 408, a body that
    opens with a byte-order mark 400 (a strict API: json.loads would quietly drop it)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._drain(receive)
            await self._refuse(scope, receive, send, 413)
            return
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout_s)
        except TimeoutError:
            await self._refuse(scope, receive, send, 408)
            return
        if body is None:
            await self._drain(receive)
            await self._refuse(scope, receive, send, 413)
            return
        if body.startswith(BYTE_ORDER_MARKS):
            await self._refuse(scope, receive, send, 400)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes the limit."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    async def _drain(receive: Receive) -> None:
        """Read and drop what the client is still sending, at most LINGER_BYTES or LINGER_S.

        Closing a connection with unread data makes the kernel reset it, and a client still
        sending its body then loses the answer along with the connection."""
        loop = asyncio.get_running_loop()
        deadline, dropped = loop.time() + LINGER_S, 0
        while dropped < LINGER_BYTES and (left := deadline - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(receive(), left)
            except TimeoutError:
                return
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                return
            dropped += len(message.get("body", b""))

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int) -> None:
        detail = {
            413: f"request body too large (at most {self.max_bytes} bytes)",
            408: f"request body not received within {self.timeout_s:g} s",
            400: "request body starts with a byte-order mark: send UTF-8 JSON without one "
            "(RFC 8259, section 8.1)",
        }[status]
        await JSONResponse({"detail": detail}, status, headers={"Connection": "close"})(
            scope, receive, send
        )


class _Jobs:
    """The slots and the worker threads that drawing requests run in."""

    def __init__(self, workers: int, max_jobs: int) -> None:
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="aisketcher-draw")
        self.max_jobs = max_jobs
        self.active = 0
        self._tasks: set[asyncio.Task] = set()

    def acquire(self) -> None:
        if self.active >= self.max_jobs:
            raise HTTPException(
                503,
                f"the server is busy ({self.active} drawings in progress); try again shortly",
                headers={"Retry-After": "1"},
            )
        self.active += 1

    def release(self) -> None:
        self.active -= 1

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, functools.partial(fn, *args)
        )

    async def collect(self, request: Request, build: Callable[[], StepSampler]) -> dict:
        """Draw to the end and answer with every sketch."""
        self.acquire()
        try:
            sampler = await self.run(build)
            while not sampler.finished:
                await self.run(sampler.advance, SLICE_SECONDS)
                if await request.is_disconnected():
                    return {"sketches": []}  # nobody is left to read it
            return {"sketches": sampler.results()}
        finally:
            self.release()

    async def stream(self, operation: str, build: Callable[[], StepSampler]) -> StreamingResponse:
        """Answer with NDJSON events while drawing (see the module docstring)."""
        self.acquire()
        try:
            sampler = await self.run(build)
        except BaseException:
            self.release()
            raise
        queue: asyncio.Queue[dict] = asyncio.Queue()
        task = asyncio.create_task(self._produce(sampler, queue))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)
        names = [sampler.sketcher.class_names[i] for i in sampler.labels]

        async def lines() -> AsyncIterator[bytes]:
            try:
                yield _line({"type": "start", "operation": operation, "labels": names})
                while True:
                    event = await queue.get()
                    yield _line(event)
                    if event["type"] != "points":
                        break
            finally:
                task.cancel()

        return StreamingResponse(
            lines(),
            media_type="application/x-ndjson",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _produce(self, sampler: StepSampler, queue: asyncio.Queue[dict]) -> None:
        try:
            while not sampler.finished:
                points = await self.run(sampler.advance, SLICE_SECONDS)
                if points:
                    queue.put_nowait({"type": "points", "points": points})
            queue.put_nowait({"type": "done", "sketches": sampler.results()})
        except SketchDataError as exc:
            queue.put_nowait({"type": "error", "detail": str(exc)})
        except Exception:
            # The answer has begun (status 200): the stream itself must say that drawing failed.
            log.exception("drawing failed")
            queue.put_nowait({"type": "error", "detail": "drawing failed (see the server's log)"})
        finally:
            self.release()


def _line(event: dict) -> bytes:
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def _static_dir() -> Path:
    return Path(str(resources.files("aisketcher.server") / "static"))


def create_app(
    sketcher: Sketcher, server_limits: ServerLimits | None = None, *, models_url: str | None = None
) -> FastAPI:
    """The web app for a model: the page at `/`, the JSON API under `/api/`. Requests may name
    one of Google's models instead, fetched from `models_url` (see `google_models.models_url`)."""
    cfg = server_limits or ServerLimits()
    jobs = _Jobs(cfg.workers, cfg.max_jobs)
    shelf = ModelShelf(sketcher, models_url)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="aisketcher",
        summary="Draw with AI-Sketcher: from a class, finish a drawing, redraw it as another class.",
        version="1",
        docs_url=None,  # FastAPI's docs pages load scripts from a CDN; the page must work offline
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.add_middleware(_BodyLimit, max_bytes=cfg.max_body_bytes, timeout_s=cfg.body_timeout_s)
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

    def draw_job(body: DrawRequest) -> Callable[[], StepSampler]:
        def build() -> StepSampler:
            return sampling.draw(
                shelf.get(body.model),
                body.cls,
                body.count,
                temperature=body.temperature,
                seed=body.seed,
            )

        return build

    def complete_job(body: CompleteRequest) -> Callable[[], StepSampler]:
        def build() -> StepSampler:
            sketch, frame = body.sketch.to_sketch(body.simplify)
            return sampling.complete(
                shelf.get(body.model),
                sketch,
                frame,
                body.sketch.points(),
                body.cls,
                body.count,
                temperature=body.temperature,
                seed=body.seed,
            )

        return build

    def translate_job(body: TranslateRequest) -> Callable[[], StepSampler]:
        def build() -> StepSampler:
            chosen = shelf.get(body.model)
            if body.classes is None and len(chosen.class_names) > MAX_ROWS:
                raise SketchDataError(f"the model has more than {MAX_ROWS} classes: name some")
            sketch, frame = body.sketch.to_sketch(body.simplify)
            return sampling.translate(
                chosen,
                sketch,
                frame,
                body.classes,
                temperature=body.temperature,
                seed=body.seed,
                class_pull=body.class_pull,
            )

        return build

    def reconstruct_job(body: ReconstructRequest) -> Callable[[], StepSampler]:
        def build() -> StepSampler:
            pairs = [s.to_sketch(body.simplify) for s in body.sketches]
            return sampling.reconstruct(
                shelf.get(body.model),
                [p[0] for p in pairs],
                [p[1] for p in pairs],
                body.cls,
                temperature=body.temperature,
                seed=body.seed,
            )

        return build

    def interpolate_job(body: InterpolateRequest) -> Callable[[], StepSampler]:
        def build() -> StepSampler:
            (a, frame_a), (b, frame_b) = (s.to_sketch(body.simplify) for s in (body.a, body.b))
            return sampling.interpolate(
                shelf.get(body.model),
                (a, b),
                (frame_a, frame_b),
                body.steps,
                body.classes,
                temperature=body.temperature,
                seed=body.seed,
            )

        return build

    streamed = {200: {"content": {"application/x-ndjson": {}}, "description": STREAM_DESCRIPTION}}
    errors = {
        413: {"description": "request body too large"},
        422: {"description": "invalid request: `detail` says what is wrong"},
        503: {"description": "busy: every drawing slot is taken; retry after `Retry-After` s"},
    }

    @app.post("/api/draw", response_model=SketchesOut, responses=errors, tags=["draw"])
    async def draw(body: DrawRequest, request: Request) -> dict:
        """Draw sketches of a class from scratch."""
        return await jobs.collect(request, draw_job(body))

    @app.post("/api/draw/stream", responses={**streamed, **errors}, tags=["draw"])
    async def draw_stream(body: DrawRequest) -> StreamingResponse:
        """`/api/draw`, streamed as the model draws."""
        return await jobs.stream("draw", draw_job(body))

    @app.post("/api/complete", response_model=SketchesOut, responses=errors, tags=["draw"])
    async def complete(body: CompleteRequest, request: Request) -> dict:
        """Finish a started drawing several ways; each result starts with the user's points as
        sent (unless there were more than the model takes: then simplified, as it took them)."""
        return await jobs.collect(request, complete_job(body))

    @app.post("/api/complete/stream", responses={**streamed, **errors}, tags=["draw"])
    async def complete_stream(body: CompleteRequest) -> StreamingResponse:
        """`/api/complete`, streamed as the model draws (only the new points are streamed)."""
        return await jobs.stream("complete", complete_job(body))

    @app.post("/api/translate", response_model=SketchesOut, responses=errors, tags=["draw"])
    async def translate(body: TranslateRequest, request: Request) -> dict:
        """Redraw one sketch as each of the given classes (the paper's Figure 2)."""
        return await jobs.collect(request, translate_job(body))

    @app.post("/api/translate/stream", responses={**streamed, **errors}, tags=["draw"])
    async def translate_stream(body: TranslateRequest) -> StreamingResponse:
        """`/api/translate`, streamed as the model draws."""
        return await jobs.stream("translate", translate_job(body))

    @app.post("/api/reconstruct", response_model=SketchesOut, responses=errors, tags=["draw"])
    async def reconstruct(body: ReconstructRequest, request: Request) -> dict:
        """Encode sketches and decode them again."""
        return await jobs.collect(request, reconstruct_job(body))

    @app.post("/api/reconstruct/stream", responses={**streamed, **errors}, tags=["draw"])
    async def reconstruct_stream(body: ReconstructRequest) -> StreamingResponse:
        """`/api/reconstruct`, streamed as the model draws."""
        return await jobs.stream("reconstruct", reconstruct_job(body))

    @app.post("/api/interpolate", response_model=SketchesOut, responses=errors, tags=["draw"])
    async def interpolate(body: InterpolateRequest, request: Request) -> dict:
        """Sketches along the line from one sketch's latent to another's."""
        return await jobs.collect(request, interpolate_job(body))

    @app.post("/api/interpolate/stream", responses={**streamed, **errors}, tags=["draw"])
    async def interpolate_stream(body: InterpolateRequest) -> StreamingResponse:
        """`/api/interpolate`, streamed as the model draws."""
        return await jobs.stream("interpolate", interpolate_job(body))

    @app.post(
        "/api/render",
        responses={200: {"content": {"image/svg+xml": {}, "image/png": {}}}, **errors},
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
