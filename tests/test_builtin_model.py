"""The built-in model ships in the package and draws with no data at hand."""

from __future__ import annotations

import json

import pytest

from aisketcher.api import Sketcher, builtin_model_dir
from aisketcher.cli import main
from aisketcher.cli.train import DEFAULT_CLASSES


def test_builtin_model_is_complete_and_small() -> None:
    folder = builtin_model_dir()
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    # Weights and config only: no stored sketches or encodings of them to draw from.
    assert set(sizes) == {"model.safetensors", "config.json"}
    assert sum(sizes.values()) <= 20 * 2**20
    info = json.loads((folder / "config.json").read_text())
    assert info["model"]["name"] == "ai-sketcher"
    assert info["model"]["influence_memory"] == "drawn"
    assert info["data"]["classes"] == DEFAULT_CLASSES.split(",")
    assert info["record"]["step"] > 0


def test_builtin_model_draws_every_class_without_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("AISKETCHER_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    sk = Sketcher.load()
    for name in sk.class_names:
        [sketch] = sk.draw(name, seed=0)
        assert sketch.label == name and len(sketch) >= 1
    assert main(["draw", "cat", "--out", str(tmp_path / "cat.svg"), "--seed", "1"]) == 0
    assert (tmp_path / "cat.svg").read_text().startswith("<")
