"""Google's pretrained Sketch-RNN models by name (`google:cat`), read without torch.

magenta-js and ml5.js draw with about a hundred decoder-only Sketch-RNN models that Google trained
on whole Quick, Draw! classes and keeps as `<name>.gen.json` files in a public bucket. The first use
of a name downloads its file into the user's cache (resumably and atomically, bounded in size and
time, and kept only once it reads as a well-formed magenta-js model), with its SHA-256 beside it
(`<name>.gen.json.sha256`); later uses read the cache, offline, and refuse an entry changed on disk
since. A mirror, or a local folder, holding `<name>.gen.json` can stand in for the bucket.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TypeGuard

from aisketcher.atomic import atomic_path
from aisketcher.data.download import DownloadRefused, download_file
from aisketcher.data.paths import user_cache_dir
from aisketcher.errors import SketchDataError
from aisketcher.google_model_names import GOOGLE_MODELS
from aisketcher.model.magenta_js import read_magenta_js
from aisketcher.model_info import did_you_mean, name_key

GOOGLE_PREFIX = "google:"
SUFFIX = ".gen.json"
BUCKET = "https://storage.googleapis.com/quickdraw-models/sketchRNN"
# magenta-js's README gives large_models/ as where the models are (ml5.js loads from there by
# default) and models/ as "a set of smaller models (with LSTM node size = 512 only)".
DEFAULT_MODELS_URL = f"{BUCKET}/large_models"
SMALL_MODELS_URL = f"{BUCKET}/models"
MODELS_URL_ENV = "AISKETCHER_MODELS_URL"
CACHE_ENV = "AISKETCHER_MODELS_CACHE"
# A decoder of 2048 units, four times the 512 of Google's smaller models, takes 45.5 MB in this
# format (17.1 million int16 weights in base64): a larger download is not one of these models.
MAX_MODEL_BYTES = 50_000_000
# The whole download, every attempt: 45.5 MB in 15 minutes is 50 kB/s, a slow link's pace.
MAX_MODEL_SECONDS = 900.0
# A model file is small: a failed transfer is worth two quick retries, not data download's wait.
RETRIES = 2
BACKOFF_S = 0.5

_BY_KEY = {name_key(name): name for name in GOOGLE_MODELS}


def is_google(source: object) -> TypeGuard[str]:
    """Whether a model source names one of Google's models (`google:NAME`)."""
    return isinstance(source, str) and source.startswith(GOOGLE_PREFIX)


def google_name(source: str) -> str:
    """The name in Google's list that `google:NAME` means (case, and spaces or hyphens for
    underscores, aside); an unknown name's error suggests the names a typo away."""
    name = source.removeprefix(GOOGLE_PREFIX)
    found = _BY_KEY.get(name_key(name))
    if found is None:
        raise SketchDataError(
            f"Google has no Sketch-RNN model named {name!r}"
            + (did_you_mean(name, GOOGLE_MODELS) or "; `aisketcher models` lists them")
        )
    return found


def models_url(url: str | None = None) -> str:
    """Where models are fetched from: `url`, else `$AISKETCHER_MODELS_URL`, else Google's bucket."""
    return url or os.environ.get(MODELS_URL_ENV) or DEFAULT_MODELS_URL


def model_url(name: str, url: str | None = None) -> str:
    """The file of model `name` at `url` (see `models_url`), a URL or a local folder."""
    base = models_url(url)
    if "://" not in base:  # a folder: urllib reads file:// URLs like any other
        base = Path(base).expanduser().resolve().as_uri()
    return f"{base.rstrip('/')}/{name}{SUFFIX}"


def cache_dir() -> Path:
    """`$AISKETCHER_MODELS_CACHE`, else `models` in the user's cache (~/.cache/aisketcher)."""
    return Path(os.environ.get(CACHE_ENV) or user_cache_dir() / "models")


def cached_models() -> list[str]:
    """The names of Google's models in the cache, in the list's order."""
    folder = cache_dir()
    return [name for name in GOOGLE_MODELS if (folder / f"{name}{SUFFIX}").is_file()]


def google_model(source: str, *, url: str | None = None, progress: bool = False) -> Path:
    """The cached file of `google:NAME`, downloaded from `url` (see `models_url`) on first use.

    A cached file is read again (milliseconds: docs/measurements.md) and checked against the
    SHA-256 recorded when it was downloaded, so that a damaged or changed one is reported here, in
    one line; a cached model is used whatever `url` says. (A file put in the cache by hand has no
    record: it is read, not checksummed.)
    """
    name = google_name(source)
    path = cache_dir() / f"{name}{SUFFIX}"
    if path.is_file():
        try:
            recorded = _recorded_digest(path)
            if recorded is not None and recorded != _digest(path):
                raise SketchDataError(
                    "it changed since it was downloaded: its SHA-256 is not the one in "
                    f"{_digest_path(path).name}"
                )
            read_magenta_js(path)
        except SketchDataError as exc:
            raise SketchDataError(
                f"the cached copy of {GOOGLE_PREFIX}{name} is damaged ({exc.problem}): "
                "delete it and it is downloaded again",
                str(path),
            ) from None
        return path
    _download(name, path, url, progress)
    return path


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise SketchDataError(f"cannot read: {exc.strerror or exc}") from None


def _recorded_digest(path: Path) -> str | None:
    """The SHA-256 recorded beside a cached model at its download; None for a file without one."""
    try:
        return _digest_path(path).read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SketchDataError(f"its checksum file is unreadable ({exc})") from None


def _record_digest(part: Path) -> None:
    """The download's check: a well-formed model, whose SHA-256 is then written beside the name
    it is about to take (before the rename: a cached model is never without its record)."""
    read_magenta_js(part)
    final = part.with_name(part.name.removesuffix(".part"))
    try:
        with atomic_path(_digest_path(final)) as tmp:
            tmp.write_text(_digest(part) + "\n")
    except OSError as exc:
        raise SketchDataError(f"cannot record its checksum: {exc.strerror or exc}") from None


def _download(name: str, path: Path, url: str | None, progress: bool) -> None:
    where = model_url(name, url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = "a file" if isinstance(exc, FileExistsError) else exc.strerror or exc
        raise SketchDataError(
            f"the models cache cannot be here ({problem}): point {CACHE_ENV} at a folder",
            str(path.parent),
        ) from None
    try:
        download_file(
            where,
            path,
            retries=RETRIES,
            progress=progress,
            backoff_s=BACKOFF_S,
            max_bytes=MAX_MODEL_BYTES,
            max_seconds=MAX_MODEL_SECONDS,
            check=_record_digest,  # kept only if it reads as a decoder-only magenta-js model
        )
    except DownloadRefused:
        raise
    except SketchDataError as exc:
        raise SketchDataError(
            f"{GOOGLE_PREFIX}{name} is not cached and could not be downloaded ({exc}); offline? "
            f"point {MODELS_URL_ENV} (or --models-url) at a mirror or a folder holding "
            f"{name}{SUFFIX}"
        ) from None
