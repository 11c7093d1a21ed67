"""The drawing modes as evaluation sets: class-only drawing, reconstruction, translation into
other classes (the paper's Figure 2), completion of half-drawn sketches and interpolation between
sketches of two classes.

Each takes normalised stroke-3 sketches and model class indices, plans its drawings as the API
does (`aisketcher.modes`) and returns what the model drew, batch by batch, chunk i seeded with a
fixed offset + i, so the same settings give the same sets.
"""

from __future__ import annotations

import numpy as np

from aisketcher import modes
from aisketcher.api import Sketcher

# Seed offsets of the modes, so that no two modes draw with the same random numbers.
RECONSTRUCT_SEED, TRANSLATE_SEED, COMPLETE_SEED = 10_000, 20_000, 30_000
INTERPOLATE_SEED, HEAL_SEED, TRAINING_CODES_SEED = 40_000, 50_000, 60_000
INTERPOLATE_STEPS = 5  # drawings along each interpolation, both ends included


def chunks(n: int, size: int) -> list[slice]:
    """Slices cutting n items into batches of `size`."""
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


def draw_class_only(
    sketcher: Sketcher, labels: list[int], temperature: float, seed: int, batch_size: int = 100
) -> list[np.ndarray]:
    """Drawings from class labels alone."""
    out: list[np.ndarray] = []
    for i, part in enumerate(chunks(len(labels), batch_size)):
        plan = modes.draw(sketcher.model, labels[part], seed + i)
        out += modes.run(sketcher.model, plan, temperature=temperature, seed=seed + i)
    return out


def decode_encodings(
    sketcher: Sketcher,
    sketches: list[np.ndarray],
    labels: list[int],
    temperature: float,
    seed: int,
    batch_size: int = 100,
    *,
    translate: bool = False,
) -> list[np.ndarray]:
    """Each sketch encoded under the class `labels[i]` and drawn: a reconstruction under its own
    class (z_s = mu_s, z_r of its raster), or with `translate` a translation under another (the
    latent of `Sketcher.translate`)."""
    out: list[np.ndarray] = []
    for i, part in enumerate(chunks(len(sketches), batch_size)):
        if translate:
            plan = modes.translate(sketcher.model, sketches[part], labels[part], seed + i)
        else:
            plan = modes.reconstruct(sketcher.model, sketches[part], labels[part])
        out += modes.run(sketcher.model, plan, temperature=temperature, seed=seed + i)
    return out


def half_drawn(s3: np.ndarray) -> np.ndarray:
    """The sketch cut after the first half of its strokes (at least one stroke)."""
    ends = np.flatnonzero(s3[:, 2] > 0.5)
    if len(ends) == 0:
        return s3.copy()
    keep = ends[max(len(ends) // 2, 1) - 1] + 1
    return s3[:keep].copy()


def complete(
    sketcher: Sketcher,
    starts: list[np.ndarray],
    labels: list[int],
    temperature: float,
    seed: int,
    endings: int = 1,
) -> list[list[np.ndarray]]:
    """`endings` completions of each start under its class, as `Sketcher.complete` draws them."""
    out = []
    for i, (start, label) in enumerate(zip(starts, labels, strict=True)):
        plan = modes.complete(sketcher.model, start, [label] * endings, seed + i)
        out.append(modes.run(sketcher.model, plan, temperature=temperature, seed=seed + i))
    return out


def interpolate(
    sketcher: Sketcher,
    starts: list[np.ndarray],
    ends: list[np.ndarray],
    classes: list[tuple[int, int]],
    temperature: float,
    seed: int,
    steps: int = INTERPOLATE_STEPS,
    batch_size: int = 100,
) -> list[list[np.ndarray]]:
    """`steps` drawings from each start (encoded under classes[p][0]) to its end (under
    classes[p][1]), planned as `Sketcher.interpolate` plans one pair, as many pairs a batch as
    make `batch_size` rows."""
    out: list[list[np.ndarray]] = []
    for i, part in enumerate(chunks(len(starts), max(batch_size // steps, 1))):
        plan = modes.interpolate_pairs(
            sketcher.model, starts[part], ends[part], classes[part], steps
        )
        drawn = modes.run(sketcher.model, plan, temperature=temperature, seed=seed + i)
        out += [drawn[p : p + steps] for p in range(0, len(drawn), steps)]
    return out
