"""The drawing modes' planner: for each mode, what the decoder draws from - the latent, the class
of each row, and the points it is primed with. The Python API (`Sketcher`, and through it the CLI
and the web app) and evaluation plan every drawing here, then step the one `sampler.Sampler`.

Inputs are in the model's units: normalised stroke-3 sketches and class indices (`Sketcher` turns
pixel sketches and class names into them; the class an input sketch is encoded under is
`model_info.input_classes`). What each latent holds is in `latents.py`.

- draw: z_s and z_r from each class's priors (`latents.class_latent`), no prefix.
- complete: as draw, primed with the start (its points fill the influence memory).
- translate: each sketch encoded under its target class (`latents.translation_latent`).
- reconstruct: each sketch encoded under its own class (z_s = mu_s, z_r of its raster).
- heal: a damaged sketch encoded as reconstruct encodes it, redrawn whole by a model trained to
  heal (`train --damage`).
- interpolate: two sketches encoded, their latents mixed along a line (`latents.mixed_latent`);
  `interpolate_pairs` plans several pairs in one batch (evaluation).

To add a mode: a function here returning its `Plan`, then its faces (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from aisketcher.latents import class_latent, encode_sketches, mixed_latent, translation_latent
from aisketcher.model.sketcher import Latent, SketchModel
from aisketcher.sampler import sample


@dataclass
class Plan:
    """What one batch of drawings decodes: one row per entry of `labels`."""

    latent: Latent
    labels: list[int]  # each row's class index
    prefix: np.ndarray | None = None  # normalised stroke-3 that primes every row (complete)
    # Each row's input sketch, as an index into the sketches the plan was made from (translate,
    # reconstruct, interpolate: the nearer end); None for the modes without one.
    inputs: list[int] | None = None

    @property
    def count(self) -> int:
        return len(self.labels)


def draw(model: SketchModel, labels: list[int], seed: int | None) -> Plan:
    """Class-only drawing: nothing but each row's class."""
    return Plan(class_latent(model, labels, seed), labels)


def complete(model: SketchModel, start: np.ndarray, labels: list[int], seed: int | None) -> Plan:
    """A started drawing finished under each row's class: the class's latent, as `draw` (an
    encoding of the unfinished start would describe it as a whole sketch, and the decoder would
    end right after it), primed with the start."""
    return Plan(class_latent(model, labels, seed), labels, start)


def translate(
    model: SketchModel,
    sketches: Sequence[np.ndarray],
    labels: list[int],
    seed: int | None,
    *,
    keep_layout: bool = False,
    class_pull: float = 0.0,
) -> Plan:
    """Each sketch redrawn as class `labels[i]` (class_pull 0: the paper's Figure 2)."""
    latent = translation_latent(
        model, list(sketches), labels, seed, keep_layout=keep_layout, class_pull=class_pull
    )
    return Plan(latent, labels, inputs=list(range(len(labels))))


def reconstruct(model: SketchModel, sketches: Sequence[np.ndarray], labels: list[int]) -> Plan:
    """Each sketch encoded under class `labels[i]` (z_s = mu_s) and drawn again."""
    latent = encode_sketches(model, list(sketches), labels)
    return Plan(latent, labels, inputs=list(range(len(labels))))


def heal(model: SketchModel, damaged: np.ndarray, labels: list[int]) -> Plan:
    """A sketch with strokes missing anywhere, drawn whole under each row's class: encoded as
    `reconstruct` does (z_s = mu_s, z_r of the damaged raster). A model trained with damage
    (train --damage) decodes that encoding as the whole sketch it came from; any other reconstructs
    the damaged sketch (and heals it less). The rows differ by the sampling alone."""
    return reconstruct(model, [damaged] * len(labels), labels)


def interpolate(
    model: SketchModel, a: np.ndarray, b: np.ndarray, classes: tuple[int, int], steps: int
) -> Plan:
    """`steps` rows along the line from a's latent (encoded under classes[0]) to b's: z_s, z_r
    and c mixed linearly; each row is labelled with the nearer end's class."""
    return interpolate_pairs(model, [a], [b], [classes], steps)


def interpolate_pairs(
    model: SketchModel,
    starts: Sequence[np.ndarray],
    ends: Sequence[np.ndarray],
    classes: Sequence[tuple[int, int]],
    steps: int,
) -> Plan:
    """`interpolate` of each (starts[p], ends[p]) under classes[p], in one batch: `steps` rows per
    pair, pair by pair; each row's input is its nearer end in the order a0, b0, a1, b1, ..."""
    sketches = [s for pair in zip(starts, ends, strict=True) for s in pair]
    encoded = encode_sketches(model, sketches, [c for pair in classes for c in pair])
    weights = torch.linspace(0, 1, steps, device=model.output.weight.device)[:, None]
    nearer = (weights.flatten() >= 0.5).long()  # 0: a, 1: b
    inputs = [2 * p + i for p in range(len(classes)) for i in nearer.tolist()]
    labels = [classes[i // 2][i % 2] for i in inputs]
    return Plan(mixed_latent(encoded, weights, nearer), labels, inputs=inputs)


def run(
    model: SketchModel, plan: Plan, *, temperature: float | None, seed: int | None
) -> list[np.ndarray]:
    """Draw a plan to the end (normalised stroke-3, one per row), seeded; `temperature` None:
    the model's."""
    return sample(
        model, plan.latent, plan.count, temperature=temperature, seed=seed, prefix=plan.prefix
    )
