"""Batches for the models: stroke-5 with a start token, masks, augmentation and rasters.

Sketches are grouped by length so that a batch is padded to its own longest sketch rather than to
the longest of the dataset (QuickDraw averages 44 points against a maximum of 250 here).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from aisketcher.damage import random_mask, remove_strokes
from aisketcher.data.dataset import Split
from aisketcher.raster import rasterize_many
from aisketcher.strokes import num_strokes, stroke3_to_stroke5

# Sketch-RNN's start token S0 = (0, 0, 1, 0, 0), prepended to every sequence.
START_TOKEN = np.array([0.0, 0.0, 1.0, 0.0, 0.0], dtype=np.float32)


@dataclass
class Batch:
    """A batch of B sketches, batch-major tensors."""

    strokes: torch.Tensor  # (B, L + 1, 5) stroke-5 with the start token in row 0
    lengths: torch.Tensor  # (B,) number of real points of each sketch
    labels: torch.Tensor  # (B,) class indices
    rasters: torch.Tensor | None  # (B, 1, 128, 128) binary images X_r, or None
    # Healing: what the encoder reads when it is not the target (a damaged sketch, whose raster
    # `rasters` then holds), as `strokes` and `lengths` are laid out.
    source: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def mask(self) -> torch.Tensor:
        """(B, L) 1.0 on the real points of the targets (rows 1..L of `strokes`)."""
        steps = torch.arange(self.strokes.shape[1] - 1, device=self.lengths.device)
        return (steps[None, :] < self.lengths[:, None]).float()

    def padded(self, rows: int, source_rows: int = 0) -> Batch:
        """The batch with `rows` rows of strokes (start token included), and its source with
        `source_rows`: more end-of-sketch rows (p3 = 1) after the last, as `collate` pads."""
        source = self.source
        if source is not None:
            source = (_pad_end(source[0], source_rows), source[1])
        strokes = _pad_end(self.strokes, rows)
        return Batch(strokes, self.lengths, self.labels, self.rasters, source)

    def to(self, device: torch.device | str) -> Batch:
        rasters = self.rasters.to(device) if self.rasters is not None else None
        source = None
        if self.source is not None:
            source = (self.source[0].to(device), self.source[1].to(device))
        return Batch(
            self.strokes.to(device),
            self.lengths.to(device),
            self.labels.to(device),
            rasters,
            source,
        )


def _pad_end(strokes: torch.Tensor, rows: int) -> torch.Tensor:
    """(B, L, 5) stroke-5 with end-of-sketch rows added up to `rows` rows (none if as many)."""
    more = rows - strokes.shape[1]
    if more <= 0:
        return strokes
    pad = strokes.new_zeros(strokes.shape[0], more, 5)
    pad[..., 4] = 1.0
    return torch.cat([strokes, pad], 1)


def random_scale(s3: np.ndarray, rng: np.random.Generator, amount: float = 0.15) -> np.ndarray:
    """Independent x and y scaling by U(1 - amount, 1 + amount), as magenta's `random_scale`."""
    out = s3.copy()
    out[:, 0] *= (rng.random() - 0.5) * 2 * amount + 1.0
    out[:, 1] *= (rng.random() - 0.5) * 2 * amount + 1.0
    return out


def drop_points(s3: np.ndarray, rng: np.random.Generator, prob: float = 0.1) -> np.ndarray:
    """Magenta's `augment_strokes`: drop interior points of a stroke, merging their offsets.

    A point may go only when it and the previous kept point are pen-down and it is at least the
    third such point in a row; its offset is added to the previous kept point, so the shape keeps
    its end points.
    """
    if prob <= 0 or len(s3) < 3:
        return s3.copy()
    draws = rng.random(len(s3))
    out = [s3[0].copy()]
    count = 0
    for i in range(1, len(s3)):
        point = s3[i]
        prev = out[-1]
        count = 0 if point[2] == 1 or prev[2] == 1 else count + 1
        if point[2] == 0 and prev[2] == 0 and count > 2 and draws[i] < prob:
            prev[0] += point[0]
            prev[1] += point[1]
        else:
            out.append(point.copy())
    return np.stack(out)


def augment(s3: np.ndarray, rng: np.random.Generator, scale: float, drop: float) -> np.ndarray:
    """Training augmentation in magenta's order: random scaling, then point dropping."""
    out = random_scale(s3, rng, scale) if scale > 0 else s3
    return drop_points(out, rng, drop) if drop > 0 else out.copy()


