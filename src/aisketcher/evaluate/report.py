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
from aisketcher.evaluate.healing import score_healing
from aisketcher.evaluate.leak import leak_check
from aisketcher.evaluate.likelihood import likelihood_by_class
from aisketcher.evaluate.metrics import (
    diversity_ttest,
    fid,
    phash_diversity,
    precision_recall,
    top1_accuracy,
)
from aisketcher.evaluate.mode_scores import Scoring, per_class, score_modes
from aisketcher.evaluate.modes import (
    RECONSTRUCT_SEED,
    TRAINING_CODES_SEED,
    decode_encodings,
    draw_class_only,
)
from aisketcher.evaluate.report_figures import report_figures
from aisketcher.evaluate.sets import EvalSettings, SketchSets, load_sets, run_info
from aisketcher.google_models import is_google

REPORT_FILE = "evaluation.json"


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
    models_url: str | None = None,
) -> dict[str, Any]:
    """Evaluate a run directory, exported model, magenta-js `.gen.json` or one of Google's models
    (`google:NAME`, fetched from `models_url` on first use); write the report.

    `compare` is another evaluation's `evaluation.json`: the diversity of the two models' class-only
    drawings is then compared with an unpaired t-test.
    """
    settings = settings or EvalSettings()
    if compare is not None:
        read_comparison(compare)  # a bad report is refused now, not after the evaluation
    google = is_google(source)  # by name: no folder, checkpoint or run of its own
    if not google:
        source = Path(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = None if google else checkpoint_digest(source)  # of the bytes about to be loaded
    sketcher = Sketcher.load(source, device=device, models_url=models_url)
    if settings.temperature is None:  # the model's own; the report records which it was
        settings = dataclasses.replace(settings, temperature=sketcher.temperature)
    if settings.guidance is not None:
        sketcher.guidance = settings.guidance
    if settings.prior_spread is not None:
        sketcher.prior_spread = settings.prior_spread
    if settings.pen_temperature is not None:
        sketcher.pen_temperature = settings.pen_temperature
    info = {} if google else run_info(source)
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
    from_training = None
    if cfg.has_latent:
        sets.reconstructed = decode_encodings(
            sketcher, sets.real, own, settings.temperature, settings.seed + RECONSTRUCT_SEED
        )
        if sets.training_picks is not None:
            # The class priors' limit: drawn from the codes the encoder gives training sketches
            # (a prior that fitted them exactly samples these), under the drawings' classes.
            from_training = decode_encodings(
                sketcher,
                sets.training_picks,
                model_index[sets.drawn_labels].tolist(),
                settings.temperature,
                settings.seed + TRAINING_CODES_SEED,
            )

    # ----- classifier features and predictions -----
    real_f, real_p = classifier.features_and_predictions(sets.real)
    recon_f = recon_p = None
    if sets.reconstructed is not None:
        recon_f, recon_p = classifier.features_and_predictions(sets.reconstructed)
    floor_f, _ = classifier.features_and_predictions(sets.floor)
    drawn_f, drawn_p = classifier.features_and_predictions(sets.drawn)
    intended = clf_index[sets.real_labels]

    def accuracy_by_class(pred: np.ndarray) -> dict[str, Any]:
        return per_class(names, sets.real_labels, top1_accuracy, pred, intended)

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
    scoring = Scoring(
        sketcher, classifier, names, model_index, clf_index, sets, settings, real_f, recon_f
    )
    modes = score_modes(scoring)
    recognizability.update(modes.pop("recognizability"))
    if cfg.has_latent and settings.heal_shares:
        modes["healing"] = score_healing(scoring, out)
    if recon_f is not None:
        recognizability["reconstruct"] = accuracy_by_class(recon_p)
        quality["reconstruct"] = _set_metrics(
            names, real_f, sets.real_labels, recon_f, sets.real_labels, settings.k
        )
        diversity["reconstruct"] = _diversity(names, sets.reconstructed, sets.real_labels)
    if from_training is not None:
        codes_f, codes_p = classifier.features_and_predictions(from_training)
        recognizability["training_codes"] = accuracy_by_class(codes_p)
        quality["training_codes"] = _set_metrics(
            names, real_f, sets.real_labels, codes_f, sets.drawn_labels, settings.k
        )

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
            "step": None if google else checkpoint_step(source),
            "checkpoint_sha256": digest,
            "guidance": sketcher.guidance,  # the w every drawing here was made with
            "prior_spread": sketcher.prior_spread,
            "pen_temperature": sketcher.pen_temperature,
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
        "lengths": _lengths(sets, cfg.max_seq_len),
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


def _lengths(sets: SketchSets, limit: int) -> dict[str, float]:
    """Points per sketch, real and drawn, and the share of class-only drawings that ran to the
    model's longest (N_max) without ending: a drawing that never stops is a scribble."""
    drawn = np.array([len(s) for s in sets.drawn])
    return {
        "real_mean": float(np.mean([len(s) for s in sets.real])),
        "draw_mean": float(drawn.mean()),
        "draw_at_max_share": float((drawn >= limit).mean()),
    }


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
