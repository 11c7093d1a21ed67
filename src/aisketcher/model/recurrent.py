"""What every recurrent cell is (`RecurrentCell`: a step split into the input projection and the
recurrence, a sequence, a flat state as magenta lays it out) and what the LSTM cells share
(`GatedCell`: weights in TensorFlow's layout, the forget bias, recurrent dropout on the
candidate, magenta's initialisation, the per-gate layer norm). The cells are in cells.py."""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aisketcher.model import noise

# magenta's layer norm epsilon, inside the square root like F.layer_norm.
LAYER_NORM_EPS = 1e-3

State = tuple[Tensor, ...]


class RecurrentCell(nn.Module, abc.ABC):
    """A recurrent cell: `step` for one time step, `forward` for a time-major sequence.

    Subclasses split a step into `input_projection` (everything that depends on x alone, done for
    all T steps in one matmul by `forward`) and `recurrence` (the per-step work).
    """

    hidden_size: int
    state_size: int

    def __init__(self, input_size: int, hidden_size: int, state_size: int) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(
                f"sizes must be positive, got input {input_size}, hidden {hidden_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.state_size = state_size

    @abc.abstractmethod
    def input_projection(self, x: Tensor) -> Tensor:
        """Map inputs (..., I) to what `recurrence` takes per step (..., P)."""

    def partial_projection(self, x_part: Tensor, start: int) -> Tensor:
        """The linear part of `input_projection` for input columns start..start+n alone.

        Lets a caller project the inputs known in advance for all steps at once and add, per step,
        only the part computed inside the loop (the influence layer's a_d).
        """
        zeros = x_part.new_zeros(*x_part.shape[:-1], self.input_size)
        zeros[..., start : start + x_part.shape[-1]] = x_part
        return self.input_projection(zeros) - self.input_projection(torch.zeros_like(zeros))

    @abc.abstractmethod
    def recurrence(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        """One step from a projected input (B, P): returns h (B, H) and the new state."""

    @abc.abstractmethod
    def state_from_vector(self, v: Tensor) -> State:
        """Split a flat state (B, state_size), laid out as magenta does, into the state tuple."""

    @abc.abstractmethod
    def state_to_vector(self, state: State) -> Tensor:
        """Inverse of `state_from_vector`: the state tuple as one (B, state_size) tensor."""

    def initial_state(
        self, batch: int, device: torch.device | str | None, dtype: torch.dtype
    ) -> State:
        """The all-zero state for a batch."""
        return self.state_from_vector(
            torch.zeros(batch, self.state_size, device=device, dtype=dtype)
        )

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step: x (B, I) -> h (B, H), new state."""
        return self.recurrence(self.input_projection(x), state)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run over time-major x (T, B, I): h of every step (T, B, H) and the final state."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input (T, B, {self.input_size}), got {tuple(x.shape)}")
        if state is None:
            state = self.initial_state(x.shape[1], x.device, x.dtype)
        if x.shape[0] == 0:
            return x.new_zeros(0, x.shape[1], self.hidden_size), state
        return self.run(self.input_projection(x), state)

    def run(self, xps: Tensor, state: State) -> tuple[Tensor, State]:
        """`recurrence` over projected inputs xps (T, B, P), T >= 1: every h (T, B, H), last state."""
        outputs: list[Tensor] = []
        for xp_t in xps.unbind(0):
            h, state = self.recurrence(xp_t, state)
            outputs.append(h)
        return torch.stack(outputs), state


def affine(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (..., I) @ weight (I, P) + bias, as one GEMM over all leading dimensions."""
    flat = x.reshape(-1, x.shape[-1])
    out = flat @ weight if bias is None else torch.addmm(bias, flat, weight)
    return out.view(*x.shape[:-1], weight.shape[1])


def gate_layer_norm(gates: Tensor, gain: Tensor, bias: Tensor) -> Tensor:
    """Layer norm of each gate block of gates (B, 4, H) on its own, then a gain and bias over 4H."""
    hidden = gates.shape[-1]
    normed = F.layer_norm(gates, (hidden,), eps=LAYER_NORM_EPS)
    return normed * gain.view(4, hidden) + bias.view(4, hidden)


def lstm_ortho_(weight_hh: Tensor) -> None:
    """Orthogonal init of each (H, H) gate block of weight_hh (H, 4H), as magenta does."""
    hidden = weight_hh.shape[0]
    with torch.no_grad():
        for k in range(weight_hh.shape[1] // hidden):
            block = torch.empty(hidden, hidden, dtype=weight_hh.dtype, device=weight_hh.device)
            nn.init.orthogonal_(block)
            weight_hh[:, k * hidden : (k + 1) * hidden] = block


def check_dropout(dropout: float) -> float:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout is a drop probability in [0, 1), got {dropout}")
    return float(dropout)


class GatedCell(RecurrentCell):
    """Parts shared by the LSTM cells: input and recurrent weights, forget bias, dropout."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        state_size: int,
        dropout: float,
        forget_bias: float,
    ) -> None:
        super().__init__(input_size, hidden_size, state_size)
        self.dropout = check_dropout(dropout)
        self.forget_bias = float(forget_bias)
        self.weight_ih = nn.Parameter(torch.empty(input_size, 4 * hidden_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, 4 * hidden_size))

    def reset_parameters(self) -> None:
        # TF's default get_variable initializer (glorot uniform) for W_xh, magenta's ortho for W_hh.
        nn.init.xavier_uniform_(self.weight_ih)
        lstm_ortho_(self.weight_hh)

    def _candidate(self, j: Tensor) -> Tensor:
        g = torch.tanh(j)
        if self.training and self.dropout > 0.0:
            g = noise.dropout(g, self.dropout)
        return g

    def dropout_mask(self, h: Tensor, steps: int = 0) -> Tensor | None:
        """The candidate's dropout mask for one step (B, H), or `steps` of them (T, B, H), drawn
        as `_candidate` draws; None when no dropout applies."""
        if not (self.training and self.dropout > 0.0):
            return None
        if steps:
            return torch.stack([noise.dropout_mask(h, self.dropout) for _ in range(steps)])
        return noise.dropout_mask(h, self.dropout)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, dropout={self.dropout}, "
            f"forget_bias={self.forget_bias}"
        )
