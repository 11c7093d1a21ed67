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


def sample_points(
    y: torch.Tensor,
    num_mixture: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw stroke-5 points (B, 5) from decoder outputs y (B, 3 + 6m) (eq. 7, spec section 3).

    Temperature tau divides the mixture and pen logits and scales the sigmas by sqrt(tau). Only
    the chosen component's parameters are read, and choices come from one uniform each by the
    inverse CDF: a sampling step is a few small tensor ops, which is what a single sketch on a CPU
    spends its time on.
    """
    tau = max(float(temperature), 1e-4)
    batch = y.shape[0]
    uniform = torch.rand(batch, 2, generator=generator, device=y.device, dtype=y.dtype)
    normal = torch.randn(batch, 2, generator=generator, device=y.device, dtype=y.dtype)
    # Component k and pen state: the first index whose cumulative probability exceeds u.
    weights = torch.softmax(y[:, 3 : 3 + num_mixture] / tau, -1).cumsum(-1)
    k = (weights < uniform[:, :1]).sum(-1, keepdim=True).clamp_(max=num_mixture - 1)
    pen = (torch.softmax(y[:, :3] / tau, -1).cumsum(-1) < uniform[:, 1:]).sum(-1, keepdim=True)
    # The parameters of component k: (B, 5) = mu_x, mu_y, log sigma_x, log sigma_y, rho (raw).
    params = y[:, 3 + num_mixture :].view(batch, 5, num_mixture)
    mu_x, mu_y, ls_x, ls_y, rho = params.gather(2, k.expand(-1, 5).unsqueeze(-1)).unbind(1)
    sx = torch.exp(ls_x.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)) * math.sqrt(tau)
    sy = torch.exp(ls_y.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)) * math.sqrt(tau)
    rho = torch.tanh(rho).clamp_(-RHO_MAX, RHO_MAX)
    e1, e2 = normal[:, :1], normal[:, 1:]
    dx = mu_x + sx * e1
    dy = mu_y + sy * (rho * e1 + torch.sqrt(1 - rho**2) * e2)
    return torch.cat([dx, dy, y.new_zeros(batch, 3)], 1).scatter_(1, 2 + pen.clamp_(max=2), 1.0)
