"""The sketch store: class files packed into memory maps, read back exactly, checked every time it
is opened (stale, truncated, edited, another version: packed again, never read), written
atomically, and the dataset built on it equal to the sketches of the files themselves."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aisketcher.cli import main
from aisketcher.data.dataset import StoredSketches, load_dataset
from aisketcher.data.stats import normalizing_scale_factor
from aisketcher.data.store import PackedSplit, open_class, pack_dir
from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import SPLITS, read_npz, write_npz
from aisketcher.strokes import MAX_OFFSET


@pytest.fixture
def cat(tmp_path: Path, quickdraw_dir: Path) -> Path:
    """A copy of a real class file that a test may change."""
    path = tmp_path / "data" / "cat.npz"
    path.parent.mkdir()
    shutil.copy(quickdraw_dir / "cat.npz", path)
    return path


def stored(part: PackedSplit, i: int) -> np.ndarray:
    """Sketch i of a pack, as its reader reads it."""
    return part.read(part.offsets[i : i + 1], part.offsets[i + 1 : i + 2])


def test_a_pack_reads_back_every_sketch_of_its_file(cat: Path, tmp_path: Path) -> None:
    packed = open_class(cat, store=tmp_path / "store")
    expected = read_npz(cat)
    for split in SPLITS:
        assert len(packed[split]) == len(expected[split])
        for i, sketch in enumerate(expected[split]):
            assert np.array_equal(stored(packed[split], i), sketch)
    assert packed["train"].dtype == np.int16  # the official files' offsets are whole


def test_the_dataset_on_the_store_is_the_files_sketches_normalised(quickdraw_dir: Path) -> None:
    """Expected values from the files through the plain reader and magenta's recipe (clamp to
    +-1000, drop sketches over max_seq_len, divide by the std of the training offsets)."""
    names = ["cat", "bicycle", "eye"]
    data = load_dataset(names, quickdraw_dir, max_seq_len=60)
    raw = {s: [read_npz(quickdraw_dir / f"{n}.npz")[s] for n in names] for s in SPLITS}

    def kept(sketches: list[np.ndarray]) -> list[np.ndarray]:
        return [np.clip(s, -MAX_OFFSET, MAX_OFFSET) for s in sketches if len(s) <= 60]

    scale = normalizing_scale_factor([s for part in raw["train"] for s in kept(part)])
    assert data.scale_factor == pytest.approx(scale, rel=1e-12)
    for split in SPLITS:
        expected = [(s, k) for k, part in enumerate(raw[split]) for s in kept(part)]
        got = data[split]
        assert isinstance(got.sketches, StoredSketches)  # read on demand, not held in memory
        assert len(got) == len(expected)
        assert np.array_equal(got.labels, [k for _, k in expected])
        assert np.array_equal(got.lengths(), [len(s) for s, _ in expected])
        picks = np.random.default_rng(0).choice(len(got), 50, replace=False)
        for i, sketch in zip(picks, got.take(picks), strict=True):
            want = expected[i][0].copy()
            want[:, :2] /= np.float32(data.scale_factor)
            assert np.allclose(sketch, want, rtol=1e-6, atol=0)
            assert np.array_equal(sketch, got.sketches[i])


def test_a_per_class_sample_is_seeded_and_bounded(quickdraw_dir: Path) -> None:
    train = load_dataset(["cat", "eye"], quickdraw_dir)["train"]
    a, b = train.sample_per_class(50, seed=3), train.sample_per_class(50, seed=3)
    assert np.bincount(a.labels).tolist() == [50, 50]
    assert [s.tobytes() for s in a.take(np.arange(100))] == [
        s.tobytes() for s in b.take(np.arange(100))
    ]
    assert train.sample_per_class(10**6) is train  # no class has more: the split itself


def damage(target: Path, how: str) -> None:
    """Damage a pack as `how` (a key of DAMAGE) says."""
    points = target / "train.points.npy"
    if how == "truncated":
        points.write_bytes(points.read_bytes()[:-100])
    elif how == "edited":
        data = bytearray(points.read_bytes())
        data[-7] ^= 0x5A  # a byte of the last sketch's offsets, same size
        points.write_bytes(bytes(data))
    elif how == "record":
        (target / "meta.json").write_text("{not json")
    elif how == "version":
        meta = json.loads((target / "meta.json").read_text())
        meta["version"] = 99
        (target / "meta.json").write_text(json.dumps(meta))
    elif how in ("offsets", "range"):
        offsets = np.load(target / "train.offsets.npy")
        if how == "offsets":
            offsets[5], offsets[6] = offsets[6], offsets[5]
        else:
            offsets[-1] += 10**9  # past the end of the points
        np.save(target / "train.offsets.npy", offsets)
        meta = json.loads((target / "meta.json").read_text())
        from aisketcher.data.store import _crc32

        meta["splits"]["train"]["crc32_offsets"] = _crc32(offsets)  # a consistent but bad record
        (target / "meta.json").write_text(json.dumps(meta))


# Damage done to a pack (see damage), and what the warning that repacks it says.
DAMAGE = {
    "truncated": "truncated",
    "edited": "checksum",
    "record": "unreadable record",
    "version": "format 99",
    "offsets": "out of order",
    "range": "out of order or range",
}


@pytest.mark.parametrize(("how", "reason"), DAMAGE.items())
def test_a_damaged_pack_is_named_and_packed_again(
    cat: Path, tmp_path: Path, how: str, reason: str
) -> None:
    store = tmp_path / "store"
    open_class(cat, store=store)
    target = pack_dir(cat, store)
    damage(target, how)
    with pytest.warns(UserWarning, match=f"repacking {cat}: {target}.*{reason}"):
        packed = open_class(cat, store=store)
    expected = read_npz(cat, ["train"])["train"]
    assert all(np.array_equal(stored(packed["train"], i), s) for i, s in enumerate(expected))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # whole again: opened without a word
        open_class(cat, store=store)


def test_a_source_changed_after_packing_is_packed_again(cat: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert len(open_class(cat, store=store)["train"]) == 1756
    fewer = read_npz(cat)
    write_npz(cat, {s: v[:10] for s, v in fewer.items()})
    with pytest.warns(UserWarning, match="packed from an earlier state"):
        assert len(open_class(cat, store=store)["train"]) == 10


def savez(path: Path, splits: dict[str, list[np.ndarray]]) -> None:
    """As the official files are written: object arrays, uncompressed (the size follows the
    sketches' shapes, not their values)."""
    arrays = {}
    for name, sketches in splits.items():
        arrays[name] = np.empty(len(sketches), dtype=object)
        arrays[name][:] = sketches
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_a_source_rewritten_to_its_old_size_and_time_is_packed_again(
    cat: Path, tmp_path: Path
) -> None:
    """The same size and the modification time put back (`touch -r`, or a copy keeping times):
    the status-change time, which no one can set, still tells."""
    store = tmp_path / "store"
    splits = read_npz(cat)
    savez(cat, splits)
    before = cat.stat()
    first = stored(open_class(cat, store=store)["train"], 0)
    savez(cat, {s: [x * np.array([-1, 1, 1], x.dtype) for x in v] for s, v in splits.items()})
    os.utime(cat, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (cat.stat().st_size, cat.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with pytest.warns(UserWarning, match="packed from an earlier state"):
        again = stored(open_class(cat, store=store)["train"], 0)
    assert np.array_equal(again[:, 0], -first[:, 0])


@contextlib.contextmanager
def full_disk(
    owner: object, name: str, after: int = 0, error: type[Exception] = OSError
) -> Iterator[None]:
    """The writer `owner.name` fails as on a full disk once it has written `after` times (`error`:
    what the writer raises then; OSError(ENOSPC) for Python's and NumPy's own)."""
    real, calls = getattr(owner, name), []

    def failing(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) > after:
            if issubclass(error, OSError):
                raise error(errno.ENOSPC, "No space left on device")
            raise error(f"I/O error: No space left on device (os error {errno.ENOSPC})")
        return real(*args, **kwargs)

    setattr(owner, name, failing)
    try:
        yield
    finally:
        setattr(owner, name, real)


def test_an_interrupted_pack_leaves_nothing_half_written(cat: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with (
        full_disk(np, "save", after=2),
        pytest.raises(SketchDataError, match=r"cannot write the sketch store.*No space"),
    ):
        open_class(cat, store=store)
    assert [p for p in store.iterdir() if p.is_dir()] == []  # no pack, no temporary folder
    assert len(open_class(cat, store=store)["valid"]) == 220


def test_a_split_the_file_lacks_is_named(tmp_path: Path) -> None:
    path = tmp_path / "only_train.npz"
    write_npz(path, {"train": [np.array([[1, 2, 1]], dtype=np.int16)]})
    with pytest.raises(SketchDataError, match="missing key 'valid' \\(has: train\\)"):
        open_class(path, store=tmp_path / "store")


def test_data_pack_packs_and_then_keeps(cat: Path, tmp_path: Path, capsys) -> None:
    store = tmp_path / "store"
    argv = ["data", "pack", "cat", "--data", str(cat.parent), "--store", str(store)]
    assert main(argv) == 0
    assert "1 class(es), 2196 sketches" in capsys.readouterr().out
    stamp = (pack_dir(cat, store) / "meta.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (pack_dir(cat, store) / "meta.json").stat().st_mtime_ns == stamp  # kept as it was


def test_processes_starting_together_pack_a_class_once(cat: Path, tmp_path: Path) -> None:
    """As the ranks of a data-parallel run do: one packs, the others wait and read its pack."""
    store = tmp_path / "store"
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('error')\n"  # a repack would warn: none may happen
        "from aisketcher.data.store import open_class\n"
        "print(len(open_class(sys.argv[1], store=sys.argv[2])['train']))\n"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(cat), str(store)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    assert [run.communicate()[0].strip() for run in runs] == ["1756"] * 3
    assert [p.name for p in store.iterdir() if p.is_dir()] == [pack_dir(cat, store).name]
