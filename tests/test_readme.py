"""The README's Python example and its command table run as written."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import threading
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_example_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def _table_commands() -> list[list[str]]:
    """Every `aisketcher ...` command of the README's "What it does" table, split into words."""
    rows = re.findall(r"^\| `(aisketcher [^`]+)`", README.read_text(), flags=re.M)
    return [shlex.split(row)[1:] for row in rows]


def test_the_command_table_runs_as_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_dir: Path, quickdraw_dir: Path
) -> None:
    """Each command of the README's table, with the files it names made beforehand and only
    budgets shortened (a training run of 2 steps), so that the README cannot drift from the tool."""
    from aisketcher.cli import main
    from aisketcher.google_models import CACHE_ENV, MODELS_URL_ENV
    from test_download import _BucketServer, serving  # local stand-ins for Google's buckets

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "models-cache"))
    shutil.copy(quickdraw_dir / "cat.npz", "cat.npz")
    Path("start.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><path d="M10 10 L60 12 L62 70"/></svg>'
    )
    Path("damaged.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><path d="M10 10 L60 12"/>'
        '<path d="M62 70 L20 60"/></svg>'
    )
    for name, points in (("a.json", [[10, 10], [60, 12]]), ("b.json", [[0, 0], [30, 40]])):
        Path(name).write_text(json.dumps([points]))
    commands = _table_commands()
    assert len(commands) == 13  # every row of the table
    server = _BucketServer(_bucket(tmp_path / "bucket", quickdraw_dir))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shortened = {
        "train": ["--steps", "2", "--batch-size", "8", "--data", str(quickdraw_dir)],
        "data download": ["--base-url", server.base_url],
    }
    try:
        with serving(data_dir.parent / "models" / "magenta-js") as models:
            monkeypatch.setenv(MODELS_URL_ENV, models.base_url)  # for `--model google:NAME`
            for argv in commands:
                extra = shortened.get(" ".join(argv[:2]), shortened.get(argv[0], []))
                assert main([*argv, *extra]) == 0, argv
    finally:
        server.shutdown()
        server.server_close()
    assert Path("my_model/model.safetensors").is_file()
    assert Path("data/quickdraw/bicycle.npz").is_file()
    assert Path("birds.png").is_file() and Path("models-cache/bird.gen.json").is_file()
    assert Path("healed.svg").is_file()


def _bucket(root: Path, quickdraw_dir: Path) -> Path:
    """A folder laid out like Google's bucket for the sketch-rnn files of cat and bicycle."""
    folder = root / "sketchrnn"
    folder.mkdir(parents=True)
    for name in ("cat", "bicycle"):
        shutil.copy(quickdraw_dir / f"{name}.npz", folder / f"{name}.npz")
    return root
