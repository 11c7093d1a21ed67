"""Sketch-RNN `.npz` files, loaded without ever running a pickle's code.

The official files hold pickled object arrays, and `np.load(allow_pickle=True)` would execute
whatever a hostile file's pickle asks for. Here each member is parsed by hand: numeric arrays through
NumPy's own non-pickle reader, object arrays through an unpickler that admits only the three globals a
NumPy array's pickle needs, and every sketch is then checked to be a numeric (N, 3) array.
"""

from __future__ import annotations

import io
import pickle
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from aisketcher.atomic import atomic_path
from aisketcher.errors import SketchDataError
from aisketcher.formats import require_file
from aisketcher.strokes import validate_stroke3

SPLITS = ("train", "valid", "test")

# The only globals a pickled NumPy array (also one of arrays) refers to; older files name numpy.core.
_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for `_codecs.encode`, which protocol-2 pickles use to carry raw bytes."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise pickle.UnpicklingError("forbidden use of _codecs.encode in pickle")
    return text.encode("latin1")


# Bounds checked before anything large is read, so a small hostile file (a zip bomb, a header
# announcing billions of points) cannot exhaust memory: a member's uncompressed size, what its
# sketches take once converted to float32, and the points of one sketch. The official files are
# tens of MB with sketches of at most a few thousand points.
MAX_MEMBER_BYTES = 1 << 30
MAX_FLOAT_BYTES = 2 << 30
MAX_SKETCH_POINTS = 100_000


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"forbidden object {module}.{name} in pickle")
        mod = __import__(target[0], fromlist=[target[1]])
        return getattr(mod, target[1])


