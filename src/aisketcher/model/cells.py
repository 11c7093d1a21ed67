"""Recurrent cells of Sketch-RNN (magenta `sketch_rnn/rnn.py`), with one shared interface
(`recurrent.RecurrentCell`; the gated cells' common parts are there too).

Three kinds, built by `make_cell`:

- ``"lstm"``: `LSTMCell`, magenta's plain LSTM (TensorFlow BasicLSTMCell layout).
- ``"layer_norm"``: `LayerNormLSTMCell`, layer norm on the gates and on the new cell.
- ``"hyper"``: `HyperLSTMCell`, a small LSTM that rescales the main LSTM's weights at every step.

Weights are stored input-major like TensorFlow (``weight_ih`` is (I, 4H), ``weight_hh`` is (H, 4H))
with gate blocks in TensorFlow's order i, j (candidate), f, o, so magenta checkpoints map over
without transposing. The forget bias is a constant added at run time, never stored in a parameter.

Every state is a tuple that starts with ``(h, c)``. The flat vector layout of `state_from_vector`
(the decoder's initial state ``tanh(W z + b)``) follows magenta, whose order differs between cells:
see each class.

Recurrent dropout "without memory loss" (Semeniuta et al. 2016) drops the candidate ``g = tanh(j)``
only, in training mode only, with the usual 1 / (1 - p) rescaling (``dropout`` is the drop
probability, magenta's ``1 - dropout_keep_prob``).

The plain-LSTM and layer-norm steps run through the fused kernels of `aisketcher.model.fused` when
they can (float32 on the CPU), with the code here as their reference and fallback: same formulas,
same random draws, so the two paths give the same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aisketcher.model import fused
from aisketcher.model.recurrent import (
    LAYER_NORM_EPS,
    GatedCell,
    RecurrentCell,
    State,
    affine,
    gate_layer_norm,
)

CELL_KINDS = ("lstm", "layer_norm", "hyper")


class LSTMCell(GatedCell):
    """magenta's plain LSTM cell.

    Parameters: ``weight_ih`` (I, 4H), ``weight_hh`` (H, 4H), ``bias`` (4H) = magenta's ``W_xh``,
    ``W_hh``, ``bias``. State tuple ``(h, c)``; flat vector ``[c; h]`` (magenta's order).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        dropout: float = 0.0,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__(input_size, hidden_size, 2 * hidden_size, dropout, forget_bias)
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.zeros_(self.bias)

    def input_projection(self, x: Tensor) -> Tensor:
        return affine(x, self.weight_ih, self.bias)

    def partial_projection(self, x_part: Tensor, start: int) -> Tensor:
        return x_part @ self.weight_ih[start : start + x_part.shape[-1]]

    def recurrence(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        if fused.usable(xp):
            h, c = fused.lstm_step(xp, h, c, self.weight_hh, self.dropout_mask(h), self.forget_bias)
            return h, (h, c)
        i, j, f, o = torch.addmm(xp, h, self.weight_hh).chunk(4, 1)
        c = c * torch.sigmoid(f + self.forget_bias) + torch.sigmoid(i) * self._candidate(j)
        h = torch.tanh(c) * torch.sigmoid(o)
        return h, (h, c)

    def run(self, xps: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        if not fused.usable(xps):
            return super().run(xps, state)
        masks = self.dropout_mask(h, xps.shape[0])
        hs, c = fused.lstm_sequence(xps, h, c, self.weight_hh, masks, self.forget_bias)
        return hs, (hs[-1], c)

    def state_from_vector(self, v: Tensor) -> State:
        c, h = v.split(self.hidden_size, 1)
        return h, c

    def state_to_vector(self, state: State) -> Tensor:
        h, c = state
        return torch.cat([c, h], 1)


class LayerNormLSTMCell(GatedCell):
    """magenta's LayerNormLSTMCell: no gate bias; layer norm on each gate and on the new cell.

    Parameters: ``weight_ih`` (I, 4H), ``weight_hh`` (H, 4H) = ``W_xh``, ``W_hh``;
    ``gate_norm_gain``, ``gate_norm_bias`` (4H) = ``ln_all/ln_gamma``, ``ln_all/ln_beta``;
    ``cell_norm_gain``, ``cell_norm_bias`` (H) = ``ln_c/ln_gamma``, ``ln_c/ln_beta``.
    State tuple ``(h, c)``; flat vector ``[h; c]`` (magenta's order, unlike `LSTMCell`).
    """

    bias = None  # the gate layer norm's bias takes this role, as in magenta

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        dropout: float = 0.0,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__(input_size, hidden_size, 2 * hidden_size, dropout, forget_bias)
        self.gate_norm_gain = nn.Parameter(torch.empty(4 * hidden_size))
        self.gate_norm_bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.cell_norm_gain = nn.Parameter(torch.empty(hidden_size))
        self.cell_norm_bias = nn.Parameter(torch.empty(hidden_size))
        # Added to the normed gates: forget_bias on the f block only (a constant, not a weight).
        shift = torch.zeros(4, 1)
        shift[2] = self.forget_bias
        self.register_buffer("_forget_shift", shift, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        nn.init.ones_(self.gate_norm_gain)
        nn.init.zeros_(self.gate_norm_bias)
        nn.init.ones_(self.cell_norm_gain)
        nn.init.zeros_(self.cell_norm_bias)

    def input_projection(self, x: Tensor) -> Tensor:
        return affine(x, self.weight_ih, None)

    def partial_projection(self, x_part: Tensor, start: int) -> Tensor:
        return x_part @ self.weight_ih[start : start + x_part.shape[-1]]

    def recurrence(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        # The same formulas as LSTMCell after the gate norm, in fewer and fused operations: one
        # sigmoid over all four blocks (j's is unused), the forget bias inside the gate shift.
        h, c = state
        if fused.usable(xp):
            h, c = fused.ln_lstm_step(xp, h, c, self.weight_hh, self.norms(), self.dropout_mask(h))
            return h, (h, c)
        hid = self.hidden_size
        gates = F.layer_norm(
            torch.addmm(xp, h, self.weight_hh).view(-1, 4, hid), (hid,), eps=LAYER_NORM_EPS
        )
        shift = self.gate_norm_bias.view(4, hid) + self._forget_shift
        gates = torch.addcmul(shift, gates, self.gate_norm_gain.view(4, hid))
        sig = torch.sigmoid(gates)
        c = torch.addcmul(c * sig[:, 2], sig[:, 0], self._candidate(gates[:, 1]))
        normed_c = F.layer_norm(c, (hid,), self.cell_norm_gain, self.cell_norm_bias, LAYER_NORM_EPS)
        h = torch.tanh(normed_c) * sig[:, 3]
        return h, (h, c)

    def run(self, xps: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        if not fused.usable(xps):
            return super().run(xps, state)
        masks = self.dropout_mask(h, xps.shape[0])
        hs, c = fused.ln_lstm_sequence(xps, h, c, self.weight_hh, self.norms(), masks)
        return hs, (hs[-1], c)

    def norms(self) -> fused.LnNorms:
        """The norms as the fused kernels take them: the gate shift is the gate bias with the
        forget bias added on the f block."""
        shift = (self.gate_norm_bias.view(4, -1) + self._forget_shift).reshape(-1)
        return fused.LnNorms(
            self.gate_norm_gain, shift, self.cell_norm_gain, self.cell_norm_bias, LAYER_NORM_EPS
        )

    def state_from_vector(self, v: Tensor) -> State:
        h, c = v.split(self.hidden_size, 1)
        return h, c

    def state_to_vector(self, state: State) -> Tensor:
        return torch.cat(state, 1)


class HyperLSTMCell(GatedCell):
    """magenta's HyperLSTMCell (Ha et al. 2016, "HyperNetworks").

    A small inner LSTM (``hyper_cell``, input ``[x; h]``) emits, per step, embeddings that scale
    each gate block of ``x @ weight_ih`` and ``h @ weight_hh`` and shift the recurrent blocks.

    Parameters: ``weight_ih`` (I, 4H), ``weight_hh`` (H, 4H), ``bias`` (4H) = ``W_xh``, ``W_hh``,
    ``bias``; ``gate_norm_*`` (4H, only with ``use_layer_norm``) = ``ln_all``; ``cell_norm_*`` (H)
    = ``ln_c`` (magenta applies it whether or not ``use_layer_norm``). The eight hyper blocks are
    stacked in the order ``ix, jx, fx, ox, ih, jh, fh, oh`` (magenta scopes ``hyper_ix`` ...):
    ``zw_weight`` (Hh, 8E) and ``zw_bias`` (8E) hold each block's ``zw`` layer in column block k;
    ``alpha`` (8, E, H) holds each block's ``alpha`` weight; ``zb_weight`` (Hh, 4E) and ``beta``
    (4, E, H) hold the ``zb`` and ``beta`` weights of the four recurrent blocks (``ih`` ... ``oh``).

    State tuple ``(h, c, hyper_h, hyper_c)``. Flat vector as magenta: ``[h; hyper_a; c; hyper_b]``
    where ``[hyper_a; hyper_b]`` is the inner cell's own flat layout (``[hyper_h; hyper_c]`` for the
    default layer-norm inner cell, ``[hyper_c; hyper_h]`` for the plain one).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        dropout: float = 0.0,
        forget_bias: float = 1.0,
        hyper_num_units: int = 256,
        hyper_embedding_size: int = 32,
        use_layer_norm: bool = True,
        hyper_recurrent_dropout: bool = False,
    ) -> None:
        state_size = 2 * (hidden_size + hyper_num_units)
        super().__init__(input_size, hidden_size, state_size, dropout, forget_bias)
        self.use_layer_norm = use_layer_norm
        self.hyper_num_units = hyper_num_units
        self.hyper_embedding_size = hyper_embedding_size
        inner = LayerNormLSTMCell if use_layer_norm else LSTMCell
        # magenta's inner cell: same keep prob, dropout only if asked, default forget bias.
        self.hyper_cell = inner(
            input_size + hidden_size,
            hyper_num_units,
            dropout=self.dropout if hyper_recurrent_dropout else 0.0,
        )
        emb, hid = hyper_embedding_size, hidden_size
        self.bias = nn.Parameter(torch.empty(4 * hid))
        if use_layer_norm:
            self.gate_norm_gain = nn.Parameter(torch.empty(4 * hid))
            self.gate_norm_bias = nn.Parameter(torch.empty(4 * hid))
        self.cell_norm_gain = nn.Parameter(torch.empty(hid))
        self.cell_norm_bias = nn.Parameter(torch.empty(hid))
        self.zw_weight = nn.Parameter(torch.empty(hyper_num_units, 8 * emb))
        self.zw_bias = nn.Parameter(torch.empty(8 * emb))
        self.alpha = nn.Parameter(torch.empty(8, emb, hid))
        self.zb_weight = nn.Parameter(torch.empty(hyper_num_units, 4 * emb))
        self.beta = nn.Parameter(torch.empty(4, emb, hid))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.hyper_cell.reset_parameters()
        nn.init.zeros_(self.bias)
        if self.use_layer_norm:
            nn.init.ones_(self.gate_norm_gain)
            nn.init.zeros_(self.gate_norm_bias)
        nn.init.ones_(self.cell_norm_gain)
        nn.init.zeros_(self.cell_norm_bias)
        # Cooijmans' recurrent batch norm trick, as magenta: every block starts scaled by 0.1
        # (zw = 1 from its bias, alpha = 0.1 / E) and unshifted (beta = 0).
        nn.init.zeros_(self.zw_weight)
        nn.init.ones_(self.zw_bias)
        nn.init.constant_(self.alpha, 0.1 / self.hyper_embedding_size)
        nn.init.normal_(self.zb_weight, std=0.01)
        nn.init.zeros_(self.beta)

    def input_projection(self, x: Tensor) -> Tensor:
        # Main gates' x part, then the inner cell's x part (its input is [x; h], split by rows).
        inner = self.hyper_cell
        main = affine(x, self.weight_ih, None)
        hyper = affine(x, inner.weight_ih[: self.input_size], inner.bias)
        return torch.cat([main, hyper], -1)

    def partial_projection(self, x_part: Tensor, start: int) -> Tensor:
        rows = slice(start, start + x_part.shape[-1])
        return torch.cat(
            [x_part @ self.weight_ih[rows], x_part @ self.hyper_cell.weight_ih[rows]], -1
        )

    def recurrence(self, xp: Tensor, state: State) -> tuple[Tensor, State]:
        h, c, hyper_h, hyper_c = state
        batch, hid, emb = h.shape[0], self.hidden_size, self.hyper_embedding_size
        inner = self.hyper_cell
        inner_xp = torch.addmm(xp[:, 4 * hid :], h, inner.weight_ih[self.input_size :])
        hyper_out, (hyper_h, hyper_c) = inner.recurrence(inner_xp, (hyper_h, hyper_c))

        # All eight per-block scalings in one GEMM and one batched GEMM: (B, 8, H).
        zw = torch.addmm(self.zw_bias, hyper_out, self.zw_weight).view(batch, 8, emb)
        scale = torch.einsum("bke,keh->bkh", zw, self.alpha)
        zb = (hyper_out @ self.zb_weight).view(batch, 4, emb)
        shift = torch.einsum("bke,keh->bkh", zb, self.beta)

        xh = xp[:, : 4 * hid].view(batch, 4, hid)
        hh = (h @ self.weight_hh).view(batch, 4, hid)
        gates = scale[:, :4] * xh + scale[:, 4:] * hh + shift + self.bias.view(4, hid)
        if self.use_layer_norm:
            gates = gate_layer_norm(gates, self.gate_norm_gain, self.gate_norm_bias)
        i, j, f, o = gates.unbind(1)
        c = c * torch.sigmoid(f + self.forget_bias) + torch.sigmoid(i) * self._candidate(j)
        normed_c = F.layer_norm(c, (hid,), self.cell_norm_gain, self.cell_norm_bias, LAYER_NORM_EPS)
        h = torch.tanh(normed_c) * torch.sigmoid(o)
        return h, (h, c, hyper_h, hyper_c)

    def state_from_vector(self, v: Tensor) -> State:
        hid, hyp = self.hidden_size, self.hyper_num_units
        h, hyper_a, c, hyper_b = v.split([hid, hyp, hid, hyp], 1)
        hyper_h, hyper_c = self.hyper_cell.state_from_vector(torch.cat([hyper_a, hyper_b], 1))
        return h, c, hyper_h, hyper_c

    def state_to_vector(self, state: State) -> Tensor:
        h, c, hyper_h, hyper_c = state
        hyper_a, hyper_b = self.hyper_cell.state_to_vector((hyper_h, hyper_c)).split(
            self.hyper_num_units, 1
        )
        return torch.cat([h, hyper_a, c, hyper_b], 1)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, hyper_num_units={self.hyper_num_units}, "
            f"hyper_embedding_size={self.hyper_embedding_size}, "
            f"use_layer_norm={self.use_layer_norm}"
        )


def make_cell(
    kind: str, input_size: int, hidden_size: int, *, dropout: float = 0.0, **kw: object
) -> RecurrentCell:
    """Build a cell of kind "lstm", "layer_norm" or "hyper"; `kw` goes to its class.

    Extra options: ``forget_bias`` (all kinds, default 1.0); for "hyper" also ``hyper_num_units``
    (256), ``hyper_embedding_size`` (32), ``use_layer_norm`` (True), ``hyper_recurrent_dropout``
    (False). `dropout` is the recurrent dropout drop probability (magenta: 1 - keep prob).
    """
    classes: dict[str, type[RecurrentCell]] = {
        "lstm": LSTMCell,
        "layer_norm": LayerNormLSTMCell,
        "hyper": HyperLSTMCell,
    }
    if kind not in classes:
        raise ValueError(f"unknown cell kind {kind!r}; expected one of {', '.join(CELL_KINDS)}")
    return classes[kind](input_size, hidden_size, dropout=dropout, **kw)
