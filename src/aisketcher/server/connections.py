"""The server's connections: how long a client may take over its request's headers, and how many
connections one client address may hold, so that slow or greedy clients cannot shut others out.

uvicorn bounds neither. Its keep-alive timer stops at a request's first byte and starts again only
after a response, so a request whose headers never end holds its connection for good; and its one
cap (`limit_concurrency`, 503 past it) counts every client's connections together, so 1,100
sockets trickling a header line a second from one address made every other client's requests 503.
`GuardedProtocol` is uvicorn's HTTP/1.1 protocol with three more rules:

- a connection that sends nothing is closed after the keep-alive timeout (uvicorn starts that
  timer only after a response);
- a request whose headers are not complete within `header_timeout_s` of its first byte gets 408
  and is closed (the body has its own clock, in `app._BodyLimit`);
- a connection beyond `per_client` open ones from the same address gets 429 at once and is closed;
  it takes no place under the server's cap (`total`), which is left to everyone else.

What one process cannot tell apart, many addresses each under the cap, is a reverse proxy's work
(README, "Slow clients, and serving on a network").
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
from collections import Counter
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from aisketcher.server.connection_limits import ConnectionLimits

# How long a refused connection is still read (and what arrives dropped) before it is closed:
# closing on unread data makes the kernel reset the connection, and the client loses the answer.
LINGER_S = 1.0


class GuardedProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with the module's three rules; `open_by_address` is shared by
    the connections of one server."""

    def __init__(
        self, *args: Any, limits: ConnectionLimits, open_by_address: Counter[str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limits, self.open_by_address = limits, open_by_address
        self._header_clock: asyncio.TimerHandle | None = None
        self._counted: str | None = None  # the address this connection counts against
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if address is not None and self.limits.per_client:
            if self.open_by_address[address] >= self.limits.per_client:
                self.connections.discard(self)  # not served: no place under the server's cap
                detail = f"too many connections from {address} (at most {self.limits.per_client})"
                self._refuse(429, detail)
                return
            self.open_by_address[address] += 1
            self._counted = address
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # dropped until the close (see _refuse)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request line and headers have arrived
            self._stop_header_clock()
        elif self._header_clock is None and not self.transport.is_closing():
            self._header_clock = self.loop.call_later(
                self.limits.header_timeout_s, self._headers_too_slow
            )

    def on_response_complete(self) -> None:
        self._stop_header_clock()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        if self._counted is not None:
            self.open_by_address[self._counted] -= 1
            if not self.open_by_address[self._counted]:
                del self.open_by_address[self._counted]  # a long-running server sees many
            self._counted = None
        super().connection_lost(exc)

    def _stop_header_clock(self) -> None:
        if self._header_clock is not None:
            self._header_clock.cancel()
            self._header_clock = None

    def _headers_too_slow(self) -> None:
        self._header_clock = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            timeout = self.limits.header_timeout_s
            self._refuse(408, f"request headers not received within {timeout:g} s")

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` (written here: no request has been parsed) and close after LINGER_S."""
        self._refused = True
        self._unset_keepalive_if_required()
        self._stop_header_clock()
        body = json.dumps({"detail": detail}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"retry-after: 1\r\nconnection: close\r\n\r\n%s"
            % (status, http.HTTPStatus(status).phrase.encode(), len(body), body)
        )
        try:
            self.transport.write_eof()  # the client reads the answer and its end; its EOF closes
        except OSError:  # the client has gone: its reset came in since the loop last looked
            self.transport.abort()
            return
        self.loop.call_later(LINGER_S, self.transport.close)


def make_server(app: Any, limits: ConnectionLimits, log_level: str) -> uvicorn.Server:
    """A uvicorn server of `app` over `GuardedProtocol` (not started)."""
    protocol = functools.partial(GuardedProtocol, limits=limits, open_by_address=Counter())
    config = uvicorn.Config(
        app,
        log_level=log_level,
        http=protocol,  # type: ignore[arg-type]  # uvicorn calls it as it would the class
        limit_concurrency=limits.total,
        timeout_keep_alive=limits.keep_alive_s,
        access_log=False,
    )
    return uvicorn.Server(config)


def allow_open_files() -> None:
    """Raise this process's soft limit on open files to its hard limit, as Go's runtime does.

    The common default soft limit, 1,024, is below the connection cap plus the files the server
    holds: accepting past it fails, and asyncio then stops accepting for a second at a time."""
    try:
        import resource  # Unix only

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if resource.RLIM_INFINITY not in (soft, hard) and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass  # another system, or a limit it will not grant: the server runs with what it has
