"""The default decoder on the fused kernels: the one place that decides when the model's decoder
runs on them, the structures they take, and the training sequence's autograd function.

`SketchModel.decode` and `decode_step` are the equations (eq. 5-11) in PyTorch, the reference.
A model of the kernels' design (layer-normalised cells, the influence layer with sigma_a =
exp(tanh(mu_a) / 2)) holds a `FusedDecoder`, made once with the model (`FusedDecoder.of`); the
others hold None. The model asks it at each call whether it runs now (`trains`, `draws`: autograd
or not, the rows, `fused.usable` for the tensors at hand) and, if so, hands it the call:

- training: the teacher-forced loop as one call each way (`fused.ln_influence_sequence`);
- drawing a few rows with the "drawn" memory: each step as one call (`fused.ln_draw_step`).

It slices the decoder's input weights by the model's `DecoderInputs` (eq. 5), takes the norms and
the dropout masks from the cells, and draws lambda_a and the masks in the reference's order, so
both paths give the same numbers from the same seed (tests/test_fused.py holds them to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from aisketcher.model import fused
from aisketcher.model.inputs import DecoderState, with_room
from aisketcher.model.noise import standard_normal

if TYPE_CHECKING:
    from aisketcher.model.sketcher import SketchModel

# Up to this many rows a drawing step's loops beat batched products (docs/measurements.md).
DRAW_ROWS = 8


# The structures the kernels take; draw.cpp reads `LnCell` and `DrawWeights` by field name.
class LnCell(NamedTuple):
    """A layer-normalised LSTM cell as a kernel that adds some of its inputs itself takes it."""

    w_in: Tensor  # (I, 4H) the rows of the input weights of those inputs
    w_hh: Tensor  # (H, 4H)
    norms: fused.LnNorms


class InfluenceDecoder(NamedTuple):
    """The default decoder (eq. 5-11) as its kernels take it: the inputs fixed per sketch come
    projected (`DecoderState.context`); a_d and s_j are added at every step."""

    cell: LnCell  # its `w_in`: the rows of s_j in the decoder's input weights (5, 4H)
    w_a: Tensor  # (n_a, 4H) the rows of a_d in the decoder's input weights
    w_query: Tensor  # (n_a, H) the influence layer's W (eq. 11)


class DrawWeights(NamedTuple):
    """What `ln_draw_step` takes besides the state: the decoder, the encoder's forward cell that
    makes the "drawn" memory, and the output layer (eq. 6)."""

    decoder: InfluenceDecoder
    memory: LnCell  # its `w_in`: all its input weights (5, 4E)
    w_out: Tensor  # (O, H)
    b_out: Tensor  # (O)


class _LayerNormInfluenceSequence(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, context, points, h0, c0, q0, w_hh, w_a, w_s, w_q, gain, shift, cgain, cbias,
        masks, memory, limits, noise, eps,
    ):  # fmt: skip
        hs, cs, mu, log_var, inputs, alpha, proj, *saved = fused.extension().ln_influence_forward(
            context, points, h0, c0, q0, w_hh, w_a, w_s, w_q, gain, shift, cgain, cbias, masks,
            memory, limits, noise, eps,
        )  # fmt: skip
        ctx.save_for_backward(
            h0, q0, w_hh, w_a, w_q, gain, cgain, masks, memory, limits, noise, hs, cs, log_var,
            inputs, alpha, proj, *saved, w_s,
        )  # fmt: skip
        return hs, mu, log_var

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dhs: Tensor, d_mu: Tensor, d_lv: Tensor):  # type: ignore[override]
        *saved, w_s = ctx.saved_tensors
        dgates, *grads, d_memory = fused.extension().ln_influence_backward(
            dhs.contiguous(), d_mu.contiguous(), d_lv.contiguous(), *saved
        )
        d_points = dgates @ w_s.t() if ctx.needs_input_grad[1] else None
        d_context, *grads = grads
        return d_context, d_points, *grads, None, d_memory, None, None, None


def ln_influence_sequence(
    decoder: InfluenceDecoder,
    context: Tensor,
    points: Tensor,
    rnn: tuple[Tensor, Tensor],
    query: Tensor,
    memory: Tensor,
    limits: Tensor,
    noise: Tensor,
    masks: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The default decoder's teacher-forced loop (layer-normalised cell, influence layer with
    sigma_a = exp(tanh(mu_a) / 2)) in one call each way: hs (L, B, H), mu_a and log sigma_a^2
    (L, B, A) from the projection of the inputs fixed per sketch (B, 4H), the points s_j
    (L, B, 5), the state (h0, c0) and the first query (B, H), the memory (B, T, A), how many of
    its rows each step reads (L, B), lambda_a (L, B, A) and the dropout masks (L, B, H) or None.
    See `ln_influence_forward` in influence.cpp."""
    cell = decoder.cell
    gain, shift, cgain, cbias, eps = cell.norms
    return _LayerNormInfluenceSequence.apply(
        context.contiguous(), points.contiguous(), rnn[0].contiguous(), rnn[1].contiguous(),
        query.contiguous(), cell.w_hh, decoder.w_a, cell.w_in, decoder.w_query, gain, shift,
        cgain, cbias, fused.as_mask(masks), memory.contiguous(), limits.contiguous(),
        noise.contiguous(), eps,
    )  # fmt: skip


