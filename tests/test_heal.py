"""Healing (issue 29): damage.py's strokes removed, `Sketcher.heal` and `aisketcher heal`, with the
built-in model and a real test cat. What a healed drawing looks like is not judged here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aisketcher import Sketch
from aisketcher.api import Sketcher
from aisketcher.cli import main
from aisketcher.damage import damage, remove_strokes, removed_count, stroke_ids
from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import read_npz
from aisketcher.formats.reader import read_sketches
from aisketcher.google_models import CACHE_ENV
from aisketcher.strokes import num_strokes
from test_errors_first import refused_before_torch

# Three strokes, as offsets: A (1, 2) -> (4, 2); B (4, 7) -> (6, 9); C (0, 10) -> (1, 11).
THREE = np.array(
    [[1, 2, 0], [3, 0, 1], [0, 5, 0], [2, 2, 1], [-6, 1, 0], [1, 1, 1]], dtype=np.float32
)


# ----- damage.py -----
def test_stroke_ids_and_count_follow_the_pen_lifts() -> None:
    assert stroke_ids(THREE).tolist() == [0, 0, 1, 1, 2, 2]
    assert num_strokes(THREE) == 3
    assert num_strokes(THREE[:0]) == 0


@pytest.mark.parametrize(
    ("removed", "expected"),
    [
        # B gone: the pen goes up from A's end (4, 2) to C's start (0, 10).
        ([False, True, False], [[1, 2, 0], [3, 0, 1], [-4, 8, 0], [1, 1, 1]]),
        # A gone: B's first point is reached from the origin, at (4, 7).
        ([True, False, False], [[4, 7, 0], [2, 2, 1], [-6, 1, 0], [1, 1, 1]]),
        # A and C gone: B alone, where it was.
        ([True, False, True], [[4, 7, 0], [2, 2, 1]]),
    ],
)
def test_remove_strokes_keeps_the_rest_where_it_was(removed: list[bool], expected: list) -> None:
    out = remove_strokes(THREE, np.array(removed))
    assert out.dtype == THREE.dtype
    assert out.tolist() == expected


def test_removing_nothing_is_a_copy_and_everything_an_error() -> None:
    same = remove_strokes(THREE, np.zeros(3, dtype=bool))
    assert np.array_equal(same, THREE) and same is not THREE
    with pytest.raises(ValueError, match="every stroke"):
        remove_strokes(THREE, np.ones(3, dtype=bool))


@pytest.mark.parametrize(
    ("strokes", "share", "count"),
    [
        (10, 0.3, 3),  # the share, rounded
        (10, 0.01, 1),  # at least one
        (10, 1.0, 9),  # never all
        (2, 0.99, 1),
        (10, 0.0, 0),  # no damage asked
        (1, 0.5, 0),  # one stroke: left whole
        (0, 0.5, 0),
    ],
)
def test_removed_count_is_at_least_one_and_never_all(
    strokes: int, share: float, count: int
) -> None:
    assert removed_count(strokes, share) == count


def test_a_one_stroke_sketch_is_left_whole() -> None:
    one = THREE[:2]
    out, mask = damage(one, 0.9, np.random.default_rng(0))
    assert mask.tolist() == [False] and np.array_equal(out, one)


def test_damage_removes_the_share_of_strokes_its_seed_chooses() -> None:
    sketch = np.tile(THREE, (4, 1))  # 12 strokes
    out, mask = damage(sketch, 0.25, np.random.default_rng(3))
    assert mask.sum() == 3 and num_strokes(out) == 9
    assert np.array_equal(out, remove_strokes(sketch, mask))
    again, same = damage(sketch, 0.25, np.random.default_rng(3))
    assert np.array_equal(same, mask) and np.array_equal(again, out)


# ----- Sketcher.heal -----
@pytest.fixture(scope="module")
def sketcher() -> Sketcher:
    return Sketcher.load()


@pytest.fixture(scope="module")
def cat_index(quickdraw_dir: Path) -> int:
    """A test cat of at least four strokes, in cat.npz's test split."""
    sketches = read_npz(quickdraw_dir / "cat.npz", ["test"])["test"]
    return next(i for i, s in enumerate(sketches) if num_strokes(s) >= 4)


@pytest.fixture(scope="module")
def cat(quickdraw_dir: Path, cat_index: int) -> Sketch:
    return Sketch(read_npz(quickdraw_dir / "cat.npz", ["test"])["test"][cat_index], "cat")


@pytest.fixture(scope="module")
def rubbed(cat: Sketch) -> Sketch:
    damaged, _ = damage(cat.stroke3, 0.3, np.random.default_rng(0))
    return Sketch(damaged, "cat")


