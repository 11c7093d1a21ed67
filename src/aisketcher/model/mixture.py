"""The output distribution (eq. 6-8): a mixture of m bivariate normals for (dx, dy) and 3 pen states.

Layout of the output vector y (as magenta's sketch-rnn and magenta-js): 3 pen logits, then m each
of mixture logits, mu_x, mu_y, log sigma_x, log sigma_y, and rho before tanh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Guards that keep the log-likelihood finite whatever the network outputs.
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -9.0, 9.0
RHO_MAX = 1.0 - 1e-5


@dataclass
class Mixture:
    """GMM and pen parameters for every position; tensors of shape (..., m) or (..., 3)."""

    pen_logits: torch.Tensor
    logits: torch.Tensor
    mu_x: torch.Tensor
    mu_y: torch.Tensor
    log_sigma_x: torch.Tensor
    log_sigma_y: torch.Tensor
    rho: torch.Tensor

    @classmethod
    def from_output(cls, y: torch.Tensor, num_mixture: int) -> Mixture:
        """Split Y = W_y h_dec + b_y (eq. 6) into the parameters of eq. 7."""
        pen_logits, rest = y[..., :3], y[..., 3:]
        logits, mu_x, mu_y, ls_x, ls_y, rho = rest.split(num_mixture, dim=-1)
        return cls(
            pen_logits=pen_logits,
            logits=logits,
            mu_x=mu_x,
            mu_y=mu_y,
            log_sigma_x=ls_x.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX),
            log_sigma_y=ls_y.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX),
            rho=torch.tanh(rho).clamp(-RHO_MAX, RHO_MAX),
        )

    def offset_log_prob(self, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        """log p(dx, dy) = log sum_j w_j N(dx, dy | q_j) (eq. 8), by log-sum-exp."""
        zx = (dx.unsqueeze(-1) - self.mu_x) * torch.exp(-self.log_sigma_x)
        zy = (dy.unsqueeze(-1) - self.mu_y) * torch.exp(-self.log_sigma_y)
        one_minus_rho2 = 1.0 - self.rho**2
        z = zx**2 + zy**2 - 2.0 * self.rho * zx * zy
        log_normal = (
            -z / (2.0 * one_minus_rho2)
            - math.log(2.0 * math.pi)
            - self.log_sigma_x
            - self.log_sigma_y
            - 0.5 * torch.log(one_minus_rho2)
        )
        return torch.logsumexp(F.log_softmax(self.logits, dim=-1) + log_normal, dim=-1)

    def pen_log_prob(self) -> torch.Tensor:
        return F.log_softmax(self.pen_logits, dim=-1)

    def sample(
        self, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw stroke-5 points (..., 5), spec section 3: logits / tau, sigmas * sqrt(tau)."""
        tau = max(float(temperature), 1e-4)
        shape = self.logits.shape[:-1]
        flat_logits = (self.logits / tau).reshape(-1, self.logits.shape[-1])
        k = torch.multinomial(F.softmax(flat_logits, -1), 1, generator=generator).reshape(shape)

        def pick(t: torch.Tensor) -> torch.Tensor:
            return t.gather(-1, k.unsqueeze(-1)).squeeze(-1)

        sx = torch.exp(pick(self.log_sigma_x)) * math.sqrt(tau)
        sy = torch.exp(pick(self.log_sigma_y)) * math.sqrt(tau)
        rho = pick(self.rho)
        e = torch.randn((*shape, 2), generator=generator, device=self.logits.device)
        dx = pick(self.mu_x) + sx * e[..., 0]
        dy = pick(self.mu_y) + sy * (rho * e[..., 0] + torch.sqrt(1 - rho**2) * e[..., 1])
        flat_pen = (self.pen_logits / tau).reshape(-1, 3)
        pen = torch.multinomial(F.softmax(flat_pen, -1), 1, generator=generator).reshape(shape)
        return torch.cat([dx.unsqueeze(-1), dy.unsqueeze(-1), F.one_hot(pen, 3).to(dx)], dim=-1)
