"""The sketch store: sketch-rnn class files packed once into flat arrays on disk, read lazily.

The official `.npz` files hold 70,000 training sketches per class as pickled object arrays: loading
them as Python objects makes memory and start-up grow with the data. Each class file is packed
once into a folder of NumPy `.npy` files, read a batch at a time by positioned reads (the
operating system's page cache keeps what is read often):

    <store>/<stem>-<hash of the source path>/
        meta.json            format version, the source's identity (path, size, modification and
                             status-change times), per split
                             the count of sketches and points, the arrays' CRC-32
        <split>.points.npy   (P, 3) every sketch's stroke-3 rows one after another (int16 when
                             the file's offsets are whole numbers, as the official ones; else float32)
        <split>.offsets.npy  (n + 1,) int64: sketch i is points[offsets[i]:offsets[i + 1]]

NumPy's `.npy` over Arrow/Parquet: no new dependency, a format every tool reads (`np.load` with
mmap_mode), and a batch of 100 sketches read from them in a fraction of a millisecond. A pack is written into a temporary folder and renamed
into place, so a pack is whole or absent (an interrupted packing of many classes resumes at the
first class without one); a pack whose source changed (size, modification time, or status-change
time, which no one can set back, so a rewrite of the same size with its old modification time
restored is seen) is rebuilt; a
pack whose files do not match its record (truncated, edited, from another version) is reported
and rebuilt, never read.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from aisketcher.data.paths import user_cache_dir
from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import SPLITS, read_npz

STORE_ENV = "AISKETCHER_STORE"
# 2: the source's identity holds its status-change time (ctime_ns); a version-1 pack is repacked.
FORMAT_VERSION = 2
_CHUNK = 1 << 24  # bytes checksummed at a time: the check's memory stays flat


def default_store_dir() -> Path:
    """`$AISKETCHER_STORE`, else the user cache (the data folder may be read-only)."""
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env)
    return user_cache_dir() / "sketches"


@dataclass(frozen=True)
class PackedSplit:
    """One split of one class file: the sketches' offsets in memory (8 bytes a sketch), their
    points read from the pack's file when asked for, by positioned reads. Not a memory map: the
    pages a map has touched count in the process's resident memory, which would then grow
    toward the size of the whole store over an epoch; read pages stay in the OS's page cache."""

    path: Path  # <split>.points.npy
    data_start: int  # where its (P, 3) array's bytes begin
    dtype: np.dtype
    offsets: np.ndarray  # (n + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def read(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """The rows [starts[k], ends[k]) of every k, one after another, as (sum, 3)."""
        row = 3 * self.dtype.itemsize
        out = np.empty((int((ends - starts).sum()), 3), dtype=self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        fd = os.open(self.path, os.O_RDONLY)
        try:
            at = 0
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
                size = (b - a) * row
                if os.preadv(fd, [view[at : at + size]], self.data_start + a * row) != size:
                    raise SketchDataError(
                        "the store file is shorter than its record", str(self.path)
                    )
                at += size
        finally:
            os.close(fd)
        return out

    def chunks(self, rows: int = 1 << 20) -> Iterator[np.ndarray]:
        """Every point in order, `rows` at a time (a whole class without holding it)."""
        total = int(self.offsets[-1])
        for a in range(0, total, rows):
            yield self.read(np.array([a]), np.array([min(a + rows, total)]))


def _source_identity(source: Path) -> dict:
    stat = source.stat()
    return {
        "path": str(source.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,  # any write or utime sets it: an edit cannot hide
    }


def pack_dir(source: Path, store: Path) -> Path:
    """Where the pack of `source` lives: its stem (readable) and a hash of its full path (two
    folders may hold files of the same name)."""
    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
    return store / f"{source.stem}-{digest}"


def _crc32(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _file_crc32(path: Path, start: int) -> int:
    """The CRC-32 of a file's bytes from `start`, read a chunk at a time."""
    crc = 0
    with open(path, "rb") as fh:
        fh.seek(start)
        while chunk := fh.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _write_pack(source: Path, target: Path) -> None:
    """Pack `source` into `target` atomically: a temporary folder renamed into place."""
    data = read_npz(source, None)  # every split the file has, each sketch validated
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    tmp.mkdir(parents=True)
    try:
        meta: dict = {"version": FORMAT_VERSION, "source": _source_identity(source), "splits": {}}
        for split, sketches in data.items():
            lengths = np.array([len(s) for s in sketches], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            points = np.concatenate(sketches) if sketches else np.zeros((0, 3), dtype=np.float32)
            whole = (
                np.array_equal(points, np.round(points))
                and np.abs(points).max(initial=0) < np.iinfo(np.int16).max
            )
            points = points.astype(np.int16 if whole else np.float32)
            np.save(tmp / f"{split}.points.npy", points)
            np.save(tmp / f"{split}.offsets.npy", offsets)
            meta["splits"][split] = {
                "sketches": len(sketches),
                "points": len(points),
                "dtype": points.dtype.name,
                "crc32_points": _crc32(points),
                "crc32_offsets": _crc32(offsets),
            }
            del points, offsets
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        for path in tmp.iterdir():  # on disk before the rename makes the pack visible
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class _Unusable(Exception):
    """A pack that must not be read (stale, damaged, another version): repacked."""

    def __init__(self, problem: str, path: Path) -> None:
        super().__init__(f"{path}: {problem}")


def _array_start(path: Path, shape: tuple[int, ...], dtype: str) -> tuple[int, np.dtype]:
    """Where the data of the `.npy` file at `path` begins, once its header and size are found to
    be those of a `dtype` array of `shape` (no pickle: headers are parsed, never evaluated)."""
    try:
        with open(path, "rb") as fh:
            version = npy_format.read_magic(fh)
            header = (
                npy_format.read_array_header_1_0(fh)
                if version == (1, 0)
                else npy_format.read_array_header_2_0(fh)
            )
            start = fh.tell()
        size = path.stat().st_size
    except (OSError, ValueError) as exc:
        raise _Unusable(f"unreadable ({exc})", path) from None
    found_shape, fortran, found_dtype = header
    if found_shape != shape or found_dtype.name != dtype or fortran:
        raise _Unusable(f"holds {found_dtype.name}{found_shape}, its record {dtype}{shape}", path)
    if size != start + int(np.prod(shape)) * found_dtype.itemsize:
        raise _Unusable(f"{size} bytes, not the size its header gives (truncated?)", path)
    return start, found_dtype


def _checked(path: Path, shape: tuple[int, ...], dtype: str, crc: int) -> tuple[int, np.dtype]:
    start, found = _array_start(path, shape, dtype)
    if _file_crc32(path, start) != crc:
        raise _Unusable("does not match its checksum (edited or damaged)", path)
    return start, found


def _open_pack(
    target: Path, source: Path, splits: tuple[str, ...] | None
) -> dict[str, PackedSplit]:
    """The splits of a pack, checked against its record and its source: `_Unusable` for anything
    that does not fit, SketchDataError when the source has no such split."""
    meta_path = target / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        version, identity, records = meta["version"], meta["source"], meta["splits"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _Unusable(f"unreadable record ({exc})", meta_path) from None
    if version != FORMAT_VERSION:
        raise _Unusable(f"format {version}, this version reads {FORMAT_VERSION}", meta_path)
    if identity != _source_identity(source):
        raise _Unusable(f"packed from an earlier state of {source}", meta_path)
    if splits is None:
        splits = tuple(records)
    missing = [s for s in splits if s not in records]
    if missing:
        keys = ", ".join(records)
        raise SketchDataError(f"missing key '{missing[0]}' (has: {keys})", str(source))
    out = {}
    for split in splits:
        try:
            record = records[split]
            n, p = int(record["sketches"]), int(record["points"])
            offsets_crc, points_crc, dtype = (
                record["crc32_offsets"],
                record["crc32_points"],
                record["dtype"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _Unusable(f"unreadable record of '{split}' ({exc})", meta_path) from None
        offsets_path = target / f"{split}.offsets.npy"
        _checked(offsets_path, (n + 1,), "int64", offsets_crc)
        offsets = np.load(offsets_path, allow_pickle=False)
        points_path = target / f"{split}.points.npy"
        start, found = _checked(points_path, (p, 3), dtype, points_crc)
        if offsets[0] != 0 or offsets[-1] != p or (np.diff(offsets) <= 0).any():
            raise _Unusable("sketch offsets out of order or range", offsets_path)
        out[split] = PackedSplit(points_path, start, found, offsets)
    return out


@contextmanager
def _locked(target: Path) -> Iterator[None]:
    """One process at a time checks or packs a class: the ranks of a data-parallel run (or two
    runs) starting together pack it once, and none reads a pack another is replacing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_class(
    source: str | Path, splits: tuple[str, ...] | None = SPLITS, store: str | Path | None = None
) -> dict[str, PackedSplit]:
    """The splits (None: all the file has) of one sketch-rnn class file from its pack, packing it
    first when there is no pack, or the pack is stale or damaged (a warning says which file and
    why: nothing damaged is ever read)."""
    source = Path(source)
    target = pack_dir(source, Path(store) if store is not None else default_store_dir())
    try:
        with _locked(target):
            if target.exists():
                try:
                    return _open_pack(target, source, splits)
                except _Unusable as exc:
                    warnings.warn(f"repacking {source}: {exc}", stacklevel=2)
            _write_pack(source, target)
    except OSError as exc:
        raise SketchDataError(f"cannot write the sketch store: {exc}", str(target)) from None
    try:
        return _open_pack(target, source, splits)
    except _Unusable as exc:  # changed again while packing, or a disk that loses writes
        raise SketchDataError(f"the pack just written is unusable: {exc}", str(source)) from None


def pack_size(source: str | Path, store: str | Path | None = None) -> int:
    """Bytes the pack of `source` takes on disk (0 when there is none)."""
    target = pack_dir(Path(source), Path(store) if store is not None else default_store_dir())
    return sum(f.stat().st_size for f in target.iterdir()) if target.is_dir() else 0
