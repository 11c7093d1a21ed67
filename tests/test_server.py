"""The web app's HTTP API on a real server (uvicorn on a loopback port) with the built-in model."""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from aisketcher.api import Sketcher
from aisketcher.server.app import ServerLimits, create_app, running
from aisketcher.server.body_limit import BYTE_ORDER_MARKS
from aisketcher.strokes import strokes_to_stroke3

# An open shape on a 400-pixel canvas: two lines meeting at a corner.
CORNER = [[[100, 100], [200, 104], [300, 110]], [[100, 100], [110, 200], [120, 300]]]
# A start far from the origin (offsets beyond what the model is fed), in fractions of a pixel.
FAR = [[[1500.5, 1200.25], [1600.75, 1210.5], [1700.25, 1300]], [[300.3, 110.7], [320.1, 180]]]
FAR_STROKE3 = [
    [1500.5, 1200.25, 0],
    [100.25, 10.25, 0],
    [99.5, 89.5, 1],
    [-1399.95, -1189.3, 0],
    [19.8, 69.3, 1],
]


@pytest.fixture(scope="module")
def sketcher() -> Sketcher:
    return Sketcher.load()


@pytest.fixture(scope="module")
def url(sketcher: Sketcher) -> Iterator[str]:
    with running(create_app(sketcher)) as base:
        yield base


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)


def call(
    url: str, path: str, body: object = None, *, raw: bytes | None = None, method: str = ""
) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request; `body` is sent as JSON."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    conn = connect(url)
    try:
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method or ("GET" if data is None else "POST"), path, data, headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def ok(url: str, path: str, body: object = None) -> dict:
    status, _, content = call(url, path, body)
    assert status == 200, content
    return json.loads(content)


def refused(url: str, path: str, body: object = None, **kwargs: object) -> tuple[int, str]:
    status, _, content = call(url, path, body, **kwargs)
    assert 400 <= status < 500, (status, content)
    return status, json.loads(content)["detail"]


def points(sketch: dict) -> np.ndarray:
    return np.vstack([np.asarray(s) for s in sketch["strokes"]])


# ----- the page and the API's description -----
def test_page_and_its_files_come_from_the_package_alone(url: str) -> None:
    status, headers, html = call(url, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]
    page = html.decode()
    assert 'id="pad"' in page and "/static/app.js" in page and "/static/style.css" in page
    for path in ("/static/app.js", "/static/style.css"):
        status, _, content = call(url, path)
        assert status == 200 and content
        page += content.decode()
    # Nothing from other sites: no CDN, no fonts, no analytics.
    assert "http://" not in page and "https://" not in page
    assert call(url, "/docs")[0] == 404  # FastAPI's docs page would load a CDN


