"""The request body read before the app sees it: too big (413), too slow (408), or opening with a
byte-order mark (400); a refused body is drained first, so the client gets the answer."""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aisketcher.server.connections import LINGER_S

# What a refused body may still send before the answer, within LINGER_S (see BodyLimit._drain).
LINGER_BYTES = 16 * 1024 * 1024

# UTF-8, UTF-16 and UTF-32 byte-order marks: JSON over a network must not start with one.
BYTE_ORDER_MARKS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


class BodyLimit:
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
