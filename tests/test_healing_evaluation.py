"""Healing in `aisketcher evaluate`: the seeded masks and retrieval by features (the report's
healing section: tests/test_evaluate.py)."""

from __future__ import annotations

import numpy as np
import pytest

from aisketcher.cli.evaluate import heal_shares
from aisketcher.damage import remove_strokes
from aisketcher.evaluate.healing import damage_masks, retrieval
from aisketcher.strokes import num_strokes


def test_retrieval_ranks_the_source_among_its_class() -> None:
    # Four references in one dimension, classes 0 0 0 1.
    references = np.array([[0.0], [1.0], [3.0], [0.1]])
    labels = np.array([0, 0, 0, 1])
    queries = np.array([[0.2], [0.2], [2.9], [5.0]])
    sources = np.array([0, 1, 2, 3])
    hits = retrieval(queries, sources, references, labels, (1, 2))
    # Query 0 nearest is reference 0 (0.2 away; reference 3 is nearer but of another class);
    # query 1's source (0.8 away) comes second after reference 0; query 2's first; query 3 is
    # alone in its class.
    assert hits[1].tolist() == [True, False, True, True]
    assert hits[2].tolist() == [True, True, True, True]


def test_a_reference_as_near_as_the_source_counts_against_it() -> None:
    references = np.array([[1.0], [1.0]])
    hits = retrieval(np.array([[1.0]]), np.array([0]), references, np.array([0, 0]), (1, 2))
    assert hits[1].tolist() == [False] and hits[2].tolist() == [True]


def test_masks_are_seeded_per_sketch() -> None:
    rng = np.random.default_rng(3)
    sketches = []
    for strokes in (1, 2, 5, 10):
        s3 = rng.normal(size=(3 * strokes, 3)).astype(np.float32)
        s3[:, 2] = 0
        s3[2::3, 2] = 1
        sketches.append(s3)
    masks = damage_masks(sketches, 0.3, seed=0)
    # round(0.3 x strokes), at least one and never all; a sketch of one stroke is left whole.
    assert [int(m.sum()) for m in masks] == [0, 1, 2, 3]
    assert [len(m) for m in masks] == [1, 2, 5, 10]
    # The same sketch gets the same mask whatever comes after it.
    assert np.array_equal(damage_masks(sketches[:3], 0.3, seed=0)[2], masks[2])
    assert not all(
        np.array_equal(a, b) for a, b in zip(masks, damage_masks(sketches, 0.3, 1), strict=True)
    )
    damaged = remove_strokes(sketches[3], masks[3])
    assert num_strokes(damaged) == 7


@pytest.mark.parametrize("text", ["0", "1", "0.1,x", "", "-0.2", "nan"])
def test_bad_heal_shares_are_refused(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="between 0 and 1"):
        heal_shares(text)


def test_heal_shares_parse() -> None:
    assert heal_shares("0.1,0.3") == [0.1, 0.3] and heal_shares("none") == []
