"""What one connection and one client address may hold of the server (see `connections`); apart
from that module so that the CLI can show the defaults without the [serve] extra installed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConnectionLimits:
    """What any one connection, and any one client address, may hold of the server."""

    header_timeout_s: float = 10.0  # from a request's first byte to its last header
    # Open connections per client address (0: no cap). A browser opens at most 6 per server, so
    # this leaves room for a few behind one NAT; behind a reverse proxy every connection comes
    # from the proxy's address, and the proxy does this job.
    per_client: int = 64
    # Open connections in all before uvicorn answers 503: far more than idle sockets a client can
    # hold for the keep-alive timeout; the drawing work itself is bounded by the app's own slots.
    total: int = 1024
    keep_alive_s: float = 5.0
