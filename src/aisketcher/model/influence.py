"""The influence layer (paper eq. 9-11): an attention over encoder states that samples.

At decoding step j the query is the decoder's state of the previous step, h_dec_{j-1} (spec section 3:
the paper's h_dec_j would be circular, since a_d is an input of the step that makes it), with a
learned query for j = 0. The memory it reads is the model's choice (`SketchModel`): by default the
forward encoder states of s_0..s_j, what was drawn before the point step j predicts.

Speed (exact, not an approximation): a causal step j reads only the first j + 1 encoder states, and
in training the gradient of the encoder states is not built step by step. Autograd would write a
full (B, T, n_a) gradient at every one of the L decoder steps; `AttentionTape` instead records each
step's attention weights and score gradients and, once every step's backward has run, forms the
whole gradient as two batched matrix products: dL/dh_enc = sum_j alpha_j (x) dmu_j + dalpha_hat_j
(x) W h_dec_{j-1}.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from aisketcher.model import fused
from aisketcher.model.noise import standard_normal_like


def _attend(
    query: torch.Tensor, memory: torch.Tensor, hidden: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 10-11 for projected queries W h_dec (B, n_a) over memory (B, T, n_a) where `hidden`
    (B, T) is False (everywhere when None): (alpha, mu_a)."""
    scores = torch.bmm(memory, query.unsqueeze(-1)).squeeze(-1)  # eq. 11: h_dec^T W h_enc_i
    if hidden is not None:
        scores = scores.masked_fill(hidden, float("-inf"))
    alpha = torch.softmax(scores, dim=-1)  # eq. 11
    mu = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)  # eq. 10: mu_a = sum_i alpha_ij h_enc_i
    return alpha, mu


class AttentionTape:
    """The per-step quantities that make the encoder states' gradient, for one decoded batch."""

    def __init__(self, memory: torch.Tensor, steps: int) -> None:
        batch, length, size = memory.shape
        self.alpha = memory.new_zeros(batch, steps, length)
        self.d_scores = memory.new_zeros(batch, steps, length)
        self.d_mu = memory.new_zeros(batch, steps, size)
        self.query = memory.new_zeros(batch, steps, size)
        # Every step reads memory through this node, whose backward runs after all of theirs.
        self.memory = _CollectGradient.apply(memory.contiguous(), self)

    def record(
        self,
        step: int,
        alpha: torch.Tensor,
        d_scores: torch.Tensor,
        d_mu: torch.Tensor,
        query: torch.Tensor,
    ) -> None:
        seen = alpha.shape[1]
        self.alpha[:, step, :seen] = alpha
        self.d_scores[:, step, :seen] = d_scores
        self.d_mu[:, step] = d_mu
        self.query[:, step] = query

    def memory_gradient(self) -> torch.Tensor:
        return torch.bmm(self.alpha.transpose(1, 2), self.d_mu) + torch.bmm(
            self.d_scores.transpose(1, 2), self.query
        )


class _CollectGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, memory: torch.Tensor, tape: AttentionTape) -> torch.Tensor:
        ctx.tape = tape
        return memory.view_as(memory)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad + ctx.tape.memory_gradient(), None


class _TapedAttention(torch.autograd.Function):
    """mu_a of one step; its backward returns the query's gradient and leaves memory's to the tape."""

    @staticmethod
    def forward(
        ctx: Any,
        query: torch.Tensor,
        memory: torch.Tensor,
        hidden: torch.Tensor | None,
        seen: int,
        tape: AttentionTape,
        step: int,
    ) -> torch.Tensor:
        # In float32 also under autocast: the tape's backward runs outside it.
        with torch.autocast(memory.device.type, enabled=False):
            memory, query = memory[:, :seen].float(), query.float()
            alpha, mu = _attend(query, memory, hidden)
        ctx.save_for_backward(query, memory, alpha)
        ctx.tape, ctx.step = tape, step
        return mu

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_mu: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        query, memory, alpha = ctx.saved_tensors
        d_alpha = torch.bmm(memory, d_mu.unsqueeze(-1)).squeeze(-1)
        d_scores = alpha * (d_alpha - (alpha * d_alpha).sum(-1, keepdim=True))  # softmax backward
        d_query = torch.bmm(d_scores.unsqueeze(1), memory).squeeze(1)
        ctx.tape.record(ctx.step, alpha, d_scores, d_mu, query)
        return d_query, None, None, None, None, None


