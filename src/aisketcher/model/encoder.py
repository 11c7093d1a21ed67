"""The bidirectional RNN encoder (eq. 2), which also gives the influence layer its memory rows."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from aisketcher.model.cells import make_cell


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of a time-major (T, B, F) tensor within its own length."""
    steps = torch.arange(x.shape[0], device=x.device)[:, None]
    idx = torch.where(steps < lengths[None, :], lengths[None, :] - 1 - steps, steps)
    return x.gather(0, idx.unsqueeze(-1).expand_as(x))


@dataclass
class EncoderStates:
    """What one pass of the encoder over (B, T + 1, 5) stroke-5 rows s_0..s_T (s_0 = S0) gives."""

    h_enc: torch.Tensor  # (B, 2H) [forward state after the last point; backward state at the first]
    forward: torch.Tensor  # (B, T + 1, H) forward state after points 1..t; row 0 the zero state
    # (T, B, H) the backward RNN's outputs in its own order: row k of sketch b is its state at
    # point lengths[b] - k. Put in point order only when asked (`backward`): the default model
    # reads just the state at the first point.
    backward_reversed: torch.Tensor
    lengths: torch.Tensor  # (B,) real points per sketch

    @property
    def backward(self) -> torch.Tensor:
        """(B, T, H) backward state at point t (t = 1..T), having read t..end."""
        return reverse_padded(self.backward_reversed, self.lengths).transpose(0, 1)

    def drawn(self) -> torch.Tensor:
        """(B, T, H) row t: the forward state after points 1..t, i.e. what was drawn before t + 1.

        Decoder step t (input s_t, target s_{t+1}) may attend to rows 0..t: none has read its target.
        """
        return self.forward[:, :-1]

    def bidirectional(self) -> torch.Tensor:
        """(B, T, 2H) the paper-literal h_enc_i of point i = 1..T, zero on padding.

        Row t has read point t + 1, the target of decoder step t, and its backward half has read the
        whole sketch: attending to it lets the decoder copy its targets (spec section 3).
        """
        states = torch.cat([self.forward[:, 1:], self.backward], -1)
        steps = torch.arange(states.shape[1], device=states.device)
        return states * (steps[None, :] < self.lengths[:, None]).unsqueeze(-1)


class SketchEncoder(nn.Module):
    """Stroke-5 rows with the start token (B, T + 1, 5) -> `EncoderStates`."""

    def __init__(self, cell: str, hidden_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.forward_cell = make_cell(cell, 5, hidden_size, dropout=dropout)
        self.backward_cell = make_cell(cell, 5, hidden_size, dropout=dropout)

    def forward(self, strokes: torch.Tensor, lengths: torch.Tensor) -> EncoderStates:
        points = strokes[:, 1:].transpose(0, 1)
        fw, _ = self.forward_cell(points)
        fw = torch.cat([fw.new_zeros(1, *fw.shape[1:]), fw])  # row 0: nothing read yet
        bw = self.backward_cell(reverse_padded(points, lengths))[0]
        batch = torch.arange(points.shape[1], device=points.device)
        first = (lengths - 1).clamp(min=0)  # where each sketch's first point is in bw
        h_enc = torch.cat([fw[lengths, batch], bw[first, batch]], dim=-1)  # eq. 2
        return EncoderStates(h_enc, fw.transpose(0, 1), bw, lengths)
