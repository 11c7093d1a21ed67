"""The leak check: does the influence layer's memory carry the sketch it is asked to reconstruct?

The test reconstruction loss of each sketch is computed twice: with its own influence memory, and
with the memory of another sketch of the same class (its z_s and z_r stay its own). A memory that
has read the targets (the paper-literal bidirectional states) lets the decoder copy them: its loss
with its own memory is low and with another sketch's far worse. The default memory holds only the
points the decoder has been given, which its own state has read too, and shows no such gap
(tests/test_leak_check.py trains one of each to see both).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from aisketcher.data.batching import collate
from aisketcher.model.sketcher import ModelOutput, SketchModel
from aisketcher.raster import rasterize_many
from aisketcher.train.loss import compute_loss

TERMS = ("l_c", "l_s", "l_r")


@torch.no_grad()
def leak_check(
    model: SketchModel, sketches: list[np.ndarray], labels: np.ndarray, batch_size: int = 100
) -> dict[str, dict[str, float]] | None:
    """Mean l_c, l_s, l_r with each sketch's own memory ("own") and with the memory of the
    previous sketch of its class ("other"), over normalised sketches with model class indices;
    None for a model without an influence layer."""
    if model.influence is None:
        return None
    model.eval()
    cfg = model.config
    device = model.output.weight.device
    sums = {"own": np.zeros(len(TERMS)), "other": np.zeros(len(TERMS))}
    count = 0
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        for start in range(0, len(rows), batch_size):
            part = rows[start : start + batch_size]
            if len(part) < 2:
                continue
            group = [sketches[i] for i in part]
            rasters = rasterize_many(group, cfg.raster_size) if cfg.use_autoencoder else None
            batch = collate(group, labels[part], rasters, pad_to=cfg.max_seq_len).to(device)
            latent = model.encode(
                batch.strokes, batch.lengths, batch.labels, batch.rasters, sample=False
            )
            other = torch.roll(torch.arange(len(part), device=device), 1)
            if model.drawn_memory:  # the other sketch's points as what was drawn so far
                swapped = latent, model.encoder(batch.strokes[other], batch.lengths[other]).drawn()
            else:
                lengths = latent.memory_lengths[other]
                swapped = (
                    dataclasses.replace(
                        latent, memory=latent.memory[other], memory_lengths=lengths
                    ),
                    None,
                )
            for key, (lat, memory) in (("own", (latent, None)), ("other", swapped)):
                torch.manual_seed(0)  # the same lambda_a draws for both
                mixture, mu_a, log_var_a = model.decode(batch.strokes[:, :-1], lat, memory)
                out = ModelOutput(mixture, lat, mu_a, log_var_a)
                # Only l_c and l_s are read (TERMS): no loss weight changes them.
                terms = compute_loss(out, batch, cfg, 0.0, kl_floor=False)
                sums[key] += len(part) * np.array([float(getattr(terms, t)) for t in TERMS])
            count += len(part)
    if not count:
        return None
    result = {key: dict(zip(TERMS, (v / count).tolist(), strict=True)) for key, v in sums.items()}
    return {**result, "gap_l_r": result["other"]["l_r"] - result["own"]["l_r"], "count": count}