class InfluenceLayer(nn.Module):
    def __init__(
        self, query_size: int, memory_size: int, *, causal: bool = True, sigma: str = "paper"
    ) -> None:
        super().__init__()
        self.W = nn.Linear(query_size, memory_size, bias=False)  # eq. 11: h_dec^T W h_enc
        self.initial_query = nn.Parameter(torch.zeros(query_size))
        self.causal = causal
        self.log_var = nn.Linear(memory_size, memory_size) if sigma == "learned" else None
        # The padding mask of the last `lengths` seen, kept while decoding goes on step by step.
        self._padding: tuple[torch.Tensor, int, torch.Tensor] | None = None

    @property
    def paper_sigma(self) -> bool:
        """Whether sigma_a = exp(tanh(mu_a) / 2) (eq. 10), the form the fused kernels compute."""
        return self.log_var is None

    def first_query(self, batch: int) -> torch.Tensor:
        return self.initial_query.expand(batch, -1)

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        lengths: torch.Tensor | None,
        step: int,
        noise: torch.Tensor | None = None,
        tape: AttentionTape | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """query (B, Q), memory (B, T, n_a) -> a_d, mu_a, log sigma_a^2, each (B, n_a).

        `lengths` masks rows past each sketch's end (None: every row is real). `noise` is lambda_a ~ N(0, I) (drawn here when None); zero noise gives a_d = mu_a. With a
        `tape` made for `memory`, the encoder states' gradient is formed by the tape.
        """
        seen = self.rows_read(step, memory.shape[1])
        hidden = None
        if lengths is not None:
            hidden = self._padding_mask(lengths, memory.shape[1])[:, :seen]
        projected = self.W(query)
        if tape is not None and torch.is_grad_enabled():
            if self.paper_sigma and fused.usable(projected):
                if noise is None:
                    noise = standard_normal_like(projected)
                limit = torch.full((projected.shape[0],), seen, device=projected.device)
                if lengths is not None:
                    limit = torch.minimum(limit, lengths)
                return fused.influence_step(projected, tape.memory, limit, noise, tape, step)
            mu = _TapedAttention.apply(projected, tape.memory, hidden, seen, tape, step)
        else:
            mu = _attend(projected, memory[:, :seen], hidden)[1]
        log_var = torch.tanh(mu) if self.paper_sigma else self.log_var(mu)  # eq. 10: sigma_a
        if noise is None:
            noise = standard_normal_like(mu)
        return mu + torch.exp(log_var / 2) * noise, mu, log_var  # eq. 9: a_d = mu_a + sigma_a * l_a

    def rows_read(self, step: int, length: int) -> int:
        """How many of `length` memory rows decoding step `step` reads."""
        # "all previous hidden node values until the latest drawing step": i <= j
        return min(step + 1, length) if self.causal else length

    def read_limits(
        self, steps: int, length: int, lengths: torch.Tensor | None, batch: int
    ) -> torch.Tensor:
        """(steps, B) int64: how many memory rows each of `steps` decoding steps reads in each
        row, no more than the row's `lengths` (None: every row is real)."""
        seen = torch.tensor([self.rows_read(j, length) for j in range(steps)])
        limits = seen[:, None].expand(steps, batch)
        if lengths is not None:
            limits = torch.minimum(limits, lengths.cpu()[None])
        return limits.contiguous()

    def _padding_mask(self, lengths: torch.Tensor, length: int) -> torch.Tensor:
        """(B, T) True past each sketch's end; made once per decoded batch, not at every step.

        The cache holds the `lengths` tensor itself, so its identity cannot pass to another one.
        """
        cached = self._padding
        if cached is not None and cached[0] is lengths and cached[1] == length:
            return cached[2]
        mask = torch.arange(length, device=lengths.device)[None, :] >= lengths[:, None]
        self._padding = (lengths, length, mask)
        return mask
