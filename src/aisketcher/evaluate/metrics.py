"""Sample-quality metrics over classifier features and rendered sketches.

- Fréchet distance (FID) between Gaussians fitted to two feature sets.
- Precision and recall of a generated set against a real one with k-nearest-neighbour manifolds
  (Kynkäänniemi et al., NeurIPS 2019): a sample is "covered" when it lies within the distance from
  some sample of the other set to that sample's k-th nearest neighbour in its own set.
- Recognizability: top-1 accuracy of a classifier on sketches for their intended class.
- Diversity as in AI-Sketcher: pairwise Hamming distances of perceptual hashes (`imagehash.phash`)
  of rendered sketches, and an unpaired t-test between two models (`scipy.stats.ttest_ind`).
- Copy check: each sketch's distance to its nearest training sketch of its class, against the same
  distance for unseen real sketches (`copy_check`), in a space of small blurred rasters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import imagehash
import numpy as np
from scipy import linalg, stats
from scipy.spatial.distance import cdist

from aisketcher.raster import rasterize_many
from aisketcher.render import render_png
from aisketcher.sketch import Sketch

# Rendering for the perceptual hash: phash shrinks the image to 32x32, so strokes must be thick
# enough to survive that (1.5 pixels at 128 fade to faint grey; 3 stay visible).
PHASH_RENDER_SIZE = 128
PHASH_STROKE_WIDTH = 3.0


# ----- Fréchet distance -----
def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (n, d) features; needs n >= 2."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 feature vectors of shape (n, d), got {x.shape}")
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding noise clipped)."""
    values, vectors = linalg.eigh(cov)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)).

    tr((C1 C2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
    matrix C1^(1/2) C2 C1^(1/2), which has the same eigenvalues as C1 C2. Unlike `sqrtm(C1 @ C2)`
    of a non-symmetric product, this yields no imaginary parts and stays exact when the covariances
    are singular (fewer samples than feature dimensions, as with a few dozen sketches per class).
    """
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    trace_sqrt = np.sqrt(np.clip(linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = np.asarray(mu1) - np.asarray(mu2)
    value = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt)
    return max(value, 0.0)  # rounding can leave -1e-12 for identical sets


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets (each (n, d), n >= 2)."""
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


# ----- precision and recall -----
def _kth_neighbour_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row."""
    d = cdist(x, x)
    # Column 0 of the sorted distances is the row itself (0), so the k-th neighbour is column k.
    return np.partition(d, k, axis=1)[:, k]


def manifold_coverage(reference: np.ndarray, query: np.ndarray, k: int = 3) -> float:
    """Fraction of `query` rows inside the k-NN manifold of `reference` (union of balls)."""
    radii = _kth_neighbour_radii(reference, k)
    inside = cdist(query, reference) <= radii[None, :]
    return float(inside.any(axis=1).mean())


@dataclass
class PrecisionRecall:
    precision: float  # generated samples that fall on the real manifold
    recall: float  # real samples that fall on the generated manifold


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019); NaN if a set has <= k rows."""
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    if len(real) <= k or len(generated) <= k:
        return PrecisionRecall(math.nan, math.nan)
    return PrecisionRecall(
        precision=manifold_coverage(real, generated, k),
        recall=manifold_coverage(generated, real, k),
    )


# ----- recognizability -----
def top1_accuracy(predicted: np.ndarray, intended: np.ndarray) -> float:
    """Fraction of sketches whose predicted class is the intended one (NaN for none)."""
    predicted, intended = np.asarray(predicted), np.asarray(intended)
    if predicted.shape != intended.shape:
        raise ValueError(f"{predicted.shape} predictions for {intended.shape} labels")
    return float((predicted == intended).mean()) if len(predicted) else math.nan


# ----- diversity -----
def perceptual_hashes(sketches: Sequence[Sketch | np.ndarray]) -> np.ndarray:
    """64-bit perceptual hashes of the rendered sketches, (n, 64) booleans."""
    return np.stack(
        [
            imagehash.phash(
                render_png(s, PHASH_RENDER_SIZE, stroke_width=PHASH_STROKE_WIDTH)
            ).hash.reshape(-1)
            for s in sketches
        ]
    )


def hamming_matrix(hashes: np.ndarray) -> np.ndarray:
    """(n, n) numbers of differing bits between every pair of hashes."""
    bits = np.asarray(hashes, dtype=np.int64)
    ones = bits @ bits.T
    counts = bits.sum(1)
    return counts[:, None] + counts[None, :] - 2 * ones


@dataclass
class Diversity:
    mean_distance: float  # mean Hamming distance over all unordered pairs
    per_sketch: np.ndarray  # each sketch's mean distance to the others (samples of the t-test)


def phash_diversity(sketches: Sequence[Sketch | np.ndarray]) -> Diversity:
    """Mean pairwise pHash distance within one set (0 for identical sketches); needs >= 2."""
    if len(sketches) < 2:
        return Diversity(math.nan, np.zeros(0))
    d = hamming_matrix(perceptual_hashes(sketches)).astype(np.float64)
    n = len(d)
    upper = d[np.triu_indices(n, 1)]
    return Diversity(float(upper.mean()), d.sum(1) / (n - 1))


@dataclass
class TTest:
    t: float
    p: float
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int


def diversity_ttest(a: np.ndarray, b: np.ndarray) -> TTest:
    """Unpaired two-sample Student t-test between per-sketch diversities of two models.

    A sample is one sketch's mean pHash distance to the other sketches of its class, so each model
    contributes one value per sketch (the paper: 50 sketches in each of 5 classes).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    result = stats.ttest_ind(a, b, equal_var=True)
    return TTest(
        float(result.statistic),
        float(result.pvalue),
        float(a.mean()),
        float(b.mean()),
        len(a),
        len(b),
    )


# ----- copy check -----
# The space: the sketch drawn at 64x64 and averaged to 32x32. A near-copy of a training sketch is a
# near-identical picture there, however its points were ordered or spaced, while the averaging
# forgives a pixel of jitter. (A classifier's features are built to map different drawings of a
# class close together, which would hide copies among merely typical drawings.)
COPY_RASTER_SIZE = 64
COPY_POOL = 2


def copy_features(sketches: Sequence[Sketch | np.ndarray]) -> np.ndarray:
    """(n, 32 * 32) blurred rasters of the sketches, values in [0, 1]."""
    r = rasterize_many(sketches, COPY_RASTER_SIZE).astype(np.float32)
    side = COPY_RASTER_SIZE // COPY_POOL
    return r.reshape(len(r), side, COPY_POOL, side, COPY_POOL).mean((2, 4)).reshape(len(r), -1)


def nearest_distances(
    query: np.ndarray, query_labels: np.ndarray, train: np.ndarray, train_labels: np.ndarray
) -> np.ndarray:
    """Each query row's Euclidean distance to its nearest training row of the same label."""
    out = np.full(len(query), np.inf)
    for k in np.unique(query_labels):
        mine, theirs = query_labels == k, train_labels == k
        if theirs.any():
            out[mine] = cdist(query[mine], train[theirs]).min(1)
    return out


@dataclass
class CopyCheck:
    ratio: float  # median nearest-training distance: these sketches / unseen real ones (1: as new)
    near_copy_share: float  # share of these sketches closer than `threshold`
    real_near_copy_share: float  # the same share of the unseen real sketches (NEAR_COPY_QUANTILE)
    threshold: float  # the NEAR_COPY_QUANTILE of the real sketches' nearest-training distances
    median: float  # median nearest-training distance of these sketches
    real_median: float


NEAR_COPY_QUANTILE = 0.05  # a near-copy is closer than all but 5% of unseen real sketches are


def copy_check(distances: np.ndarray, real_distances: np.ndarray) -> CopyCheck:
    """Nearest-training distances of generated sketches against those of unseen real sketches."""
    distances, real = np.asarray(distances, np.float64), np.asarray(real_distances, np.float64)
    if not len(distances) or not len(real):
        return CopyCheck(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    threshold = float(np.quantile(real, NEAR_COPY_QUANTILE))
    median, real_median = float(np.median(distances)), float(np.median(real))
    return CopyCheck(
        ratio=median / real_median if real_median > 0 else math.nan,
        near_copy_share=float((distances < threshold).mean()),
        real_near_copy_share=float((real < threshold).mean()),
        threshold=threshold,
        median=median,
        real_median=real_median,
    )