def test_openapi_document_lists_every_endpoint(url: str) -> None:
    doc = ok(url, "/api/openapi.json")
    operations = ("draw", "complete", "translate", "reconstruct", "heal")
    expected = {f"/api/{op}" for op in operations} | {f"/api/{op}/stream" for op in operations}
    expected |= {"/api/model", "/api/health", "/api/render"}
    assert expected <= set(doc["paths"])
    body = doc["paths"]["/api/complete"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("CompleteRequest")
    stream = doc["paths"]["/api/complete/stream"]["post"]["responses"]["200"]["content"]
    assert "application/x-ndjson" in stream


def test_model_info_and_health(url: str, sketcher: Sketcher) -> None:
    info = ok(url, "/api/model")
    assert info["source"] == "built-in model"
    assert info["classes"] == sketcher.class_names
    assert info["max_seq_len"] == sketcher.model.config.max_seq_len
    assert info["temperature"] == sketcher.temperature  # the page's slider starts there
    assert info["limits"]["max_count"] == 8 and info["limits"]["max_temperature"] == 2.0
    assert ok(url, "/api/health") == {"status": "ok", "jobs": 0, "max_jobs": 16}


# ----- drawing -----
def test_draw_gives_the_python_apis_sketches_for_a_seed(url: str, sketcher: Sketcher) -> None:
    answer = ok(url, "/api/draw", {"class": "cat", "count": 2, "seed": 5, "temperature": 0.5})
    expected = sketcher.draw("cat", 2, seed=5, temperature=0.5)
    assert [s["label"] for s in answer["sketches"]] == ["cat", "cat"]
    for got, want in zip(answer["sketches"], expected, strict=True):
        assert got["prefix_points"] == 0
        assert np.allclose(points(got), np.vstack(want.strokes()), atol=0.01)
        assert len(got["stroke3"]) == len(want)


def test_a_request_without_a_temperature_draws_at_the_models(url: str, sketcher: Sketcher) -> None:
    answer = ok(url, "/api/draw", {"class": "cat", "count": 2, "seed": 5})
    at_its_own = sketcher.draw("cat", 2, seed=5, temperature=sketcher.temperature)
    for got, want in zip(answer["sketches"], at_its_own, strict=True):
        assert np.allclose(points(got), np.vstack(want.strokes()), atol=0.01)


def test_complete_continues_the_users_own_points_in_their_frame(url: str) -> None:
    body = {"sketch": {"strokes": CORNER}, "class": "cat", "count": 2, "seed": 1}
    answer = ok(url, "/api/complete", body)
    assert ok(url, "/api/complete", body) == answer  # a seed repeats a completion exactly
    unsimplified = ok(url, "/api/complete", {**body, "simplify": False})
    assert unsimplified != answer  # by default the model sees the start simplified (4 points)...
    for sketch in answer["sketches"] + unsimplified["sketches"]:
        # ... but the start comes back as the user drew it, and the model's ending after it.
        assert sketch["prefix_points"] == 6 and sketch["strokes"][:2] == CORNER
        assert len(sketch["stroke3"]) > 6
        assert sketch["stroke3"][:6] == [list(r) for r in strokes_to_stroke3(CORNER)]


@pytest.mark.parametrize("sketch", [{"strokes": FAR}, {"stroke3": FAR_STROKE3}])
def test_complete_keeps_points_far_out_and_fractions_exact(url: str, sketch: dict) -> None:
    for simplify in (True, False):
        body = {"sketch": sketch, "class": "cat", "count": 1, "seed": 2, "simplify": simplify}
        (got,) = ok(url, "/api/complete", body)["sketches"]
        assert got["prefix_points"] == 5
        assert got["strokes"][:2] == FAR and got["stroke3"][:5] == FAR_STROKE3


@pytest.mark.filterwarnings("ignore:the sketch has 300 points")  # the server warns on its console
def test_a_start_too_long_for_the_model_comes_back_simplified(url: str) -> None:
    t = np.linspace(0, 2 * np.pi, 300)
    circle = np.column_stack([100 + 80 * np.cos(t), 100 + 80 * np.sin(t)]).round(2).tolist()
    body = {"sketch": [circle], "class": "cat", "count": 1, "seed": 0, "simplify": False}
    (got,) = ok(url, "/api/complete", body)["sketches"]
    assert got["prefix_points"] < 300  # the model's simplified start, as the Python API's
    assert np.allclose(got["strokes"][0][0], circle[0], atol=1)


def test_translate_redraws_as_each_class(url: str, sketcher: Sketcher) -> None:
    body = {"sketch": CORNER, "classes": ["pig", "face", "pig"], "seed": 2}
    answer = ok(url, "/api/translate", body)
    assert [s["label"] for s in answer["sketches"]] == ["pig", "face", "pig"]
    every = ok(url, "/api/translate", {"sketch": CORNER, "temperature": 0.1})
    assert [s["label"] for s in every["sketches"]] == sketcher.class_names
    pulled = {p: ok(url, "/api/translate", {**body, "class_pull": p}) for p in (0.0, 1.0)}
    assert pulled[0.0] == ok(url, "/api/translate", {**body, "class_pull": 0})
    assert pulled[0.0] != pulled[1.0]  # the pull reaches the model


def test_reconstruct_takes_stroke3_and_labels(url: str) -> None:
    square = [[10, 10, 0], [50, 0, 0], [0, 50, 0], [-50, 0, 0], [0, -50, 1]]
    body = {"sketches": [{"stroke3": square, "label": "map"}, {"stroke3": square}], "class": None}
    assert "give a class" in refused(url, "/api/reconstruct", body)[1]
    body["sketches"][1]["label"] = "apple"
    answer = ok(url, "/api/reconstruct", body)
    assert [s["label"] for s in answer["sketches"]] == ["map", "apple"]
    answer = ok(url, "/api/reconstruct", {**body, "class": "eye"})
    assert [s["label"] for s in answer["sketches"]] == ["eye", "eye"]


def read_stream(url: str, path: str, body: dict) -> list[dict]:
    conn = connect(url)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-type") == "application/x-ndjson"
        return [json.loads(line) for line in response.read().splitlines()]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("complete", {"sketch": {"strokes": CORNER}, "class": "cat", "count": 3, "seed": 4}),
        ("draw", {"class": "fish", "count": 2, "seed": 4}),
    ],
)
def test_stream_sends_the_points_as_drawn_then_the_result(
    url: str, operation: str, body: dict
) -> None:
    events = read_stream(url, f"/api/{operation}/stream", body)
    assert events[0] == {
        "type": "start",
        "operation": operation,
        "labels": [body["class"]] * body["count"],
    }
    assert events[-1]["type"] == "done"
    assert {e["type"] for e in events[1:-1]} <= {"points"}
    sketches = events[-1]["sketches"]
    assert sketches == ok(url, f"/api/{operation}", body)["sketches"]
    for row, sketch in enumerate(sketches):
        streamed = [p[1:] for e in events[1:-1] for p in e["points"] if p[0] == row]
        drawn = points(sketch)[sketch["prefix_points"] :]
        assert np.allclose(np.asarray(streamed).reshape(-1, 3)[:, :2], drawn, atol=0.02)
        # The pen flags cut the streamed points into the result's strokes.
        ends = [i for i, p in enumerate(streamed) if p[2] == 1]
        assert len(ends) >= len(sketch["strokes"]) - (3 if operation == "complete" else 1)


