"""One training step's forward as one module call (`TrainingLoss`): its precision, its compiled
cells, and the loss terms every rank of a data-parallel group agrees on."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aisketcher.data.batching import Batch
from aisketcher.errors import SketchDataError
from aisketcher.loss_weights import LossWeights
from aisketcher.model import fused
from aisketcher.model.recurrent import RecurrentCell
from aisketcher.model.sketcher import SketchModel
from aisketcher.train import distributed
from aisketcher.train.config import TrainConfig
from aisketcher.train.loss import LossTerms, batch_loss

PRECISIONS = ("fp32", "bf16")


def precision_context(precision: str, device: torch.device) -> Any:
    """Autocast for "bf16": matrix products and convolutions in bfloat16, the loss in float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def compile_cells(model: SketchModel) -> None:
    """torch.compile each recurrent cell's per-step function, where the step's small operations are
    many and fusable; the sequence loops stay in Python."""
    for module in model.modules():
        if isinstance(module, RecurrentCell):
            module.recurrence = torch.compile(module.recurrence, dynamic=True)


class TrainingLoss(nn.Module):
    """A training forward as one module call, so that DistributedDataParallel can wrap it.

    Returns this rank's tensor to back-propagate (the autoencoder's error alone while it
    pretrains) and the whole batch's loss terms, detached: a mean over the ranks, each term being
    a share whose mean is the whole batch's value (see distributed.py). DDP, when it looks for
    unused parameters, must see the graph of the first alone.
    """

    def __init__(self, model: SketchModel, weights: LossWeights, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise SketchDataError(
                f"unknown precision '{precision}'; choose {', '.join(PRECISIONS)}"
            )
        self.model = model
        self.weights = weights
        self.precision = precision

    def forward(self, batch: Batch, step: int, pretraining: bool) -> tuple[torch.Tensor, LossTerms]:
        with precision_context(self.precision, batch.strokes.device):
            terms = batch_loss(self.model, batch, step, self.weights)
        objective = terms.l_ae if pretraining else terms.objective
        if distributed.world_size() == 1:
            return objective, terms
        names = list(vars(terms))
        values = distributed.mean_over_ranks(torch.stack([vars(terms)[k].detach() for k in names]))
        return objective, LossTerms(**dict(zip(names, values.unbind(), strict=True)))


def kernel_name(model: SketchModel, train_config: TrainConfig) -> str:
    """The kernels a run steps with, as its checkpoints record them (builds the fused ones if need
    be; they hold the cells and the autoencoder's convolutions, the record's key keeps its first
    name): bf16 autocast runs the reference cells, --compile compiles the steps, not the
    sequences."""
    fusable = train_config.precision == "fp32" and fused.usable(next(model.parameters()))
    if not fusable:
        return "reference"
    return "fused sequences, compiled steps" if train_config.compile else "fused"


class GradientClip:
    """Clips the sketch model's and the autoencoder's gradients each to `limit`.

    The autoencoder's summed squared error is about 1,000 per image against about 1 for the
    sketch loss: under one shared norm its gradient would take the whole clipping budget and
    shrink every step of the sketch model.
    """

    def __init__(self, model: SketchModel, device: torch.device, limit: float) -> None:
        self.limit = limit
        # One pass over all gradients where torch has foreach kernels; Adam's fused kernel (faster
        # still) broke bit-identical resuming, so it is not used (docs/performance.md).
        self.foreach = device.type in ("cpu", "cuda") or None
        ae = model.autoencoder
        ae_ids = {id(p) for p in ae.parameters()} if ae is not None else set()
        # Split once, not at every step.
        self.groups = [
            [p for p in model.parameters() if id(p) not in ae_ids],
            [p for p in model.parameters() if id(p) in ae_ids],
        ]

    def __call__(self) -> torch.Tensor:
        """Clip; returns the total norm before clipping."""
        norms = [
            torch.nn.utils.clip_grad_norm_(group, self.limit, foreach=self.foreach)
            for group in self.groups
            if group
        ]
        return torch.linalg.vector_norm(torch.stack(norms))
