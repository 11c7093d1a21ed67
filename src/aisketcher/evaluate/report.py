"""`evaluate_run`: every metric of one model, written as `evaluation.json` plus PNG figures.

For each evaluated class the first `samples` sketches of the split are the real set; the model
draws as many sketches from the class alone (class-only drawing) and reconstructs each real one
(encoded under its own class, z_s = mu_s). The other held-out split (valid for test) gives the
floors: FID and precision/recall of real sketches against real ones. Everything is seeded: the
same model, data, seed and settings give the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aisketcher import __version__
from aisketcher.api import Sketcher
from aisketcher.atomic import write_json
from aisketcher.checkpoint import checkpoint_digest, checkpoint_step
from aisketcher.data.dataset import Split
from aisketcher.errors import SketchDataError
from aisketcher.evaluate.classifier import SketchClassifier
from aisketcher.evaluate.leak import leak_check
from aisketcher.evaluate.likelihood import likelihood_by_class
from aisketcher.evaluate.metrics import (
    copy_check,
    copy_features,
    diversity_ttest,
    fid,
    nearest_distances,
    phash_diversity,
    precision_recall,
    top1_accuracy,
)
from aisketcher.evaluate.modes import (
    COMPLETE_SEED,
    INTERPOLATE_SEED,
    RECONSTRUCT_SEED,
    TRANSLATE_SEED,
    complete,
    decode_encodings,
    draw_class_only,
    half_drawn,
    interpolate,
)
from aisketcher.evaluate.report_figures import report_figures
from aisketcher.evaluate.sets import EvalSettings, SketchSets, load_sets, run_info

REPORT_FILE = "evaluation.json"


def _per_class(
    names: list[str], labels: np.ndarray, fn: Any, *arrays: np.ndarray
) -> dict[str, Any]:
    """fn(*arrays restricted to each class) for every class, and fn(*arrays) as "all"."""
    out = {name: fn(*(a[labels == k] for a in arrays)) for k, name in enumerate(names)}
    out["all"] = fn(*arrays)
    return out


def _finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def _fid_or_nan(a: np.ndarray, b: np.ndarray) -> float:
    return fid(a, b) if len(a) >= 2 and len(b) >= 2 else math.nan


def _set_metrics(
    names: list[str],
    real_feats: np.ndarray,
    real_labels: np.ndarray,
    feats: np.ndarray,
    labels: np.ndarray,
    k: int,
) -> dict[str, Any]:
    """FID and precision/recall of one set against the real set, per class and pooled."""
    fids = {
        name: _fid_or_nan(feats[labels == j], real_feats[real_labels == j])
        for j, name in enumerate(names)
    }
    fids["all"] = _fid_or_nan(feats, real_feats)
    prs = {}
    for j, name in [*enumerate(names), (-1, "all")]:
        mine = feats if j < 0 else feats[labels == j]
        theirs = real_feats if j < 0 else real_feats[real_labels == j]
        pr = precision_recall(theirs, mine, k)
        prs[name] = {"precision": pr.precision, "recall": pr.recall}
    return {"fid": fids, "precision_recall": prs}


def _diversity(names: list[str], sketches: list[np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """Mean pairwise pHash distance within each class; per-sketch values for t-tests."""
    per_class, per_sketch = {}, []
    for k, name in enumerate(names):
        d = phash_diversity([sketches[i] for i in np.flatnonzero(labels == k)])
        per_class[name] = d.mean_distance
        per_sketch += d.per_sketch.tolist()
    finite = [v for v in per_class.values() if math.isfinite(v)]
    return {
        "per_class": per_class,
        "mean_of_classes": float(np.mean(finite)) if finite else math.nan,
        "per_sketch": per_sketch,
    }


def json_ready(value: Any) -> Any:
    """NaN and infinities -> None (JSON has no NaN); NumPy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate_run(
    source: str | Path,
    classifier: SketchClassifier,
    out_dir: str | Path,
    settings: EvalSettings | None = None,
    *,
    compare: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate a run directory, exported model or magenta-js `.gen.json`; write the report.

    `compare` is another evaluation's `evaluation.json`: the diversity of the two models' class-only
    drawings is then compared with an unpaired t-test.
    """
    settings = settings or EvalSettings()
    if compare is not None:
        read_comparison(compare)  # a bad report is refused now, not after the evaluation
    source = Path(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = checkpoint_digest(source)  # of the bytes about to be loaded, not of a later rewrite
    sketcher = Sketcher.load(source, device=device)
    if settings.guidance is not None:
        sketcher.guidance = settings.guidance
    if settings.prior_spread is not None:
        sketcher.prior_spread = settings.prior_spread
    info = run_info(source)
    names = settings.classes or list(sketcher.class_names)
    model_index = np.array([sketcher.class_index(n) for n in names])
    clf_index = np.array([classifier.class_index(n) for n in names])
    split, sets = load_sets(sketcher, names, info, settings)
    torch.manual_seed(settings.seed)
    cfg = sketcher.model.config

    # ----- likelihood, on the whole split -----
    model_split = Split(split.sketches, model_index[split.labels])
    likelihood = likelihood_by_class(
        sketcher.model,
        model_split,
        {int(model_index[k]): n for k, n in enumerate(names)},
        batch_size=settings.batch_size,
        weights=sketcher.loss_weights,
    )

    # ----- generated sets -----
    own = model_index[sets.real_labels].tolist()
    sets.drawn = draw_class_only(
        sketcher, model_index[sets.drawn_labels].tolist(), settings.temperature, settings.seed
    )
    if cfg.has_latent:
        sets.reconstructed = decode_encodings(
            sketcher, sets.real, own, settings.temperature, settings.seed + RECONSTRUCT_SEED
        )

    # ----- classifier features and predictions -----
    real_f, real_p = classifier.features_and_predictions(sets.real)
    floor_f, _ = classifier.features_and_predictions(sets.floor)
    drawn_f, drawn_p = classifier.features_and_predictions(sets.drawn)
    intended = clf_index[sets.real_labels]

    def accuracy_by_class(pred: np.ndarray) -> dict[str, Any]:
        return _per_class(names, sets.real_labels, top1_accuracy, pred, intended)

    recognizability: dict[str, Any] = {
        "real": accuracy_by_class(real_p),
        "draw": accuracy_by_class(drawn_p),
    }
    quality: dict[str, Any] = {
        "floor": _set_metrics(
            names, real_f, sets.real_labels, floor_f, sets.floor_labels, settings.k
        ),
        "draw": _set_metrics(
            names, real_f, sets.real_labels, drawn_f, sets.drawn_labels, settings.k
        ),
    }
    diversity = {
        "real": _diversity(names, sets.real, sets.real_labels),
        "draw": _diversity(names, sets.drawn, sets.drawn_labels),
    }
    modes = score_modes(sketcher, classifier, names, model_index, clf_index, sets, settings)
    recognizability.update(modes.pop("recognizability"))
    if sets.reconstructed is not None:
        recon_f, recon_p = classifier.features_and_predictions(sets.reconstructed)
        recognizability["reconstruct"] = accuracy_by_class(recon_p)
        quality["reconstruct"] = _set_metrics(
            names, real_f, sets.real_labels, recon_f, sets.real_labels, settings.k
        )
        diversity["reconstruct"] = _diversity(names, sets.reconstructed, sets.real_labels)

    # ----- figures -----
    written = (
        report_figures(sketcher, source, out, names, sets, model_index, settings)
        if settings.figures
        else {}
    )

    report: dict[str, Any] = {
        "model": {
            "source": str(source),
            "config": cfg.name,
            "classes": list(sketcher.class_names),
            "step": checkpoint_step(source),
            "checkpoint_sha256": digest,
            "guidance": sketcher.guidance,  # the w every drawing here was made with
            "prior_spread": sketcher.prior_spread,
        },
        "classes": names,
        "settings": settings.to_dict(),
        "counts": {
            "real": {n: int((sets.real_labels == k).sum()) for k, n in enumerate(names)},
            "floor": {n: int((sets.floor_labels == k).sum()) for k, n in enumerate(names)},
        },
        "classifier": {
            "classes": classifier.classes,
            "accuracy": classifier.info.get("accuracy", {}),
            "source": classifier.source,
        },
        "likelihood": likelihood,
        "recognizability": recognizability,
        "fid": {kind: q["fid"] for kind, q in quality.items()},
        "precision_recall": {kind: q["precision_recall"] for kind, q in quality.items()},
        "diversity": diversity,
        **modes,
        "leak_check": leak_check(
            sketcher.model, sets.real, model_index[sets.real_labels], settings.batch_size
        ),
        "figures": {k: Path(v).name for k, v in written.items()},
        "code_version": __version__,
    }
    if not cfg.has_latent:
        report["skipped"] = "reconstructions and latents: the model has no encoder"
    if compare is not None:
        report["diversity_ttest"] = compare_diversity(report, compare)
    report = json_ready(report)
    write_json(out / REPORT_FILE, report)
    return report


def score_modes(
    sketcher: Sketcher,
    classifier: SketchClassifier,
    names: list[str],
    model_index: np.ndarray,
    clf_index: np.ndarray,
    sets: SketchSets,
    settings: EvalSettings,
) -> dict[str, Any]:
    """Translation and completion as the classifier sees them, and the copy check of every mode.

    - translate: each real sketch of class k encoded under class k + 1 (of the evaluated classes):
      recognised as that target? (The paper's Figure 2 claim: the class vector decides the class.)
    - complete: each real sketch cut after half of its strokes and finished under its class:
      recognised more often than the half-drawn start? The first `ending_starts` starts of each
      class are also finished `endings` ways, to see whether the endings differ in length.
    - interpolate: see `score_interpolation`.
    - copy check: every set's nearest-training-sketch distances against the real set's.
    """
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
        recognizability["translate"] = _per_class(
            names, target, top1_accuracy, pred, clf_index[target]
        )
        recognizability["translate_as_source"] = _per_class(
            names, target, top1_accuracy, pred, clf_index[labels]
        )
        generated["translate"] = (translated, target)
    interpolation = None
    if sketcher.model.config.has_latent and n > 1 and settings.interpolations > 0:
        ends, interpolation = score_interpolation(
            sketcher, classifier, names, model_index, clf_index, sets, settings
        )
        recognizability["interpolate_ends"] = ends
    starts = [half_drawn(s) for s in sets.real]
    completed = [e[0] for e in complete(sketcher, starts, own, t, settings.seed + COMPLETE_SEED)]
    for key, drawn in (("complete_start", starts), ("complete", completed)):
        _, pred = classifier.features_and_predictions(drawn)
        recognizability[key] = _per_class(names, labels, top1_accuracy, pred, clf_index[labels])
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


def score_interpolation(
    sketcher: Sketcher,
    classifier: SketchClassifier,
    names: list[str],
    model_index: np.ndarray,
    clf_index: np.ndarray,
    sets: SketchSets,
    settings: EvalSettings,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first `interpolations` real sketches of each class k interpolated, the i-th to the
    i-th of class k + 1 (of the evaluated classes), with the classes (k, k + 1) as the CLI's
    `--classes a,b`, in `INTERPOLATE_STEPS` drawings.

    Returns the recognizability of the ends (the first drawing as class k, the last as k + 1; per
    class: the ends meant as that class) and the walk's smoothness: per pair, the mean classifier-
    feature distance between consecutive drawings over the distance between its two ends
    (1 / (steps - 1) for drawings evenly spaced on a straight line; larger: the walk wanders or
    jumps), averaged per start class.
    """
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
    ends = _per_class(
        names, meant, top1_accuracy, np.concatenate([pred[:, 0], pred[:, -1]]), clf_index[meant]
    )
    step = np.linalg.norm(np.diff(feats, axis=1), axis=2).mean(1)
    span = np.linalg.norm(feats[:, -1] - feats[:, 0], axis=1)
    ratio = np.divide(step, span, out=np.full_like(step, np.nan), where=span > 0)
    smoothness = {
        "pairs": len(walks),
        "steps": steps,
        "step_over_ends": _per_class(names, src, _finite_mean, ratio),
    }
    return ends, smoothness


def read_comparison(other: str | Path) -> tuple[Path, dict[str, Any], list[float]]:
    """Another evaluation's report (a file or its folder) and its per-sketch diversities, checked
    before any work is done."""
    path = Path(other)
    if path.is_dir():
        path = path / REPORT_FILE
    try:
        theirs = json.loads(path.read_text())
        values = theirs["diversity"]["draw"]["per_sketch"]
        if not values or not all(isinstance(v, int | float) for v in values):
            raise ValueError("no per-sketch diversities")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise SketchDataError(f"not an evaluation report ({exc})", str(path)) from None
    return path, theirs, values


def compare_diversity(report: dict[str, Any], other: str | Path) -> dict[str, Any]:
    """Unpaired t-test of per-sketch pHash diversity of class-only drawings: this vs `other`."""
    path, theirs, b = read_comparison(other)
    a = report["diversity"]["draw"]["per_sketch"]
    result = diversity_ttest(np.asarray(a, np.float64), np.asarray(b, np.float64))
    return {
        "other": str(path),
        "other_model": theirs.get("model", {}).get("source"),
        **dataclasses.asdict(result),
        "same_settings": theirs.get("settings", {}).get("temperature")
        == report["settings"]["temperature"]
        and theirs.get("classes") == report["classes"],
    }
