"""The loss (eq. 12-14) against an independent NumPy computation, the KL floor, the schedules,
and the output mixture's numerical guards."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aisketcher.data.batching import collate
from aisketcher.loss_weights import LossWeights
from aisketcher.model.config import ModelConfig, make_config
from aisketcher.model.mixture import Mixture, sample_points
from aisketcher.model.sketcher import Latent, ModelOutput
from aisketcher.train.loss import compute_loss, kl_weight_at, learning_rate_at

M = 2  # mixture components
N_MAX = 5
Z, NA = 4, 3


def config(preset: str = "ai-sketcher", **overrides: object) -> ModelConfig:
    return make_config(
        preset, "small", num_classes=1, num_mixture=M, max_seq_len=N_MAX, **overrides
    )


# The loss weights (a training setting): the paper's epsilon and beta, the autoencoder's at 0.5.
WEIGHTS = LossWeights(kl_tolerance=0.2, influence_beta=0.1, autoencoder_weight=0.5)


def hand_batch():
    """Two sketches of 3 and 2 points: 4 target rows, so that each ends in an end-of-sketch row
    (p3), as every sketch of a magenta batch does."""
    s1 = np.array([[0.5, -0.2, 0], [0.1, 0.3, 1], [-0.4, 0.2, 1]], dtype=np.float32)
    s2 = np.array([[0.3, 0.3, 0], [-0.2, 0.1, 1]], dtype=np.float32)
    rasters = np.array([np.eye(4), np.ones((4, 4))], dtype=np.uint8)
    return collate([s1, s2], np.array([0, 0]), rasters)


def fixed_values(rng: np.random.Generator, mu_scale: float = 1.0) -> dict[str, np.ndarray]:
    """A fixed model output y and latents, as NumPy arrays."""
    return {
        "y": rng.normal(scale=0.7, size=(2, 4, 3 + 6 * M)),
        "mu_s": mu_scale * rng.normal(size=(2, Z)),
        "log_var_s": rng.normal(scale=0.5, size=(2, Z)),
        "mu_a": mu_scale * rng.normal(size=(2, 4, NA)),
        "log_var_a": rng.normal(scale=0.5, size=(2, 4, NA)),
        "recon": rng.random((2, 1, 4, 4)),
    }


def leaf_tensors(raw: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in raw.items()}


def model_output(t: dict[str, torch.Tensor]) -> ModelOutput:
    """What the model would return, built from the given tensors (a fresh graph each call)."""
    latent = Latent(
        c=None,
        z_s=t["mu_s"],
        mu_s=t["mu_s"],
        log_var_s=t["log_var_s"],
        z_r=None,
        raster_recon=t["recon"],
        memory=None,
        memory_lengths=None,
    )
    return ModelOutput(Mixture.from_output(t["y"], M), latent, t["mu_a"], t["log_var_a"])


# ----- an independent reference, written from the spec -----


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def bivariate_normal(x, y, mx, my, sx, sy, rho) -> float:
    zx, zy = (x - mx) / sx, (y - my) / sy
    z = zx**2 + zy**2 - 2 * rho * zx * zy
    return math.exp(-z / (2 * (1 - rho**2))) / (2 * math.pi * sx * sy * math.sqrt(1 - rho**2))


def kl_to_standard(mu: np.ndarray, log_var: np.ndarray) -> np.ndarray:
    """KL(N(mu, sigma^2) || N(0, 1)) per dimension."""
    return 0.5 * (mu**2 + np.exp(log_var) - 1 - log_var)


def reference_loss(raw: dict, targets: np.ndarray, lengths: list[int], kl_weight: float) -> dict:
    y = raw["y"]
    batch, length = targets.shape[:2]
    l_c = l_s = 0.0
    for b in range(batch):
        for j in range(length):
            row = y[b, j]
            pen_logits = row[:3]
            logits, mu_x, mu_y, ls_x, ls_y, rho = row[3:].reshape(6, M)
            if j < lengths[b]:
                w = softmax(logits)
                p = sum(
                    w[k]
                    * bivariate_normal(
                        targets[b, j, 0],
                        targets[b, j, 1],
                        mu_x[k],
                        mu_y[k],
                        math.exp(ls_x[k]),
                        math.exp(ls_y[k]),
                        math.tanh(rho[k]),
                    )
                    for k in range(M)
                )
                l_c -= math.log(p)
            l_s -= float(np.dot(targets[b, j, 2:], np.log(softmax(pen_logits))))
    l_c /= N_MAX * batch
    l_s /= N_MAX * batch
    l_z = kl_to_standard(raw["mu_s"], raw["log_var_s"]).mean()
    per_step = kl_to_standard(raw["mu_a"], raw["log_var_a"]).mean(-1)
    real = [per_step[b, j] for b in range(batch) for j in range(lengths[b])]
    l_a = float(np.mean(real))
    l_kl = l_z + 0.1 * l_a
    total = l_c + l_s + kl_weight * max(l_kl, 0.2)
    rasters = np.array([np.eye(4), np.ones((4, 4))])[:, None]
    l_ae = ((raw["recon"] - rasters) ** 2).reshape(batch, -1).sum(1).mean()
    return dict(
        l_c=l_c,
        l_s=l_s,
        l_z=l_z,
        l_a=l_a,
        l_kl=l_kl,
        total=total,
        l_ae=l_ae,
        objective=total + 0.5 * l_ae,
    )


@pytest.mark.parametrize("mu_scale", [1.0, 0.05])  # KL above and below the floor
def test_loss_matches_independent_computation(mu_scale: float) -> None:
    batch = hand_batch()
    raw = fixed_values(np.random.default_rng(0), mu_scale)
    terms = compute_loss(
        model_output(leaf_tensors(raw)), batch, config(), kl_weight=0.3, weights=WEIGHTS
    )
    targets = batch.strokes[:, 1:].numpy().astype(np.float64)
    expected = reference_loss(raw, targets, [3, 2], 0.3)
    got = terms.as_floats()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert got["l_r"] == pytest.approx(expected["l_c"] + expected["l_s"], rel=1e-5)
    assert (expected["l_kl"] < 0.2) == (mu_scale < 1)  # both sides of the floor are exercised


def test_kl_floor_stops_the_gradient_below_epsilon() -> None:
    batch = hand_batch()
    raw = fixed_values(np.random.default_rng(0))
    raw["log_var_s"][:] = raw["log_var_a"][:] = 0.0
    raw["mu_s"][:] = 0.1  # KL = 0.005 per dimension, far below epsilon = 0.2
    raw["mu_a"][:] = 0.1
    t = leaf_tensors(raw)
    terms = compute_loss(model_output(t), batch, config(), kl_weight=1.0, weights=WEIGHTS)
    assert float(terms.l_kl.detach()) < 0.2
    terms.total.backward()
    for name in ("mu_s", "log_var_s", "mu_a", "log_var_a"):
        assert not t[name].grad.any(), name
    assert t["y"].grad.any()  # the reconstruction term still trains

    t = leaf_tensors(raw)
    compute_loss(
        model_output(t), batch, config(), 1.0, weights=WEIGHTS, kl_floor=False
    ).total.backward()
    torch.testing.assert_close(t["mu_s"].grad, torch.full_like(t["mu_s"], 0.1 / (2 * Z)))

    raw["mu_s"][:] = 2.0  # KL = 2 per dimension, above the floor
    t = leaf_tensors(raw)
    compute_loss(model_output(t), batch, config(), kl_weight=1.0, weights=WEIGHTS).total.backward()
    # d/d mu of mean over B x Z of mu^2 / 2 is mu / (B Z)
    torch.testing.assert_close(t["mu_s"].grad, torch.full_like(t["mu_s"], 2.0 / (2 * Z)))


def test_no_kl_term_without_a_variational_latent() -> None:
    raw = fixed_values(np.random.default_rng(0))
    out = model_output(leaf_tensors(raw))
    out = ModelOutput(out.mixture, out.latent, None, None)
    terms = compute_loss(
        out, hand_batch(), config("sketch-pix2seq"), kl_weight=1.0, weights=WEIGHTS
    )
    assert float(terms.l_z) == float(terms.l_a) == 0.0
    torch.testing.assert_close(terms.total, terms.l_c + terms.l_s)


def test_autoencoder_error_leaves_objective_when_frozen() -> None:
    out = model_output(leaf_tensors(fixed_values(np.random.default_rng(0))))
    terms = compute_loss(out, hand_batch(), config(), 0.5, weights=WEIGHTS, train_autoencoder=False)
    assert float(terms.l_ae.detach()) > 0
    assert torch.equal(terms.objective, terms.total)


def test_annealing_schedules() -> None:
    cfg = LossWeights(kl_weight=1.0, kl_weight_start=0.01, kl_decay_rate=0.99995)
    assert kl_weight_at(0, cfg) == pytest.approx(0.01)
    assert kl_weight_at(1, cfg) == pytest.approx(1 - 0.99 * 0.99995)
    assert kl_weight_at(10_000, cfg) == pytest.approx(1 - 0.99 * 0.99995**10_000)
    assert kl_weight_at(10_000, cfg) == pytest.approx(0.3995, abs=1e-4)
    assert kl_weight_at(10**7, cfg) == pytest.approx(1.0)
    weights = [kl_weight_at(s, cfg) for s in range(0, 100_000, 5000)]
    assert weights == sorted(weights)
    assert learning_rate_at(0, 1e-3, 1e-5, 0.9999) == pytest.approx(1e-3)
    assert learning_rate_at(1000, 1e-3, 1e-5, 0.9999) == pytest.approx(
        (1e-3 - 1e-5) * 0.9999**1000 + 1e-5
    )
    assert learning_rate_at(10**7, 1e-3, 1e-5, 0.9999) == pytest.approx(1e-5)


# ----- the mixture's numerical guards -----


@pytest.mark.parametrize("magnitude", [1e4, 1e10])
def test_extreme_outputs_and_offsets_give_finite_loss(magnitude: float) -> None:
    torch.manual_seed(0)
    y = (torch.randn(4, 7, 3 + 6 * M).sign() * magnitude).requires_grad_()
    mixture = Mixture.from_output(y, M)
    offsets = torch.tensor([1e6, -1e6, 0.0, 3.0]).view(4, 1).expand(4, 7)
    log_p = mixture.offset_log_prob(offsets, offsets.flip(0))
    assert torch.isfinite(log_p).all()
    assert torch.isfinite(mixture.pen_log_prob()).all()
    (-log_p.sum() - mixture.pen_log_prob().sum()).backward()
    assert torch.isfinite(y.grad).all()


def test_mixture_layout_and_low_temperature_sampling() -> None:
    y = torch.zeros(3 + 6 * M)
    y[:3] = torch.tensor([0.0, 9.0, 0.0])  # pen: lift
    y[3 : 3 + M] = torch.tensor([-9.0, 9.0])  # component 1
    y[3 + M : 3 + 2 * M] = torch.tensor([5.0, 1.5])  # mu_x
    y[3 + 2 * M : 3 + 3 * M] = torch.tensor([5.0, -2.5])  # mu_y
    y[3 + 3 * M : 3 + 5 * M] = -3.0  # log sigmas
    point = sample_points(y.expand(50, -1), M, 1e-3, torch.Generator().manual_seed(0))
    assert point.shape == (50, 5)
    torch.testing.assert_close(point[:, 0], torch.full((50,), 1.5), atol=0.01, rtol=0)
    torch.testing.assert_close(point[:, 1], torch.full((50,), -2.5), atol=0.01, rtol=0)
    assert point[:, 2:].tolist() == [[0.0, 1.0, 0.0]] * 50


@pytest.mark.parametrize("pen_temperature", [1.0, 0.7])
def test_the_pen_temperature_tempers_the_pen_choice_alone(pen_temperature: float) -> None:
    """With a pen temperature the pen states are drawn with frequencies p^(1 / pen temperature)
    (normalised) whatever tau; the component's choice and the sigmas stay tempered by tau."""
    tau = 0.2
    y = torch.zeros(3 + 6 * M)
    y[:3] = torch.log(torch.tensor([0.85, 0.13, 0.02]))  # as at most points: "end" is rare
    y[3 : 3 + M] = torch.log(torch.tensor([0.4, 0.6]))
    y[3 + M : 3 + 2 * M] = torch.tensor([-20.0, 20.0])  # mu_x: far apart, tells k
    n = 40_000
    draws = torch.Generator().manual_seed(2)
    points = sample_points(y.expand(n, -1).contiguous(), M, tau, draws, None, pen_temperature)
    pen = torch.tensor([0.85, 0.13, 0.02]) ** (1 / pen_temperature)
    torch.testing.assert_close(points[:, 2:].mean(0), pen / pen.sum(), atol=0.006, rtol=0)
    weights = torch.tensor([0.4, 0.6]) ** (1 / tau)
    assert abs((points[:, 0] > 0).float().mean() - weights[1] / weights.sum()) < 0.01
    second = points[:, 0] > 0
    assert abs((points[second, 0] - 20.0).std() / math.sqrt(tau) - 1) < 0.03


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_sampled_points_follow_the_mixture(tau: float) -> None:
    """Component, pen and offsets drawn with the frequencies, means and covariance of eq. 7."""
    y = torch.zeros(3 + 6 * M)
    y[:3] = torch.log(torch.tensor([0.6, 0.3, 0.1]))
    y[3 : 3 + M] = torch.log(torch.tensor([0.25, 0.75]))
    y[3 + M : 3 + 2 * M] = torch.tensor([-20.0, 20.0])  # mu_x: far apart, tells k
    y[3 + 2 * M : 3 + 3 * M] = torch.tensor([1.0, -2.0])  # mu_y
    y[3 + 3 * M : 3 + 4 * M] = math.log(2.0)  # sigma_x
    y[3 + 4 * M : 3 + 5 * M] = math.log(0.5)  # sigma_y
    y[3 + 5 * M : 3 + 6 * M] = math.atanh(0.6)  # rho
    n = 40_000
    points = sample_points(y.expand(n, -1).contiguous(), M, tau, torch.Generator().manual_seed(1))
    weights = torch.tensor([0.25, 0.75]) ** (1 / tau)
    pen = torch.tensor([0.6, 0.3, 0.1]) ** (1 / tau)
    second = points[:, 0] > 0
    assert abs(second.float().mean() - weights[1] / weights.sum()) < 0.01
    torch.testing.assert_close(points[:, 2:].mean(0), pen / pen.sum(), atol=0.01, rtol=0)
    assert (points[:, 2:].sum(1) == 1).all()
    dx, dy = points[second, 0] - 20.0, points[second, 1] + 2.0
    sx, sy = 2.0 * math.sqrt(tau), 0.5 * math.sqrt(tau)
    assert abs(dx.mean()) < 0.05 and abs(dy.mean()) < 0.02
    assert abs(dx.std() / sx - 1) < 0.03 and abs(dy.std() / sy - 1) < 0.03
    assert abs(torch.corrcoef(torch.stack([dx, dy]))[0, 1] - 0.6) < 0.02
