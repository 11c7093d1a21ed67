"""No path from a target into its prediction: the model may see a point only through z_s and z_r.

Perturbing input point k and holding z_s and z_r fixed must leave every decoder output that
predicts points 1..k unchanged. The check passes for every default preset and catches the
paper-literal memory (bidirectional states), whose rows have read the points they help predict.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aisketcher.data.batching import collate
from aisketcher.latents import class_latent
from aisketcher.model.config import PRESETS, make_config
from aisketcher.model.mixture import Mixture
from aisketcher.model.sketcher import SketchModel
from aisketcher.sampler import Sampler, make_generator
from aisketcher.train.loss import compute_loss

TINY = dict(enc_rnn_size=16, dec_rnn_size=32, z_size=8, raster_z_size=8, num_mixture=3)
LEAKY = {"ai-sketcher-paper-memory"}


def _batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    sketches = []
    for n in (14, 9, 11):
        s3 = np.zeros((n, 3), dtype=np.float32)
        s3[:, :2] = rng.normal(size=(n, 2))
        s3[rng.random(n) < 0.3, 2] = 1.0
        s3[-1, 2] = 1.0
        sketches.append(s3)
    rasters = (rng.random((3, 128, 128)) < 0.1).astype(np.uint8)
    return collate(sketches, np.array([0, 1, 0]), rasters)


def _outputs(model: SketchModel, strokes, batch, held) -> torch.Tensor:
    """Every decoder output (pen log-probabilities and the offset likelihood of the unperturbed
    targets) with z_s and z_r taken from `held`."""
    latent = model.encode(strokes, batch.lengths, batch.labels, batch.rasters, sample=False)
    latent.z_s, latent.z_r = held.z_s, held.z_r
    torch.manual_seed(1)  # the same lambda_a draws for both runs
    mixture, _, _ = model.decode(strokes[:, :-1], latent)
    targets = batch.strokes[:, 1:]
    offsets = mixture.offset_log_prob(targets[..., 0], targets[..., 1])
    return torch.cat([mixture.pen_log_prob(), offsets.unsqueeze(-1)], -1)


def largest_leak(model: SketchModel, k: int) -> tuple[float, float]:
    """(largest change of an output predicting points 1..k, largest change of the rest) when
    point k of every sketch moves. A model in training mode decodes with autograd on, as in
    training (the fused teacher-forced decoder, dropout), else as evaluation does."""
    batch = _batch()
    moved = batch.strokes.clone()
    moved[:, k, :2] += 2.5
    with torch.set_grad_enabled(model.training):
        held = model.encode(batch.strokes, batch.lengths, batch.labels, batch.rasters, sample=False)
        change = _outputs(model, batch.strokes, batch, held) - _outputs(model, moved, batch, held)
    change = change.detach().abs().amax(-1)  # (B, L): decoder step j predicts point j + 1
    return float(change[:, :k].max()), float(change[:, k:].max())


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("k", [1, 5, 9])
@pytest.mark.parametrize("training", [False, True])
def test_no_output_sees_the_point_it_predicts(preset: str, k: int, training: bool) -> None:
    torch.manual_seed(0)
    model = SketchModel(make_config(preset, "small", num_classes=2, **TINY)).train(training)
    before, after = largest_leak(model, k)
    assert after > 1e-4  # the perturbation reaches the steps that may read it
    if preset in LEAKY:
        assert before > 1e-4  # the check catches the paper-literal memory
    else:
        assert before == 0.0


@pytest.mark.parametrize("memory", ["drawn", "bidirectional"])
def test_causal_flag_of_the_memories(memory: str) -> None:
    """Full attention over the bidirectional states leaks too; the drawn memory refuses it."""
    if memory == "drawn":
        with pytest.raises(Exception, match="causal"):
            make_config("ai-sketcher", num_classes=2, attention_causal=False, **TINY)
        return
    torch.manual_seed(0)
    cfg = make_config(
        "ai-sketcher", num_classes=2, influence_memory=memory, attention_causal=False, **TINY
    )
    assert largest_leak(SketchModel(cfg).eval(), 5)[0] > 1e-4


@pytest.mark.parametrize("preset", ["ai-sketcher", "ai-sketcher-no-autoencoder"])
def test_sampling_builds_the_memory_training_reads(preset: str) -> None:
    """Step-by-step decoding fed the sketch's own points builds the memory of teacher forcing and
    gives its outputs: what the sampler attends to is what the model was trained on."""
    torch.manual_seed(0)
    model = SketchModel(make_config(preset, "small", num_classes=2, **TINY)).eval()
    batch = _batch()
    steps = batch.strokes.shape[1] - 1
    with torch.no_grad():
        latent = model.encode(
            batch.strokes, batch.lengths, batch.labels, batch.rasters, sample=False
        )
        torch.manual_seed(1)  # lambda_a is drawn in the same order by both paths
        forced, _, _ = model.decode(batch.strokes[:, :-1], latent)
        torch.manual_seed(1)
        state, ys = model.initial_state(latent, 3), []
        for j in range(steps):
            y, state, _ = model.decode_step(batch.strokes[:, j], state, latent, j)
            ys.append(y)
        trained_on = model.encoder(batch.strokes, batch.lengths).drawn()
    torch.testing.assert_close(state.memory[:, :steps], trained_on)
    stepped = Mixture.from_output(torch.stack(ys, 1), model.config.num_mixture)
    torch.testing.assert_close(stepped.pen_log_prob(), forced.pen_log_prob())
    targets = batch.strokes[:, 1:]
    torch.testing.assert_close(
        stepped.offset_log_prob(targets[..., 0], targets[..., 1]),
        forced.offset_log_prob(targets[..., 0], targets[..., 1]),
    )


def test_every_sketch_has_its_end_of_sketch_target() -> None:
    """Magenta pads every sketch with p3 rows; the longest of a batch must get one too, else the
    decoder never learns to stop there (spec 2.6)."""
    batch = _batch()
    targets = batch.strokes[:, 1:]
    for row, n in zip(targets, batch.lengths.tolist(), strict=True):
        assert row[n, 4] == 1.0 and not row[:n, 4].any()
    torch.manual_seed(0)
    cfg = make_config("sketch-rnn", num_classes=2, **TINY)
    out = SketchModel(cfg)(batch.strokes, batch.lengths, batch.labels)
    longest = int(batch.lengths.argmax())
    n = int(batch.lengths[longest])
    # the longest sketch's stop is part of l_s: making the model sure of it lowers l_s by its term
    before = compute_loss(out, batch, cfg, 1.0).l_s
    end_term = -out.mixture.pen_log_prob()[longest, n, 2]
    out.mixture.pen_logits = out.mixture.pen_logits.clone()
    out.mixture.pen_logits[longest, n] = torch.tensor([-1e4, -1e4, 0.0])
    after = compute_loss(out, batch, cfg, 1.0).l_s
    n_rows = len(batch.lengths) * cfg.max_seq_len
    torch.testing.assert_close(before - after, end_term / n_rows, rtol=1e-4, atol=1e-6)


def test_sampler_memory_grows_from_its_own_points() -> None:
    """Drawing from a class alone needs no stored sketch: the memory holds the drawn points."""
    torch.manual_seed(0)
    model = SketchModel(make_config("ai-sketcher", num_classes=2, **TINY)).eval()
    generator = make_generator(torch.device("cpu"), 0)
    sampler = Sampler(model, class_latent(model, [0, 1], 3), 2, max_steps=12, generator=generator)
    for _ in range(6):
        sampler.step()
    assert sampler.state.memory.shape[1] >= 6
    rows = len(sampler.active)  # the rows still drawing
    assert torch.equal(sampler.state.memory[:, 0], torch.zeros(rows, model.config.enc_rnn_size))
    assert sampler.state.memory[:, 1:6].abs().sum() > 0
