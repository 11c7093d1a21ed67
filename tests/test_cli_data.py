"""`aisketcher data ...` end to end on the real data, writing only into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aisketcher.cli import main
from aisketcher.data.stats import normalizing_scale_factor, num_strokes, split_stats
from aisketcher.formats.npz import read_npz


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _table(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:-1]}


@pytest.fixture(scope="module")
def official_cat(quickdraw_dir: Path) -> set[bytes]:
    """Every sketch of the shared cat.npz, as int16 bytes, to recognise converted drawings."""
    splits = read_npz(quickdraw_dir / "cat.npz")
    return {s.astype(np.int16).tobytes() for sketches in splits.values() for s in sketches}


def test_inspect_npz_counts_and_stats(capsys, quickdraw_dir):
    code, out, _ = _run(capsys, "data", "inspect", quickdraw_dir / "cat.npz")
    assert code == 0
    rows = _table(out)
    assert [rows[s][0] for s in ("train", "valid", "test", "all")] == ["1756", "220", "220", "2196"]
    # points: min mean median p95 max, then the same for strokes
    assert len(rows["train"]) == 11
    assert float(rows["all"][1]) <= float(rows["all"][4]) <= float(rows["all"][5])
    assert "scale factor:" in out.splitlines()[-1]


def test_inspect_ndjson(capsys, data_dir):
    path = data_dir / "quickdraw-ndjson/simplified/cat.ndjson"
    code, out, _ = _run(capsys, "data", "inspect", path)
    assert code == 0
    assert "500 drawings" in out and "word(s): cat" in out
    assert _table(out)["all"][0] == "500"


def test_inspect_an_empty_file_says_it_holds_nothing(capsys, tmp_path):
    empty = tmp_path / "empty.ndjson"
    empty.write_text("")
    code, out, _ = _run(capsys, "data", "inspect", empty)
    assert code == 0 and "0 drawings" in out and "nan" not in out
    assert out.endswith("scale factor: none (no sketches)\n")


def test_inspect_corrupt_file_exits_2_naming_it(capsys, tmp_path, quickdraw_dir):
    bad = tmp_path / "broken.npz"
    bad.write_bytes((quickdraw_dir / "cat.npz").read_bytes()[:5000])
    code, out, err = _run(capsys, "data", "inspect", bad)
    assert code == 2
    assert err.startswith("aisketcher: error: ") and str(bad) in err
    assert "Traceback" not in err and out == ""


def test_convert_round_trip(capsys, tmp_path, data_dir, official_cat):
    src = data_dir / "quickdraw-ndjson/simplified"
    out = tmp_path / "two.npz"
    code, stdout, _ = _run(
        capsys, "data", "convert", src / "cat.ndjson", src / "paint can.ndjson", "--out", out
    )
    assert code == 0 and "800 / 100 / 100" in stdout
    splits = read_npz(out)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [800, 100, 100]
    # Each class is split on its own (400/50/50 cats); the cats are the official sketches exactly.
    cats = splits["train"][:400] + splits["valid"][:50] + splits["test"][:50]
    assert len({s.astype(np.int16).tobytes() for s in cats}) == 500
    assert all(s.astype(np.int16).tobytes() in official_cat for s in cats)

    # Same seed, cat alone: the same cat split, since every input file is split on its own.
    alone = tmp_path / "alone.npz"
    _run(capsys, "data", "convert", src / "cat.ndjson", "--out", alone)
    alone_splits = read_npz(alone)
    for part, n in (("train", 400), ("valid", 50), ("test", 50)):
        assert np.array_equal(np.concatenate(alone_splits[part]), np.concatenate(splits[part][:n]))
    other = tmp_path / "other.npz"
    _run(capsys, "data", "convert", src / "cat.ndjson", "--out", other, "--split-seed", "1")
    assert not np.array_equal(read_npz(other)["test"][0], alone_splits["test"][0])


def test_convert_bad_line(capsys, tmp_path, data_dir):
    lines = (data_dir / "quickdraw-ndjson/simplified/cat.ndjson").read_text().splitlines()[:9]
    record = json.loads(lines[0])
    record["drawing"] = [[[1, 2], [3]]]
    path = tmp_path / "mixed.ndjson"
    path.write_text("\n".join([*lines[:4], json.dumps(record), *lines[4:]]) + "\n")
    out = tmp_path / "mixed.npz"
    code, _, err = _run(capsys, "data", "convert", path, "--out", out)
    assert code == 2 and f"{path}:5:" in err and not out.exists()
    code, stdout, _ = _run(capsys, "data", "convert", path, "--out", out, "--skip-bad")
    assert code == 0 and "skipped 1 bad line" in stdout
    assert sum(len(v) for v in read_npz(out).values()) == 9


def test_convert_on_a_full_disk_says_so_and_keeps_the_old_file(capsys, tmp_path, data_dir):
    from test_store import full_disk

    source = data_dir / "quickdraw-ndjson/simplified/cat.ndjson"
    out = tmp_path / "cat.npz"
    out.write_bytes(b"an earlier file")
    with full_disk(np, "savez_compressed"):
        code, _, err = _run(capsys, "data", "convert", source, "--out", out)
    assert code == 2 and err == f"aisketcher: error: {out}: cannot write: No space left on device\n"
    assert out.read_bytes() == b"an earlier file" and sorted(tmp_path.iterdir()) == [out]


def test_convert_rejects_bad_split(capsys, tmp_path, data_dir):
    src = data_dir / "quickdraw-ndjson/simplified/cat.ndjson"
    code, _, err = _run(
        capsys, "data", "convert", src, "--out", tmp_path / "x.npz", "--split", "1,1"
    )
    assert code == 2 and "--split" in err


def test_render_npz_and_ndjson(capsys, tmp_path, quickdraw_dir, data_dir):
    cat = quickdraw_dir / "cat.npz"
    svg = tmp_path / "one.svg"
    assert _run(capsys, "data", "render", cat, "--index", "3", "--out", svg)[0] == 0
    assert svg.read_text().startswith("<svg") and "<path" in svg.read_text()

    png = tmp_path / "grid.png"
    assert (
        _run(capsys, "data", "render", cat, "--split", "train", "--grid", "2", "--out", png)[0] == 0
    )
    with Image.open(png) as image:
        assert image.width == 2 * 128 and image.height > 2 * 128

    gif = tmp_path / "raw.gif"
    raw = data_dir / "quickdraw-ndjson/raw/cat.ndjson"
    assert _run(capsys, "data", "render", raw, "--index", "2", "--size", "64", "--out", gif)[0] == 0
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames > 1 and image.size == (64, 64)


def test_render_errors(capsys, tmp_path, quickdraw_dir):
    cat = quickdraw_dir / "cat.npz"
    code, _, err = _run(
        capsys, "data", "render", cat, "--index", "220", "--out", tmp_path / "a.svg"
    )
    assert code == 2 and "has 220 sketches" in err
    code, _, err = _run(capsys, "data", "render", cat, "--grid", "2", "--out", tmp_path / "a.gif")
    assert code == 2 and "one sketch" in err
    assert list(tmp_path.iterdir()) == []


def test_download_unknown_class_suggests(capsys, tmp_path):
    dest = tmp_path / "dl"
    code, _, err = _run(capsys, "data", "download", "catt", "--dest", dest)
    assert code == 2 and "did you mean 'cat'" in err
    assert not dest.exists()


@pytest.mark.parametrize("action", ["download", "inspect", "convert", "render"])
def test_help_shows_an_example(capsys, action):
    with pytest.raises(SystemExit) as info:
        main(["data", action, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"aisketcher data {action} " in out


def test_scale_factor_as_magenta(capsys, quickdraw_dir):
    train = read_npz(quickdraw_dir / "cat.npz", ["train"])["train"]
    # magenta: clamp every sketch to +-1000, then np.std of all dx and dy values together.
    values = [v for s in train for row in np.clip(s, -1000, 1000) for v in row[:2]]
    expected = float(np.std(values))
    assert normalizing_scale_factor(train) == pytest.approx(expected, rel=1e-6)  # float32 sum
    # Offsets of +-5000 count as +-1000.
    assert normalizing_scale_factor([np.array([[5000.0, -5000.0, 1.0]])]) == 1000.0

    _, out, _ = _run(capsys, "data", "inspect", quickdraw_dir / "cat.npz")
    assert f"scale factor: {expected:.4f}" in out


def test_length_and_stroke_stats():
    s = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 0], [3, 3, 0]], dtype=np.float32)
    assert num_strokes(s) == 2  # the last stroke does not lift the pen, it still counts
    stats = split_stats([s, s[:2]])
    assert stats.count == 2
    assert (stats.length.min, stats.length.mean, stats.length.max) == (2, 3, 4)
    assert stats.strokes.median == 1.5
