"""Per-class Gaussians of the latents, fitted on training sketches, for drawing from a class alone.

Drawing from a class has no input to encode, so both codes come from a fitted density instead of
from a stored sketch (spec section 3):

- z_r (`SketchModel.raster_prior`): the CNN autoencoder's code of training rasters. Its features
  are correlated (a layout moves many of them together); a full covariance keeps that (the
  drawings are recognised as often as with a diagonal one).
- z_s (`SketchModel.sketch_prior`): the encoder's posterior samples mu_s + sigma_s * eps of
  training sketches, i.e. the aggregate posterior, which a KL-weighted VAE leaves away from the
  N(0, I) the paper samples (ex-post density estimation; Ghosh et al. 2020, "From variational to
  deterministic autoencoders"). Class-only drawings are recognised more often with it than with
  N(0, I), as new (the copy check) and as varied. `class_latent(..., standard_z_s=True)` draws the
  paper's N(0, I). (The figures: docs/measurements.md, Drawing.)

The trainer refits both whenever it saves a checkpoint, so they travel with the weights. A class
never fitted has mean 0 and spread 0; a prior never fitted at all (an older checkpoint) is
`fitted == False`.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassGaussian(nn.Module):
    """One Gaussian with full covariance per class; samples clamped to `bound` when given."""

    RIDGE = 1e-4  # added to the covariance's diagonal: classes with fewer sketches than features

    def __init__(self, num_classes: int, z_size: int, bound: float | None = None) -> None:
        super().__init__()
        self.bound = bound
        self.register_buffer("mean", torch.zeros(num_classes, z_size))
        # lower-triangular Cholesky factor L of each class's covariance (L L^T = Sigma)
        self.register_buffer("scale", torch.zeros(num_classes, z_size, z_size))

    @property
    def fitted(self) -> bool:
        return bool(self.scale.any())

    @torch.no_grad()
    def fit(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        eye = torch.eye(codes.shape[1], device=codes.device, dtype=torch.float64)
        for k in labels.unique().tolist():
            rows = codes[labels == k].double()
            cov = torch.cov(rows.T, correction=0) if len(rows) > 1 else torch.zeros_like(eye)
            self.mean[k] = rows.mean(0).to(self.mean)
            self.scale[k] = torch.linalg.cholesky(cov + self.RIDGE * eye).to(self.scale)

    def sample(self, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """z = mean_k + L_k noise (inside (-bound, bound) when the prior has a bound)."""
        z = self.mean[labels] + (self.scale[labels] @ noise.to(self.mean)[:, :, None])[:, :, 0]
        return z if self.bound is None else z.clamp(-self.bound, self.bound)
