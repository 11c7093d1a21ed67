"""The one decoding loop: every drawing mode of the CLI, the Python API, the web app and evaluation
steps a `Sampler`.

A sampler draws a batch of sketches one decoder step at a time. An optional prefix (the user's
strokes in `complete`) is fed first, as teacher forcing: it primes the decoder and, for the default
influence memory, fills the memory with what was drawn. Then each step samples one point per row
from the mixture (eq. 6-8, at a temperature) and feeds it back, so the memory grows from the
model's own points, until every row has drawn its end-of-sketch or `max_steps` points are drawn.
`step` returns each new point, which the web app streams while the model is still drawing. Rows
that have ended leave the decoded batch (their state is dropped once a quarter of the rows still
decoded have ended), so a batch costs the points its sketches draw, not its longest sketch times
its size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from aisketcher.data.batching import START_TOKEN
from aisketcher.model.mixture import guided_output, sample_points
from aisketcher.model.sketcher import Latent, SketchModel
from aisketcher.strokes import stroke3_to_stroke5, stroke5_to_stroke3


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one CPU thread: a decoder step is a chain of tiny operations, and waking
    other threads for each costs more than they save (docs/measurements.md). The web app sets one
    thread for the process."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


class Sampler:
    """`count` sketches decoded from `latent`, all rows stepped together.

    Random draws (the influence layer's lambda_a and the points) come from `generator` in a fixed
    order, so a seed gives the same sketches whoever steps the sampler.

    `temperature` None draws at the model's `config.temperature`. With class guidance
    (`guidance` w != 1, default the model's `config.guidance`) every row is
    decoded twice, under its class and under "no class", both fed the same points, and each point
    is drawn from the guided output (`guided_output`).
    """

    @torch.no_grad()
    def __init__(
        self,
        model: SketchModel,
        latent: Latent,
        count: int,
        *,
        temperature: float | None = None,
        generator: torch.Generator | None = None,
        prefix: np.ndarray | None = None,
        max_steps: int | None = None,
        guidance: float | None = None,
    ) -> None:
        self.model = model.eval()
        self.count = count
        cfg = model.config
        self.temperature = cfg.temperature if temperature is None else temperature
        self.guidance = cfg.checked_guidance(cfg.guidance if guidance is None else guidance)
        self.guided = self.guidance != 1.0
        device = model.output.weight.device
        self.generator = generator or make_generator(device, None)
        self.max_steps = max_steps or model.config.max_seq_len
        if self.guided:
            latent = _with_no_class_rows(model, latent)
        self.state = model.initial_state(latent, 2 * count if self.guided else count)
        self.point = torch.as_tensor(START_TOKEN, device=device).expand(count, 5).clone()
        self.steps = 0  # points fed to the decoder so far (the prefix's and the drawn)
        self.rows: list[torch.Tensor] = []  # (count, 5) per step, kept on the device
        self.done = np.zeros(count, dtype=bool)  # in NumPy: a check per step costs less there
        # The rows still decoded (`state`, `point` and `_latent` hold these rows only; when
        # guided, `state` and `_latent` hold them, then them again under "no class").
        self.active = np.arange(count)
        self._latent = latent
        self._ended = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0], device=device).expand(count, 5)
        self.prefix_points = 0
        if prefix is not None:
            self._feed(prefix)

    def _decode(self) -> torch.Tensor:
        rows, point, noise = len(self.active), self.point, None
        if self.model.influence is not None:
            size = (rows, self.model.config.memory_size)
            noise = torch.randn(size, generator=self.generator, device=self.point.device)
        if self.guided:  # the "no class" rows follow their classed rows, with the same draws
            point = torch.cat([point, point])
            noise = None if noise is None else torch.cat([noise, noise])
        y, self.state, _ = self.model.decode_step(
            point, self.state, self._latent, self.steps, influence_noise=noise
        )
        self.steps += 1
        if self.guided:
            y = guided_output(y[:rows], y[rows:], self.guidance)
        return y

    @torch.no_grad()
    def _feed(self, prefix: np.ndarray) -> None:
        """Teacher-force one normalised stroke-3 sketch, the same for every row."""
        for row in torch.from_numpy(stroke3_to_stroke5(prefix)).to(self.point.device):
            self._decode()  # its prediction is not needed: the next point is given
            self.point = row.expand(self.count, 5)
            self.rows.append(self.point)
        self.prefix_points = len(prefix)

    @property
    def finished(self) -> bool:
        return self.steps >= self.max_steps or bool(self.done.all())

    @torch.no_grad()
    def step(self) -> tuple[np.ndarray, np.ndarray]:
        """Draw one point per row: (points (count, 5) stroke-5, rows still drawing before it).

        A row's end-of-sketch point (p3 = 1) is its last; rows that had ended get end-of-sketch
        points again.
        """
        drawing = ~self.done
        y = self._decode()
        cfg = self.model.config
        # magenta-js tempers the discrete choices less than the offsets: 0.5 + 0.5 T.
        soft = 0.5 + 0.5 * self.temperature if cfg.discrete_temperature == "magenta-js" else None
        self.point = sample_points(
            y, cfg.num_mixture, self.temperature, self.generator, soft, cfg.pen_temperature
        )
        if len(self.active) == self.count:
            row = self.point
        else:
            row = self._ended.clone()
            row[torch.from_numpy(self.active).to(row.device)] = self.point
        self.rows.append(row)
        points = row.cpu().numpy()
        self.done |= points[:, 4] > 0.5
        self._drop_ended()
        return points, drawing

    def _drop_ended(self) -> None:
        """Stop decoding the rows that have ended, once they are a quarter of those decoded."""
        going = ~self.done[self.active]
        if not going.any() or going.sum() > 0.75 * len(self.active):
            return
        keep = torch.from_numpy(np.flatnonzero(going)).to(self.point.device)
        self.point = self.point.index_select(0, keep)
        if self.guided:
            keep = torch.cat([keep, keep + len(self.active)])
        self.active = self.active[going]
        self.state = self.state.rows(keep)
        self._latent = self._latent.rows(keep)

    def run(self) -> list[np.ndarray]:
        """Step until every row has ended, on one thread; the sketches (see `sketches`)."""
        with one_thread():
            while not self.finished:
                self.step()
        return self.sketches()

    def sketches(self) -> list[np.ndarray]:
        """Each row as normalised stroke-3 (the prefix, then the drawn points) with >= 1 point."""
        if not self.rows:
            return [_nonempty(np.zeros((0, 3), np.float32)) for _ in range(self.count)]
        drawn = torch.stack(self.rows, 1).cpu().numpy()
        # stroke5_to_stroke3 cuts each row at its first end-of-sketch point.
        return [_nonempty(stroke5_to_stroke3(row)) for row in drawn]


def _with_no_class_rows(model: SketchModel, latent: Latent) -> Latent:
    """The latent's rows, then the same rows again under "no class" (the slot class dropout
    trained): what class guidance moves away from."""
    rows, device = latent.c.shape[0], latent.c.device
    index = torch.arange(rows, device=device)
    both = latent.rows(torch.cat([index, index]))
    no_class = model.class_vector(torch.full((rows,), model.no_class, device=device))
    both.c = torch.cat([latent.c, no_class.to(latent.c.dtype)])
    return both


def _nonempty(s3: np.ndarray) -> np.ndarray:
    return s3 if len(s3) else np.array([[0.0, 0.0, 1.0]], dtype=np.float32)


def sample(
    model: SketchModel,
    latent: Latent,
    count: int,
    *,
    temperature: float | None = None,
    seed: int | None = None,
    prefix: np.ndarray | None = None,
    guidance: float | None = None,
) -> list[np.ndarray]:
    """Draw `count` sketches to the end (normalised stroke-3), seeded; `temperature` and
    `guidance` None: the model's."""
    generator = make_generator(model.output.weight.device, seed)
    return Sampler(
        model,
        latent,
        count,
        temperature=temperature,
        generator=generator,
        prefix=prefix,
        guidance=guidance,
    ).run()