def test_render_gives_svg_and_png(url: str) -> None:
    body = {"sketch": {"strokes": CORNER}, "highlight_from": 3}
    status, headers, svg = call(url, "/api/render", body)
    assert status == 200 and headers["content-type"] == "image/svg+xml"
    assert svg.startswith(b"<svg") and b"#d62728" in svg
    assert 'filename="sketch.svg"' in headers["content-disposition"]
    status, headers, png = call(url, "/api/render", {**body, "format": "png", "size": 64})
    assert status == 200 and headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png)).size == (64, 64)


# ----- limits: every bad request gets a 4xx and says why -----
def many_strokes(n: int, length: int = 2) -> list:
    return [[[i * 7.0, j * 3.0] for j in range(length)] for i in range(n)]


# Out of range or malformed: (route, body, a fragment of the 422's detail); each goes to the
# route's stream too (but /api/render's, which has none).
BAD_BODIES: list[tuple[str, object, str]] = [
    ("/api/draw", {"class": "cat", "count": 0}, "count"),
    ("/api/draw", {"class": "cat", "count": 9}, "count"),
    ("/api/draw", {"class": "cat", "temperature": 0}, "temperature"),
    ("/api/draw", {"class": "cat", "temperature": 2.5}, "temperature"),
    ("/api/draw", {"class": "cat", "seed": -1}, "seed"),
    ("/api/draw", {"class": "cat", "seed": 2**40}, "seed"),
    ("/api/draw", {"class": "kat"}, "did you mean cat"),
    ("/api/draw", {"count": 1}, "class"),
    ("/api/draw", {"class": "cat", "colour": "red"}, "colour"),
    ("/api/draw", {"class": "x" * 65}, "class"),
    ("/api/draw", ["cat"], "body"),
    ("/api/complete", {"sketch": [], "class": "cat"}, "strokes"),
    ("/api/complete", {"sketch": [[]], "class": "cat"}, "strokes"),
    ("/api/complete", {"sketch": [[[1, 2, 3]]], "class": "cat"}, "strokes"),
    ("/api/complete", {"sketch": [[["a", 2]]], "class": "cat"}, "strokes"),
    ("/api/complete", {"sketch": [[[1e7, 2]]], "class": "cat"}, "strokes"),
    ("/api/complete", {"sketch": {}, "class": "cat"}, "exactly one"),
    (
        "/api/complete",
        {"sketch": {"strokes": CORNER, "stroke3": [[1, 1, 1]]}, "class": "cat"},
        "exactly one",
    ),
    ("/api/complete", {"sketch": {"stroke3": [[1, 1, 2]]}, "class": "cat"}, "stroke3"),
    ("/api/complete", {"sketch": many_strokes(201), "class": "cat"}, "200"),
    ("/api/complete", {"sketch": many_strokes(50, 101), "class": "cat"}, "5000"),
    ("/api/complete", {"sketch": [[[0, 0], [5000, 0]] * 100], "class": "cat"}, "too much ink"),
    ("/api/complete", {"sketch": many_strokes(150), "class": "cat"}, "at most 220"),
    ("/api/translate", {"sketch": CORNER, "classes": []}, "classes"),
    ("/api/translate", {"sketch": CORNER, "classes": ["cat"] * 21}, "classes"),
    ("/api/translate", {"sketch": CORNER, "classes": ["cat", "dog"]}, "dog"),
    ("/api/translate", {"sketch": CORNER, "class_pull": 1.5}, "class_pull"),
    ("/api/translate", {"sketch": CORNER, "class_pull": "0.5"}, "class_pull"),
    ("/api/reconstruct", {"sketches": [CORNER] * 21, "class": "cat"}, "sketches"),
    ("/api/reconstruct", {"sketches": [], "class": "cat"}, "sketches"),
    ("/api/heal", {"sketch": [], "class": "cat"}, "strokes"),
    ("/api/heal", {"sketch": CORNER, "class": "kat"}, "did you mean cat"),
    ("/api/heal", {"sketch": CORNER}, "class"),
    ("/api/heal", {"sketch": CORNER, "class": "cat", "count": 0}, "count"),
    ("/api/heal", {"sketch": CORNER, "class": "cat", "count": 9}, "count"),
    ("/api/heal", {"sketch": CORNER, "class": "cat", "simplify": 1}, "simplify"),
    ("/api/render", {"sketch": CORNER, "size": 16}, "size"),
    ("/api/render", {"sketch": CORNER, "size": 4096}, "size"),
    ("/api/render", {"sketch": CORNER, "format": "gif"}, "format"),
    ("/api/render", {"sketch": CORNER, "highlight_from": -1}, "highlight_from"),
]


