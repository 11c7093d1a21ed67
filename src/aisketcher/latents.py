"""What the decoder draws from, for each drawing mode: the latents of input sketches or of a class.

- An input sketch (reconstruct, interpolate): z_s = mu_s of its encoding under the chosen class
  c, and z_r of its raster.
- Translation into class c: z_s = mu_s of the input's encoding under c, and by default z_r from
  c's prior instead of the input's raster. z_r is the class-blind CNN's code of the whole
  raster's layout, so with the input's z_r the decoder redraws the input's layout, and the
  drawing is recognised as c less often; z_s still carries the input. `keep_layout` keeps the
  input's z_r.
  `class_pull` then moves z_s toward c's prior mean: z_s = (1 - pull) mu_s + pull m_c. 0 is the
  paper's translation (the class vector alone decides the class); at 1 z_s is c's mean code and
  the input's z_s is forgotten. No effect on a model without a fitted z_s prior.
  `Sketcher.translate` defaults to TRANSLATE_PULL = 0.5: recognisably the target, still of its
  input; evaluations measure the paper's pull 0. (The figures: docs/measurements.md, Drawing.)
- Between two sketches (interpolate): their latents mixed linearly (`mixed_latent`).
- A class alone (draw, complete): z_s and z_r from the class's fitted priors (`priors.py`:
  `SketchModel.sketch_prior` and `raster_prior`, spec section 3), drawn at the model's
  `prior_spread` of their spread (1: as fitted); z_s from the paper's N(0, I)
  with `standard_z_s` or when the model has no fitted z_s prior. No stored sketch is needed: the
  default influence memory is built from the points the decoder is given or draws (see
  sampler.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from aisketcher.data.batching import collate
from aisketcher.errors import SketchDataError
from aisketcher.model.sketcher import Latent, SketchModel
from aisketcher.raster import rasterize_many


def model_inputs(
    model: SketchModel, sketches: list[np.ndarray], labels: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Normalised stroke-3 sketches -> (strokes with the start token, lengths, labels, rasters)."""
    cfg = model.config
    rasters = None
    if cfg.reads_rasters:
        rasters = rasterize_many(sketches, cfg.raster_size)
    batch = collate(sketches, np.asarray(labels), rasters).to(model.output.weight.device)
    return batch.strokes, batch.lengths, batch.labels, batch.rasters


@torch.no_grad()
def encode_sketches(
    model: SketchModel, sketches: list[np.ndarray], labels: list[int], *, sample: bool = False
) -> Latent:
    """Encode normalised sketches under the given classes (z_s = mu_s unless `sample`)."""
    model.eval()
    strokes, lengths, label_t, rasters = model_inputs(model, sketches, labels)
    return model.encode(strokes, lengths, label_t, rasters, sample=sample)


def class_latent(
    model: SketchModel, labels: list[int], seed: int | None, *, standard_z_s: bool = False
) -> Latent:
    """The latent for drawing from class labels alone (see the module docstring), seeded."""
    cfg = model.config
    device = model.output.weight.device
    rng = np.random.default_rng(seed)
    label_t = torch.tensor(labels, device=device)
    z_s = z_r = None
    if cfg.has_latent:
        z_s = torch.from_numpy(rng.standard_normal((len(labels), cfg.z_size))).float().to(device)
        prior = model.sketch_prior
        if not standard_z_s and prior is not None and prior.fitted:
            z_s = prior.sample(label_t, z_s * cfg.prior_spread)
    if model.raster_prior is not None:
        z_r = _prior_z_r(model, label_t, rng)
    return Latent(c=model.class_vector(label_t), z_s=z_s, mu_s=z_s, z_r=z_r)


TRANSLATE_PULL = 0.5  # the users' default class_pull (see the module docstring)


def translation_latent(
    model: SketchModel,
    sketches: list[np.ndarray],
    labels: list[int],
    seed: int | None,
    *,
    keep_layout: bool = False,
    class_pull: float = 0.0,
) -> Latent:
    """Each sketch encoded under its target class `labels[i]`, z_s pulled `class_pull` of the way
    to the class's prior mean when the model has a fitted one (see the module docstring)."""
    if not 0.0 <= class_pull <= 1.0:  # NaN fails this too
        raise SketchDataError(
            f"class_pull must be a finite number between 0 and 1, got {class_pull}"
        )
    latent = encode_sketches(model, sketches, labels)
    label_t = torch.tensor(labels, device=model.output.weight.device)
    prior = model.sketch_prior
    if class_pull and prior is not None and prior.fitted:
        # A class the prior never saw (no training sketches) keeps the input's code.
        pull = class_pull * prior.scale[label_t].flatten(1).any(1, keepdim=True)
        latent = dataclasses.replace(
            latent, z_s=torch.lerp(latent.mu_s, prior.mean[label_t], pull.to(latent.mu_s))
        )
    if keep_layout or model.raster_prior is None:
        return latent
    return dataclasses.replace(latent, z_r=_prior_z_r(model, label_t, np.random.default_rng(seed)))


def _prior_z_r(model: SketchModel, labels: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """z_r of each label drawn from its class's fitted prior (model.raster_prior)."""
    noise = torch.from_numpy(rng.standard_normal((len(labels), model.config.raster_z_size)))
    return model.raster_prior.sample(labels, noise * model.config.prior_spread)


def mixed_latent(ends: Latent, weights: torch.Tensor, nearer: torch.Tensor) -> Latent:
    """Rows along the line between each pair of rows of `ends` (rows 2p and 2p + 1), pair by
    pair: row i of pair p = (1 - w_i) ends[2p] + w_i ends[2p + 1] for z_s, z_r and c (`weights`
    (n, 1)). The paper-literal memory cannot be mixed (the sketches differ in length): row i of
    pair p refers to the encoder states of its end `nearer[i]` (0 or 1)."""
    pairs = len(next(t for t in (ends.c, ends.z_s, ends.z_r, ends.memory) if t is not None)) // 2

    def mix(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        mixed = (1 - weights) * t[0::2, None] + weights * t[1::2, None]  # (pairs, n, ...)
        return mixed.flatten(0, 1)

    index = (2 * torch.arange(pairs, device=nearer.device)[:, None] + nearer).flatten()
    memory = ends.memory[index] if ends.memory is not None else None
    lengths = ends.memory_lengths[index] if ends.memory_lengths is not None else None
    return Latent(
        c=mix(ends.c), z_s=mix(ends.z_s), z_r=mix(ends.z_r), memory=memory, memory_lengths=lengths
    )
