"""An evaluation's figures: sample grids of the drawings and reconstructions, the t-SNE of the
latents (the paper's Figure 3a), the loss curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aisketcher.api import Sketcher
from aisketcher.evaluate import figures
from aisketcher.evaluate.modes import chunks
from aisketcher.evaluate.sets import EvalSettings, SketchSets
from aisketcher.latents import encode_sketches


def latent_vectors(
    sketcher: Sketcher, sketches: list[np.ndarray], model_labels: list[int], batch_size: int = 100
) -> np.ndarray:
    """mu_s of each sketch (the paper's Figure 3a plots these), (n, n_z)."""
    parts = [
        encode_sketches(sketcher.model, sketches[s], model_labels[s]).z_s.cpu().numpy()
        for s in chunks(len(sketches), batch_size)
    ]
    return np.concatenate(parts)


def _grid(
    path: Path,
    names: list[str],
    sketches: list[np.ndarray],
    labels: np.ndarray,
    settings: EvalSettings,
) -> Path:
    rows = [
        [sketches[i] for i in np.flatnonzero(labels == k)[: settings.grid_per_class]]
        for k in range(len(names))
    ]
    return figures.sample_grid(rows, names, path)


def _recon_grid(
    path: Path,
    names: list[str],
    real: list[np.ndarray],
    reconstructed: list[np.ndarray],
    labels_of: np.ndarray,
    settings: EvalSettings,
) -> Path:
    """Two rows per class: real sketches, then the model's reconstructions of them."""
    rows, labels = [], []
    for k, name in enumerate(names):
        keep = np.flatnonzero(labels_of == k)[: settings.grid_per_class]
        rows += [[real[i] for i in keep], [reconstructed[i] for i in keep]]
        labels += [f"{name} (real)", f"{name} (model)"]
    return figures.sample_grid(rows, labels, path)


def report_figures(
    sketcher: Sketcher,
    source: str | Path,
    out: Path,
    names: list[str],
    sets: SketchSets,
    model_index: np.ndarray,
    settings: EvalSettings,
) -> dict[str, Path]:
    """Sample grids, t-SNE of latents and loss curves, those the model allows."""
    cfg = sketcher.model.config
    written = {
        "samples": _grid(out / "samples.png", names, sets.drawn, sets.drawn_labels, settings)
    }
    if sets.reconstructed is not None:
        written["reconstructions"] = _recon_grid(
            out / "reconstructions.png",
            names,
            sets.real,
            sets.reconstructed,
            sets.real_labels,
            settings,
        )
        keep = np.concatenate(
            [
                np.flatnonzero(sets.real_labels == k)[: settings.tsne_per_class]
                for k in range(len(names))
            ]
        )
        if len(keep) >= 3:
            z = latent_vectors(
                sketcher,
                [sets.real[i] for i in keep],
                model_index[sets.real_labels[keep]].tolist(),
                settings.batch_size,
            )
            written["tsne"] = figures.tsne_figure(
                {cfg.name: (z, sets.real_labels[keep])}, names, out / "tsne.png", settings.seed
            )
    metrics_csv = Path(source) / "metrics.csv"  # a run's (a Google model has none)
    if metrics_csv.is_file():
        written["loss_curves"] = figures.loss_curves(
            {cfg.name: metrics_csv}, out / "loss_curves.png"
        )
    return written