@pytest.mark.parametrize(("path", "body", "says"), BAD_BODIES)
def test_out_of_range_or_malformed_requests_are_refused_clearly(
    url: str, path: str, body: object, says: str
) -> None:
    status, detail = refused(url, path, body)
    assert status == 422
    assert says in detail
    if path != "/api/render":  # the same checks guard the streams, before any line is sent
        assert refused(url, f"{path}/stream", body) == (status, detail)


# Bodies that are not JSON, or not the JSON the API reads (to /api/complete: a 400 or a 422).
MALFORMED_JSON = [
    b"{",
    b"",
    b"\xff\xfe",
    b'{"sketch": [[[NaN, 1], [2, 2]]], "class": "cat"}',
    b'{"sketch": [[[1e400, 1], [2, 2]]], "class": "cat"}',
    b"[" * 100_000,
]


@pytest.mark.parametrize("raw", MALFORMED_JSON)
def test_malformed_json_is_refused(url: str, raw: bytes) -> None:
    status, detail = refused(url, "/api/complete", raw=raw)
    assert status in (400, 422) and detail


# Python's json writes NaN and Infinity: (route, body with %s for one of them, the field).
NON_FINITE_VALUES = ["NaN", "Infinity", "-Infinity"]
NON_FINITE = [
    ("/api/draw", '{"class": "cat", "temperature": %s}', "temperature"),
    ("/api/complete", '{"sketch": [[[1, 2]]], "class": "cat", "temperature": %s}', "temperature"),
    ("/api/translate", '{"sketch": [[[1, 2]]], "class_pull": %s}', "class_pull"),
    ("/api/reconstruct", '{"sketches": [[[[1, 2]]]], "temperature": %s}', "temperature"),
    ("/api/heal", '{"sketch": [[[1, 2]]], "class": "cat", "temperature": %s}', "temperature"),
]


