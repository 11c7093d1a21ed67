"""Downloads against a local HTTP server (127.0.0.1 only) laid out like Google's bucket."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from aisketcher.data.download import (
    DownloadRefused,
    class_url,
    download_classes,
    download_file,
    local_filename,
    resolve_class,
)
from aisketcher.errors import SketchDataError


class _BucketServer(ThreadingHTTPServer):
    """Serves `root`, honours `Range: bytes=N-`, logs requests and can misbehave on purpose."""

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.log: list[tuple[str, str | None]] = []
        self.drop_first = False  # send half of each file once, then close the connection
        self.always_truncate = False  # announce the full length but never send it all
        self.ignore_range = False
        self.send_length = True  # False: no Content-Length, the end of the body is the close
        # File name -> how it is answered instead: "loop" (a redirect to itself), "trickle" (the
        # length announced, then a byte at a time, forever), "endless" (bytes without end).
        self.misbehave: dict[str, str] = {}
        self._dropped: set[str] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _BucketServer

    def do_GET(self) -> None:
        srv = self.server
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        byte_range = self.headers.get("Range")
        srv.log.append((rel, byte_range))
        how = srv.misbehave.get(Path(rel).name)
        if how is not None:
            self._misbehave(how)
            return
        file = srv.root / rel
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start = 0
        if byte_range and not srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", byte_range)[1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if srv.send_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.always_truncate or (srv.drop_first and rel not in srv._dropped):
            srv._dropped.add(rel)
            body = body[: len(body) // 2]
        self.wfile.write(body)

    def _misbehave(self, how: str) -> None:
        if how == "loop":
            self.send_response(302)
            self.send_header("Location", self.path)
            self.end_headers()
            return
        self.send_response(200)
        if how == "trickle":
            self.send_header("Content-Length", "3000000")
        self.end_headers()
        try:
            while True:  # until the client gives up
                if how == "trickle":
                    self.wfile.write(b"[")
                    self.wfile.flush()
                    time.sleep(0.01)
                else:
                    self.wfile.write(b" " * (1 << 16))
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def bucket(tmp_path: Path, data_dir: Path) -> Iterator[_BucketServer]:
    """The shared files under the paths of Google's bucket, e.g. sketchrnn/paint can.npz."""
    root = tmp_path / "bucket"
    links = {
        "sketchrnn/cat.npz": data_dir / "quickdraw" / "cat.npz",
        "sketchrnn/paint can.npz": data_dir / "quickdraw" / "paint_can.npz",
        "full/simplified/paint can.ndjson": data_dir
        / "quickdraw-ndjson/simplified/paint can.ndjson",
        "full/raw/cat.ndjson": data_dir / "quickdraw-ndjson/raw/cat.ndjson",
    }
    for rel, target in links.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(target)
    with serving(root) as server:
        yield server


@contextlib.contextmanager
def serving(root: Path) -> Iterator[_BucketServer]:
    """A `_BucketServer` of `root` on a thread, for the length of the block."""
    server = _BucketServer(root)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _get(bucket: _BucketServer, classes: list[str], fmt: str, dest: Path, **kw) -> list[Path]:
    return download_classes(
        classes, fmt, dest, base_url=bucket.base_url, progress=False, backoff_s=0.0, **kw
    )


def test_full_download_matches_source(bucket, tmp_path, data_dir):
    dest = tmp_path / "out"
    paths = _get(bucket, ["cat", "paint can"], "sketchrnn", dest)
    assert paths == [dest / "cat.npz", dest / "paint_can.npz"]
    assert paths[0].read_bytes() == (data_dir / "quickdraw/cat.npz").read_bytes()
    assert paths[1].read_bytes() == (data_dir / "quickdraw/paint_can.npz").read_bytes()
    assert [rel for rel, _ in bucket.log] == ["sketchrnn/cat.npz", "sketchrnn/paint can.npz"]
    assert not list(dest.glob("*.part"))


def test_ndjson_formats_keep_google_names(bucket, tmp_path, data_dir):
    dest = tmp_path / "out"
    (simplified,) = _get(bucket, ["paint_can"], "simplified", dest)
    (raw,) = _get(bucket, ["cat"], "raw", dest)
    assert simplified.name == "paint can.ndjson"
    src = data_dir / "quickdraw-ndjson"
    assert simplified.read_bytes() == (src / "simplified/paint can.ndjson").read_bytes()
    assert raw.read_bytes() == (src / "raw/cat.ndjson").read_bytes()


def test_complete_file_is_skipped(bucket, tmp_path):
    dest = tmp_path / "out"
    _get(bucket, ["cat"], "sketchrnn", dest)
    _get(bucket, ["cat"], "sketchrnn", dest)
    assert len(bucket.log) == 1


def test_partial_file_is_resumed_with_range(bucket, tmp_path, data_dir):
    source = (data_dir / "quickdraw/cat.npz").read_bytes()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "cat.npz.part").write_bytes(source[:100_000])
    (path,) = _get(bucket, ["cat"], "sketchrnn", dest)
    assert bucket.log == [("sketchrnn/cat.npz", "bytes=100000-")]
    assert path.read_bytes() == source
    assert not (dest / "cat.npz.part").exists()


def test_server_ignoring_range_restarts_cleanly(bucket, tmp_path, data_dir):
    source = (data_dir / "quickdraw/cat.npz").read_bytes()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "cat.npz.part").write_bytes(b"x" * 5000)
    bucket.ignore_range = True
    (path,) = _get(bucket, ["cat"], "sketchrnn", dest)
    assert path.read_bytes() == source


