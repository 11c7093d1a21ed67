"""The training objective (paper eq. 12-14), its mean over a held-out split (validation, and the
likelihood of evaluations), and magenta's annealing schedules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from aisketcher.allocator import release_free_memory
from aisketcher.data.batching import Batch, BatchLoader
from aisketcher.loss_weights import LossWeights
from aisketcher.model.autoencoder import reconstruction_error
from aisketcher.model.config import ModelConfig
from aisketcher.model.sketcher import ModelOutput, SketchModel
from aisketcher.train.distributed import shard_mean


@dataclass
class LossTerms:
    objective: torch.Tensor  # what is minimised: total, plus the autoencoder's error when joint
    total: torch.Tensor  # the paper's Loss (eq. 12)
    l_c: torch.Tensor  # offset negative log-likelihood over real points / N_max
    l_s: torch.Tensor  # pen cross-entropy over every row / N_max
    l_z: torch.Tensor  # KL of z_s to N(0, I), mean over dimensions
    l_a: torch.Tensor  # KL of a_d to N(0, I), mean over dimensions and real steps
    l_kl: torch.Tensor  # l_z + beta * l_a (eq. 14)
    l_ae: torch.Tensor  # autoencoder's summed squared error per image

    @property
    def l_r(self) -> torch.Tensor:
        return self.l_c + self.l_s

    @staticmethod
    def field_names() -> list[str]:
        return ["objective", "total", "l_r", "l_c", "l_s", "l_z", "l_a", "l_kl", "l_ae"]

    @staticmethod
    def row(values: dict[str, float]) -> list[float]:
        return [values[k] for k in LossTerms.field_names()]

    def as_floats(self) -> dict[str, float]:
        terms = {k: float(v.detach()) for k, v in self.__dict__.items()}
        terms["l_r"] = terms["l_c"] + terms["l_s"]
        return terms


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per element: -1/2 (1 + log sigma^2 - sigma^2 - mu^2)."""
    return -0.5 * (1.0 + log_var - log_var.exp() - mu**2)


def compute_loss(
    out: ModelOutput,
    batch: Batch,
    config: ModelConfig,
    kl_weight: float,
    *,
    weights: LossWeights | None = None,
    kl_floor: bool = True,
    train_autoencoder: bool = True,
) -> LossTerms:
    """Loss = l_r + alpha * max(l_kl, epsilon) (eq. 12); the objective adds the autoencoder's error.
    alpha is `kl_weight`; epsilon, beta and the autoencoder's weight are `weights`' (default: the
    paper's).

    Both l_c and l_s divide by N_max = config.max_seq_len as the paper and magenta do, so batches
    padded only to their own longest sketch give the same l_c; l_s then omits the padding rows past
    that length, whose cross-entropy a trained model makes close to zero.
    """
    weights = weights or LossWeights()
    targets = batch.strokes[:, 1:]
    mask = batch.mask
    n_max = float(config.max_seq_len)
    zero = targets.new_zeros(())
    log_p = out.mixture.offset_log_prob(targets[..., 0], targets[..., 1])
    l_c = -(log_p * mask).sum(1).mean() / n_max  # eq. 13, l_c
    pen_log_p = out.mixture.pen_log_prob()
    l_s = -(targets[..., 2:] * pen_log_p).sum((1, 2)).mean() / n_max  # eq. 13, l_s
    latent = out.latent
    l_z = zero
    if config.variational and latent.mu_s is not None:
        l_z = gaussian_kl(latent.mu_s, latent.log_var_s).mean()  # eq. 14, l_z
    l_a = zero
    if out.mu_a is not None:
        per_step = gaussian_kl(out.mu_a, out.log_var_a).mean(-1)  # eq. 14, l_a
        # The global count of real steps: every rank divides its sum by the mean count per rank,
        # so the ranks' mean is the one-process l_a (shard_mean is mask.sum() in one process).
        l_a = (per_step * mask).sum() / shard_mean(mask.sum()).clamp(min=1.0)
    l_kl = l_z + weights.influence_beta * l_a  # eq. 14
    total = l_c + l_s
    if config.variational or out.mu_a is not None:
        total = total + kl_weight * (kl_floored(l_kl, weights.kl_tolerance) if kl_floor else l_kl)
    l_ae = zero
    objective = total
    if latent.raster_recon is not None and batch.rasters is not None:
        l_ae = reconstruction_error(batch.rasters, latent.raster_recon)
        if train_autoencoder:
            objective = total + weights.autoencoder_weight * l_ae
    return LossTerms(objective, total, l_c, l_s, l_z, l_a, l_kl, l_ae)


def kl_floored(l_kl: torch.Tensor, tolerance: float) -> torch.Tensor:
    """max(l_kl, epsilon) (eq. 12), its gradient zero below epsilon.

    The max is decided on the batch's l_kl (the mean over ranks under data-parallel training), so
    all ranks keep or drop the KL gradient together; in one process this is torch.clamp.
    """
    whole = shard_mean(l_kl)
    return torch.where(whole >= tolerance, l_kl, whole.clamp(min=tolerance))


def kl_weight_at(step: int, weights: LossWeights) -> float:
    """alpha annealed from w_start up to w (magenta): w - (w - w_start) * rate^step."""
    w, w0 = weights.kl_weight, weights.kl_weight_start
    return w - (w - w0) * weights.kl_decay_rate**step


def learning_rate_at(step: int, lr: float, min_lr: float, decay: float) -> float:
    """magenta's decay: (lr - min_lr) * decay^step + min_lr."""
    return (lr - min_lr) * decay**step + min_lr


def batch_loss(
    model: SketchModel, batch: Batch, step: int, weights: LossWeights, *, train: bool = True
) -> LossTerms:
    """One batch's loss terms: in training with alpha annealed to `step` and the KL floor; else
    (validation, evaluation) the paper's Loss with the final alpha and no floor."""
    cfg = model.config
    out = model(batch.strokes, batch.lengths, batch.labels, batch.rasters, batch.source)
    if train:
        return compute_loss(
            out,
            batch,
            cfg,
            kl_weight_at(step, weights),
            weights=weights,
            train_autoencoder=not model.autoencoder_frozen,
        )
    return compute_loss(out, batch, cfg, weights.kl_weight, weights=weights, kl_floor=False)


@torch.no_grad()
def evaluate_loss(
    model: SketchModel,
    loader: BatchLoader,
    device: torch.device,
    stop: Callable[[], bool] | None = None,
    *,
    weights: LossWeights | None = None,
) -> dict[str, float] | None:
    """Mean loss terms over one pass of a split: no augmentation, no dropout, no KL floor.

    z_s and a_d are still sampled, from a fixed seed on a forked RNG: every validation draws the
    same noise, and the training RNG is left as it was, so a run that validates before it stops
    resumes exactly as one that never stopped. When `stop()` turns true between batches (Ctrl-C)
    the pass is abandoned and None returned.
    """
    weights = weights or LossWeights()
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        for batch in loader:
            if stop is not None and stop():
                model.train(was_training)
                return None
            terms = batch_loss(model, batch.to(device), 0, weights, train=False).as_floats()
            release_free_memory()  # or the peak grows over the first batches (allocator.py)
            n = len(batch.lengths)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * n
            count += n
    model.train(was_training)
    return {k: v / count for k, v in sums.items()}
