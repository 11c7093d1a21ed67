"""The bidirectional RNN encoder (eq. 2) that also returns every step's state for the influence layer."""

from __future__ import annotations

import torch
from torch import nn

from aisketcher.model.cells import make_cell


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of a time-major (T, B, F) tensor within its own length."""
    steps = torch.arange(x.shape[0], device=x.device)[:, None]
    idx = torch.where(steps < lengths[None, :], lengths[None, :] - 1 - steps, steps)
    return x.gather(0, idx.unsqueeze(-1).expand_as(x))


class SketchEncoder(nn.Module):
    """Stroke-5 sketch (B, T, 5) -> h_enc (B, 2H) and the states h_enc_i (B, T, 2H), zero on padding."""

    def __init__(self, cell: str, hidden_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.forward_cell = make_cell(cell, 5, hidden_size, dropout=dropout)
        self.backward_cell = make_cell(cell, 5, hidden_size, dropout=dropout)

    def forward(
        self, strokes: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = strokes.transpose(0, 1)
        fw, _ = self.forward_cell(x)
        bw, _ = self.backward_cell(reverse_padded(x, lengths))
        bw = reverse_padded(bw, lengths)
        last = (lengths - 1).clamp(min=0)
        batch = torch.arange(x.shape[1], device=x.device)
        h_enc = torch.cat(
            [fw[last, batch], bw[0]], dim=-1
        )  # [h_fw at the last point; h_bw at the first]
        states = torch.cat([fw, bw], dim=-1).transpose(0, 1)
        valid = torch.arange(x.shape[0], device=x.device)[None, :] < lengths[:, None]
        return h_enc, states * valid.unsqueeze(-1)
