"""Sketch-rnn `.npz` files: hostile pickles never run, bad files fail clearly, real files load."""

from __future__ import annotations

import builtins
import codecs
import contextlib
import gc
import io
import os
import pickle
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import read_npz, write_npz

GOOD = np.array([[1, 2, 0], [3, -4, 1]], dtype=np.int16)


class _Call:
    """Pickles as a call of `func(*args)`: what a hostile file makes the loader run."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def objects(*items: object) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        arr[i] = item
    return arr


def save(path: Path, **members: np.ndarray) -> Path:
    np.savez(path, **members)
    return path


def save_with_raw_train(path: Path, payload: bytes) -> Path:
    """An `.npz` whose `train.npy` has an object-dtype header followed by `payload` as its pickle."""
    member = io.BytesIO()
    npy_format.write_array_header_1_0(
        member, {"descr": "|O", "fortran_order": False, "shape": (1,)}
    )
    member.write(payload)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.npy", member.getvalue())
        for split in ("valid", "test"):
            buf = io.BytesIO()
            np.save(buf, objects(GOOD))
            archive.writestr(f"{split}.npy", buf.getvalue())
    return path


def refused(path: Path, *fragments: str) -> SketchDataError:
    """read_npz raises a SketchDataError naming `path` and saying `fragments`, with no chained trace."""
    with pytest.raises(SketchDataError) as info:
        read_npz(path)
    err = info.value
    message = str(err)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    assert err.__cause__ is None
    assert err.__suppress_context__ or err.__context__ is None
    return err


def payloads(marker: Path) -> dict[str, _Call]:
    """Calls that each create `marker` when unpickled."""
    return {
        "os.system": _Call(os.system, f"touch '{marker}'"),
        "builtins.exec": _Call(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.open": _Call(builtins.open, str(marker), "w"),
        "numpy.save": _Call(np.save, str(marker), np.zeros(1)),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "builtins.open", "numpy.save"])
@pytest.mark.parametrize("where", ["top level", "inside an object array"])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, kind, where):
    marker = tmp_path / "marker.npy"  # np.save keeps the name as it is when it ends in .npy
    call = payloads(marker)[kind]
    path = tmp_path / "hostile.npz"
    if where == "top level":
        save_with_raw_train(path, pickle.dumps(call, protocol=2))
    else:
        save(path, train=objects(GOOD, call), valid=objects(GOOD), test=objects(GOOD))

    refused(path, "forbidden object")
    assert not marker.exists()

    # The payload is live: NumPy's own pickle loading runs it (then may fail on what it returned;
    # an open() payload leaves its file to the garbage collector, which is the point here).
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        np.load(path, allow_pickle=True, encoding="latin1")["train"]
        gc.collect()  # the payload's file object closes inside the filter
    assert marker.exists()


def test_numpy_globals_outside_the_allow_list_are_refused(tmp_path):
    # A NumPy scalar pickles through numpy._core.multiarray.scalar: harmless, but not an array.
    path = save(tmp_path / "scalar.npz", train=objects(GOOD, np.float64(1.5)))
    err = refused(path, "forbidden object", "scalar")
    assert "train" in str(err)


@pytest.mark.parametrize("encoding", ["rot13", "utf-8", "zlib_codec"])
def test_codecs_encode_only_serves_latin1(tmp_path, encoding):
    text = "x\u20ac" if encoding == "utf-8" else "abc"
    call = _Call(codecs.encode, text, encoding)
    path = save(tmp_path / "codec.npz", train=objects(GOOD, call))
    refused(path, "_codecs.encode")


def test_truncated_file(tmp_path, quickdraw_dir):
    data = (quickdraw_dir / "cat.npz").read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[: len(data) // 2])
    refused(path, "not a readable .npz")


def test_corrupt_member_with_intact_directory(tmp_path, quickdraw_dir):
    data = bytearray((quickdraw_dir / "cat.npz").read_bytes())
    with zipfile.ZipFile(quickdraw_dir / "cat.npz") as archive:
        info = archive.getinfo("test.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 1000
    for i in range(start, start + 50):
        data[i] ^= 0xFF
    path = tmp_path / "corrupt.npz"
    path.write_bytes(bytes(data))
    refused(path, "corrupt member 'test'")


def test_not_a_zip_file(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("train,valid,test\n")
    refused(path, "not a readable .npz")


def test_member_that_is_not_an_npy_array(tmp_path):
    path = tmp_path / "garbage.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for split in ("train", "valid", "test"):
            archive.writestr(f"{split}.npy", b"no magic here")
    refused(path, "not a NumPy array")


def test_missing_file():
    refused(Path("/nonexistent/sketches.npz"), "no such file")


def test_missing_key_lists_the_keys(tmp_path):
    path = save(tmp_path / "two.npz", train=objects(GOOD), valid=objects(GOOD))
    refused(path, "missing key 'test'", "has: train, valid")
    assert len(read_npz(path, ["train"])["train"]) == 1


# A bad sketch in a file's split, and a fragment of the refusal (which names file, split, index).
BAD_SKETCHES: dict[str, tuple[object, str]] = {
    "strings": (np.array([["1", "2", "0"]]), "must be numeric"),
    "shape-N-2": (np.zeros((4, 2), dtype=np.int16), "shape (N, 3)"),
    "one-dimensional": (np.zeros((4,), dtype=np.int16), "shape (N, 3)"),
    "nan": (np.array([[1.0, np.nan, 0.0]]), "NaN or infinite"),
    "inf": (np.array([[np.inf, 1.0, 1.0]]), "NaN or infinite"),
    "empty": (np.zeros((0, 3), dtype=np.int16), "empty sketch"),
    "pen-2": (np.array([[1, 2, 2]], dtype=np.int16), "pen state"),
    "complex": (np.array([[1 + 1j, 2, 1]]), "must be real"),
    "nested-objects": (objects(GOOD, GOOD), "must be numeric"),
    "list": ([[1, 2, 1]], "is a list, not an array"),
    "str": ("1,2,1", "is a str, not an array"),
}


@pytest.mark.parametrize(("bad", "fragment"), BAD_SKETCHES.values(), ids=BAD_SKETCHES.keys())
def test_bad_sketch_names_file_split_and_index(tmp_path, bad, fragment):
    path = save(tmp_path / "bad.npz", train=objects(GOOD, bad), valid=objects(), test=objects())
    message = str(refused(path, f"{path}:train", fragment))
    assert "train[1]" in message or "sketch 1 " in message


def test_member_that_is_not_a_list_of_sketches(tmp_path):
    path = save(tmp_path / "words.npz", train=np.array(["cat", "dog"]), valid=objects())
    refused(path, "expected sketches")


def test_dense_three_dimensional_member_is_accepted(tmp_path):
    dense = np.zeros((2, 4, 3), dtype=np.float32)
    dense[:, -1, 2] = 1
    path = save(tmp_path / "dense.npz", train=dense, valid=dense, test=dense)
    loaded = read_npz(path)
    assert [s.shape for s in loaded["train"]] == [(4, 3), (4, 3)]


def assert_same_as_numpy(path: Path, loaded: dict[str, list[np.ndarray]]) -> None:
    with np.load(path, allow_pickle=True, encoding="latin1") as raw:
        for split, sketches in loaded.items():
            expected = raw[split]
            assert len(sketches) == len(expected)
            for ours, theirs in zip(sketches, expected, strict=True):
                assert ours.dtype == np.float32
                assert np.array_equal(ours, theirs.astype(np.float32))


def test_real_cat_file_equals_numpy_pickle_loading(quickdraw_dir):
    path = quickdraw_dir / "cat.npz"
    loaded = read_npz(path)
    assert {k: len(v) for k, v in loaded.items()} == {"train": 1756, "valid": 220, "test": 220}
    assert_same_as_numpy(path, loaded)


# The large training splits are left out where another file already covers the same encoding,
# to keep the suite fast: every split of a file is written by the same pickler.
@pytest.mark.parametrize(
    ("relative", "counts"),
    [
        ("aaron_sheep/aaron_sheep.npz", {"train": 7400, "valid": 300, "test": 300}),
        ("omniglot/omniglot.npz", {"valid": 1000, "test": 1000}),
        ("kanji/short_kanji.npz", {"valid": 600, "test": 500}),
        ("kanji/kanji.rdp100.npz", {"valid": 600, "test": 500}),  # float64 offsets
    ],
)
def test_sketch_rnn_datasets_load(data_dir, relative, counts):
    path = data_dir / "sketch-rnn-datasets" / relative
    loaded = read_npz(path, list(counts))
    assert {split: len(sketches) for split, sketches in loaded.items()} == counts
    assert_same_as_numpy(path, loaded)


def stored_dtypes(path: Path) -> set[np.dtype]:
    # Our own file, written just now: NumPy's pickle loading is safe to use as the reference.
    with np.load(path, allow_pickle=True) as raw:
        return {s.dtype for split in raw.files for s in raw[split]}


def test_write_npz_round_trip_integral_as_int16(tmp_path, quickdraw_dir):
    cats = read_npz(quickdraw_dir / "cat.npz", ["valid", "test"])
    path = tmp_path / "out.npz"
    write_npz(path, cats)
    assert stored_dtypes(path) == {np.dtype(np.int16)}
    back = read_npz(path, ["valid", "test"])
    for split in ("valid", "test"):
        assert all(np.array_equal(a, b) for a, b in zip(back[split], cats[split], strict=True))


def test_write_npz_round_trip_fractional_as_float32(tmp_path):
    sketches = [GOOD * [0.5, 0.25, 1], GOOD * [1 / 3, 1, 1]]
    path = tmp_path / "out.npz"
    write_npz(path, {"train": sketches, "valid": sketches[:1], "test": []})
    assert stored_dtypes(path) == {np.dtype(np.float32)}
    back = read_npz(path)
    assert back["test"] == []
    for ours, original in zip(back["train"], sketches, strict=True):
        assert np.array_equal(ours, original.astype(np.float32))


def test_write_npz_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "out.npz"
    write_npz(path, {"train": [GOOD]})
    before = path.read_bytes()

    def fail_midway(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        write_npz(path, {"train": [GOOD, GOOD]})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_write_npz_refuses_what_read_npz_would_refuse(tmp_path):
    path = tmp_path / "out.npz"
    with pytest.raises(SketchDataError, match=r"train\[1\]: sketch has NaN"):
        write_npz(path, {"train": [GOOD, np.array([[np.nan, 0, 1]])]})
    assert not list(tmp_path.iterdir())


def _npz_of(path, array) -> None:
    """An .npz of `array` in every split; a (shape, dtype) pair writes only the header of such an
    array and a few bytes, as a hostile file announcing it would."""
    buffer = io.BytesIO()
    if isinstance(array, tuple):
        shape, dtype = array
        header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
        npy_format.write_array_header_1_0(buffer, header)
        buffer.write(b"\0" * 64)
    else:
        np.lib.format.write_array(buffer, array, allow_pickle=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for split in ("train", "valid", "test"):
            archive.writestr(f"{split}.npy", buffer.getvalue())


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (((1, 2**30, 3), np.int8), "points announced"),  # 3 GiB announced in a few bytes
        (np.zeros((1, 200_000, 3), np.int8), "200000 points announced"),
        (((3000, 100_000, 3), np.int8), "would take more than 2 GiB"),
    ],
)
def test_small_files_announcing_huge_arrays_are_refused_before_reading(
    tmp_path, array, message
) -> None:
    path = tmp_path / "bomb.npz"
    _npz_of(path, array)
    del array
    tracemalloc.start()
    try:
        with pytest.raises(SketchDataError, match=message):
            read_npz(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20  # nothing big was inflated or converted


def test_a_member_that_inflates_past_the_bound_is_refused_unread(tmp_path) -> None:
    path = tmp_path / "bomb.npz"
    zeros = bytes(1 << 24)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("train.npy", "w", force_zip64=True) as member,
    ):
        for _ in range(65):  # 1.02 GiB of zeros, a 1 MB file
            member.write(zeros)
    tracemalloc.start()
    try:
        with pytest.raises(SketchDataError, match="bytes, refusing"):
            read_npz(path, ["train"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_an_object_array_with_one_absurd_sketch_is_refused(tmp_path) -> None:
    sketches = np.empty(2, dtype=object)
    sketches[0] = np.zeros((10, 3), np.int16)
    sketches[1] = np.zeros((150_000, 3), np.int16)
    path = tmp_path / "long.npz"
    _npz_of(path, sketches)
    with pytest.raises(SketchDataError, match="sketch 1 has 150000 points"):
        read_npz(path)
