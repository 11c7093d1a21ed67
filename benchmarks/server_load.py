"""A bounded load test of `aisketcher serve` on the loopback address: latency percentiles and errors.

python benchmarks/server_load.py [--requests 200] [--clients 8] [--run RUN_DIR] [--url URL]

Starts the server as a child process on a free loopback port (or uses `--url`, which must be a
loopback address), sends a fixed mix of requests from concurrent clients (draw, complete,
translate, a streamed completion, and model info), and reports p50/p90/p99 latency per operation
and overall, with the errors (any answer but 200, or none). It stops after `--requests` requests or
`--max-seconds`, whichever comes first, and exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np

CLASSES = ["cat", "pig", "face", "fish", "apple", "bicycle", "umbrella", "eye"]
STROKES = [[[100, 100], [200, 104], [300, 110]], [[100, 100], [110, 200], [120, 300]]]


def mix(i: int) -> tuple[str, str, dict | None]:
    """The i-th request: (name, path, JSON body or None for a GET)."""
    cls = CLASSES[i % len(CLASSES)]
    sketch = {"strokes": STROKES}
    return [
        ("draw", "/api/draw", {"class": cls, "count": 1, "seed": i}),
        ("complete", "/api/complete", {"sketch": sketch, "class": cls, "count": 2, "seed": i}),
        ("translate", "/api/translate", {"sketch": sketch, "classes": [cls], "seed": i}),
        ("stream", "/api/complete/stream", {"sketch": sketch, "class": cls, "count": 2, "seed": i}),
        ("model", "/api/model", None),
    ][i % 5]


def one(url: str, i: int) -> tuple[str, float, str]:
    """(operation, seconds, error or '') of the i-th request."""
    name, path, body = mix(i)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    started = time.perf_counter()
    try:
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        content = response.read()
        error = "" if response.status == 200 else f"HTTP {response.status}"
        if not error and name == "stream":
            last = json.loads(content.splitlines()[-1])
            error = "" if last["type"] == "done" else f"stream {last['type']}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = type(exc).__name__
    finally:
        conn.close()
    return name, time.perf_counter() - started, error


def start_server(run: str | None, workers: int) -> tuple[subprocess.Popen, str]:
    code = "import sys; from aisketcher.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, "serve", "--port", "0", "--log-level", "warning"]
    cmd += ["--workers", str(workers)] + (["--run", run] if run else [])
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline() if server.stdout else ""
    if "http://" not in line:
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return server, line.split(" at ")[1].split()[0]


def report(results: list[tuple[str, float, str]], wall: float) -> int:
    by_op: dict[str, list[float]] = defaultdict(list)
    for name, seconds, _ in results:
        by_op[name].append(seconds)
    errors = Counter(error for _, _, error in results if error)
    print(f"{'operation':<10} {'n':>4} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    rows = [*sorted(by_op.items()), ("all", [s for _, s, _ in results])]
    for name, times in rows:
        ms = np.asarray(times) * 1000
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        print(f"{name:<10} {len(ms):>4} {p50:>8.0f} {p90:>8.0f} {p99:>8.0f} {ms.max():>8.0f}")
    kinds = f" {dict(errors)}" if errors else ""
    print(
        f"{len(results)} requests in {wall:.1f} s ({len(results) / wall:.1f}/s), "
        f"errors: {sum(errors.values())}{kinds}"
    )
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--run", default=None, help="model to serve (default: the built-in one)")
    parser.add_argument("--workers", type=int, default=2, help="the server's drawing threads")
    parser.add_argument("--url", default=None, help="a server already running on loopback")
    parser.add_argument("--max-seconds", type=float, default=600, help="stop sending after this")
    args = parser.parse_args()
    if not 1 <= args.requests <= 10_000 or not 1 <= args.clients <= 64:
        parser.error("--requests must be 1..10000 and --clients 1..64")
    server = None
    if args.url:
        host = urlsplit(args.url).hostname or ""
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            parser.error("--url must be a loopback address (127.0.0.0/8, ::1 or localhost)")
        url = args.url
    else:
        server, url = start_server(args.run, args.workers)
    print(f"{args.requests} requests from {args.clients} clients to {url}")
    deadline = time.monotonic() + args.max_seconds

    def bounded(i: int) -> tuple[str, float, str] | None:
        return one(url, i) if time.monotonic() < deadline else None

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            done = list(pool.map(bounded, range(args.requests)))
        wall = time.perf_counter() - started
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    results = [r for r in done if r is not None]
    if len(results) < args.requests:
        print(f"stopped after {args.max_seconds:g} s: {args.requests - len(results)} not sent")
    return report(results, wall)


if __name__ == "__main__":
    sys.exit(main())
