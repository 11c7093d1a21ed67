"""Slow and greedy clients cannot shut others out of the server (`server/connections.py`).

The slow clients connect from 127.0.0.2, the real ones from 127.0.0.1: all of 127/8 is loopback
on Linux, so the server, listening on 127.0.0.1, sees two client addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import json
import selectors
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import pytest
import uvicorn
from uvicorn.server import ServerState

from aisketcher.api import Sketcher
from aisketcher.server.app import create_app, running
from aisketcher.server.connection_limits import ConnectionLimits
from aisketcher.server.connections import GuardedProtocol

SLOW_ADDRESS = "127.0.0.2"
SMALL_DRAW = {"class": "cat", "count": 1, "seed": 1}


@pytest.fixture(scope="module")
def sketcher() -> Sketcher:
    return Sketcher.load()


def connect_from(url: str, address: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.socket()
    try:
        sock.bind((address, 0))
    except OSError:
        sock.close()
        pytest.skip(f"cannot send from {address} on this system")
    sock.connect((parts.hostname, parts.port))
    return sock


def timed(url: str, path: str = "/api/draw", body: dict | None = SMALL_DRAW) -> tuple[int, float]:
    """(status, seconds) of one request from 127.0.0.1."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    started = time.perf_counter()
    try:
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        conn.close()


def test_slow_header_connections_from_one_address_leave_the_server_to_others(
    sketcher: Sketcher,
) -> None:
    """60 connections from one address trickle a header line every 0.4 s and never finish: the
    first 20 (the cap per address) get 408 at the header clock, the other 40 get 429 at once, and
    requests from another address get 200 at their usual speed all along. The slow connections
    outnumber the server's cap here (50): without the cap per address, every real request got
    503 until the header clock had closed them (the issue's 1,100 against 1,024)."""
    limits = ConnectionLimits(header_timeout_s=2.0, per_client=20, total=50)
    with running(create_app(sketcher), limits=limits) as base:
        timed(base)  # the first drawing loads what drawing needs
        before = [timed(base)[1] for _ in range(5)]
        slow = [connect_from(base, SLOW_ADDRESS) for _ in range(60)]
        start = time.monotonic()
        selector = selectors.DefaultSelector()
        for s in slow:
            s.sendall(b"GET /api/health HTTP/1.1\r\n")
            s.setblocking(False)
            selector.register(s, selectors.EVENT_READ, bytearray())
        answered: dict[socket.socket, tuple[float, bytes]] = {}  # at EOF: (seconds, answer)
        during, line = [], 0
        try:
            while len(answered) < len(slow) and time.monotonic() - start < 8:
                for key, _ in selector.select(0.05):
                    with contextlib.suppress(BlockingIOError, ConnectionResetError):
                        chunk = key.fileobj.recv(4096)
                        key.data.extend(chunk)
                        if not chunk:
                            answered[key.fileobj] = (time.monotonic() - start, bytes(key.data))
                            selector.unregister(key.fileobj)
                for s in slow:
                    with contextlib.suppress(OSError):  # closed by the server
                        s.send(b"X-Slow-%d: 1\r\n" % line)
                line += 1
                during.append(timed(base))
                time.sleep(0.4)
        finally:
            selector.close()
            for s in slow:
                s.close()
        assert len(answered) == len(slow)  # every one was answered and closed by the server
        by_status: dict[bytes, list[float]] = {}
        for seconds, answer in answered.values():
            by_status.setdefault(answer[:12], []).append(seconds)
        assert sorted((k, len(v)) for k, v in by_status.items()) == [
            (b"HTTP/1.1 408", 20),
            (b"HTTP/1.1 429", 40),
        ]
        assert max(by_status[b"HTTP/1.1 429"]) < 1.0
        assert 2.0 <= min(by_status[b"HTTP/1.1 408"]) <= max(by_status[b"HTTP/1.1 408"]) < 3.0
        assert {status for status, _ in during} == {200}
        usual = statistics.median(before)
        assert statistics.median(s for _, s in during) < 3 * usual + 0.1, (before, during)
        # The slow address's places are free again.
        again = connect_from(base, SLOW_ADDRESS)
        with contextlib.closing(again):
            again.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert again.recv(4096).startswith(b"HTTP/1.1 200")


