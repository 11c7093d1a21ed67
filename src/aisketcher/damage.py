"""Damaged sketches, for healing: strokes removed anywhere in a sketch, the rest left where they
were. Training shows the encoder and the autoencoder such a sketch while the decoder's target
stays whole; evaluation heals test sketches damaged with saved, seeded masks."""

from __future__ import annotations

import numpy as np

from aisketcher.strokes import num_strokes


def stroke_ids(s3: np.ndarray) -> np.ndarray:
    """(N,) the index of the stroke each point of a stroke-3 sketch belongs to (a stroke ends at
    a point with p = 1)."""
    ends = np.asarray(s3)[:-1, 2] > 0.5
    return np.concatenate([[0], np.cumsum(ends)]).astype(np.int64)


def removed_count(strokes: int, share: float) -> int:
    """How many of `strokes` strokes a damage of `share` removes: share x strokes rounded, at
    least one and never all (a sketch of one stroke is left whole)."""
    if strokes < 2 or share <= 0:
        return 0
    return int(np.clip(round(share * strokes), 1, strokes - 1))


def random_mask(strokes: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """(strokes,) bool, True for each stroke removed: `removed_count` strokes chosen at random."""
    mask = np.zeros(strokes, dtype=bool)
    mask[rng.permutation(strokes)[: removed_count(strokes, share)]] = True
    return mask


def remove_strokes(s3: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """`s3` without the strokes marked in `removed` (bool, one per stroke): the kept points stay at
    their absolute positions, so the first offset after a gap spans it with the pen up."""
    s3, removed = np.asarray(s3), np.asarray(removed, dtype=bool)
    if not removed.any():  # most training rows: no stroke to look up
        return s3.copy()
    keep = ~removed[stroke_ids(s3)]
    if not keep.any():
        raise ValueError("a damage cannot remove every stroke of a sketch")
    points = np.cumsum(s3[:, :2].astype(np.float64), axis=0)[keep]
    out = np.empty((len(points), 3), dtype=s3.dtype)
    out[:, :2] = np.diff(points, axis=0, prepend=np.zeros((1, 2)))
    out[:, 2] = s3[keep, 2]
    return out


def damage(s3: np.ndarray, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`s3` with `share` of its strokes removed at random: (damaged sketch, the mask used)."""
    mask = random_mask(num_strokes(s3), share, rng)
    return remove_strokes(s3, mask), mask
