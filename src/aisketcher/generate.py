"""Drawing with a trained model: batched sampling with the recurrent state kept between steps.

Class-only drawing follows the spec's recommendation (section 3): z_s ~ N(0, I), and the attention
memory and z_r come from an encoded sketch of the class drawn at random from a reference bank (the
training data, or encodings of it shipped with the built-in model). With `reference="none"` the
influence vector is drawn from N(0, I) and z_r is the class's mean instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aisketcher.data.batching import START_TOKEN, collate
from aisketcher.model.mixture import sample_points
from aisketcher.model.sketcher import DecoderState, Latent, SketchModel
from aisketcher.raster import rasterize_many
from aisketcher.sketch import stroke3_to_stroke5, stroke5_to_stroke3


@dataclass
class ReferenceBank:
    """Encodings of reference sketches: every encoder state (flat) and z_r, with class labels."""

    memory: torch.Tensor | None  # (sum of lengths, n_a), states of all sketches end to end
    lengths: torch.Tensor  # (K,)
    z_r: torch.Tensor | None  # (K, z_r)
    labels: torch.Tensor  # (K,)

    def latents_for(
        self, labels: list[int], rng: np.random.Generator, device: torch.device
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """For each requested class, a random reference: padded memory, its lengths, z_r."""
        picks = []
        for label in labels:
            candidates = torch.nonzero(self.labels == label).flatten()
            if len(candidates) == 0:
                raise ValueError(f"no reference sketch for class index {label}")
            picks.append(int(candidates[rng.integers(len(candidates))]))
        index = torch.tensor(picks)
        z_r = self.z_r[index].to(device).float() if self.z_r is not None else None
        if self.memory is None:
            return None, None, z_r
        starts = torch.cumsum(self.lengths, 0) - self.lengths
        lengths = self.lengths[index]
        memory = torch.zeros(len(picks), int(lengths.max()), self.memory.shape[1])
        for row, k in enumerate(picks):
            memory[row, : self.lengths[k]] = self.memory[starts[k] : starts[k] + self.lengths[k]]
        return memory.to(device), lengths.to(device), z_r


def model_inputs(
    model: SketchModel, sketches: list[np.ndarray], labels: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Normalised stroke-3 sketches -> (strokes without the start token, lengths, labels, rasters)."""
    cfg = model.config
    rasters = None
    if cfg.use_autoencoder or cfg.encoder == "cnn":
        rasters = rasterize_many(sketches, cfg.raster_size)
    batch = collate(sketches, np.asarray(labels), rasters)
    device = model.output.weight.device
    batch = batch.to(device)
    return batch.strokes[:, 1:], batch.lengths, batch.labels, batch.rasters


@torch.no_grad()
def encode_sketches(
    model: SketchModel, sketches: list[np.ndarray], labels: list[int], *, sample: bool = False
) -> Latent:
    """Encode normalised sketches under the given classes (z_s = mu_s unless `sample`)."""
    strokes, lengths, label_t, rasters = model_inputs(model, sketches, labels)
    return model.encode(strokes, lengths, label_t, rasters, sample=sample)


@torch.no_grad()
def build_reference_bank(
    model: SketchModel, sketches: list[np.ndarray], labels: list[int], batch_size: int = 100
) -> ReferenceBank:
    memories, lengths, z_rs = [], [], []
    for start in range(0, len(sketches), batch_size):
        part = sketches[start : start + batch_size]
        latent = encode_sketches(model, part, labels[start : start + batch_size])
        for i, s in enumerate(part):
            if latent.memory is not None:
                memories.append(latent.memory[i, : len(s)].cpu())
            if latent.z_r is not None:
                z_rs.append(latent.z_r[i].cpu())
            lengths.append(len(s))
    return ReferenceBank(
        memory=torch.cat(memories) if memories else None,
        lengths=torch.tensor(lengths),
        z_r=torch.stack(z_rs) if z_rs else None,
        labels=torch.tensor(labels),
    )


def class_latent(
    model: SketchModel,
    labels: list[int],
    seed: int | None,
    bank: ReferenceBank | None,
) -> Latent:
    """The latent for drawing from class labels alone (see the module docstring)."""
    cfg = model.config
    device = model.output.weight.device
    rng = np.random.default_rng(seed)
    label_t = torch.tensor(labels, device=device)
    c = model.class_vector(label_t)
    z_s = None
    if cfg.has_latent:
        z_s = torch.from_numpy(rng.standard_normal((len(labels), cfg.z_size))).float().to(device)
    memory = lengths = z_r = None
    if bank is not None and (cfg.use_influence or cfg.use_autoencoder):
        memory, lengths, z_r = bank.latents_for(labels, rng, device)
    if cfg.use_autoencoder and z_r is None:
        z_r = torch.zeros(len(labels), cfg.raster_z_size, device=device)
    return Latent(c, z_s, z_s, None, z_r, None, memory, lengths)


@torch.no_grad()
def sample_sequences(
    model: SketchModel,
    latent: Latent,
    count: int,
    *,
    temperature: float = 0.4,
    generator: torch.Generator | None = None,
    prefix: np.ndarray | None = None,
    max_steps: int | None = None,
) -> list[np.ndarray]:
    """Draw `count` sketches (normalised stroke-3), one decoder step at a time for the whole batch.

    With `prefix` (one normalised stroke-3 sketch, shared by all `count` rows), its points are fed
    first (teacher forcing) and the model continues from the last of them; every result starts with
    the prefix.
    """
    model.eval()
    device = model.output.weight.device
    max_steps = max_steps or model.config.max_seq_len
    state = model.initial_state(latent, count)
    point = torch.as_tensor(START_TOKEN, device=device).expand(count, 5).clone()
    history: list[torch.Tensor] = []  # (count, 5) per step, all rows, kept on the device
    step = 0
    if prefix is not None:
        for row in torch.from_numpy(stroke3_to_stroke5(prefix)).to(device):
            _, state, _ = sampling_step(model, point, state, latent, step, generator)
            point = row.expand(count, 5)
            history.append(point)
            step += 1
    done = np.zeros(count, dtype=bool)  # in NumPy: a check per step costs less there
    while step < max_steps and not done.all():
        y, state, _ = sampling_step(model, point, state, latent, step, generator)
        point = sample_points(y, model.config.num_mixture, temperature, generator)
        history.append(point)
        done |= point[:, 4].cpu().numpy() > 0.5
        step += 1
    if not history:
        return [sampled_stroke3(torch.zeros(0, 5)) for _ in range(count)]
    # stroke5_to_stroke3 cuts each row at its first end-of-sketch point.
    drawn = torch.stack(history, 1).cpu()
    return [sampled_stroke3(row) for row in drawn]


def sampling_step(
    model: SketchModel,
    point: torch.Tensor,
    state: DecoderState,
    latent: Latent,
    step: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, DecoderState, object]:
    """One decoder step, drawing the influence layer's lambda_a from `generator`."""
    noise = None
    if model.influence is not None:
        size = (point.shape[0], model.config.enc_state_size)
        noise = torch.randn(size, generator=generator, device=point.device)
    return model.decode_step(point, state, latent, step, influence_noise=noise)


def sampled_stroke3(points: torch.Tensor) -> np.ndarray:
    """Sampled stroke-5 rows (cut at the first end-of-sketch) -> stroke-3 with >= 1 point."""
    s3 = stroke5_to_stroke3(points.numpy())
    return s3 if len(s3) else np.array([[0.0, 0.0, 1.0]], dtype=np.float32)


def make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator
