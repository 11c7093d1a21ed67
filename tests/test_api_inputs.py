"""What a user hands the Python API: class names (matched, or a suggestion only for near names),
temperatures, and a start to complete, whose points come back as given."""

from __future__ import annotations

import numpy as np
import pytest

from aisketcher.api import Sketcher
from aisketcher.errors import SketchDataError
from aisketcher.model_info import input_classes, match_class, model_classes

BUILTIN = model_classes(None) or []


@pytest.fixture(scope="module")
def sketcher() -> Sketcher:
    return Sketcher.load()


def unknown(name: str) -> str:
    with pytest.raises(SketchDataError) as info:
        match_class(name, BUILTIN)
    return str(info.value)


@pytest.mark.parametrize(
    ("name", "known"),
    [("Cat", "cat"), (" CAT ", "cat"), ("paint can", "paint_can"), ("Paint-Can", "paint_can")],
)
def test_a_class_name_matches_whatever_its_case_or_word_joins(name: str, known: str) -> None:
    assert match_class(name, BUILTIN) == BUILTIN.index(known)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("cta", "cat"),
        ("kat", "cat"),
        ("bicyle", "bicycle"),
        ("bycicle", "bicycle"),
        ("paintcan", "paint_can"),
        ("umbrela", "umbrella"),
        ("headphone", "headphones"),
        ("aeroplane", "airplane"),
        ("televison", "television"),
    ],
)
def test_a_typo_gets_the_name_it_misspells(typo: str, meant: str) -> None:
    message = unknown(typo)
    assert f"does not know class '{typo}'" in message
    assert meant in message.split("did you mean", 1)[1]


@pytest.mark.parametrize(
    "name", ["zebra", "dragonfly", "dog", "giraffe", "house", "tree", "spaceship", "paint"]
)
def test_a_different_name_gets_no_suggestion(name: str) -> None:
    assert "did you mean" not in unknown(name)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("zebar", "'zebra'?"), ("dragn", "'dragon'?"), ("paintcan", "'paint can'?"), ("unicorn2", "")],
)
def test_downloads_and_data_folders_suggest_by_the_same_rule(
    name: str, suggestion: str, quickdraw_dir
) -> None:
    """Only the nearest of Quick, Draw!'s 345 names, and only a typo away: "dragn" once got
    "dragon, brain, rain"."""
    from aisketcher.data.dataset import load_dataset
    from aisketcher.data.download import resolve_class

    with pytest.raises(SketchDataError) as info:
        resolve_class(name)
    assert str(info.value).endswith(f"did you mean {suggestion}" if suggestion else f"{name!r}")
    with pytest.raises(SketchDataError) as info:
        load_dataset([name], quickdraw_dir)
    hint = suggestion.replace("'", "").replace(" ", "_")
    assert str(info.value).endswith(f"did you mean {hint}" if hint else ")")


def test_a_name_two_classes_share_but_for_case_is_not_guessed() -> None:
    assert match_class("Cat", ["cat", "Cat"]) == 1
    with pytest.raises(SketchDataError, match="did you mean cat, Cat"):
        match_class("CAT", ["cat", "Cat"])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_temperature_that_is_not_a_number_says_so(sketcher: Sketcher, value: float) -> None:
    with pytest.raises(SketchDataError, match="temperature must be a finite number"):
        sketcher.draw("cat", temperature=value)
    with pytest.raises(SketchDataError, match="temperature must be a finite number"):
        sketcher.complete([[(10, 10), (60, 12)]], "cat", count=1, temperature=value)


# A start far from the origin (offsets beyond what the model is fed) and with fractions that
# float32 holds exactly.
START = [[[1500, 1200], [1600.25, 1210.5], [1700, 1300]], [[300, 110], [320.75, 180]]]


def test_complete_gives_back_the_users_own_points(sketcher: Sketcher) -> None:
    for sketch in sketcher.complete(START, "cat", count=3, seed=3):
        assert [s.tolist() for s in sketch.strokes()[:2]] == START
        assert len(sketch) > 5  # the model's ending follows


def test_complete_of_a_start_too_long_for_the_model_says_it_simplified(
    sketcher: Sketcher,
) -> None:
    t = np.linspace(0, 2 * np.pi, 300)
    circle = np.column_stack([100 + 80 * np.cos(t), 100 + 80 * np.sin(t)])
    with pytest.warns(UserWarning, match="has 300 points.*simplified to"):
        (sketch,) = sketcher.complete([circle], "cat", count=1, seed=0)
    assert len(sketch.strokes()[0]) < 300


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -0.5, 1.5])
def test_a_class_pull_that_is_not_from_0_to_1_says_so(sketcher: Sketcher, value: float) -> None:
    with pytest.raises(SketchDataError, match="class_pull must be a finite number between 0 and 1"):
        sketcher.translate(sketcher.draw("cat", 1, seed=0)[0], ["pig"], class_pull=value)


HOUSE = [[(0, 40), (60, 40), (60, 100), (0, 100)], [(-5, 42), (30, 5), (65, 42)]]


@pytest.mark.parametrize(
    ("labels", "given", "names", "chosen"),
    [
        (["cat", None], ["pig", "pig"], ["cat", "pig"], ["pig", "pig"]),  # given first
        (["cat", "pig"], [None, None], ["cat", "pig"], ["cat", "pig"]),  # then each label
        (["cat", None], [None, None], ["owl"], ["owl", "owl"]),  # a model of one class: it
        ([None, ""], [None, 1], ["cat", "pig"], None),  # unlabelled, several classes: refused
        (["cat", None], [None, None], None, None),  # the classes not known yet: refused
    ],
)
def test_one_rule_decides_the_class_of_an_input_sketch(labels, given, names, chosen) -> None:
    if chosen is None:
        with pytest.raises(SketchDataError, match="carry no class: give"):
            input_classes(labels, given, names)
    else:
        assert input_classes(labels, given, names) == chosen


def test_an_unlabelled_sketch_is_not_drawn_as_class_0(sketcher: Sketcher) -> None:
    with pytest.raises(SketchDataError, match="carry no class"):
        sketcher.reconstruct([HOUSE], seed=1)
    with pytest.raises(SketchDataError, match="carry no class: give both classes"):
        sketcher.interpolate(HOUSE, HOUSE, 2, seed=1)
    assert [s.label for s in sketcher.reconstruct([HOUSE], "pig", seed=1)] == ["pig"]
