"""Healing as the field measures it (SketchHealer, SketchLattice): real test sketches with a share
of their strokes removed, seeded, redrawn whole; `complete` of the same damaged sketches is the
baseline.

For each share: how often the classifier recognises the damaged, the healed and the completed
sketches as their class, and whether each retrieves its source: the real test sketch it came from
ranked first (top-1) or among the ten nearest (top-10) of the evaluated sketches of its class, by
the classifier's features (all the evaluated sketches of the class, whole, are the gallery).
The reconstructions of the whole sketches retrieve their sources as well as any redraw by this
model can (`whole_reconstructed`). The masks are saved (`MASKS_FILE`) so that other tools can heal the
same damaged sketches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aisketcher.atomic import write_json
from aisketcher.damage import random_mask, remove_strokes
from aisketcher.evaluate.metrics import top1_accuracy
from aisketcher.evaluate.mode_scores import Scoring, finite_mean, per_class
from aisketcher.evaluate.modes import HEAL_SEED, complete, decode_encodings
from aisketcher.strokes import num_strokes

MASKS_FILE = "damage_masks.json"
RETRIEVAL_RANKS = (1, 10)


def damage_masks(sketches: list[np.ndarray], share: float, seed: int) -> list[np.ndarray]:
    """Each sketch's strokes to remove at `share` (`damage.random_mask`), sketch i's drawn from
    its own generator seeded (seed, share in percent, i): the same at any number of sketches."""
    percent = round(share * 100)
    return [
        random_mask(num_strokes(s), share, np.random.default_rng([seed, percent, i]))
        for i, s in enumerate(sketches)
    ]


def retrieval(
    queries: np.ndarray,
    sources: np.ndarray,
    references: np.ndarray,
    labels: np.ndarray,
    ranks: tuple[int, ...] = RETRIEVAL_RANKS,
) -> dict[int, np.ndarray]:
    """Whether each query's source (references[sources[j]]) is among the `rank` references of its
    class (`labels`, one per reference) nearest to the query by Euclidean distance of the
    features, for each rank. A reference as near as the source counts against it."""
    places = np.empty(len(queries), dtype=np.int64)
    for j, (query, source) in enumerate(zip(queries, sources, strict=True)):
        d = np.linalg.norm(references[labels == labels[source]] - query, axis=1)
        places[j] = (d <= np.linalg.norm(references[source] - query)).sum() - 1
    return {rank: places < rank for rank in ranks}


def score_healing(scoring: Scoring, out: Path) -> dict[str, Any]:
    """Recognisability and retrieval of the damaged, healed and completed sketches at every share
    of `settings.heal_shares`; writes the masks to out / MASKS_FILE. Sketches of one stroke cannot
    be damaged and are left out (their count is reported)."""
    sketcher, classifier, names, sets, settings = scoring.common()
    labels, real_f = sets.real_labels, scoring.real_features
    position = np.zeros(len(labels), dtype=np.int64)  # each sketch's index among its class's
    for k in range(len(names)):
        position[labels == k] = np.arange((labels == k).sum())
    results: dict[str, Any] = {}
    if scoring.reconstructed_features is not None:
        # The ceiling of any redraw: how often the reconstruction of the whole sketch finds it.
        everyone = np.arange(len(labels))
        found = retrieval(scoring.reconstructed_features, everyone, real_f, labels)
        results["whole_reconstructed"] = {
            f"retrieval_top{rank}": per_class(names, labels, finite_mean, hit)
            for rank, hit in found.items()
        }
    saved: dict[str, Any] = {}
    for n, share in enumerate(settings.heal_shares):
        masks = damage_masks(sets.real, share, settings.seed)
        kept = np.flatnonzero([m.any() for m in masks])
        damaged = [remove_strokes(sets.real[i], masks[i]) for i in kept]
        own = scoring.model_index[labels[kept]].tolist()
        seed = settings.seed + HEAL_SEED + 1_000 * n
        healed = decode_encodings(sketcher, damaged, own, settings.temperature, seed)
        completed = [e[0] for e in complete(sketcher, damaged, own, settings.temperature, seed)]
        kind: dict[str, Any] = {"sketches": len(kept), "left_whole": len(labels) - len(kept)}
        for what, drawn in (("damaged", damaged), ("healed", healed), ("completed", completed)):
            feats, pred = classifier.features_and_predictions(drawn)
            scores = {
                "recognizability": per_class(
                    names, labels[kept], top1_accuracy, pred, scoring.clf_index[labels[kept]]
                )
            }
            for rank, hit in retrieval(feats, kept, real_f, labels).items():
                scores[f"retrieval_top{rank}"] = per_class(names, labels[kept], finite_mean, hit)
            kind[what] = scores
        results[f"{round(share * 100)}%"] = kind
        saved[f"{round(share * 100)}%"] = [
            {
                "class": names[labels[i]],
                "index": int(position[i]),
                "removed_strokes": np.flatnonzero(masks[i]).tolist(),
            }
            for i in range(len(labels))
        ]
    write_json(
        out / MASKS_FILE,
        {
            "about": "strokes removed from each evaluated sketch: the index-th sketch of the "
            "class's file in the split, strokes counted from 0 in drawing order; a sketch of one "
            "stroke is left whole (no entry removed)",
            "split": settings.split,
            "seed": settings.seed,
            "masks": saved,
        },
    )
    return {"shares": list(settings.heal_shares), "masks_file": MASKS_FILE, **results}
