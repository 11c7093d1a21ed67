"""Errors come first: a bad input file, an output that cannot be written or cannot hold what would
be drawn, a count the file cannot give, all refused before the model (torch) loads; warnings read
as one line; `--version`."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from aisketcher.cli import main
from aisketcher.formats.npz import write_npz


def refused_before_torch(argv: list[str], cwd: Path) -> str:
    """Run the CLI in a fresh interpreter; it must exit 2 without importing torch. Its stderr."""
    code = (
        "import sys\n"
        "from aisketcher.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "assert code == 2, code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stderr


# Command lines refused before the model loads (run beside the files of `inputs`).
REFUSED_FIRST: list[tuple[list[str], str]] = [
    (["complete", "--input", "missing.svg", "--class", "cat"], "missing.svg: no such file"),
    (["translate", "--input", "missing.json"], "missing.json: no such file"),
    (["interpolate", "--a", "start.json", "--b", "missing.ndjson"], "no such file"),
    (["reconstruct", "--input", "bad.json", "--class", "cat"], "bad.json: not valid JSON"),
    (["complete", "--input", "start.json", "--class", "cat", "--out", "x.gif"], "one sketch"),
    (["draw", "cat", "--out", "folder.svg/x.svg"], "is not a folder"),
    (["draw", "cat", "--out", "/proc/x.svg"], "cannot write '/proc/x.svg'"),
    (["reconstruct", "--input", "three.npz", "--count", "4"], "at most --count 3"),
    (["reconstruct", "--input", "three.npz", "--index", "3"], "holds 3 sketch(es)"),
    (["reconstruct", "--input", "three.npz"], "carry no class: give --class"),
]


def inputs(folder: Path) -> None:
    """The files REFUSED_FIRST's command lines name: a start, a broken JSON, a file where a
    folder would be, and three.npz, three sketches in its test split."""
    (folder / "start.json").write_text(json.dumps({"strokes": [[[10, 10], [60, 12]]]}))
    (folder / "bad.json").write_text("{not json")
    (folder / "folder.svg").write_text("a file, not a folder")
    sketch = np.array([[10, 10, 0], [20, 5, 1], [-5, 15, 1]], dtype=np.int16)
    write_npz(folder / "three.npz", {"test": [sketch] * 3})


@pytest.mark.parametrize(("argv", "message"), REFUSED_FIRST)
def test_bad_inputs_and_outputs_are_refused_before_the_model_loads(
    argv: list[str], message: str, tmp_path: Path
) -> None:
    inputs(tmp_path)
    assert message in refused_before_torch(argv, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.json",
        "folder.svg",
        "start.json",
        "three.npz",
    ]  # nothing written


def test_the_count_a_file_can_give_is_what_reconstruct_draws(tmp_path: Path) -> None:
    inputs(tmp_path)
    three = tmp_path / "three.npz"
    out = tmp_path / "r.npz"
    argv = ["reconstruct", "--input", str(three), "--class", "cat", "--count", "3"]
    assert main([*argv, "--out", str(out)]) == 0
    assert len(np.load(out, allow_pickle=True, encoding="latin1")["test"]) == 3


def test_a_long_start_warns_in_one_line_and_keeps_its_colours(tmp_path: Path) -> None:
    start = tmp_path / "long.json"
    t = np.linspace(0, 6 * np.pi, 900)
    spiral = np.column_stack([128 + t * 6 * np.cos(t), 128 + t * 6 * np.sin(t)])
    start.write_text(json.dumps({"strokes": [spiral.round(1).tolist()]}))
    argv = ["complete", "--input", str(start), "--class", "cat", "--count", "2", "--seed", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "aisketcher", *argv, "--out", str(tmp_path / "c.svg")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aisketcher: warning: the sketch has 900")
    assert "UserWarning" not in done.stderr and ".py:" not in done.stderr
    # The simplified start stays black and the model's ending red, as for a short start.
    cells = (tmp_path / "c.svg").read_text().split("<g transform=")[1:]
    assert len(cells) == 3 and "#d62728" not in cells[0]
    assert all("#d62728" in c and 'stroke="black"' in c for c in cells[1:])


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"aisketcher {metadata.version('aisketcher')}"


def test_interpolating_unlabelled_sketches_asks_for_their_classes_before_the_model_loads(
    tmp_path: Path,
) -> None:
    (tmp_path / "start.json").write_text(json.dumps({"strokes": [[[10, 10], [60, 12]]]}))
    argv = ["interpolate", "--a", "start.json", "--b", "start.json"]
    assert "carry no class: give --classes" in refused_before_torch(argv, tmp_path)