def stack_stroke5(
    sketches: list[np.ndarray], pad_to: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stroke-3 sketches as (B, rows + 1, 5) stroke-5 with S0 prepended and p3 = 1 padding rows,
    and their lengths; rows = (longest or `pad_to`) + 1."""
    lengths = np.array([len(s) for s in sketches], dtype=np.int64)
    targets = (int(lengths.max()) if pad_to is None else pad_to) + 1
    out = np.empty((len(sketches), targets + 1, 5), dtype=np.float32)
    out[:, 0] = START_TOKEN
    for i, s in enumerate(sketches):
        out[i, 1:] = stroke3_to_stroke5(s, targets)
    return torch.from_numpy(out), torch.from_numpy(lengths)


def collate(
    sketches: list[np.ndarray],
    labels: np.ndarray,
    rasters: np.ndarray | None = None,
    pad_to: int | None = None,
    sources: list[np.ndarray] | None = None,
) -> Batch:
    """Stack stroke-3 sketches into a stroke-5 batch with S0 prepended and p3 = 1 padding rows.

    The batch holds (longest or `pad_to`) + 1 target rows, so that every sketch, the longest too,
    ends in at least one end-of-sketch row (spec 2.6): the decoder must learn where each one stops.
    `sources`: what the encoder reads in place of each sketch (healing), stacked alike.
    """
    strokes, lengths = stack_stroke5(sketches, pad_to)
    raster_tensor = None
    if rasters is not None:
        raster_tensor = torch.from_numpy(rasters.astype(np.float32)).unsqueeze(1)
    source = stack_stroke5(sources) if sources is not None else None
    return Batch(strokes, lengths, torch.as_tensor(labels, dtype=torch.long), raster_tensor, source)


def balanced_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One epoch's sketch indices with every class equally often, shuffled.

    Each class gives ceil(N / classes) indices: a class with fewer sketches is repeated (each
    pass over it shuffled anew), a class with more gives another random subset every epoch. The
    official datasets hold 70,000 training sketches in every class; our subsets do not.
    """
    classes = np.unique(labels)
    per_class = -(-len(labels) // len(classes))
    parts = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        passes = -(-per_class // len(members))
        parts.append(np.concatenate([rng.permutation(members) for _ in range(passes)])[:per_class])
    return rng.permutation(np.concatenate(parts))


def length_grouped_batches(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    group: int = 50,
    order: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Shuffle, sort within windows of `group` batches by length, cut into batches, shuffle those.

    Windows keep batches random while each batch holds sketches of similar length. Every batch is
    full (unless the split is smaller than one batch): the remainder left out of an epoch is taken
    at random before sorting, not from the longest sketches of a window. `order`: the epoch's
    shuffled indices (default: every sketch once).
    """
    if order is None:
        order = rng.permutation(len(lengths))
    if len(order) >= batch_size:
        order = order[: len(order) - len(order) % batch_size]
    window = batch_size * group
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


class BatchLoader:
    """Endless (training) or single-pass (evaluation) batches from one split.

    Training batches are augmented and length-grouped; evaluation batches keep file order and are
    not augmented. With `raster_size`, each batch carries the binarized images of its un-augmented
    sketches, rendered with the batch (a percent of a training step, docs/measurements.md, and no
    cache that grows with the data).

    An epoch's order comes from a generator seeded by (seed, epoch), so the loader's whole state
    is the epoch, the position in it and the augmentation generator's state: a few hundred bytes
    in a checkpoint whatever the size of the split.

    With `shard` = (rank, world), a training batch is this rank's equal share of the rows of the
    global batch that every rank's loader chooses alike: only those sketches are read, rendered
    and augmented, and the augmentation generator skips the others' draws, so that the ranks
    together have the one-process batch (padded to their own longest: see distributed.rank_rows).

    With `damage` > 0 (healing), a share `damage_share` of training sketches reach the encoder and
    the autoencoder with up to `damage` of their strokes removed (damage.py), the target whole.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        raster_size: int | None = None,
        train: bool = True,
        seed: int = 0,
        scale: float = 0.15,
        drop: float = 0.1,
        group_by_length: bool = True,
        balance_classes: bool = False,
        pad_to: int | None = None,
        shard: tuple[int, int] | None = None,
        damage: float = 0.0,
        damage_share: float = 0.5,
    ) -> None:
        if len(split) == 0:
            raise ValueError("cannot batch an empty split")
        self.split = split
        self.batch_size = batch_size
        self.raster_size = raster_size
        self.train = train
        self.seed = seed
        self.rng = np.random.default_rng(seed)  # augmentation
        self.scale = scale if train else 0.0
        self.drop = drop if train else 0.0
        self.group_by_length = group_by_length
        self.balance_classes = balance_classes
        self.pad_to = pad_to
        self.shard = shard
        self.damage = damage if train else 0.0
        self.damage_share = damage_share
        self._lengths = split.lengths()
        self.epoch = 0
        self.position = 0  # batches of the epoch already given
        self._batches: list[np.ndarray] | None = None

    def make_batch(self, indices: np.ndarray) -> Batch:
        before = after = indices[:0]
        # One draw per global batch, the same on every rank, seeds each row's damage.
        damage_seed = int(self.rng.integers(2**63)) if self.damage > 0 else None
        first = 0  # this rank's first row of the global batch
        if self.shard is not None and self.train:
            rank, world = self.shard
            share = len(indices) // world
            first = rank * share
            before, after = indices[:first], indices[first + share :]
            indices = indices[first : first + share]
        sketches = self.split.take(indices)
        masks = None
        if damage_seed is not None:
            masks = [self._damage_mask(s, damage_seed, first + i) for i, s in enumerate(sketches)]
        rasters = None
        if self.raster_size is not None:
            seen = sketches if masks is None else [*map(remove_strokes, sketches, masks)]
            rasters = rasterize_many(seen, self.raster_size)
        if self.train:
            self._skip_augmentation(before)
            sketches = [augment(s, self.rng, self.scale, self.drop) for s in sketches]
            self._skip_augmentation(after)
        # Augmentation keeps every stroke (it drops pen-down points only): the masks still fit.
        sources = None if masks is None else [*map(remove_strokes, sketches, masks)]
        labels = self.split.labels[indices]
        return collate(sketches, labels, rasters, self.pad_to, sources)

    def _damage_mask(self, s3: np.ndarray, seed: int, row: int) -> np.ndarray:
        """Row `row`'s strokes to remove: none, or with probability damage_share a share drawn
        from U(0, damage) (at least one stroke, never all)."""
        rng = np.random.default_rng([seed, row])
        strokes = num_strokes(s3)
        if rng.random() >= self.damage_share:
            return np.zeros(strokes, dtype=bool)
        return random_mask(strokes, rng.random() * self.damage, rng)

    def _skip_augmentation(self, indices: np.ndarray) -> None:
        """Advance the augmentation generator past `augment` of these sketches, unread: it draws
        two numbers to scale one, and one per point to drop points from one of 3 points or more."""
        lengths = self._lengths[indices].astype(np.int64)
        draws = len(indices) * 2 * (self.scale > 0)
        if self.drop > 0:
            draws += int(lengths[lengths >= 3].sum())
        if draws:
            self.rng.random(draws)

    def _epoch(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = (
            balanced_order(self.split.labels, rng)
            if self.balance_classes
            else rng.permutation(len(self.split))
        )
        if self.group_by_length:
            return length_grouped_batches(self._lengths, self.batch_size, rng, order=order)
        return [
            order[i : i + self.batch_size]
            for i in range(0, len(order) - self.batch_size + 1, self.batch_size)
        ] or [order]

    def next_batch(self) -> Batch:
        """The next training batch; a new shuffled epoch begins when one runs out."""
        if self._batches is None:
            self._batches = self._epoch(self.epoch)
        if self.position == len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self._epoch(self.epoch)
        self.position += 1
        return self.make_batch(self._batches[self.position - 1])

    def __iter__(self) -> Iterator[Batch]:
        """One pass over the split in order (for validation and test)."""
        for start in range(0, len(self.split), self.batch_size):
            yield self.make_batch(np.arange(start, min(start + self.batch_size, len(self.split))))

    def get_state(self) -> dict:
        """Seed, epoch, position and the augmentation RNG, JSON-serialisable, for exact resume."""
        state = self.rng.bit_generator.state
        return {"rng": state, "seed": self.seed, "epoch": self.epoch, "position": self.position}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        if "queue" in state:
            # A checkpoint of an earlier version, which stored the rest of its epoch's batches:
            # those are given first, then epochs go on from (seed, 1).
            rest = [np.asarray(b, dtype=np.int64) for b in state["queue"]][::-1]
            self._batches, self.epoch, self.position = rest, 0, 0
            return
        self.seed, self.epoch, self.position = (
            int(state[k]) for k in ("seed", "epoch", "position")
        )
        self._batches = None
        if self.position:
            self._batches = self._epoch(self.epoch)
            if not 0 <= self.position <= len(self._batches):
                raise ValueError(f"position {self.position} of {len(self._batches)} batches")
