"""The paper's loss terms on a held-out split, per class, exactly as validation computes them.

Each class's sketches go through `loss.evaluate_loss` (no augmentation, no dropout, no KL floor,
every batch padded to N_max so that l_s covers all N_max rows as in eq. 13); the pooled value is the
mean over all sketches, i.e. the per-class values weighted by their counts.
"""

from __future__ import annotations

import numpy as np
import torch

from aisketcher.data.batching import BatchLoader
from aisketcher.data.dataset import Split
from aisketcher.loss_weights import LossWeights
from aisketcher.model.sketcher import SketchModel
from aisketcher.train.loss import evaluate_loss

# What a report shows: l_r = l_c + l_s, l_z, l_a, the paper's total; and the parts around them.
TERMS = ("total", "l_r", "l_c", "l_s", "l_z", "l_a", "l_kl", "l_ae")


def split_likelihood(
    model: SketchModel,
    split: Split,
    *,
    batch_size: int = 100,
    weights: LossWeights | None = None,
) -> dict[str, float]:
    """Mean loss terms over one split (labels are the model's class indices), weighed by the
    loss weights the model trained with."""
    loader = BatchLoader(
        split,
        batch_size,
        raster_size=model.config.raster_size if model.config.reads_rasters else None,
        train=False,
        pad_to=model.config.max_seq_len,
    )
    device = model.output.weight.device
    terms = evaluate_loss(model, loader, torch.device(device), weights=weights)
    return {k: terms[k] for k in TERMS}


def likelihood_by_class(
    model: SketchModel,
    split: Split,
    class_names: dict[int, str],
    *,
    batch_size: int = 100,
    weights: LossWeights | None = None,
) -> dict[str, dict[str, float]]:
    """{class name: terms and count} for each model class index in `class_names`, plus "all"."""
    out: dict[str, dict[str, float]] = {}
    sums: dict[str, float] = dict.fromkeys(TERMS, 0.0)
    total = 0
    for index, name in class_names.items():
        keep = np.flatnonzero(split.labels == index)
        if len(keep) == 0:
            continue
        part = split.subset(keep)
        terms = split_likelihood(model, part, batch_size=batch_size, weights=weights)
        out[name] = {**terms, "count": len(keep)}
        for k in TERMS:
            sums[k] += terms[k] * len(keep)
        total += len(keep)
    if total:
        out["all"] = {**{k: v / total for k, v in sums.items()}, "count": total}
    return out
