"""Batches: magenta's augmentation, length grouping, exact resume, evaluation order and rasters."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
import torch

from aisketcher.damage import remove_strokes
from aisketcher.data.batching import (
    START_TOKEN,
    BatchLoader,
    augment,
    balanced_order,
    collate,
    drop_points,
    length_grouped_batches,
    random_scale,
)
from aisketcher.data.dataset import Split
from aisketcher.formats.npz import read_npz
from aisketcher.raster import rasterize_many


@pytest.fixture(scope="module")
def cats(quickdraw_dir) -> list[np.ndarray]:
    return read_npz(quickdraw_dir / "cat.npz", ["train"])["train"]


@pytest.fixture(scope="module")
def cat_split(cats) -> Split:
    """Labels are the sketch indices, so a batch tells which sketches it holds."""
    return Split([s / 30.0 for s in cats[:300]], np.arange(300))


def magenta_augment_strokes(
    strokes: np.ndarray, uniform: Callable[[], float], prob: float
) -> np.ndarray:
    """Reference for magenta's `augment_strokes`, written from its description.

    One uniform draw per point, in order. A point is a candidate when it and the last kept point
    are both pen-down; a counter, reset whenever the candidate or the last kept point lifts the pen
    and otherwise incremented for every point (dropped or not), must exceed 2. A dropped point's
    offset is added to the last kept point. Before the first point the "last kept" pen is up.
    """
    kept: list[list[float]] = []
    last_pen = 1.0
    count = 0
    for dx, dy, pen in strokes.tolist():
        count = 0 if pen == 1 or last_pen == 1 else count + 1
        draw = uniform()
        if pen == 0 and last_pen == 0 and count > 2 and draw < prob:
            kept[-1][0] += dx
            kept[-1][1] += dy
        else:
            kept.append([dx, dy, pen])
            last_pen = pen
    return np.array(kept, dtype=strokes.dtype)


@pytest.mark.parametrize("prob", [0.1, 0.5, 0.9])
def test_drop_points_agrees_with_magenta_for_the_same_draws(cats, prob):
    dropped = 0
    for seed, s3 in enumerate(cats[:400]):
        ours = drop_points(s3, np.random.default_rng(seed), prob)
        theirs = magenta_augment_strokes(s3, np.random.default_rng(seed).random, prob)
        assert np.array_equal(ours, theirs)
        dropped += len(s3) - len(ours)
    assert dropped > 0


def stroke_points(s3: np.ndarray) -> list[np.ndarray]:
    """Absolute points of each stroke (the pen-up move into a stroke belongs to its first point)."""
    absolute = np.cumsum(s3[:, :2].astype(np.float64), axis=0)
    ends = np.flatnonzero(s3[:, 2] == 1) + 1
    return np.split(absolute, ends)[: len(ends)]


def test_drop_keeps_stroke_ends_and_the_first_two_points_of_each_stroke(cats):
    for seed, s3 in enumerate(cats[:200]):
        out = drop_points(s3, np.random.default_rng(seed), 0.9)
        # Offsets are merged, never lost.
        np.testing.assert_allclose(out[:, :2].sum(axis=0), s3[:, :2].sum(axis=0), atol=1e-3)
        before, after = stroke_points(s3), stroke_points(out)
        assert len(after) == len(before)
        for old, new in zip(before, after, strict=True):
            # Every kept point lies where an original point was; the end point stays.
            np.testing.assert_allclose(new[-1], old[-1], atol=1e-3)
            # The first two points of a stroke never move (the third may absorb a dropped offset).
            head = min(2, len(old))
            np.testing.assert_allclose(new[:head], old[:head], atol=1e-3)
            assert all(np.abs(old - p).sum(axis=1).min() < 1e-3 for p in new)


def test_drop_points_leaves_short_sketches_and_zero_probability_alone(cats):
    rng = np.random.default_rng(0)
    assert np.array_equal(drop_points(cats[0], rng, 0.0), cats[0])
    two = np.array([[1, 1, 0], [2, 2, 1]], dtype=np.float32)
    assert np.array_equal(drop_points(two, rng, 1.0), two)
    copy = drop_points(cats[0], rng, 0.0)
    copy[0, 0] += 1
    assert copy[0, 0] != cats[0][0, 0]  # a copy, not a view


def test_random_scale_is_magenta_formula_independent_per_axis(cats):
    s3 = cats[0]
    factors = []
    for seed in range(400):
        out = random_scale(s3, np.random.default_rng(seed))
        u = np.random.default_rng(seed).random(2)
        expected = (u - 0.5) * 2 * 0.15 + 1.0
        np.testing.assert_allclose(out[:, :2], s3[:, :2] * expected, rtol=1e-6)
        assert np.array_equal(out[:, 2], s3[:, 2])
        factors.append(expected)
    fx, fy = np.array(factors).T
    assert fx.min() >= 0.85 and fx.max() <= 1.15
    assert fy.min() >= 0.85 and fy.max() <= 1.15
    assert fx.min() < 0.87 and fx.max() > 1.13  # the whole range is used
    assert abs(np.corrcoef(fx, fy)[0, 1]) < 0.2  # x and y drawn independently


def test_augment_scales_then_drops(cats):
    s3 = cats[1]
    ours = augment(s3, np.random.default_rng(5), 0.15, 0.3)
    rng = np.random.default_rng(5)
    theirs = magenta_augment_strokes(random_scale(s3, rng), rng.random, 0.3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert np.array_equal(augment(s3, np.random.default_rng(5), 0.0, 0.0), s3)


def test_collate_builds_stroke5_with_start_token():
    a = np.array([[1, 2, 0], [3, 4, 1]], dtype=np.float32)
    b = np.array([[5, 6, 1]], dtype=np.float32)
    batch = collate([a, b], np.array([3, 7]))
    # magenta's pad_batch: S0, then every sketch's rows and at least one (0, 0, 0, 0, 1) row
    assert batch.strokes.shape == (2, 4, 5)
    assert np.array_equal(batch.strokes[:, 0].numpy(), np.stack([START_TOKEN] * 2))
    assert batch.strokes[0, 1:].tolist() == [[1, 2, 1, 0, 0], [3, 4, 0, 1, 0], [0, 0, 0, 0, 1]]
    assert batch.strokes[1, 1:].tolist() == [[5, 6, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1]]
    assert batch.lengths.tolist() == [2, 1]
    assert batch.labels.tolist() == [3, 7]
    assert batch.mask.tolist() == [[1, 1, 0], [1, 0, 0]]
    assert batch.rasters is None
    assert collate([a, b], np.array([0, 0]), pad_to=6).strokes.shape == (2, 8, 5)


def padding(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Mean padding rows per sketch when each batch is padded to its own longest sketch."""
    rows = sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in batches)
    return rows / sum(len(b) for b in batches)


