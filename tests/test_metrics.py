"""Evaluation metrics on small cases with known answers: FID, precision/recall, accuracy, diversity."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg, stats

from aisketcher import Sketch
from aisketcher.data.batching import augment
from aisketcher.data.dataset import load_dataset
from aisketcher.evaluate.metrics import (
    copy_check,
    copy_features,
    diversity_ttest,
    fid,
    frechet_distance,
    gaussian_stats,
    hamming_matrix,
    manifold_coverage,
    nearest_distances,
    perceptual_hashes,
    phash_diversity,
    precision_recall,
    top1_accuracy,
)

# ----- FID -----


def test_fid_of_a_set_against_itself_is_zero() -> None:
    x = np.random.default_rng(0).normal(size=(200, 16))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_a_small_set_against_itself_is_zero() -> None:
    # Fewer samples than dimensions: singular covariances, where sqrtm(C1 @ C2) turns complex.
    x = np.random.default_rng(1).normal(size=(12, 64))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form() -> None:
    # For diagonal covariances: |mu1 - mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2)).
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 0 + 4 + (1 + 4 - 4) + (4 + 1 - 4) + 0
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)


def test_frechet_distance_matches_the_sqrtm_formula_on_full_covariances() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T + np.eye(6), b @ b.T + np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(reference, rel=1e-9)


def test_fid_of_a_shifted_set_is_the_squared_shift() -> None:
    x = np.random.default_rng(3).normal(size=(100, 4))
    shift = np.array([3.0, 0.0, -4.0, 0.0])
    assert fid(x, x + shift) == pytest.approx(25.0, rel=1e-9)


def test_fid_needs_two_samples() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(np.zeros((1, 3)))


# ----- precision and recall -----


def test_identical_sets_have_full_precision_and_recall() -> None:
    x = np.random.default_rng(4).normal(size=(50, 8))
    pr = precision_recall(x, x)
    assert (pr.precision, pr.recall) == (1.0, 1.0)


def test_far_apart_sets_have_none() -> None:
    rng = np.random.default_rng(5)
    pr = precision_recall(rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + 100)
    assert (pr.precision, pr.recall) == (0.0, 0.0)


def test_a_generator_of_one_mode_of_two_is_precise_but_recalls_half() -> None:
    rng = np.random.default_rng(6)
    real = np.concatenate([rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 50])
    generated = real[:100] + 0.01  # the first mode only, almost exactly
    pr = precision_recall(real, generated)
    assert (pr.precision, pr.recall) == (1.0, 0.5)


def test_manifold_coverage_by_hand() -> None:
    # Reference 0, 1, 2, 3 on a line, k = 1: every ball has radius 1, covering [-1, 4].
    reference = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert manifold_coverage(reference, np.array([[0.5], [4.0], [4.5], [-2.0]]), k=1) == 0.5
    # k = 2: radii 2, 1, 1, 2 (the second-nearest neighbour), covering [-2, 5].
    assert manifold_coverage(reference, np.array([[-2.0], [5.0], [5.5]]), k=2) == pytest.approx(
        2 / 3
    )


def test_too_few_samples_give_nan() -> None:
    pr = precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
    assert math.isnan(pr.precision) and math.isnan(pr.recall)


# ----- recognizability -----


def test_top1_accuracy() -> None:
    assert top1_accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
    assert math.isnan(top1_accuracy(np.array([]), np.array([])))
    with pytest.raises(ValueError):
        top1_accuracy(np.array([0, 1]), np.array([0]))


# ----- diversity -----


def _square(size: float) -> Sketch:
    return Sketch.from_strokes([[(0, 0), (size, 0), (size, size), (0, size), (0, 0)]])


def _sketches() -> list[Sketch]:
    return [
        _square(10),
        Sketch.from_strokes([[(0, 0), (20, 20)], [(0, 20), (20, 0)]]),
        Sketch.from_strokes([[(0, 10), (10, 0), (20, 10), (10, 20), (0, 10)]]),
        Sketch.from_strokes([[(0, 0), (5, 20), (10, 0), (15, 20), (20, 0)]]),
    ]


def test_diversity_of_identical_sketches_is_zero() -> None:
    d = phash_diversity([_square(10)] * 5)
    assert d.mean_distance == 0.0
    assert np.array_equal(d.per_sketch, np.zeros(5))


def test_diversity_does_not_depend_on_size() -> None:
    # Sketches are fitted to the rendered square, so a scaled copy hashes the same.
    assert phash_diversity([_square(10), _square(250)]).mean_distance == 0.0


def test_different_sketches_are_diverse() -> None:
    d = phash_diversity(_sketches())
    assert d.mean_distance > 10  # of 64 bits
    assert len(d.per_sketch) == 4 and (d.per_sketch > 0).all()
    h = hamming_matrix(perceptual_hashes(_sketches()))
    assert d.mean_distance == pytest.approx(h[np.triu_indices(4, 1)].mean())


def test_hamming_matrix_by_hand() -> None:
    hashes = np.array([[1, 0, 1, 0], [1, 1, 1, 1], [1, 0, 1, 0]], dtype=bool)
    assert hamming_matrix(hashes).tolist() == [[0, 2, 0], [2, 0, 2], [0, 2, 0]]


def test_diversity_ttest_is_students() -> None:
    result = diversity_ttest(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))
    # Pooled sd 1, standard error sqrt(2/3): t = -3 / 0.8165 = -3.674 with 4 degrees of freedom.
    assert result.t == pytest.approx(-3 / math.sqrt(2 / 3))
    assert result.p == pytest.approx(2 * stats.t.sf(3 / math.sqrt(2 / 3), 4))
    assert (result.mean_a, result.mean_b, result.n_a, result.n_b) == (2.0, 5.0, 3, 3)
    same = diversity_ttest(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]))
    assert same.t == 0.0 and same.p == pytest.approx(1.0)


# ----- copy check -----


@pytest.fixture(scope="module")
def three_classes(quickdraw_dir: Path):
    data = load_dataset("cat,pig,apple", quickdraw_dir)
    train = data["train"]
    return data, copy_features(train.sketches), train.labels


def _distances(sketches, labels, train_features, train_labels) -> np.ndarray:
    return nearest_distances(copy_features(sketches), labels, train_features, train_labels)


def test_training_sketches_and_their_light_variants_score_as_copies(three_classes) -> None:
    data, train_f, train_l = three_classes
    train, test = data["train"], data["test"]
    real = _distances(test.sketches, test.labels, train_f, train_l)
    picked = np.arange(0, len(train), 7)
    itself = copy_check(
        _distances([train.sketches[i] for i in picked], train.labels[picked], train_f, train_l),
        real,
    )
    assert itself.ratio == 0.0 and itself.near_copy_share == 1.0
    # a training sketch redrawn with magenta's augmentation (scaled, points dropped) is still one
    rng = np.random.default_rng(0)
    varied = [augment(train.sketches[i], rng, 0.1, 0.1) for i in picked]
    check = copy_check(_distances(varied, train.labels[picked], train_f, train_l), real)
    assert check.ratio < 0.5 and check.near_copy_share > 0.8


def test_held_out_real_sketches_are_as_new_as_unseen_ones(three_classes) -> None:
    data, train_f, train_l = three_classes
    test, valid = data["test"], data["valid"]
    real = _distances(test.sketches, test.labels, train_f, train_l)
    check = copy_check(_distances(valid.sketches, valid.labels, train_f, train_l), real)
    assert 0.9 < check.ratio < 1.1
    assert check.near_copy_share < 0.1 and check.real_near_copy_share == pytest.approx(
        0.05, abs=0.01
    )


def test_nearest_distances_stay_within_the_class() -> None:
    train = np.array([[0.0, 0.0], [10.0, 0.0]])
    query = np.array([[9.0, 0.0], [9.0, 0.0]])
    d = nearest_distances(query, np.array([0, 1]), train, np.array([0, 1]))
    assert d.tolist() == [9.0, 1.0]
