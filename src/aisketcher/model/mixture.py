"""The output distribution (eq. 6-8): a mixture of m bivariate normals for (dx, dy) and 3 pen states.

Layout of the output vector y (as magenta's sketch-rnn and magenta-js): 3 pen logits, then m each
of mixture logits, mu_x, mu_y, log sigma_x, log sigma_y, and rho before tanh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from aisketcher.model import fused

# Guards that keep the log-likelihood and its gradient finite whatever the network outputs,
# without changing any likelihood a model can reach: exp(-log sigma) stays finite in float32
# within +-80, and a standardised distance beyond 1e12 is a density of exp(-5e23), zero in any
# float. (Google's models output log sigma far below an earlier bound of -9, which made their
# test likelihood too good: docs/measurements.md.)
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -80.0, 80.0
MAX_STANDARD_DISTANCE = 1e12
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
        y = y.float()  # the likelihood in float32 also under bfloat16 autocast
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
        far = MAX_STANDARD_DISTANCE
        zx = ((dx.unsqueeze(-1) - self.mu_x) * torch.exp(-self.log_sigma_x)).clamp(-far, far)
        zy = ((dy.unsqueeze(-1) - self.mu_y) * torch.exp(-self.log_sigma_y)).clamp(-far, far)
        one_minus_rho2 = 1.0 - self.rho**2
        # zx^2 + zy^2 - 2 rho zx zy, as a sum of squares: overflow gives inf (density 0), not NaN
        z = (zx - self.rho * zy) ** 2 + one_minus_rho2 * zy**2
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


def guided_output(y: torch.Tensor, y_free: torch.Tensor, w: float) -> torch.Tensor:
    """Class guidance of a decoder output y (B, 3 + 6m) (classifier-free guidance, Ho & Salimans
    2022, applied to eq. 6): every parameter moves from the "no class" output `y_free` to
    y_free + w (y - y_free), w = 1 being y itself and w > 1 going past it, away from what no
    particular class would draw. The pen and mixture logits, the means, log sigma and rho before
    its tanh are all unbounded, so any w gives a valid mixture."""
    return torch.lerp(y_free, y, w)


def sample_points(
    y: torch.Tensor,
    num_mixture: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    discrete_temperature: float | None = None,
    pen_temperature: float | None = None,
) -> torch.Tensor:
    """Draw stroke-5 points (B, 5) from decoder outputs y (B, 3 + 6m) (eq. 7, spec section 3).

    Temperature tau scales the sigmas by sqrt(tau) and divides the mixture and pen logits
    (by `discrete_temperature` instead, when given: magenta-js uses 0.5 + 0.5 tau; the pen
    logits by `pen_temperature`, when given). The random
    numbers come from `generator` (on y's device): four uniforms per row. Only the chosen
    component's parameters are read; choices are made by the inverse CDF of one uniform each.
    The arithmetic is a few dozen operations on tiny arrays per point, and drawing one sketch is
    nothing but such steps: without autograd on the CPU with the fused kernels built it runs as
    one C++ loop (`fused.sample_points`), else in NumPy, the reference, which costs about a sixth of
    PyTorch's per-operation overhead.
    """
    tau = max(float(temperature), 1e-4)
    soft = tau if discrete_temperature is None else max(float(discrete_temperature), 1e-4)
    pen_soft = soft if pen_temperature is None else max(float(pen_temperature), 1e-4)
    batch, m = y.shape[0], num_mixture
    uniform = torch.rand(batch, 4, generator=generator, device=y.device)
    if not torch.is_grad_enabled() and fused.usable(y):  # drawing: never waits for a build
        bounds = (LOG_SIGMA_MIN, LOG_SIGMA_MAX, RHO_MAX)
        return fused.sample_points(
            y.detach().contiguous(), uniform, m, tau, soft, pen_soft, *bounds
        )
    uniform = uniform.cpu().numpy()
    out = y.detach().float().cpu().numpy()
    rows = np.arange(batch)
    k = np.minimum(_inverse_cdf(out[:, 3 : 3 + m] / soft, uniform[:, 0]), m - 1)
    pen = np.minimum(_inverse_cdf(out[:, :3] / pen_soft, uniform[:, 1]), 2)
    # mu_x, mu_y, log sigma_x, log sigma_y, rho (raw) of component k, each (B,)
    mu_x, mu_y, ls_x, ls_y, rho = out[:, 3 + m :].reshape(batch, 5, m)[rows, :, k].T
    sx = np.exp(np.clip(ls_x, LOG_SIGMA_MIN, LOG_SIGMA_MAX)) * math.sqrt(tau)
    sy = np.exp(np.clip(ls_y, LOG_SIGMA_MIN, LOG_SIGMA_MAX)) * math.sqrt(tau)
    rho = np.clip(np.tanh(rho), -RHO_MAX, RHO_MAX)
    # Two standard normals from the other two uniforms (Box-Muller); 1 - u lies in (0, 1].
    radius = np.sqrt(-2.0 * np.log1p(-uniform[:, 2]))
    e1, e2 = radius * np.cos(2 * np.pi * uniform[:, 3]), radius * np.sin(2 * np.pi * uniform[:, 3])
    point = np.zeros((batch, 5), dtype=np.float32)
    point[:, 0] = mu_x + sx * e1
    point[:, 1] = mu_y + sy * (rho * e1 + np.sqrt(1 - rho**2) * e2)
    point[rows, 2 + pen] = 1.0
    return torch.from_numpy(point).to(device=y.device, dtype=y.dtype)


def _inverse_cdf(logits: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """For each row, the first index whose cumulative softmax probability exceeds u."""
    weights = np.exp(logits - logits.max(1, keepdims=True)).cumsum(1)
    return (weights < uniform[:, None] * weights[:, -1:]).sum(1)