def test_length_grouped_batches_cover_each_index_once_with_little_padding(cats):
    lengths = np.array([len(s) for s in cats])
    batches = length_grouped_batches(lengths, 32, np.random.default_rng(0), group=10)
    flat = np.concatenate(batches)
    assert all(len(b) == 32 for b in batches)
    assert len(flat) == len(np.unique(flat)) == len(lengths) - len(lengths) % 32
    grouped = padding(lengths, batches)
    to_longest = float((lengths.max() - lengths).mean())
    # Measured on cat (1,756 sketches): about 7 rows against 102, a ratio near 0.07.
    assert grouped / to_longest < 0.1


def test_length_grouped_batches_leave_out_a_random_remainder(cats):
    """The sketches left out of an epoch are not systematically the longest ones."""
    lengths = np.array([len(s) for s in cats[:250]])
    left_out = np.zeros(len(lengths))
    for seed in range(200):
        batches = length_grouped_batches(lengths, 100, np.random.default_rng(seed))
        seen = np.zeros(len(lengths), dtype=bool)
        seen[np.concatenate(batches)] = True
        left_out += ~seen
    longest = np.argsort(lengths)[-50:]
    # 50 of 250 are left out each epoch: every sketch about 20% of the time, long ones included.
    assert left_out[longest].mean() / 200 == pytest.approx(0.2, abs=0.06)


def test_length_grouped_batches_are_deterministic_by_seed(cats):
    lengths = np.array([len(s) for s in cats])
    one = length_grouped_batches(lengths, 50, np.random.default_rng(3))
    two = length_grouped_batches(lengths, 50, np.random.default_rng(3))
    other = length_grouped_batches(lengths, 50, np.random.default_rng(4))
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(one, other, strict=True))


