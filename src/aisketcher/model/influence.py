"""The influence layer (paper eq. 9-11): an attention over every encoder state that samples.

At decoding step j the query is the decoder's state of the previous step, h_dec_{j-1} (spec section 3:
the paper's h_dec_j would be circular, since a_d is an input of the step that makes it), with a
learned query for j = 0.
"""

from __future__ import annotations

import torch
from torch import nn


class InfluenceLayer(nn.Module):
    def __init__(
        self, query_size: int, memory_size: int, *, causal: bool = True, sigma: str = "paper"
    ) -> None:
        super().__init__()
        self.W = nn.Linear(query_size, memory_size, bias=False)  # eq. 11: h_dec^T W h_enc
        self.initial_query = nn.Parameter(torch.zeros(query_size))
        self.causal = causal
        self.log_var = nn.Linear(memory_size, memory_size) if sigma == "learned" else None

    def first_query(self, batch: int) -> torch.Tensor:
        return self.initial_query.expand(batch, -1)

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        lengths: torch.Tensor,
        step: int,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """query (B, Q), memory (B, T, n_a) -> a_d, mu_a, log sigma_a^2, each (B, n_a).

        `noise` is lambda_a ~ N(0, I) (drawn here when None); zero noise gives a_d = mu_a.
        """
        # Products and sums rather than bmm: batched matrix-vector bmm is several times slower on CPU.
        scores = (memory * self.W(query).unsqueeze(1)).sum(-1)  # eq. 11, alpha_hat
        positions = torch.arange(memory.shape[1], device=memory.device)
        visible = positions[None, :] < lengths[:, None]
        if self.causal:  # "all previous hidden node values until the latest drawing step": i <= j
            visible = visible & (positions[None, :] <= step)
        alpha = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)  # eq. 11
        mu = (alpha.unsqueeze(-1) * memory).sum(1)  # eq. 10: mu_a = sum_i alpha_ij h_enc_i
        log_var = torch.tanh(mu) if self.log_var is None else self.log_var(mu)  # eq. 10: sigma_a
        if noise is None:
            noise = torch.randn_like(mu)
        return mu + torch.exp(log_var / 2) * noise, mu, log_var  # eq. 9: a_d = mu_a + sigma_a * l_a