@pytest.mark.parametrize("value", NON_FINITE_VALUES)
@pytest.mark.parametrize(("path", "body", "field"), NON_FINITE)
def test_a_bounded_number_that_is_nan_or_infinite_is_refused_as_such(
    url: str, path: str, body: str, field: str, value: str
) -> None:
    """Python's json writes NaN and Infinity, and the server's reads them: they are not numbers
    out of range."""
    status, detail = refused(url, path, raw=(body % value).encode())
    assert status == 422 and detail == f"body.{field}: Input should be a finite number"


def test_a_body_that_is_not_json_gets_415(url: str) -> None:
    conn = connect(url)
    try:
        conn.request("POST", "/api/draw", '{"class": "cat"}', {"Content-Type": "text/plain"})
        response = conn.getresponse()
        assert response.status == 415 and b"application/json" in response.read()
    finally:
        conn.close()


def test_unknown_paths_and_methods(url: str) -> None:
    assert call(url, "/api/nothing")[0] == 404
    assert call(url, "/api/draw")[0] == 405
    assert call(url, "/static/../app.py")[0] == 404


def raw_exchange(url: str, request: bytes) -> bytes:
    """Send bytes as they are and read the answer (the server may answer before the body ends)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after refusing
            answer += chunk
        return answer


def test_a_body_over_the_limit_is_refused_without_being_kept(url: str) -> None:
    head = b"POST /api/draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    # A declared length over the limit is refused without waiting for a body that never comes
    # (the server lingers at most LINGER_S for it).
    answer = raw_exchange(url, head + b"Content-Length: 1000001\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413") and b"too large" in answer
    # A client that sends such a body whole still reads the answer: the server drops what is
    # still coming instead of closing on it (which resets the connection, answer and all).
    for _ in range(5):
        answer = raw_exchange(url, head + b"Content-Length: 2000000\r\n\r\n" + b" " * 2_000_000)
        assert answer.startswith(b"HTTP/1.1 413") and b"too large" in answer
    # Without a declared length, the body is counted as it arrives.
    chunk = b"x" * 1_000_001
    chunked = b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    assert raw_exchange(url, head + chunked).startswith(b"HTTP/1.1 413")


def test_a_body_that_never_arrives_gets_408(sketcher: Sketcher) -> None:
    app = create_app(sketcher, ServerLimits(body_timeout_s=0.3))
    with running(app) as base:
        answer = raw_exchange(
            base,
            b"POST /api/draw HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"class"',
        )
    assert answer.startswith(b"HTTP/1.1 408")


def test_busy_server_answers_503_and_frees_slots_of_gone_clients(sketcher: Sketcher) -> None:
    with running(create_app(sketcher, ServerLimits(max_jobs=1))) as base:
        conn = connect(base)
        body = {"class": "dragon", "count": 8, "temperature": 1.0, "seed": 0}
        conn.request(
            "POST", "/api/draw/stream", json.dumps(body), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        assert json.loads(response.readline())["type"] == "start"
        # The slot is taken, but the server still answers everything else.
        status, headers, content = call(base, "/api/draw", {"class": "cat"})
        assert status == 503 and headers["retry-after"] == "1"
        assert "busy" in json.loads(content)["detail"]
        assert ok(base, "/api/model")["classes"]
        assert ok(base, "/api/health")["jobs"] == 1
        conn.close()  # the client goes away mid-drawing
        deadline = time.monotonic() + 30
        while ok(base, "/api/health")["jobs"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ok(base, "/api/health")["jobs"] == 0
        assert len(ok(base, "/api/draw", {"class": "cat", "seed": 1})["sketches"]) == 1


# Numbers (and a flag) as strings, or a size as a float: refused, not converted (a 422).
STRING_NUMBERS = [
    ("/api/draw", {"class": "cat", "count": "4"}),
    ("/api/draw", {"class": "cat", "seed": "7"}),
    ("/api/draw", {"class": "cat", "temperature": "0.4"}),
    ("/api/complete", {"sketch": CORNER, "class": "cat", "simplify": "yes"}),
    ("/api/render", {"sketch": CORNER, "size": 128.0}),
]


@pytest.mark.parametrize(("path", "body"), STRING_NUMBERS)
def test_numbers_sent_as_strings_are_refused(url: str, path: str, body: dict) -> None:
    status, message = refused(url, path, body)
    assert status == 422, message


@pytest.mark.parametrize("mark", BYTE_ORDER_MARKS)
def test_a_body_with_a_byte_order_mark_is_refused(url: str, mark: bytes) -> None:
    status, detail = refused(url, "/api/draw", raw=mark + b'{"class": "cat"}')
    assert status == 400 and "byte-order mark" in detail


def test_the_pages_pull_slider_starts_at_the_default_pull() -> None:
    from aisketcher.latents import TRANSLATE_PULL
    from aisketcher.server.app import _static_dir

    html = (_static_dir() / "index.html").read_text(encoding="utf-8")
    slider = re.search(r'<input id="pull"[^>]*value="([^"]+)"', html)
    shown = re.search(r'<output id="pull-value">([^<]+)</output>', html)
    assert slider and shown
    assert float(slider.group(1)) == float(shown.group(1)) == TRANSLATE_PULL


SQUARE3 = [[10, 10, 0], [50, 0, 0], [0, 50, 0], [-50, 0, 0], [0, -50, 1]]


def test_interpolate_walks_from_one_sketch_to_the_other_as_the_python_api(
    url: str, sketcher: Sketcher
) -> None:
    body = {"a": {"strokes": CORNER}, "b": {"stroke3": SQUARE3}, "classes": ["cat", "map"]}
    body |= {"steps": 4, "seed": 3, "simplify": False}
    answer = ok(url, "/api/interpolate", body)
    assert [s["label"] for s in answer["sketches"]] == ["cat", "cat", "map", "map"]
    a = [np.asarray(s, dtype=np.float64) for s in CORNER]
    b = np.asarray(SQUARE3, dtype=np.float64)
    expected = sketcher.interpolate(a, b, 4, classes=("cat", "map"), seed=3)
    for got, want in zip(answer["sketches"], expected, strict=True):
        assert len(got["stroke3"]) == len(want)
        assert np.allclose(np.asarray(got["stroke3"])[:, :2], want.stroke3[:, :2], atol=0.01)
    events = read_stream(url, "/api/interpolate/stream", body)
    assert events[0] == {
        "type": "start",
        "operation": "interpolate",
        "labels": ["cat"] * 2 + ["map"] * 2,
    }
    assert events[-1] == {"type": "done", "sketches": answer["sketches"]}


INTERPOLATE_BODY = {"a": {"strokes": CORNER}, "b": {"strokes": CORNER}, "classes": ["cat", "pig"]}
# Changes to a good interpolation request that make it out of range, and what the refusal names.
INTERPOLATE_OUT_OF_RANGE = [
    ({"steps": 21}, "steps"),
    ({"steps": 0}, "steps"),
    ({"classes": ["cat"]}, "classes"),
    ({"temperature": 3}, "temperature"),
    ({"b": None}, "b"),
]


@pytest.mark.parametrize(("change", "says"), INTERPOLATE_OUT_OF_RANGE)
def test_interpolate_requests_out_of_range_are_refused(url: str, change: dict, says: str) -> None:
    status, detail = refused(url, "/api/interpolate", {**INTERPOLATE_BODY, **change})
    assert status == 422 and says in detail


def test_interpolate_asks_for_the_classes_of_unlabelled_sketches(url: str) -> None:
    body = {"a": {"strokes": CORNER}, "b": {"stroke3": SQUARE3, "label": "map"}}
    assert "give both classes" in refused(url, "/api/interpolate", body)[1]
    body["a"]["label"] = "eye"
    answer = ok(url, "/api/interpolate", {**body, "steps": 3})
    assert [s["label"] for s in answer["sketches"]] == ["eye", "map", "map"]


# A square with most of its right side rubbed out: what /api/heal takes.
RUBBED = [[[100, 100], [200, 100]], [[100, 100], [100, 200], [200, 200]], [[200, 180], [200, 200]]]


def test_heal_redraws_a_rubbed_sketch_as_the_python_api(url: str, sketcher: Sketcher) -> None:
    rubbed3 = strokes_to_stroke3(RUBBED)
    body = {"sketch": {"stroke3": rubbed3.tolist()}, "class": "cat", "count": 2, "seed": 3}
    answer = ok(url, "/api/heal", {**body, "simplify": False})
    assert [s["label"] for s in answer["sketches"]] == ["cat", "cat"]
    expected = sketcher.heal(rubbed3, "cat", 2, seed=3)
    for got, want in zip(answer["sketches"], expected, strict=True):
        assert got["prefix_points"] == 0  # the model's own drawing, whole
        assert len(got["stroke3"]) == len(want)
        assert np.allclose(np.asarray(got["stroke3"])[:, :2], want.stroke3[:, :2], atol=0.01)
    events = read_stream(url, "/api/heal/stream", {**body, "simplify": False})
    assert events[0] == {"type": "start", "operation": "heal", "labels": ["cat", "cat"]}
    assert events[-1] == {"type": "done", "sketches": answer["sketches"]}


def test_healed_drawings_lie_where_the_user_drew(url: str) -> None:
    """The healed drawings leave in the rubbed sketch's frame: the same drawing moved and
    enlarged on the canvas gives the same drawings, moved and enlarged alike."""
    body = {"sketch": RUBBED, "class": "cat", "count": 2, "seed": 5}
    here = ok(url, "/api/heal", body)["sketches"]
    assert ok(url, "/api/heal", body)["sketches"] == here  # a seed repeats a healing exactly
    there = [[[2 * x + 1000, 2 * y + 500] for x, y in stroke] for stroke in RUBBED]
    moved = ok(url, "/api/heal", {**body, "sketch": there})["sketches"]
    for a, b in zip(here, moved, strict=True):
        assert np.allclose(points(a) * 2 + [1000, 500], points(b), atol=0.05)


def test_a_decoder_only_model_cannot_heal(
    sketcher: Sketcher, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Google's models, named in a request, are refused in one line, as for translate."""
    from aisketcher.google_models import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    app = create_app(sketcher, models_url=str(data_dir.parent / "models" / "magenta-js"))
    body = {"sketch": RUBBED, "class": "bird", "model": "google:bird"}
    with running(app) as base:
        for path in ("/api/heal", "/api/heal/stream"):
            status, detail = refused(base, path, body)
            assert status == 422 and "\n" not in detail
            assert detail.startswith("google:bird: this model has no encoder"), detail