def test_balanced_epochs_give_every_class_the_same_share():
    labels = np.array([0] * 700 + [1] * 210 + [2] * 90)  # the shape of the shared subsets
    rng = np.random.default_rng(0)
    first, second = balanced_order(labels, rng), balanced_order(labels, rng)
    for order in (first, second):
        assert np.bincount(labels[order]).tolist() == [334, 334, 334]  # ceil(1000 / 3) each
        large = order[labels[order] == 0]
        assert len(set(large.tolist())) == 334  # a subset of the large class, no repeats
        small = order[labels[order] == 2]
        assert set(small.tolist()) == set(range(910, 1000))  # every small-class sketch
        assert np.bincount(small).max() - np.bincount(small)[910:].min() <= 1  # evenly repeated
    assert set(first[labels[first] == 0].tolist()) != set(second[labels[second] == 0].tolist())


def test_a_balanced_loader_draws_small_classes_as_often_as_large_ones():
    labels = np.array([0] * 300 + [1] * 30)
    sketches = [np.zeros((5 + i % 40, 3), dtype=np.float32) for i in range(330)]
    loader = BatchLoader(Split(sketches, labels), 30, balance_classes=True, seed=1)
    drawn = np.concatenate([loader.next_batch().labels.numpy() for _ in range(10)])
    assert abs(np.mean(drawn == 1) - 0.5) < 0.1  # 50% by design; 9% of the sketches
    uniform = BatchLoader(Split(sketches, labels), 30, seed=1)
    drawn = np.concatenate([uniform.next_batch().labels.numpy() for _ in range(10)])
    assert np.mean(drawn == 1) < 0.2


def test_split_smaller_than_a_batch_gives_one_batch():
    batches = length_grouped_batches(np.array([3, 1, 2]), 10, np.random.default_rng(0))
    assert [sorted(b.tolist()) for b in batches] == [[0, 1, 2]]


