"""Download official Quick, Draw! files, one per class, resumably and atomically.

A file is written to `<name>.part` and renamed only once its size matches what the server announced
(and, where the caller asks, once its content passes a check), so a file with the final name is
always complete; an interrupted `.part` is resumed with an HTTP Range request on the next attempt or
the next run. A file over a caller's size bound or failing its check is refused and its `.part`
removed: nothing of it is kept. A transfer that stalls (less than `_STALL_BYTES` in `_STALL_S`, a
server trickling forever) ends as a failed attempt, and a caller may bound the whole download's
time: no download runs forever.
"""

from __future__ import annotations

import http.client
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote

from tqdm import tqdm

from aisketcher.data.categories import QUICKDRAW_CLASSES
from aisketcher.errors import SketchDataError
from aisketcher.model_info import did_you_mean

DEFAULT_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset"

# fmt -> (folder in Google's bucket, file extension).
FORMATS: dict[str, tuple[str, str]] = {
    "sketchrnn": ("sketchrnn", ".npz"),
    "simplified": ("full/simplified", ".ndjson"),
    "raw": ("full/raw", ".ndjson"),
}

_CHUNK = 1 << 16
_TIMEOUT_S = 60.0  # for the connection and each read
# An attempt that receives less than this in this long has stalled: a dead link, or a server
# trickling a byte at a time (each read within _TIMEOUT_S, the whole never ending).
_STALL_BYTES = 64 * 1024
_STALL_S = 60.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
# Lower case, underscores as spaces -> official spelling, so `paint_can` and `the mona lisa` work.
_BY_KEY = {name.lower(): name for name in QUICKDRAW_CLASSES}

# Errors worth another attempt: the network or the server failed, not the request.
_TRANSIENT = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


class _IncompleteDownload(Exception):
    """The transfer ended before the announced size, or stalled; the `.part` file is kept for
    resuming."""


class DownloadRefused(SketchDataError):
    """The file arrived, or began to, but is not one to keep (too large, or failed its check)."""


def resolve_class(name: str) -> str:
    """The official spelling of a class name, or SketchDataError suggesting the nearest names."""
    found = _BY_KEY.get(name.strip().replace("_", " ").lower())
    if found is not None:
        return found
    raise SketchDataError(
        f"unknown Quick, Draw! class {name!r}" + did_you_mean(name, QUICKDRAW_CLASSES, quoted=True)
    )


def class_url(name: str, fmt: str, base_url: str = DEFAULT_BASE_URL) -> str:
    """The file's URL; Google's bucket keeps the spaces of class names (quoted as %20)."""
    folder, ext = _format(fmt)
    return f"{base_url.rstrip('/')}/{folder}/{quote(name)}{ext}"


def local_filename(name: str, fmt: str) -> str:
    """The name written on disk, as in the shared data layout.

    Sketch-rnn files get underscores (`paint_can.npz`); ndjson files keep Google's spaces.
    """
    _, ext = _format(fmt)
    stem = name.replace(" ", "_") if fmt == "sketchrnn" else name
    return stem + ext


def download_classes(
    classes: Iterable[str],
    fmt: str,
    dest: str | Path,
    *,
    base_url: str = DEFAULT_BASE_URL,
    retries: int = 3,
    progress: bool = True,
    backoff_s: float = 1.0,
) -> list[Path]:
    """Download one `fmt` file (sketchrnn, simplified or raw) per class into `dest`.

    Every class name is checked before anything is fetched; files already complete are skipped.
    A network failure is retried `retries` times, waiting `backoff_s`, then twice that, and so on.
    Returns the local paths in the order of `classes`.
    """
    _format(fmt)
    if retries < 0:
        raise SketchDataError(f"retries must be >= 0, got {retries}")
    names = [resolve_class(c) for c in classes]
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SketchDataError("is a file, not a folder to download into", str(dest)) from None
    except OSError as exc:
        raise SketchDataError(
            f"cannot download into it: {exc.strerror or exc}", str(dest)
        ) from None
    paths = []
    for name in names:
        path = dest / local_filename(name, fmt)
        if not path.exists():
            download_file(
                class_url(name, fmt, base_url),
                path,
                retries=retries,
                progress=progress,
                backoff_s=backoff_s,
            )
        paths.append(path)
    return paths


