"""Fitting the priors of class-only drawing (`model/priors.py`) on training sketches: at every
checkpoint the trainer saves, and into checkpoints saved before they were fitted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

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


@torch.no_grad()
def fit_priors(
    model: SketchModel, sketches: list[np.ndarray], labels: np.ndarray, per_class: int = 256
) -> None:
    """Fit the priors of class-only drawing on up to `per_class` training sketches per class
    (normalised stroke-3; more than the codes have features, for the full covariance), encoded
    once for both: model.sketch_prior on posterior samples mu_s + sigma_s * eps (mu_s alone for
    a model that is not variational), model.raster_prior on z_r. The noise comes from its own
    generator, so fitting at a checkpoint leaves the run's random stream as it was."""
    if model.sketch_prior is None and model.raster_prior is None:
        return
    keep = np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in np.unique(labels)])
    keep_labels = torch.from_numpy(labels[keep]).to(model.output.weight.device)
    # Encoded shortest first, so that each batch pads little; the codes go back in `keep` order.
    order = np.argsort([len(sketches[i]) for i in keep], kind="stable")
    was_training = model.training
    parts = []
    for part in _padded_parts(np.array([len(sketches[keep[i]]) for i in order]), order):
        latent = encode_sketches(
            model, [sketches[keep[i]] for i in part], labels[keep[part]].tolist()
        )
        # The codes are what is fitted: the latent's reconstructed rasters (64 KB a sketch) and
        # encoder states are let go, or this fit's memory would grow with the number of classes.
        parts.append(dataclasses.replace(latent, raster_recon=None, memory=None))
    model.train(was_training)
    back = torch.from_numpy(np.argsort(order))  # row i of the codes: sketch keep[i]
    if model.sketch_prior is not None:
        codes = torch.cat([p.mu_s for p in parts])[back]
        if model.config.variational:
            log_var = torch.cat([p.log_var_s for p in parts])[back]
            eps = torch.randn(codes.shape, generator=torch.Generator().manual_seed(0)).to(codes)
            codes = codes + eps * (0.5 * log_var).exp()
        model.sketch_prior.fit(codes, keep_labels)
    if model.raster_prior is not None:
        model.raster_prior.fit(torch.cat([p.z_r for p in parts])[back], keep_labels)


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
    fit_priors(model, train.sketches, train.labels)
    state = model.state_dict()
    tensors.update({f"model.{k}": state[k] for k in OPTIONAL_BUFFERS if k in state})
    rewrite_checkpoint(path, tensors, info)
    return True