def same_batches(a, b) -> bool:
    return all(
        np.array_equal(x.strokes, y.strokes)
        and np.array_equal(x.labels, y.labels)
        and np.array_equal(x.lengths, y.lengths)
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("group_by_length", [True, False])
def test_get_state_set_state_reproduces_the_next_batches(cat_split, group_by_length):
    # 300 sketches in batches of 64: an epoch has 4 batches, so 7 batches cross epoch boundaries.
    loader = BatchLoader(cat_split, 64, seed=1, group_by_length=group_by_length)
    for _ in range(3):
        loader.next_batch()
    state = json.loads(json.dumps(loader.get_state()))
    expected = [loader.next_batch() for _ in range(7)]

    resumed = BatchLoader(cat_split, 64, seed=99, group_by_length=group_by_length)
    resumed.set_state(state)
    assert same_batches([resumed.next_batch() for _ in range(7)], expected)


def test_training_batches_are_augmented(cat_split):
    loader = BatchLoader(cat_split, 50, seed=0, drop=0.0)
    batch = loader.next_batch()
    for row, index in enumerate(batch.labels.tolist()):
        original = cat_split.sketches[index]
        n = len(original)
        assert batch.lengths[row] == n
        got = batch.strokes[row, 1 : n + 1, :2].numpy()
        ratio = np.median(got[original[:, 0] != 0, 0] / original[original[:, 0] != 0, 0])
        assert 0.85 <= ratio <= 1.15
        np.testing.assert_allclose(got[:, 0], original[:, 0] * ratio, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(
        batch.strokes[0, 1 : batch.lengths[0] + 1, :2].numpy(),
        cat_split.sketches[batch.labels[0]][:, :2],
    )
    dropping = BatchLoader(cat_split, 50, seed=0, scale=0.0, drop=0.5).next_batch()
    originals = [len(cat_split.sketches[i]) for i in dropping.labels.tolist()]
    assert dropping.lengths.sum() < sum(originals)


def test_evaluation_loaders_keep_order_and_do_not_augment(cat_split):
    loader = BatchLoader(cat_split, 64, train=False, seed=0, scale=0.5, drop=0.9)
    state = loader.rng.bit_generator.state
    batches = list(loader)
    assert [len(b.labels) for b in batches] == [64, 64, 64, 64, 44]
    assert np.concatenate([b.labels.numpy() for b in batches]).tolist() == list(range(300))
    for batch in batches:
        for row, index in enumerate(batch.labels.tolist()):
            original = cat_split.sketches[index]
            n = len(original)
            assert batch.lengths[row] == n
            assert np.array_equal(batch.strokes[row, 1 : n + 1, :2].numpy(), original[:, :2])
    assert loader.rng.bit_generator.state == state  # no random draws at all


def test_rasters_are_rendered_per_batch(cat_split):
    bits = rasterize_many(list(cat_split.sketches), 128)
    for train in (True, False):
        loader = BatchLoader(cat_split, 32, raster_size=128, train=train, seed=0)
        batch = loader.next_batch() if train else next(iter(loader))
        assert batch.rasters.shape == (32, 1, 128, 128)
        assert batch.rasters.dtype.is_floating_point
        # Each raster is its un-augmented sketch's (labels are sketch indices here).
        assert np.array_equal(batch.rasters[:, 0].numpy(), bits[batch.labels.numpy()])


def test_the_loader_state_is_a_few_numbers_whatever_the_split(cat_split):
    """A checkpoint holds the epoch and position, not the epoch's order (11 MB of JSON for the
    official files' 700,000 sketches once): its size does not grow with the split."""
    for split in (Split(cat_split.sketches[:100], np.arange(100)), cat_split):
        loader = BatchLoader(split, 10, seed=0)
        for _ in range(13):  # into the second epoch of the smaller split
            loader.next_batch()
        state = json.dumps(loader.get_state())
        assert len(state) < 1000
        assert json.loads(state)["epoch"] == (1 if len(split) == 100 else 0)


def test_every_epoch_is_every_sketch_once_in_an_order_of_its_own(cat_split):
    loader = BatchLoader(cat_split, 30, seed=5)
    epochs = [np.concatenate([loader.next_batch().labels for _ in range(10)]) for _ in range(2)]
    assert all(sorted(e.tolist()) == list(range(300)) for e in epochs)
    assert not np.array_equal(epochs[0], epochs[1])


def test_a_checkpoint_of_the_earlier_loader_resumes_with_its_stored_batches(cat_split):
    """Checkpoints written before the loader state was (seed, epoch, position) stored the rest
    of their epoch's batches, last first: those come next, then the epochs go on."""
    loader = BatchLoader(cat_split, 50, seed=2)
    rest = [np.arange(250, 300), np.arange(0, 50)]  # as stored: given from the end
    state = {"rng": loader.rng.bit_generator.state, "queue": [b.tolist() for b in rest]}
    resumed = BatchLoader(cat_split, 50, seed=2)
    resumed.set_state(state)
    assert resumed.next_batch().labels.tolist() == list(range(50))
    assert resumed.next_batch().labels.tolist() == list(range(250, 300))
    after = np.concatenate([resumed.next_batch().labels for _ in range(6)])
    assert sorted(after.tolist()) == list(range(300))  # then a whole new epoch


@pytest.mark.parametrize("world", [2, 4])
def test_sharded_loaders_together_give_the_one_process_batches(cat_split, world):
    """Each rank reads, renders and augments only its rows; its generator skips the others' draws,
    so the ranks' rows, padded alike, are the unsharded loader's batch, batch after batch."""
    tiny = [
        np.array([[1.0, 2.0, 1.0]], np.float32),
        np.array([[1.0, 0, 0], [0, 1.0, 1.0]], np.float32),
    ]
    sketches = list(cat_split.sketches[:78]) + tiny
    split = Split(sketches, np.arange(len(sketches)))
    one = BatchLoader(split, 20, raster_size=32, seed=3)
    ranks = [BatchLoader(split, 20, raster_size=32, seed=3, shard=(r, world)) for r in range(world)]
    for _ in range(6):  # past an epoch of 4 batches
        whole = one.next_batch()
        parts = [loader.next_batch() for loader in ranks]
        assert all(len(p.lengths) == 20 // world for p in parts)
        rows = max(p.strokes.shape[1] for p in parts)
        assert rows == whole.strokes.shape[1]
        assert torch.equal(torch.cat([p.padded(rows).strokes for p in parts]), whole.strokes)
        assert torch.equal(torch.cat([p.labels for p in parts]), whole.labels)
        assert torch.equal(torch.cat([p.lengths for p in parts]), whole.lengths)
        assert torch.equal(torch.cat([p.rasters for p in parts]), whole.rasters)
        assert all(p.rng.bit_generator.state == one.rng.bit_generator.state for p in ranks)


@pytest.fixture(scope="module")
def pen_split(cats) -> Split:
    """As `cat_split`, with the pen kept (cat_split's is divided too: one stroke a sketch)."""
    return Split([s * [1 / 30, 1 / 30, 1] for s in cats[:300]], np.arange(300))


def kept_strokes(target: np.ndarray, source: np.ndarray) -> list[int]:
    """Which strokes of `target` (stroke-3) `source` holds, in order, each where it was; fails
    if a stroke of `source` is not one of them."""
    wanted, kept, start = stroke_points(target), [], 0
    for stroke in stroke_points(source):
        start = next(
            i
            for i in range(start, len(wanted))
            if wanted[i].shape == stroke.shape and np.allclose(wanted[i], stroke, atol=1e-3)
        )
        kept.append(start)
        start += 1
    return kept


def test_damaged_batches_show_the_encoder_the_targets_with_whole_strokes_removed(pen_split):
    """Every row damaged (damage_share 1): the source is the augmented target less some of its
    strokes, the rest where they were; the raster is of the un-augmented sketch so damaged."""
    loader = BatchLoader(pen_split, 32, raster_size=64, seed=0, damage=0.6, damage_share=1.0)
    batch = loader.next_batch()
    strokes, lengths = batch.source
    assert strokes.shape[0] == len(batch.labels) and strokes.shape[1] <= batch.strokes.shape[1]
    for row, index in enumerate(batch.labels.tolist()):
        target = batch.strokes[row, 1 : batch.lengths[row] + 1][:, [0, 1, 3]].numpy()
        source = strokes[row, 1 : lengths[row] + 1][:, [0, 1, 3]].numpy()
        kept = kept_strokes(target, source)
        total = len(stroke_points(target))
        assert 1 <= len(kept) <= total - (total > 1)  # at least one gone, never all
        removed = np.ones(total, dtype=bool)
        removed[kept] = False
        seen = remove_strokes(pen_split.sketches[index], removed)
        assert np.array_equal(batch.rasters[row, 0].numpy(), rasterize_many([seen], 64)[0])


def test_damage_is_for_training_alone_and_repeats_by_seed(pen_split):
    checking = BatchLoader(pen_split, 32, raster_size=64, train=False, damage=0.6)
    assert next(iter(checking)).source is None

    def batches(seed: int) -> list:
        loader = BatchLoader(pen_split, 32, raster_size=64, seed=seed, damage=0.6)
        return [loader.next_batch() for _ in range(3)]

    first, again, other = batches(5), batches(5), batches(6)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.source[0], b.source[0]) and torch.equal(a.source[1], b.source[1])
        assert torch.equal(a.rasters, b.rasters) and torch.equal(a.strokes, b.strokes)
    assert not torch.equal(first[0].source[1], other[0].source[1])
    # damage_share 0.5 (the default): some rows damaged (fewer points), the others whole.
    shorter = (first[0].source[1] < first[0].lengths).tolist()
    assert True in shorter and False in shorter


def test_sharded_ranks_damage_their_rows_as_one_process_does(pen_split):
    """A row's damage is seeded by the global batch and the row's place in it: the ranks' sources
    and rasters together are the unsharded loader's, batch after batch."""
    one = BatchLoader(pen_split, 20, raster_size=32, seed=3, damage=0.6)
    ranks = [
        BatchLoader(pen_split, 20, raster_size=32, seed=3, damage=0.6, shard=(r, 2)) for r in (0, 1)
    ]
    for _ in range(3):
        whole = one.next_batch()
        parts = [loader.next_batch() for loader in ranks]
        assert torch.equal(torch.cat([p.source[1] for p in parts]), whole.source[1])
        assert torch.equal(torch.cat([p.rasters for p in parts]), whole.rasters)
        for p, rows in zip(parts, (slice(0, 10), slice(10, 20)), strict=True):
            n = p.source[0].shape[1]
            assert torch.equal(p.source[0], whole.source[0][rows, :n])