def _read_header(stream: io.IOBase, source: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = npy_format.read_array_header_2_0(stream)
    except (zlib.error, zipfile.BadZipFile, EOFError):
        raise  # a damaged member, reported as such by the caller
    except Exception as exc:
        raise SketchDataError(f"not a NumPy array: {exc}", source) from None
    return shape, dtype


def _check_size(shape: tuple[int, ...], dtype: np.dtype, source: str) -> None:
    """Refuse, from the header alone, arrays whose sketches would not fit the bounds."""
    if dtype.hasobject:
        return  # an array of sketches: each is checked as it comes (`_as_sketch_list`)
    if len(shape) >= 2 and shape[1] > MAX_SKETCH_POINTS:
        raise SketchDataError(
            f"sketches of {shape[1]} points announced, more than {MAX_SKETCH_POINTS}", source
        )
    if int(np.prod(shape, dtype=np.float64)) * 4 > MAX_FLOAT_BYTES:
        raise SketchDataError(
            f"an array of shape {shape} would take more than {MAX_FLOAT_BYTES >> 30} GiB", source
        )


def _read_member(data: bytes, source: str) -> np.ndarray:
    stream = io.BytesIO(data)
    shape, dtype = _read_header(stream, source)
    if not dtype.hasobject:
        stream.seek(0)
        try:
            return npy_format.read_array(stream, allow_pickle=False)
        except Exception as exc:
            raise SketchDataError(f"unreadable array: {exc}", source) from None
    try:
        arr = _ArrayOnlyUnpickler(stream, encoding="latin1").load()
    except Exception as exc:
        raise SketchDataError(f"refused to load: {exc}", source) from None
    if not isinstance(arr, np.ndarray) or arr.shape != shape:
        raise SketchDataError("object array pickle does not match its header", source)
    return arr


def _as_sketch_list(arr: np.ndarray, source: str) -> list[np.ndarray]:
    if arr.dtype == object:
        if arr.ndim != 1:
            raise SketchDataError(
                f"expected a 1-D array of sketches, got shape {arr.shape}", source
            )
        items: Iterable = arr
    elif arr.ndim == 3:
        items = list(arr)
    else:
        raise SketchDataError(
            f"expected sketches (object array or (n, N, 3)), got shape {arr.shape}", source
        )
    out = []
    floats = 0
    for i, item in enumerate(items):
        if not isinstance(item, np.ndarray):
            raise SketchDataError(f"sketch {i} is a {type(item).__name__}, not an array", source)
        if len(item) > MAX_SKETCH_POINTS:
            raise SketchDataError(
                f"sketch {i} has {len(item)} points, more than {MAX_SKETCH_POINTS}", source
            )
        floats += item.size * 4
        if floats > MAX_FLOAT_BYTES:
            raise SketchDataError(
                f"the sketches would take more than {MAX_FLOAT_BYTES >> 30} GiB", source
            )
        out.append(validate_stroke3(item, f"{source}[{i}]"))
    return out


def read_npz(
    path: str | Path, splits: Iterable[str] | None = SPLITS
) -> dict[str, list[np.ndarray]]:
    """Read the requested splits of a sketch-rnn `.npz` as lists of float32 stroke-3 arrays
    (`splits=None`: those of train, valid and test the file has, at least one).

    Raises SketchDataError naming the file for anything that is not such a file.
    """
    path = require_file(path)
    name = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise SketchDataError("no such file", name) from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise SketchDataError(f"not a readable .npz (zip) file: {exc}", name) from None
    result: dict[str, list[np.ndarray]] = {}
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        if splits is None:
            splits = [s for s in SPLITS if f"{s}.npy" in members]
            if not splits:
                keys = sorted(m.removesuffix(".npy") for m in members)
                raise SketchDataError(
                    f"no {', '.join(SPLITS)} arrays (has: {', '.join(keys) or 'nothing'})", name
                )
        for split in splits:
            info = members.get(f"{split}.npy")
            if info is None:
                keys = sorted(m.removesuffix(".npy") for m in members)
                raise SketchDataError(f"missing key '{split}' (has: {', '.join(keys)})", name)
            if info.file_size > MAX_MEMBER_BYTES:
                raise SketchDataError(f"'{split}' is {info.file_size} bytes, refusing", name)
            try:
                with archive.open(info) as member:  # the header first: a few bytes to inflate
                    _check_size(*_read_header(member, f"{name}[{split}]"), f"{name}[{split}]")
                data = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                raise SketchDataError(f"corrupt member '{split}': {exc}", name) from None
            result[split] = _as_sketch_list(
                _read_member(data, f"{name}[{split}]"), f"{name}:{split}"
            )
    return result


# Optional members recording each sketch's class, as a drawn set of several classes needs:
# `class_names` (a unicode array) and, per split, `<split>_labels` (indices into it). Plain
# arrays, so sketch-rnn tools that read only train/valid/test are not disturbed.
CLASS_NAMES = "class_names"
MAX_CLASS_NAMES = 100_000


def _labels_member(split: str) -> str:
    return f"{split}_labels"


def write_npz(
    path: str | Path,
    splits: Mapping[str, Iterable[np.ndarray]],
    labels: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Write sketches as a sketch-rnn `.npz` (object arrays of int16 when integral, else float32),
    with the class of every sketch of the splits in `labels` when given (read back by
    `read_npz_labels`)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    counts = {}
    for split, sketches in splits.items():
        # Validated here so that nothing is written that `read_npz` would refuse.
        items = [validate_stroke3(s, f"{path}:{split}[{i}]") for i, s in enumerate(sketches)]
        integral = all(np.array_equal(s, np.round(s)) and np.abs(s).max() < 32768 for s in items)
        obj = np.empty(len(items), dtype=object)
        for i, s in enumerate(items):
            obj[i] = s.astype(np.int16 if integral else np.float32)
        arrays[split] = obj
        counts[split] = len(items)
    if labels:
        names = sorted({name for split_labels in labels.values() for name in split_labels})
        index = {name: i for i, name in enumerate(names)}
        arrays[CLASS_NAMES] = np.array(names, dtype=str)
        for split, split_labels in labels.items():
            if len(split_labels) != counts.get(split):
                raise SketchDataError(
                    f"{len(split_labels)} labels for {counts.get(split, 0)} sketches of '{split}'",
                    str(path),
                )
            arrays[_labels_member(split)] = np.array(
                [index[name] for name in split_labels], dtype=np.int32
            )
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _plain_member(archive: zipfile.ZipFile, member: str, source: str) -> np.ndarray | None:
    """A small non-object member of the archive, or None when the archive has none."""
    try:
        info = archive.getinfo(f"{member}.npy")
    except KeyError:
        return None
    if info.file_size > MAX_MEMBER_BYTES:
        raise SketchDataError(f"'{member}' is {info.file_size} bytes, refusing", source)
    try:
        with archive.open(info) as stream:
            return npy_format.read_array(stream, allow_pickle=False)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise SketchDataError(f"corrupt member '{member}': {exc}", source) from None
    except ValueError as exc:  # an object array, or a header NumPy cannot parse
        raise SketchDataError(f"unreadable member '{member}': {exc}", source) from None


def read_npz_labels(path: str | Path, split: str) -> list[str] | None:
    """The class of every sketch of `split`, when the file records them (`write_npz` with
    labels), else None. A record that does not fit the file is refused, naming it."""
    path = require_file(path)
    name = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SketchDataError(f"not a readable .npz (zip) file: {exc}", name) from None
    with archive:
        names = _plain_member(archive, CLASS_NAMES, name)
        indices = _plain_member(archive, _labels_member(split), name)
        if names is None or indices is None:
            return None
        if names.dtype.kind != "U" or names.ndim != 1 or len(names) > MAX_CLASS_NAMES:
            raise SketchDataError(f"'{CLASS_NAMES}' is not a list of class names", name)
        if indices.dtype.kind not in "iu" or indices.ndim != 1:
            raise SketchDataError(f"'{_labels_member(split)}' is not a list of indices", name)
        if len(indices) and not (indices.min() >= 0 and indices.max() < len(names)):
            raise SketchDataError(
                f"'{_labels_member(split)}' points past the {len(names)} class names", name
            )
        return [str(names[i]) for i in indices]
