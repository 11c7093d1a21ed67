"""The loss weights of eq. 12-14 - alpha and its annealing, the KL floor epsilon, beta, the
autoencoder's weight: settings of training (`TrainConfig` holds them), so that a run can resume
with others. Configs written before they moved there carry them in their model section
(`legacy_loss_weights`). No torch: the CLI checks them before torch loads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aisketcher.errors import SketchDataError
from aisketcher.fields import mistyped, out_of_range


@dataclass
class LossWeights:
    kl_tolerance: float = 0.2  # epsilon, the KL floor (paper 0.20)
    kl_weight: float = 1.0  # alpha after annealing (paper 1.00)
    kl_weight_start: float = 0.01  # alpha at step 0 (magenta 0.01)
    kl_decay_rate: float = 0.99995  # alpha = w - (w - w0) * rate^step (magenta)
    influence_beta: float = 0.1  # beta, weight of l_a inside l_kl (paper 0.1)
    autoencoder_weight: float = 1.0  # weight of the AE's summed squared error in the joint loss

    def check_weights(self) -> None:
        """Every weight a float within WEIGHT_RANGES (a config from elsewhere must not make the
        loss overflow), or one error naming each that is not."""
        wrong = [n for n in mistyped(self) if n in LOSS_FIELDS]
        problems = [f"{n} must be float, got {getattr(self, n)!r}" for n in wrong]
        problems += out_of_range(self, WEIGHT_RANGES, skip=wrong)
        if problems:
            raise SketchDataError(f"invalid loss weight(s): {'; '.join(problems)}")

    def loss_weights(self) -> LossWeights:
        """The weights alone (of a TrainConfig: what the loss and the evaluations take)."""
        return LossWeights(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(LossWeights)}
        )


# Bounds of the weights, far beyond any sensible loss and short of overflowing it.
WEIGHT_RANGES: dict[str, tuple[float, float]] = {
    "kl_tolerance": (0.0, 100.0),
    "kl_weight": (0.0, 1e3),
    "kl_weight_start": (0.0, 1e3),
    "kl_decay_rate": (0.0, 1.0),
    "influence_beta": (0.0, 1e3),
    "autoencoder_weight": (0.0, 1e6),
}
LOSS_FIELDS = tuple(WEIGHT_RANGES)


def legacy_loss_weights(model_section: dict[str, Any]) -> dict[str, Any]:
    """The loss weights an older config keeps in its model section (checked), else {}."""
    found = {k: v for k, v in model_section.items() if k in LOSS_FIELDS}
    LossWeights(**found).check_weights()
    return found


def trained_weights(info: dict[str, Any]) -> LossWeights:
    """The weights a model was trained with, from its folder's config.json: an exported model's
    `loss_weights`, over a run's training settings (or an export's record of them), over an
    older file's model section; the defaults for what none says."""
    train = info.get("train") or (info.get("record") or {}).get("train") or {}
    model = info.get("model")
    found = legacy_loss_weights(model) if isinstance(model, dict) else {}
    for given in (train, info.get("loss_weights")):  # an exported model's own record last
        if isinstance(given, dict):
            found |= {k: v for k, v in given.items() if k in LOSS_FIELDS}
    weights = LossWeights(**found)
    weights.check_weights()
    return weights