@dataclass
class _DrawingState(DecoderState):
    """A state made by the fused drawing step, with the weights it gathered at its first step:
    slicing and the norms' shift at every point cost as much as a tenth of a drawing step. A
    state of some of the rows (`rows`) gathers them again, once."""

    weights: Any = None  # `DrawWeights` as draw.cpp holds them


class FusedDecoder:
    """The fused decoder of one `SketchModel`: its parts, as the kernels take them."""

    def __init__(self, model: SketchModel) -> None:
        self.cell = model.decoder
        self.influence = model.influence
        self.decoder_inputs = model.decoder_inputs
        self.output = model.output
        self.memory_size = model.config.memory_size
        # Drawing steps also run the memory's encoder cell and attend to rows 0..j: the "drawn"
        # memory, which is causal.
        drawn = model.drawn_memory and model.influence.causal
        self.memory_cell = model.encoder.forward_cell if drawn else None

    @classmethod
    def of(cls, model: SketchModel) -> FusedDecoder | None:
        """`model`'s fused decoder, or None when its design is not the one the kernels compute."""
        fits = (
            model.config.cell == "layer_norm"
            and model.influence is not None
            and model.influence.paper_sigma
        )
        return cls(model) if fits else None

    # ----- training -----
    def trains(self, inputs: Tensor, memory: Tensor | None) -> bool:
        """Whether teacher-forced decoding of `inputs` runs fused: a memory to attend to (the
        paper-literal one may have none), autograd, tensors the kernels take."""
        return memory is not None and torch.is_grad_enabled() and fused.usable(inputs)

    def decode(
        self,
        inputs: Tensor,
        state: DecoderState,
        memory: Tensor,
        lengths: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """`SketchModel.decode`'s loop in one call: hs (L, B, H), mu_a, log sigma_a^2 (L, B, n_a)."""
        batch, steps = inputs.shape[:2]
        noises, masks = [], []
        for _ in range(steps):  # in the loop's order: lambda_a, then the step's dropout mask
            noises.append(standard_normal(batch, self.memory_size))
            masks.append(self.cell.dropout_mask(state.rnn[0]))
        return ln_influence_sequence(
            self._decoder(),
            context=state.context,
            points=inputs.transpose(0, 1),
            rnn=state.rnn,
            query=state.query,
            memory=memory,
            limits=self.influence.read_limits(steps, memory.shape[1], lengths, batch),
            noise=torch.stack(noises).to(inputs),
            masks=None if masks[0] is None else torch.stack(masks),
        )

    # ----- drawing -----
    def draws(self, point: Tensor) -> bool:
        """Whether the drawing step from `point` runs fused: the "drawn" memory, no autograd, no
        dropout, a few rows, tensors the kernels take (never waiting for a build)."""
        return (
            self.memory_cell is not None
            and not torch.is_grad_enabled()
            and not (self.cell.training or self.memory_cell.training)
            and point.shape[0] <= DRAW_ROWS
            and fused.usable(point)
        )

    def draw_step(
        self, point: Tensor, state: DecoderState, step: int, noise: Tensor | None
    ) -> tuple[Tensor, DecoderState, tuple[Tensor, Tensor]]:
        """`SketchModel.decode_step` as one call: the same equations in one pass."""
        if noise is None:
            noise = standard_normal(point.shape[0], self.memory_size)
        weights = state.weights if isinstance(state, _DrawingState) else self._draw_weights()
        memory = with_room(state.memory, step)
        y, h, c, memory_h, memory_c, mu_a, log_var_a = fused.ln_draw_step(
            weights, point, state.context, state.rnn, state.query, state.memory_rnn, memory,
            step, noise,
        )  # fmt: skip
        state = _DrawingState((h, c), h, state.context, memory, (memory_h, memory_c), weights)
        return y, state, (mu_a, log_var_a)

    # ----- the weights, as the kernels take them -----
    def _decoder(self) -> InfluenceDecoder:
        """The decoder's weights: the rows of s_j and a_d in its input weights where
        `DecoderInputs` puts them (eq. 5), its recurrent weights and norms, the influence W."""
        w_ih = self.cell.weight_ih
        return InfluenceDecoder(
            LnCell(w_ih[self.decoder_inputs.rows("s")], self.cell.weight_hh, self.cell.norms()),
            w_a=w_ih[self.decoder_inputs.rows("a_d")],
            w_query=self.influence.W.weight,
        )

    def _draw_weights(self) -> Any:
        """`DrawWeights`, read into draw.cpp's structure: each step takes it as it is."""
        memory = self.memory_cell
        weights = DrawWeights(
            self._decoder(),
            memory=LnCell(memory.weight_ih, memory.weight_hh, memory.norms()),
            w_out=self.output.weight,
            b_out=self.output.bias,
        )
        return fused.extension().DrawWeights(weights)