def test_heal_draws_count_sketches_of_the_class(sketcher: Sketcher, rubbed: Sketch) -> None:
    healed = sketcher.heal(rubbed, "cat", 3, seed=1)
    assert len(healed) == 3
    assert all(isinstance(s, Sketch) and s.label == "cat" and len(s) > 0 for s in healed)
    # No class given: the sketch's own label; a list of strokes goes in as the other modes take.
    assert [s.label for s in sketcher.heal(rubbed, count=1, seed=1)] == ["cat"]
    assert len(sketcher.heal(rubbed.strokes(), "face", 2, seed=1)) == 2


def test_a_seed_repeats_a_healing(sketcher: Sketcher, rubbed: Sketch) -> None:
    first = sketcher.heal(rubbed, "cat", 2, seed=7)
    again = sketcher.heal(rubbed, "cat", 2, seed=7)
    other = sketcher.heal(rubbed, "cat", 2, seed=8)
    assert all(np.array_equal(a.stroke3, b.stroke3) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a.stroke3, b.stroke3) for a, b in zip(first, other, strict=True))


def test_heal_refuses_an_unknown_class_or_none(sketcher: Sketcher, rubbed: Sketch) -> None:
    with pytest.raises(SketchDataError, match="did you mean cat"):
        sketcher.heal(rubbed, "cta")
    with pytest.raises(SketchDataError, match="give the class"):
        sketcher.heal(Sketch(rubbed.stroke3))  # no label, and the model has 20 classes


def test_a_decoder_only_model_cannot_heal(data_dir: Path, rubbed: Sketch) -> None:
    bird = Sketcher.load(data_dir.parent / "models" / "magenta-js" / "bird.gen.json")
    with pytest.raises(SketchDataError) as info:
        bird.heal(rubbed, "bird")
    assert "this model has no encoder" in str(info.value) and "\n" not in str(info.value)


# ----- aisketcher heal -----
def test_heal_writes_the_input_and_the_healed_drawings(tmp_path: Path, capsys) -> None:
    source = tmp_path / "rubbed.json"
    source.write_text(json.dumps({"strokes": [[[10, 10], [60, 12]], [[10, 10], [14, 60]]]}))
    out = tmp_path / "healed.svg"
    argv = ["heal", "--input", str(source), "--class", "cat", "--count", "2", "--seed", "1"]
    assert main([*argv, "--threads", "1", "--out", str(out)]) == 0
    assert f"{out}: 3 sketch(es)" in capsys.readouterr().out  # the input, then 2 healed
    assert out.read_text().startswith("<svg") and ">input<" in out.read_text()


def test_heal_remove_writes_the_whole_the_damaged_and_the_healed(
    tmp_path: Path, quickdraw_dir: Path, cat_index: int, cat: Sketch
) -> None:
    out = tmp_path / "healed.npz"
    argv = ["heal", "--input", str(quickdraw_dir / "cat.npz"), "--index", str(cat_index)]
    argv += ["--class", "cat", "--remove", "0.3", "--damage-seed", "4", "--count", "2"]
    assert main([*argv, "--seed", "2", "--threads", "1", "--out", str(out)]) == 0
    whole, damaged, *healed = read_sketches(out)
    assert [whole.label, damaged.label] == ["whole", "damaged"]
    assert [s.label for s in healed] == ["cat", "cat"]
    assert np.array_equal(whole.stroke3, cat.stroke3)
    expected, mask = damage(cat.stroke3, 0.3, np.random.default_rng(4))
    assert np.array_equal(damaged.stroke3, expected)
    assert num_strokes(damaged.stroke3) == num_strokes(cat.stroke3) - mask.sum() > 0


def test_heal_remove_refuses_a_one_stroke_sketch_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps({"strokes": [[[10, 10], [60, 12], [80, 40]]]}))
    argv = ["heal", "--input", "one.json", "--class", "cat", "--remove", "0.3"]
    err = refused_before_torch([*argv, "--out", "x.svg"], tmp_path)
    assert err.count("\n") == 1 and err.startswith("aisketcher: error: one.json: "), err
    assert "one stroke" in err


def test_heal_refuses_a_google_model_before_fetching_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "two.json").write_text(
        json.dumps({"strokes": [[[1, 1], [9, 9]], [[9, 1], [1, 9]]]})
    )
    argv = ["heal", "--input", "two.json", "--class", "bird", "--model", "google:bird"]
    err = refused_before_torch(argv, tmp_path)
    assert err.count("\n") == 1 and "needs an encoder" in err, err
    assert "two.json" not in err  # the model is at fault, not the input
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("share", ["1.5", "-0.1", "nan"])
def test_heal_refuses_a_share_to_remove_out_of_range(tmp_path: Path, share: str) -> None:
    err = refused_before_torch(["heal", "--input", "x.json", "--remove", share], tmp_path)
    assert "--remove" in err and "from 0 to 1" in err
