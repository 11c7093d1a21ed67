"""Drawing requests as jobs: a slot each (503 when all are taken), run a slice of decoder steps at a
time in a small thread pool, answered whole or streamed as NDJSON events (see `app`)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse

from aisketcher.errors import SketchDataError
from aisketcher.server.sampling import StepSampler

log = logging.getLogger("aisketcher.server")

# Decoder steps run in slices of this many seconds: short enough to animate smoothly and to let
# other requests' slices in between, long enough that the hops between threads cost little.
SLICE_SECONDS = 0.04


class Jobs:
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
