"""How each drawing mode scores in an evaluation: translation, completion and interpolation as the
classifier sees them, and the copy check of every generated set (`score_modes`), with the per-class
helpers the report shares."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from aisketcher.api import Sketcher
from aisketcher.evaluate.classifier import SketchClassifier
from aisketcher.evaluate.metrics import copy_check, copy_features, nearest_distances, top1_accuracy
from aisketcher.evaluate.modes import (
    COMPLETE_SEED,
    INTERPOLATE_SEED,
    TRANSLATE_SEED,
    complete,
    decode_encodings,
    half_drawn,
    interpolate,
)
from aisketcher.evaluate.sets import EvalSettings, SketchSets


@dataclass
class Scoring:
    """What every mode's score reads: the model, the classifier, the evaluated classes (their
    names, and each one's index in the model and in the classifier), the sketch sets and the
    settings, and the classifier's features of the real sketches and of their reconstructions
    (None for a model without an encoder), computed once by the report."""

    sketcher: Sketcher
    classifier: SketchClassifier
    names: list[str]
    model_index: np.ndarray
    clf_index: np.ndarray
    sets: SketchSets
    settings: EvalSettings
    real_features: np.ndarray
    reconstructed_features: np.ndarray | None

    def common(self) -> tuple[Sketcher, SketchClassifier, list[str], SketchSets, EvalSettings]:
        """What most scores read first: the model, the classifier, the names, sets and settings."""
        return self.sketcher, self.classifier, self.names, self.sets, self.settings


def per_class(names: list[str], labels: np.ndarray, fn: Any, *arrays: np.ndarray) -> dict[str, Any]:
    """fn(*arrays restricted to each class) for every class, and fn(*arrays) as "all"."""
    out = {name: fn(*(a[labels == k] for a in arrays)) for k, name in enumerate(names)}
    out["all"] = fn(*arrays)
    return out


def finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def score_modes(scoring: Scoring) -> dict[str, Any]:
    """Translation and completion as the classifier sees them, and the copy check of every mode.

    - translate: each real sketch of class k encoded under class k + 1 (of the evaluated classes):
      recognised as that target? (The paper's Figure 2 claim: the class vector decides the class.)
    - complete: each real sketch cut after half of its strokes and finished under its class:
      recognised more often than the half-drawn start? The first `ending_starts` starts of each
      class are also finished `endings` ways, to see whether the endings differ in length.
    - interpolate: see `score_interpolation`.
    - copy check: every set's nearest-training-sketch distances against the real set's.
    """
    sketcher, classifier, names, sets, settings = scoring.common()
    model_index, clf_index = scoring.model_index, scoring.clf_index
    n = len(names)
    labels = sets.real_labels
    own = model_index[labels].tolist()
    t = settings.temperature
    recognizability: dict[str, Any] = {}
    generated: dict[str, tuple[list[np.ndarray], np.ndarray]] = {
        "draw": (sets.drawn, sets.drawn_labels)
    }
    if sets.reconstructed is not None:
        generated["reconstruct"] = (sets.reconstructed, labels)
    if sketcher.model.config.has_latent and n > 1:
        target = (labels + 1) % n
        translated = decode_encodings(
            sketcher,
            sets.real,
            model_index[target].tolist(),
            t,
            settings.seed + TRANSLATE_SEED,
            translate=True,
        )
        _, pred = classifier.features_and_predictions(translated)
        recognizability["translate"] = per_class(
            names, target, top1_accuracy, pred, clf_index[target]
        )
        recognizability["translate_as_source"] = per_class(
            names, target, top1_accuracy, pred, clf_index[labels]
        )
        generated["translate"] = (translated, target)
    interpolation = None
    if sketcher.model.config.has_latent and n > 1 and settings.interpolations > 0:
        ends, interpolation = score_interpolation(scoring)
        recognizability["interpolate_ends"] = ends
    starts = [half_drawn(s) for s in sets.real]
    completed = [e[0] for e in complete(sketcher, starts, own, t, settings.seed + COMPLETE_SEED)]
    for key, drawn in (("complete_start", starts), ("complete", completed)):
        _, pred = classifier.features_and_predictions(drawn)
        recognizability[key] = per_class(names, labels, top1_accuracy, pred, clf_index[labels])
    generated["complete"] = (completed, labels)
    few = np.concatenate([np.flatnonzero(labels == k)[: settings.ending_starts] for k in range(n)])
    endings = complete(
        sketcher,
        [starts[i] for i in few],
        [own[i] for i in few],
        t,
        settings.seed + COMPLETE_SEED + 5_000,
        endings=settings.endings,
    )
    added = [[len(e) - len(starts[i]) for e in ends] for i, ends in zip(few, endings, strict=True)]
    # Every label here indexes the evaluated classes (`names`), the training sketches' too: a
    # model's own class indices would pair a class with another's sketches, or with none.
    real_d = nearest_distances(
        copy_features(sets.real), labels, sets.train_features, sets.train_labels
    )
    copies = {}
    for key, (drawn, drawn_labels) in generated.items():
        d = nearest_distances(
            copy_features(drawn), drawn_labels, sets.train_features, sets.train_labels
        )
        copies[key] = dataclasses.asdict(copy_check(d, real_d))
    return {
        "recognizability": recognizability,
        **({"interpolate": interpolation} if interpolation is not None else {}),
        "endings": {
            "per_start": settings.endings,
            "starts": len(few),
            "points_added": added,
            "mean_distinct_lengths": float(np.mean([len(set(a)) for a in added])),
            "share_adding_nothing": float(np.mean([x == 0 for a in added for x in a])),
        },
        "copy_check": copies,
    }


def score_interpolation(scoring: Scoring) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first `interpolations` real sketches of each class k interpolated, the i-th to the
    i-th of class k + 1 (of the evaluated classes), with the classes (k, k + 1) as the CLI's
    `--classes a,b`, in `INTERPOLATE_STEPS` drawings.

    Returns the recognizability of the ends (the first drawing as class k, the last as k + 1; per
    class: the ends meant as that class) and the walk's smoothness: per pair, the mean classifier-
    feature distance between consecutive drawings over the distance between its two ends
    (1 / (steps - 1) for drawings evenly spaced on a straight line; larger: the walk wanders or
    jumps), averaged per start class.
    """
    sketcher, classifier, names, sets, settings = scoring.common()
    model_index, clf_index = scoring.model_index, scoring.clf_index
    n, labels = len(names), sets.real_labels
    firsts, seconds = [], []
    for k in range(n):
        mine, theirs = (
            np.flatnonzero(labels == j)[: settings.interpolations] for j in (k, (k + 1) % n)
        )
        firsts += mine[: len(theirs)].tolist()
        seconds += theirs[: len(mine)].tolist()
    src = labels[firsts]
    dst = (src + 1) % n
    walks = interpolate(
        sketcher,
        [sets.real[i] for i in firsts],
        [sets.real[i] for i in seconds],
        list(zip(model_index[src].tolist(), model_index[dst].tolist(), strict=True)),
        settings.temperature,
        settings.seed + INTERPOLATE_SEED,
        batch_size=settings.batch_size,
    )
    steps = len(walks[0])
    feats, pred = classifier.features_and_predictions([s for walk in walks for s in walk])
    feats, pred = feats.reshape(len(walks), steps, -1), pred.reshape(len(walks), steps)
    meant = np.concatenate([src, dst])
    ends = per_class(
        names, meant, top1_accuracy, np.concatenate([pred[:, 0], pred[:, -1]]), clf_index[meant]
    )
    step = np.linalg.norm(np.diff(feats, axis=1), axis=2).mean(1)
    span = np.linalg.norm(feats[:, -1] - feats[:, 0], axis=1)
    ratio = np.divide(step, span, out=np.full_like(step, np.nan), where=span > 0)
    smoothness = {
        "pairs": len(walks),
        "steps": steps,
        "step_over_ends": per_class(names, src, finite_mean, ratio),
    }
    return ends, smoothness