def test_a_refused_connection_reads_its_429_even_after_sending_a_request(
    sketcher: Sketcher,
) -> None:
    """The refusal is written before the request is read; the server reads and drops what
    comes after, so the close does not reset the connection and lose the answer."""
    with running(create_app(sketcher), limits=ConnectionLimits(per_client=2)) as base:
        held = [connect_from(base, SLOW_ADDRESS) for _ in range(2)]
        extra = connect_from(base, SLOW_ADDRESS)
        try:
            extra.sendall(b"POST /api/draw HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n")
            extra.sendall(b" " * 20000)
            extra.settimeout(10)
            answer = b""
            while chunk := extra.recv(4096):
                answer += chunk
        finally:
            for s in [*held, extra]:
                s.close()
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 429") and b"retry-after: 1" in head
        assert "too many connections from 127.0.0.2" in json.loads(body)["detail"]
        assert timed(base, "/api/health", None)[0] == 200  # from the other address


class _ResetTransport(asyncio.Transport):
    """A connection from 127.0.0.2 whose client has just reset it: what the server writes is
    taken, and the end of its side fails, as a socket's shutdown does then."""

    def __init__(self) -> None:
        super().__init__()
        self.written, self.aborted = b"", False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": (SLOW_ADDRESS, 5000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def is_closing(self) -> bool:
        return self.aborted

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def write_eof(self) -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    def abort(self) -> None:
        self.aborted = True


def test_a_client_gone_as_it_is_refused_is_let_go() -> None:
    """A refusal's end of writing fails when the client reset the connection since the loop last
    looked (seen at the end of a soak): the connection is dropped, with nothing raised."""
    loop = asyncio.new_event_loop()
    try:
        protocol = GuardedProtocol(
            config=uvicorn.Config(app=None, log_level="warning"),
            server_state=ServerState(),
            app_state={},
            _loop=loop,
            limits=ConnectionLimits(per_client=1),
            open_by_address=Counter({SLOW_ADDRESS: 1}),
        )
        transport = _ResetTransport()
        protocol.connection_made(transport)  # one over the cap: refused
        assert transport.written.startswith(b"HTTP/1.1 429") and transport.aborted
    finally:
        loop.close()


def test_idle_sockets_do_not_starve_real_clients(sketcher: Sketcher) -> None:
    """100 connections opened and left silent: real requests still get answers, and the server
    closes the silent ones after its keep-alive timeout (uvicorn starts that timer only after a
    response)."""
    limits = ConnectionLimits(per_client=200, keep_alive_s=1)
    with running(create_app(sketcher), limits=limits) as base:
        idle = [connect_from(base, SLOW_ADDRESS) for _ in range(100)]
        try:
            for _ in range(5):
                assert timed(base, "/api/health", None)[0] == 200
            idle[0].settimeout(10)
            assert idle[0].recv(1) == b""  # closed by the server, not by us
        finally:
            for s in idle:
                s.close()


def test_headers_sent_a_byte_at_a_time_get_408_and_a_keep_alive_connection_does_not(
    sketcher: Sketcher,
) -> None:
    """A slowloris client (headers a byte at a time, never finished) is cut off by the header
    clock while real requests are answered; a connection that finished its request in time and
    waits within the keep-alive timeout is not."""
    with running(create_app(sketcher), limits=ConnectionLimits(header_timeout_s=1.5)) as base:
        slow = connect_from(base, SLOW_ADDRESS)
        start, answer = time.monotonic(), b""
        try:
            slow.sendall(b"GET /api/health HTTP/1.1\r\n")
            for byte in b"Host: x\r\nX-Slow: 1234567890":
                if time.monotonic() - start > 4:  # well past the header clock
                    break
                with contextlib.suppress(OSError):  # closed by the server
                    slow.sendall(bytes([byte]))
                assert timed(base, "/api/health", None)[0] == 200
                time.sleep(0.25)
            slow.settimeout(5)
            while chunk := slow.recv(4096):
                answer += chunk
        finally:
            slow.close()
        # Without the clock the connection would still be open: recv would time out.
        assert answer.startswith(b"HTTP/1.1 408") and b"headers not received" in answer
        parts = urlsplit(base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", "/api/health")
        first = conn.getresponse()
        assert first.status == 200
        first.read()
        time.sleep(2)  # past the header clock, within the keep-alive timeout
        conn.request("GET", "/api/health")
        assert conn.getresponse().status == 200
        conn.close()


def test_the_server_raises_its_soft_open_files_limit_to_the_hard_one() -> None:
    """So that the connection cap, not the common default of 1,024 files, bounds connections."""
    code = (
        "import resource\n"
        "from aisketcher.server.connections import allow_open_files\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
        "allow_open_files()\n"
        "soft, after = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "print(soft == after == hard or hard == resource.RLIM_INFINITY)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