def test_dropped_connection_is_retried_and_resumed(bucket, tmp_path, data_dir):
    bucket.drop_first = True
    (path,) = _get(bucket, ["cat"], "sketchrnn", tmp_path / "out")
    assert path.read_bytes() == (data_dir / "quickdraw/cat.npz").read_bytes()
    size = len(path.read_bytes())
    assert bucket.log == [
        ("sketchrnn/cat.npz", None),
        ("sketchrnn/cat.npz", f"bytes={size // 2}-"),
    ]


def test_truncated_transfer_never_looks_complete(bucket, tmp_path):
    bucket.always_truncate = True
    dest = tmp_path / "out"
    with pytest.raises(SketchDataError, match="failed after 3 attempts"):
        _get(bucket, ["cat"], "sketchrnn", dest, retries=2)
    assert len(bucket.log) == 3
    assert not (dest / "cat.npz").exists()
    # What arrived stays as a .part for a later resume, never under the final name.
    assert (dest / "cat.npz.part").exists()


@pytest.mark.parametrize("send_length", [True, False])
def test_a_file_over_the_bound_or_failing_its_check_is_refused_and_not_kept(
    bucket, tmp_path, data_dir, send_length
):
    bucket.send_length = send_length
    url = f"{bucket.base_url}/sketchrnn/cat.npz"
    size = (data_dir / "quickdraw/cat.npz").stat().st_size
    with pytest.raises(DownloadRefused, match=f"larger than {size - 1:,} bytes"):
        download_file(url, tmp_path / "cat.npz", progress=False, max_bytes=size - 1)

    def refuse(part: Path) -> None:
        assert part.stat().st_size == size  # checked once complete
        raise SketchDataError("not what was wanted")

    with pytest.raises(DownloadRefused, match="refused, nothing kept: not what was wanted"):
        download_file(url, tmp_path / "cat.npz", progress=False, max_bytes=size, check=refuse)
    assert len(bucket.log) == 2  # neither was retried
    assert not list(tmp_path.glob("cat.npz*"))


def test_a_redirect_loop_is_refused_in_one_line(bucket, tmp_path):
    bucket.misbehave["cat.npz"] = "loop"
    with pytest.raises(SketchDataError) as info:
        _get(bucket, ["cat"], "sketchrnn", tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"{bucket.base_url}/sketchrnn/cat.npz: redirect not followed")
    assert "infinite loop" in message and "\n" not in message
    assert len(bucket.log) <= 11  # urllib's ten redirects, not retried
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("how", ["trickle", "endless"])
def test_a_download_that_never_ends_is_bounded(bucket, tmp_path, monkeypatch, how):
    """A server trickling a byte at a time stalls each attempt; one sending without end is cut at
    the caller's size bound; and the caller's time bounds the whole."""
    import aisketcher.data.download as download

    monkeypatch.setattr(download, "_STALL_S", 0.3)
    bucket.misbehave["cat.npz"] = how
    url = f"{bucket.base_url}/sketchrnn/cat.npz"
    started = time.monotonic()
    if how == "trickle":
        with pytest.raises(SketchDataError, match=r"failed after 2 attempts \(stalled: \d+ bytes"):
            download_file(url, tmp_path / "cat.npz", retries=1, progress=False, backoff_s=0)
        assert (tmp_path / "cat.npz.part").exists()  # kept for a resume, never as the file
        with pytest.raises(SketchDataError, match=r"not finished within 0.2 s"):
            download_file(url, tmp_path / "x.npz", progress=False, backoff_s=0, max_seconds=0.2)
    else:
        with pytest.raises(DownloadRefused, match="larger than 1,000,000 bytes"):
            download_file(url, tmp_path / "cat.npz", progress=False, max_bytes=1_000_000)
        assert not list(tmp_path.glob("cat.npz*"))
    assert time.monotonic() - started < 10
    assert not (tmp_path / "cat.npz").exists()


def test_a_destination_that_cannot_be_written_is_named_in_one_line(bucket, tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(SketchDataError, match="is a file, not a folder") as info:
        _get(bucket, ["cat"], "sketchrnn", tmp_path / "file")
    assert str(info.value).startswith(f"{tmp_path / 'file'}: ")
    (tmp_path / "out" / "cat.npz.part").mkdir(parents=True)  # a folder where the download goes
    with pytest.raises(SketchDataError, match=r"cannot write cat.npz.part: Is a directory"):
        _get(bucket, ["cat"], "sketchrnn", tmp_path / "out")


def test_missing_file_names_the_url(bucket, tmp_path):
    with pytest.raises(SketchDataError, match="404") as info:
        _get(bucket, ["dog"], "sketchrnn", tmp_path / "out")
    assert f"{bucket.base_url}/sketchrnn/dog.npz" in str(info.value)
    assert not list((tmp_path / "out").iterdir())


def test_unknown_class_suggests_nearest(bucket, tmp_path):
    with pytest.raises(SketchDataError, match="did you mean 'cat'"):
        _get(bucket, ["caat"], "sketchrnn", tmp_path / "out")
    with pytest.raises(SketchDataError, match="unknown format"):
        _get(bucket, ["cat"], "png", tmp_path / "out")
    assert bucket.log == []


def test_names_and_urls():
    assert resolve_class("The_Eiffel_Tower") == "The Eiffel Tower"
    assert resolve_class("PAINT CAN") == "paint can"
    assert (
        class_url("paint can", "sketchrnn", "http://h/b/") == "http://h/b/sketchrnn/paint%20can.npz"
    )
    assert class_url("cat", "raw") == (
        "https://storage.googleapis.com/quickdraw_dataset/full/raw/cat.ndjson"
    )
    assert local_filename("paint can", "sketchrnn") == "paint_can.npz"
