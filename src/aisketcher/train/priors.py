"""Fitting the priors of class-only drawing (`model/priors.py`) on training sketches: at every
checkpoint the trainer saves, and into checkpoints saved before they were fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aisketcher.allocator import release_free_memory
from aisketcher.checkpoint import (
    OPTIONAL_BUFFERS,
    load_weights,
    read_checkpoint,
    rewrite_checkpoint,
)
from aisketcher.data.dataset import Split
from aisketcher.latents import encode_sketches
from aisketcher.model.config import ModelConfig
from aisketcher.model.sketcher import SketchModel

# Sketches encoded per prior fit, over all classes: 256 a class up to 64 classes, then fewer, but
# never under 64 (the codes' size at the small model): the fit runs at every checkpoint, and at
# 345 classes x 256 it took two minutes and 670 MB.
FIT_SKETCHES = 16_384
FIT_PER_CLASS = (64, 256)


@torch.no_grad()
def fit_priors(model: SketchModel, train: Split, per_class: int | None = None) -> None:
    """Fit the priors of class-only drawing on up to `per_class` training sketches per class
    (default from FIT_SKETCHES; more than the codes have features, for the full covariance),
    encoded once for both: model.sketch_prior on posterior samples mu_s + sigma_s * eps (mu_s
    alone for a model that is not variational), model.raster_prior on z_r. The noise comes from
    its own generator, so fitting at a checkpoint leaves the run's random stream as it was."""
    if model.sketch_prior is None and model.raster_prior is None:
        return
    labels = train.labels
    classes = np.unique(labels)
    if per_class is None:
        per_class = int(np.clip(FIT_SKETCHES // max(len(classes), 1), *FIT_PER_CLASS))
    keep = np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in classes])
    keep_labels = torch.from_numpy(labels[keep]).to(model.output.weight.device)
    # Encoded shortest first, so that each batch pads little; the codes go back in `keep` order.
    lengths = train.lengths()[keep]
    order = np.argsort(lengths, kind="stable")
    was_training = model.training
    mu, log_var, z_r = [], [], []
    for part in _padded_parts(lengths[order], order):
        rows = keep[part]
        latent = encode_sketches(model, train.take(rows), labels[rows].tolist())
        # Only the codes are kept: the rest of a latent (c, reconstructed rasters, encoder
        # states) would make this fit's memory grow with the number of classes.
        mu.append(latent.mu_s)
        log_var.append(latent.log_var_s)
        z_r.append(latent.z_r)
        del latent
        release_free_memory()
    model.train(was_training)
    back = torch.from_numpy(np.argsort(order))  # row i of the codes: sketch keep[i]
    if model.sketch_prior is not None:
        codes = torch.cat(mu)[back]
        if model.config.variational:
            spread = (0.5 * torch.cat(log_var)[back]).exp()
            eps = torch.randn(codes.shape, generator=torch.Generator().manual_seed(0)).to(codes)
            codes = codes + eps * spread
        model.sketch_prior.fit(codes, keep_labels)
    if model.raster_prior is not None:
        model.raster_prior.fit(torch.cat(z_r)[back], keep_labels)


# Sketches encoded at once when fitting the priors: at most 256, and at most this many padded
# points, so that the memory of one encoding does not grow with the longest sketch sampled.
FIT_PADDED_POINTS = 256 * 64


def _padded_parts(lengths: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """`order` (sketch indices by increasing length; `lengths[i]` is sketch `order[i]`'s) cut into
    parts of at most 256 sketches and at most FIT_PADDED_POINTS once padded to their longest."""
    parts, start = [], 0
    for end in range(1, len(order) + 1):
        size = end - start
        if size > 256 or (size * lengths[end - 1] > FIT_PADDED_POINTS and size > 1):
            parts.append(order[start : end - 1])
            start = end - 1
    parts.append(order[start:])
    return parts


def refit_checkpoint_priors(path: Path, train: Split) -> bool:
    """Fit the class priors of a checkpoint saved before its model had them fitted (older code),
    in place, as training saves them now: the weights, optimizer and RNG state stay as they were.
    False, and nothing written, when every prior the model has is fitted already."""
    tensors, info = read_checkpoint(path)
    model = SketchModel(ModelConfig.from_dict(info["model"]))
    load_weights(model, tensors, str(path))
    priors = [p for p in (model.sketch_prior, model.raster_prior) if p is not None]
    if all(p.fitted for p in priors):
        return False
    fit_priors(model, train)
    state = model.state_dict()
    tensors.update({f"model.{k}": state[k] for k in OPTIONAL_BUFFERS if k in state})
    rewrite_checkpoint(path, tensors, info)
    return True
