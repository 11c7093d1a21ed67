"""What the decoder reads: its input z = [z_s; z_r; a_d; c; s_i] (eq. 5) laid out by name
(`DecoderInputs`), the parts of z fixed per sketch (`Latent`), and what it carries from one step
to the next (`DecoderState`).

To add an input to eq. 5: one entry in `DecoderInputs.of` (where in z, how large) and, when it is
fixed per sketch, the `Latent` field of the same name that carries it. The reference path and the
fused kernels take every offset from the layout; a part fixed per sketch reaches the kernels only
through the projection `DecoderState.context`, so they need no change for it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no torch at run time: the config, which the CLI reads first, sizes z here
    import torch

    from aisketcher.model.config import ModelConfig

# The parts of z that change at every step; the others are projected once per sketch.
STEP_PARTS = ("a_d", "s")
# The decoder's initial state is tanh(W [z_s; c] + b), as Sketch-RNN's (spec section 2.5).
INITIAL_PARTS = ("z_s", "c")


@dataclass(frozen=True)
class DecoderInputs:
    """The parts of one model's z (eq. 5), in order: (name, size) for each part it has.

    The order is the row order of the decoder's input weights, so checkpoints depend on it.
    """

    parts: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, config: ModelConfig) -> DecoderInputs:
        sizes = (
            ("z_s", config.z_size if config.has_latent else 0),  # eq. 4
            ("z_r", config.raster_z_size if config.use_autoencoder else 0),  # the raster's code
            ("a_d", config.memory_size if config.use_influence else 0),  # eq. 9
            ("c", config.cond_size),  # the class, one-hot
            ("s", 5),  # s_i, the previous point in stroke-5
        )
        return cls(tuple((name, size) for name, size in sizes if size))

    @property
    def size(self) -> int:
        return sum(size for _, size in self.parts)

    @property
    def initial_size(self) -> int:
        """The size of [z_s; c], the initial state's input (0: the decoder starts at zero)."""
        return sum(size for name, size in self.parts if name in INITIAL_PARTS)

    def start(self, name: str) -> int:
        """Where part `name` starts in z (and its first row in the decoder's input weights)."""
        offset = 0
        for part, size in self.parts:
            if part == name:
                return offset
            offset += size
        raise KeyError(f"z has no part {name!r}: {', '.join(p for p, _ in self.parts)}")

    def rows(self, name: str) -> slice:
        """Part `name`'s columns of z: its rows in the decoder's input weights."""
        start = self.start(name)
        return slice(start, start + dict(self.parts)[name])

    def fixed(self, latent: Latent, batch: int, like: torch.Tensor) -> torch.Tensor:
        """z (B, size) with the parts that change at every step at zero, on `like`'s device and
        dtype: what the decoder projects once per sketch. The other parts are `latent`'s fields
        of their names."""
        z = like.new_zeros(batch, self.size)
        for name, _ in self.parts:
            if name not in STEP_PARTS:
                z[:, self.rows(name)] = getattr(latent, name)
        return z

    def initial(self, latent: Latent) -> list[torch.Tensor]:
        """The parts of [z_s; c] this model has, in order, from `latent`."""
        return [getattr(latent, name) for name, _ in self.parts if name in INITIAL_PARTS]


@dataclass
class Latent:
    """Everything the decoder conditions on that is fixed per sketch, for one batch. The parts of
    z (eq. 5) are the fields of their names in `DecoderInputs`."""

    c: torch.Tensor | None = None  # (B, k) one-hot class vector
    z_s: torch.Tensor | None = None  # (B, n_z) eq. 4
    mu_s: torch.Tensor | None = None  # (B, n_z) eq. 3
    log_var_s: torch.Tensor | None = None  # (B, n_z) log sigma_s^2
    z_r: torch.Tensor | None = None  # (B, z_r) raster features
    raster_recon: torch.Tensor | None = None  # (B, 1, S, S) X_r'
    # The paper-literal memory (influence_memory "bidirectional") only: every encoder state of
    # the input sketch. The default memory is not fixed per sketch: the decoder builds it from
    # the points it is given or draws (DecoderState.memory).
    memory: torch.Tensor | None = None  # (B, T, 2H)
    memory_lengths: torch.Tensor | None = None  # (B,)

    def rows(self, index: torch.Tensor) -> Latent:
        """The latent of the batch rows `index` only."""
        return Latent(**{f.name: rows_of(getattr(self, f.name), index) for f in fields(self)})


@dataclass
class DecoderState:
    rnn: tuple[torch.Tensor, ...]
    query: torch.Tensor | None  # h_dec of the previous step, the influence layer's query
    context: torch.Tensor  # the decoder's input projection of the inputs fixed per sketch
    # The "drawn" memory while decoding step by step: row t = the encoder's forward state after
    # points 1..t (rows past the current step are unused room), and that RNN's own state.
    memory: torch.Tensor | None = None  # (B, capacity, H)
    memory_rnn: tuple[torch.Tensor, ...] | None = None

    def rows(self, index: torch.Tensor) -> DecoderState:
        """The state of the batch rows `index` only."""
        memory_rnn = (
            None if self.memory_rnn is None else tuple(rows_of(t, index) for t in self.memory_rnn)
        )
        return DecoderState(
            tuple(rows_of(t, index) for t in self.rnn),
            rows_of(self.query, index),
            rows_of(self.context, index),
            rows_of(self.memory, index),
            memory_rnn,
        )


def with_room(memory: torch.Tensor, step: int) -> torch.Tensor:
    """`memory` with a row `step`: room doubles, so that a long drawing copies O(T) rows."""
    if memory.shape[1] > step:
        return memory
    room = memory.new_zeros(memory.shape[0], max(2 * memory.shape[1], step + 16), memory.shape[2])
    room[:, : memory.shape[1]] = memory
    return room


def rows_of(t: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t.index_select(0, index.to(t.device))
