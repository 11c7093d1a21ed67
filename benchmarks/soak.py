"""A soak test of `aisketcher serve`: a mixed load for minutes, then the server's memory, threads,
open files and speed set against their levels after warm-up.

python benchmarks/soak.py [--minutes 10] [--warmup 60] [--clients 4] [--heavy 2]

Starts the server as a child process on a free port of 127.0.0.1 (nothing else is reached; the
slow clients connect from 127.0.0.2, loopback too). After a warm-up under the load it measures
the server's resident memory, threads and open files (/proc/<pid>, Linux) and the latency of
`--probes` small drawings, one at a time. Then, for `--minutes`: `--clients` threads send
drawings, completions, translations, renders, model queries, streams read to the end and streams
cut off after two lines, oversized bodies and malformed requests; `--heavy` threads send the
largest drawings a request may ask for; one thread keeps a few connections trickling a header
line a second until the header clock closes them. Every answer must be the one its kind deserves
(200; 413, 400, 415, 422 or 408 for the bad ones), and the server must log no exception. The
load stops, the measurements are taken again, and the small drawings once more in turn with a
fresh server's (started now, warmed up by as many).

Verdict: no errors, memory and open files within 10% of their level after warm-up, as many
threads, and the small drawing's p99 latency within 20% of before, or, when the machine itself
has become slower (others' work on a shared one), of the fresh server's. Exits 1 when it fails.
It sends at most `--max-requests` requests and stops after `--minutes` in any case.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from server_load import CLASSES, STROKES

SMALL_DRAW = {"class": "cat", "count": 1, "seed": 1}
SKETCH = {"strokes": STROKES}
SLOW_ADDRESS = "127.0.0.2"
SLOW_CONNECTIONS = 4


@dataclass
class Tally:
    """Answers by kind and status, and the errors (kind, what happened), shared by the threads."""

    answers: Counter[tuple[str, object]] = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: object, expected: set[int]) -> None:
        with self.lock:
            self.answers[kind, status] += 1
            if status not in expected:
                self.errors.append((kind, f"answered {status}, expected {sorted(expected)}"))

    @property
    def count(self) -> int:
        return sum(self.answers.values())


@dataclass
class Sample:
    seconds: float
    rss_mib: float
    threads: int
    fds: int


def sample(pid: int, seconds: float) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Sample(seconds, int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"]), fds)


def request(
    url: tuple[str, int], method: str, path: str, body: bytes | None, headers: dict | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*url, timeout=120)
    try:
        conn.request(method, path, body, headers or {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def post(url: tuple[str, int], path: str, body: dict) -> tuple[int, bytes]:
    return request(url, "POST", path, json.dumps(body).encode())


def cut_stream(url: tuple[str, int], i: int) -> int:
    """A stream read for two lines, then the connection closed under it."""
    conn = http.client.HTTPConnection(*url, timeout=120)
    body = json.dumps({"class": CLASSES[i % len(CLASSES)], "count": 8, "seed": i})
    try:
        conn.request("POST", "/api/draw/stream", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.readline()  # start
        response.readline()  # the first points
        return response.status
    finally:
        conn.close()


def bad_request_line(url: tuple[str, int]) -> int:
    with socket.create_connection(url, timeout=30) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        return int(sock.recv(4096).split()[1])


# The malformed requests, in turn: (body, Content-Type, the status it deserves).
MALFORMED = [
    (b'{"class": "cat", "count"', "application/json", 422),
    (b'{"class": "cat", "count": "4"}', "application/json", 422),
    (b'{"class": "no such class"}', "application/json", 422),
    (b'\xef\xbb\xbf{"class": "cat"}', "application/json", 400),
    (b"class=cat", "application/x-www-form-urlencoded", 415),
    (b'{"class": "cat", "count": 99}', "application/json", 422),
]


def mixed(url: tuple[str, int], i: int, tally: Tally) -> None:
    """The i-th request of a mixed client."""
    cls = CLASSES[i % len(CLASSES)]
    kinds = ["draw", "stream", "cut", "complete", "malformed", "translate", "oversized", "render"]
    kind = kinds[i % len(kinds)]
    if kind == "cut":
        tally.add(kind, cut_stream(url, i), {200})
    elif kind == "malformed":
        if i % 96 == 4:  # one in 12 of the malformed: uvicorn logs each
            tally.add("bad-line", bad_request_line(url), {400})
            return
        body, content_type, expected = MALFORMED[(i // 8) % len(MALFORMED)]
        status, _ = request(url, "POST", "/api/draw", body, {"Content-Type": content_type})
        tally.add(kind, status, {expected})
    elif kind == "oversized":
        body = b'{"class": "cat", "pad": "' + b"x" * 1_500_000 + b'"}'
        tally.add(kind, request(url, "POST", "/api/draw", body)[0], {413})
    elif kind == "stream":
        status, content = post(url, "/api/complete/stream", {"sketch": SKETCH, "class": cls})
        last = json.loads(content.splitlines()[-1])["type"] if status == 200 else None
        tally.add(kind, status if last in (None, "done") else f"stream {last}", {200})
    else:
        path, body = {
            "draw": ("/api/draw", {"class": cls, "count": 1 + i % 4, "seed": i}),
            "complete": ("/api/complete", {"sketch": SKETCH, "class": cls, "count": 2, "seed": i}),
            "translate": ("/api/translate", {"sketch": SKETCH, "classes": [cls], "seed": i}),
            "render": ("/api/render", {"sketch": SKETCH, "format": "png", "size": 512}),
        }[kind]
        tally.add(kind, post(url, path, body)[0], {200})
        if i % 16 == 0:
            tally.add("model", request(url, "GET", "/api/model", None)[0], {200})


def heavy(url: tuple[str, int], i: int, tally: Tally) -> None:
    """The largest drawings a request may ask for."""
    path, body = [
        ("/api/draw", {"class": CLASSES[i % 8], "count": 8, "temperature": 1.0, "seed": i}),
        ("/api/translate", {"sketch": SKETCH, "classes": CLASSES * 2, "seed": i}),
        ("/api/complete", {"sketch": SKETCH, "class": "cat", "count": 8, "seed": i}),
        ("/api/reconstruct", {"sketches": [SKETCH] * 16, "class": "cat", "seed": i}),
    ][i % 4]
    tally.add("heavy", post(url, path, body)[0], {200})


def slow_headers(url: tuple[str, int], until: float, tally: Tally) -> None:
    """Keep SLOW_CONNECTIONS connections trickling a header line a second; each must get 408."""
    open_: dict[socket.socket, bytes] = {}
    line = 0
    try:
        while time.monotonic() < until:
            while len(open_) < SLOW_CONNECTIONS:
                sock = socket.socket()
                sock.bind((SLOW_ADDRESS, 0))
                sock.connect(url)
                sock.sendall(b"GET /api/health HTTP/1.1\r\n")
                open_[sock] = b""
            readable, _, _ = select.select(list(open_), [], [], 1.0)
            for sock in readable:
                chunk = b""
                with contextlib.suppress(ConnectionResetError):
                    chunk = sock.recv(4096)
                open_[sock] += chunk
                if not chunk:  # answered and closed by the server
                    status = open_.pop(sock)[9:12]  # of "HTTP/1.1 408 ..."
                    tally.add("slow-headers", int(status) if status.isdigit() else None, {408})
                    sock.close()
            for sock in open_:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow-%d: 1\r\n" % line)
            line += 1
    except OSError as exc:
        with tally.lock:
            tally.errors.append(("slow-headers", f"{type(exc).__name__}: {exc}"))
    finally:
        for sock in open_:
            sock.close()


def load(
    url: tuple[str, int], seconds: float, clients: int, heavies: int, max_requests: int
) -> Tally:
    """The mixed load for `seconds` (or until `max_requests`) from threads; waits for them."""
    tally = Tally()
    until = time.monotonic() + seconds

    def loop(job: Callable[[tuple[str, int], int, Tally], None], first: int) -> None:
        i = first  # each thread goes through every kind, the threads out of step
        while time.monotonic() < until and tally.count < max_requests:
            try:
                job(url, i, tally)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                with tally.lock:
                    tally.errors.append((job.__name__, f"{type(exc).__name__}: {exc}"))
            i += 1

    threads = [threading.Thread(target=loop, args=(mixed, 3 * k)) for k in range(clients)]
    threads += [threading.Thread(target=loop, args=(heavy, k)) for k in range(heavies)]
    threads.append(threading.Thread(target=slow_headers, args=(url, until, tally)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally


def probe(urls: list[tuple[str, int]], count: int) -> list[np.ndarray]:
    """Seconds of `count` small drawings from each server, one at a time, the servers in turn."""
    times: list[list[float]] = [[] for _ in urls]
    for _ in range(count):
        for url, column in zip(urls, times, strict=True):
            started = time.perf_counter()
            status, _ = post(url, "/api/draw", SMALL_DRAW)
            column.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"a small drawing got {status}")
    return [np.asarray(column) for column in times]


def start_server(log: list[str]) -> tuple[subprocess.Popen, tuple[str, int]]:
    """`aisketcher serve` on a free port of 127.0.0.1, its log kept in `log` (uvicorn warns of
    every deliberately broken request line, which would drown the report)."""
    code = "import sys; from aisketcher.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, "serve", "--port", "0", "--log-level", "warning"]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline() if server.stdout else ""
    if "http://" not in line:
        server.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    threading.Thread(target=log.extend, args=(server.stderr,), daemon=True).start()
    host, port = line.split("http://")[1].split("/")[0].rsplit(":", 1)
    return server, (host, int(port))


def settle(pid: int, seconds: float) -> Sample:
    """The server's figures once the load's connections are gone (refused ones linger 1 s)."""
    time.sleep(3)
    return sample(pid, seconds)


@dataclass
class Report:
    samples: list[Sample]  # every few seconds, under load
    before: Sample  # settled, after warm-up
    after: Sample  # settled, after the soak
    # Seconds of small drawings: "before" and "after" (alone), then "soaked" and "fresh": the
    # server and a fresh one, timed in turn.
    latency: dict[str, np.ndarray]
    tally: Tally
    log: list[str]  # the server's
    minutes: float

    def failures(
        self, memory: float = 0.10, files: float = 0.10, p99: float = 0.20, threads: int = 0
    ) -> list[str]:
        """What fails the verdict at these tolerances (relative, and in threads)."""
        out = [f"{kind}: {what}" for kind, what in self.tally.errors[:20]]
        out += [f"the server logged: {line.strip()}" for line in self.log if "Exception" in line]
        if len(self.tally.errors) > 20:
            out.append(f"... {len(self.tally.errors)} errors in all")
        rss, fds = self.after.rss_mib / self.before.rss_mib, self.after.fds / self.before.fds
        if abs(rss - 1) > memory:
            out.append(f"memory {self.before.rss_mib:.0f} -> {self.after.rss_mib:.0f} MiB")
        if abs(fds - 1) > files:
            out.append(f"open files {self.before.fds} -> {self.after.fds}")
        if abs(self.after.threads - self.before.threads) > threads:
            out.append(f"threads {self.before.threads} -> {self.after.threads}")
        ms = {name: np.percentile(t, 99) * 1000 for name, t in self.latency.items()}
        # A busy machine slows every server: only a slowdown a fresh server does not share counts.
        if ms["after"] > (1 + p99) * ms["before"] and ms["soaked"] > (1 + p99) * ms["fresh"]:
            out.append(
                f"small drawing p99 {ms['before']:.1f} -> {ms['after']:.1f} ms "
                f"(in turn with a fresh server: {ms['soaked']:.1f} against {ms['fresh']:.1f})"
            )
        return out


def soak(
    minutes: float,
    warmup_s: float,
    clients: int = 4,
    heavies: int = 2,
    probes: int = 500,
    max_requests: int = 1_000_000,
    every_s: float = 5.0,
) -> Report:
    """Run the whole soak against a server of its own (see the module docstring)."""
    log: list[str] = []
    server, url = start_server(log)
    samples: list[Sample] = []  # seconds into the soak
    latency: dict[str, np.ndarray] = {}
    stop = threading.Event()

    def sampler(started: float) -> None:
        while not stop.wait(every_s):
            samples.append(sample(server.pid, time.monotonic() - started))

    try:
        load(url, warmup_s, clients, heavies, max_requests)
        before = settle(server.pid, 0.0)
        (latency["before"],) = probe([url], probes)
        watch = threading.Thread(target=sampler, args=(time.monotonic(),))
        watch.start()
        try:
            tally = load(url, minutes * 60, clients, heavies, max_requests)
        finally:
            stop.set()
            watch.join()
        after = settle(server.pid, minutes * 60)
        (latency["after"],) = probe([url], probes)
        fresh, fresh_url = start_server([])
        try:
            probe([fresh_url], probes)  # its warm-up
            latency["soaked"], latency["fresh"] = probe([url, fresh_url], probes)
        finally:
            fresh.terminate()
            fresh.wait(10)
    finally:
        server.terminate()
        server.wait(10)
    return Report(samples, before, after, latency, tally, log, minutes)


def print_report(report: Report) -> None:
    print(f"{'min':>6} {'RSS MiB':>8} {'threads':>8} {'files':>6}")
    rows = [("before", report.before)]
    step = max(1, len(report.samples) // 10)
    rows += [(f"{s.seconds / 60:.1f}", s) for s in report.samples[step - 1 :: step]]
    rows.append(("after", report.after))
    for name, s in rows:
        print(f"{name:>6} {s.rss_mib:>8.1f} {s.threads:>8} {s.fds:>6}")
    if report.samples:
        rss = [s.rss_mib for s in report.samples]
        print(f"under load: RSS {min(rss):.1f}-{max(rss):.1f} MiB")
    by_status = Counter(status for _, status in report.tally.answers.elements())
    by_status = dict(sorted(by_status.items(), key=str))  # None or a stream's error among them
    print(f"{report.tally.count} answers in {report.minutes:g} min: {by_status}")
    for kind in sorted({k for k, _ in report.tally.answers}):
        row = {s: n for (k, s), n in report.tally.answers.items() if k == kind}
        print(f"  {kind:<12} {row}")
    exceptions = sum("Exception" in line for line in report.log)
    print(f"server log: {len(report.log)} lines, {exceptions} exceptions")
    for name, times in report.latency.items():
        p50, p99 = np.percentile(times * 1000, [50, 99])
        print(f"small drawing {name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(times)} drawings)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="the soak (default 10)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of load before")
    parser.add_argument("--clients", type=int, default=4, help="threads sending the mixed load")
    parser.add_argument("--heavy", type=int, default=2, help="threads sending heavy drawings")
    parser.add_argument("--probes", type=int, default=500, help="small drawings timed each time")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    args = parser.parse_args()
    if not 0 < args.minutes <= 120 or not 0 <= args.warmup <= 600:
        parser.error("--minutes must be within (0, 120] and --warmup within [0, 600]")
    if not 1 <= args.clients <= 8 or not 0 <= args.heavy <= 4 or not 10 <= args.probes <= 2000:
        parser.error("--clients must be 1..8, --heavy 0..4 and --probes 10..2000")
    print(f"soak: {args.minutes:g} min after {args.warmup:g} s of warm-up", flush=True)
    report = soak(
        args.minutes, args.warmup, args.clients, args.heavy, args.probes, args.max_requests
    )
    print_report(report)
    failures = report.failures()
    print("verdict: " + ("PASS" if not failures else "FAIL\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
