"""Figures of an evaluation, as PNG files: sample grids, t-SNE of latents, loss curves.

Matplotlib is used through `Figure` objects only (no pyplot state, no display needed).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from aisketcher.errors import SketchDataError
from aisketcher.render import grid_png

# The paper's Figure 3b: total loss, reconstruction loss l_r, KL loss l_kl.
CURVES = (
    ("total", "total loss"),
    ("l_r", "reconstruction loss $l_r$"),
    ("l_kl", "KL loss $l_{kl}$"),
)


def sample_grid(
    rows: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str],
    path: str | Path,
    cell: int = 96,
    captions: Sequence[Sequence[str]] | None = None,
) -> Path:
    """One row of sketches per class (or per model), labelled at the left, cells optionally captioned."""
    path = Path(path)
    labels = [list(r) for r in captions] if captions is not None else None
    grid_png([list(r) for r in rows], labels, cell=cell, row_labels=list(row_labels)).save(path)
    return path


def tsne_embedding(latents: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of (n, d) latents; the perplexity shrinks for small sets (it must stay < n)."""
    n = len(latents)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed, learning_rate="auto")
    return tsne.fit_transform(np.asarray(latents, dtype=np.float64))


def _colours(count: int) -> list[tuple[float, ...]]:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if count > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(count)]


def tsne_figure(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    path: str | Path,
    seed: int = 0,
) -> Path:
    """The paper's Figure 3a: one t-SNE panel per model, points coloured by class.

    `panels` maps a title to (latents (n, d), class indices into `class_names`).
    """
    if not panels:
        raise SketchDataError("no latents to plot")
    colours = _colours(len(class_names))
    fig = Figure(figsize=(4 * len(panels), 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, (latents, labels)) in zip(axes, panels.items(), strict=True):
        xy = tsne_embedding(latents, seed)
        labels = np.asarray(labels)
        for k, name in enumerate(class_names):
            mask = labels == k
            if mask.any():
                ax.scatter(xy[mask, 0], xy[mask, 1], s=12, color=colours[k], label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def read_metrics(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """A run's metrics.csv -> {"train"|"valid": {column: values}} (steps ascending)."""
    path = Path(path)
    if not path.is_file():
        raise SketchDataError("no metrics.csv: not a training run", str(path))
    rows: dict[str, list[dict[str, str]]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"step", "split"} <= set(reader.fieldnames):
            raise SketchDataError("no header row with 'step' and 'split' columns", str(path))
        for row in reader:
            rows.setdefault(row["split"], []).append(row)
    out: dict[str, dict[str, np.ndarray]] = {}
    for split, items in rows.items():
        # A resumed run may log a step twice; the later row wins.
        by_step = {int(r["step"]): r for r in items}
        steps = sorted(by_step)
        columns = {"step": np.array(steps, dtype=np.float64)}
        for key in ("total", "l_r", "l_kl", "l_c", "l_s", "l_z", "l_a"):
            columns[key] = np.array([_number(by_step[s].get(key)) for s in steps])
        out[split] = columns
    return out


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def loss_curves(runs: Mapping[str, str | Path], path: str | Path) -> Path:
    """The paper's Figure 3b: total, reconstruction and KL loss over training, one line per run.

    Training values (annealed KL weight, KL floor) are drawn smoothed and thin; validation values
    (full KL weight, no floor) as markers.
    """
    if not runs:
        raise SketchDataError("no runs to plot")
    colours = _colours(len(runs))
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, len(CURVES))
    for colour, (name, csv_path) in zip(colours, runs.items(), strict=True):
        metrics = read_metrics(csv_path)
        for ax, (key, _) in zip(axes, CURVES, strict=True):
            train = metrics.get("train")
            if train is not None and len(train["step"]):
                window = max(1, len(train["step"]) // 50)
                smooth = _smooth(train[key], window)
                ax.plot(train["step"], smooth, color=colour, lw=1, alpha=0.8, label=name)
            valid = metrics.get("valid")
            if valid is not None and len(valid["step"]):
                ax.plot(valid["step"], valid[key], "o--", color=colour, ms=3, lw=0.8)
    for ax, (_, title) in zip(axes, CURVES, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=8, title="lines: train; markers: valid", title_fontsize=7)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def distribution_figure(
    values: Mapping[str, Sequence[float]], xlabel: str, path: str | Path
) -> Path:
    """Overlaid histograms of one quantity for several models (the paper's Figure 5 is a table)."""
    if not values:
        raise SketchDataError("nothing to plot")
    finite = [np.asarray(v, dtype=np.float64) for v in values.values()]
    everything = np.concatenate([v[np.isfinite(v)] for v in finite])
    low, high = (float(everything.min()), float(everything.max())) if len(everything) else (0, 1)
    bins = np.linspace(low, high if high > low else low + 1, 25)
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for colour, (name, v) in zip(_colours(len(values)), values.items(), strict=True):
        v = np.asarray(v, dtype=np.float64)
        mean = float(np.nanmean(v)) if len(v) else math.nan
        ax.hist(v, bins=bins, color=colour, alpha=0.45, label=f"{name} (mean {mean:.2f})")
        ax.axvline(mean, color=colour, lw=1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("sketches")
    ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def growth_figure(
    series: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], path: str | Path
) -> Path:
    """The paper's Figure 4 as curves: one panel per measure, one line per model, against the number
    of classes. `series[measure][model]` holds (number of classes, value) points."""
    if not series:
        raise SketchDataError("nothing to plot")
    names = list(dict.fromkeys(name for models in series.values() for name in models))
    colour = dict(zip(names, _colours(len(names)), strict=True))  # one colour a model everywhere
    fig = Figure(figsize=(4.3 * len(series), 3.6), layout="constrained")
    axes = fig.subplots(1, len(series), squeeze=False)[0]
    for ax, (measure, models) in zip(axes, series.items(), strict=True):
        for name, points in models.items():
            x, y = zip(*sorted(points), strict=True)
            ax.plot(x, y, "o-", color=colour[name], ms=4, label=name)
            ax.set_xticks(x)
        ax.set_title(measure, fontsize=10)
        ax.set_xlabel("classes")
    fig.legend(
        *max((ax.get_legend_handles_labels() for ax in axes), key=lambda h: len(h[1])),
        loc="outside right upper",
        fontsize=8,
    )
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