def download_file(
    url: str,
    path: Path,
    *,
    retries: int = 3,
    progress: bool = True,
    backoff_s: float = 1.0,
    max_bytes: int | None = None,
    max_seconds: float | None = None,
    check: Callable[[Path], object] | None = None,
) -> None:
    """Fetch `url` into `path` through `path.part`, resuming and retrying; see the module doc.

    `max_bytes`: a larger file is refused as soon as the server announces it or the bytes pass the
    bound. `max_seconds`: the whole download, every attempt, ends by then (what arrived is kept
    as the `.part` for a later resume). `check`: called on the complete `.part` before the
    rename; a SketchDataError from it refuses the file. A refusal is a DownloadRefused, never
    retried.
    """
    part = path.with_name(path.name + ".part")
    deadline = math.inf if max_seconds is None else time.monotonic() + max_seconds
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, progress, max_bytes, deadline)
        except urllib.error.HTTPError as exc:
            exc.close()
            reason = " ".join(str(exc.reason).split())  # urllib's own can run over lines
            if exc.code == 404:
                raise SketchDataError(f"not found (HTTP 404): {url}") from None
            if 300 <= exc.code < 400:  # a redirect urllib would not follow: a loop, or elsewhere
                raise SketchDataError(
                    f"redirect not followed (HTTP {exc.code}: {reason})", url
                ) from None
            if exc.code == 416:
                # The .part does not fit the file on the server (it changed?): start over.
                part.unlink(missing_ok=True)
                error: Exception = exc
            elif exc.code == 429 or exc.code >= 500:
                error = exc
            else:
                raise SketchDataError(f"HTTP {exc.code} {reason}: {url}") from None
        except (*_TRANSIENT, _IncompleteDownload) as exc:
            error = exc
        except OSError as exc:  # writing it: a full disk, a folder in the way
            raise SketchDataError(
                f"cannot write {part.name}: {exc.strerror or exc}", str(path.parent)
            ) from None
        except _TooLong:
            raise SketchDataError(
                f"download not finished within {max_seconds:g} s (what arrived is kept in "
                f"{part.name} and resumed next time)",
                url,
            ) from None
        else:
            if check is not None:
                try:
                    check(part)
                except SketchDataError as exc:
                    part.unlink()
                    raise DownloadRefused(f"refused, nothing kept: {exc.problem}", url) from None
            part.replace(path)
            return
        if attempt < retries:
            time.sleep(min(backoff_s * 2**attempt, max(deadline - time.monotonic(), 0)))
    raise SketchDataError(f"download failed after {retries + 1} attempts ({error}): {url}")


def _format(fmt: str) -> tuple[str, str]:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise SketchDataError(
            f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}"
        ) from None


class _TooLong(Exception):
    """The caller's time for the whole download ran out."""


def _fetch(
    url: str, part: Path, progress: bool, max_bytes: int | None, deadline: float = math.inf
) -> None:
    """One attempt: extend `part` from where it stops (or rewrite it) up to the announced size."""
    limit = math.inf if max_bytes is None else max_bytes
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    if time.monotonic() >= deadline:
        raise _TooLong
    timeout = min(_TIMEOUT_S, max(deadline - time.monotonic(), 0.001))
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status == 206:
            total = _resumed_size(response, offset, part)
        else:
            offset = 0  # the server ignored Range (or none was sent) and sends the whole file
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        if total is not None and total > limit:
            _refuse_size(part, url, limit)
        with (
            open(part, "ab" if offset else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            window, received = time.monotonic(), 0
            # read1: what has arrived, at once (read waits for a whole chunk, or for ever)
            while chunk := response.read1(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
                if out.tell() > limit:  # a server that announced no size, or a wrong one
                    break
                now, received = time.monotonic(), received + len(chunk)
                if now >= deadline:
                    raise _TooLong
                if now - window >= _STALL_S:
                    if received < _STALL_BYTES:
                        raise _IncompleteDownload(
                            f"stalled: {received} bytes in the last {now - window:.1f} s"
                        )
                    window, received = now, 0
    size = part.stat().st_size
    if size > limit:
        _refuse_size(part, url, limit)
    if total is not None and size != total:
        raise _IncompleteDownload(f"received {size} of {total} bytes")


def _refuse_size(part: Path, url: str, limit: float) -> None:
    part.unlink(missing_ok=True)
    raise DownloadRefused(f"refused, nothing kept: larger than {limit:,.0f} bytes", url)


def _resumed_size(response: http.client.HTTPResponse, offset: int, part: Path) -> int | None:
    """The complete file's size from a 206's Content-Range, which must start at `offset`."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match is None or int(match[1]) != offset:
        # Bytes from elsewhere cannot be appended: drop the .part so the next attempt starts over.
        part.unlink()
        raise _IncompleteDownload(f"unusable Content-Range for a resume at byte {offset}")
    if match[3] != "*":
        return int(match[3])
    return int(match[2]) + 1
