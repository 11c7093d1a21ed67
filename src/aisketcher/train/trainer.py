"""The training loop: progress, validation, logs, checkpoints, exact resume, NaN recovery.

A run directory holds `config.json` (model, training and data settings, code version),
`last.safetensors` and `best.safetensors` (see checkpoint.py), `metrics.csv` with every loss term,
and TensorBoard event files under `tb/`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from aisketcher import __version__
from aisketcher.allocator import release_free_memory, tune_allocator
from aisketcher.atomic import atomic_path
from aisketcher.data.batching import Batch, BatchLoader
from aisketcher.data.dataset import SketchDataset, Split
from aisketcher.errors import SketchDataError
from aisketcher.fields import mistyped
from aisketcher.latents import encode_sketches
from aisketcher.model import fused
from aisketcher.model.cells import RecurrentCell
from aisketcher.model.config import ModelConfig
from aisketcher.model.sketcher import SketchModel
from aisketcher.train import distributed
from aisketcher.train.checkpoint import (
    OPTIONAL_BUFFERS,
    load_weights,
    read_checkpoint,
    restore_training_state,
    rewrite_checkpoint,
    save_checkpoint,
    write_json,
)
from aisketcher.train.loss import LossTerms, compute_loss, kl_weight_at, learning_rate_at

# TrainConfig keys that older runs saved and this version ignores.
RETIRED_SETTINGS = frozenset({"raster_cache"})


class TrainingDiverged(SketchDataError):
    """Training cannot make a finite step: it stops, leaving the checkpoints as they were."""


# Validation sketches by default, over all classes: a validation then costs about what 50 training
# steps do, at any number of classes (345 classes x 500 took 1,725 batches).
VALID_SKETCHES = 10_000
VALID_PER_CLASS = (20, 500)


def validation_per_class(classes: int) -> int:
    return int(np.clip(VALID_SKETCHES // max(classes, 1), *VALID_PER_CLASS))


@dataclass
class TrainConfig:
    steps: int = 100_000  # optimizer steps in all (a resumed run counts those already done)
    batch_size: int = 100  # paper 100
    learning_rate: float = 1e-3  # Adam, paper 0.001
    min_learning_rate: float = 1e-5  # floor of magenta's decay
    lr_decay: float = 0.9999  # magenta: lr = (lr - min) * decay^step + min
    grad_clip: float = 1.0  # gradient norm clipping, paper 1.0
    augment_scale: float = 0.15  # magenta random_scale_factor
    augment_drop: float = 0.1  # magenta augment_stroke_prob
    group_by_length: bool = True  # batches of similar length, padded to their own longest
    balance_classes: bool = False  # every class equally often per epoch (magenta: every sketch)
    eval_every: int = 500  # steps between validations (and best-checkpoint updates)
    checkpoint_every: int = 250  # steps between saves of last.safetensors
    log_every: int = 10  # steps between metric rows
    seed: int = 0  # seeds torch and the batch order
    max_minutes: float | None = None  # end cleanly, with a checkpoint, after this long
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", or "auto"
    max_bad_steps: int = 5  # consecutive non-finite steps before restoring the last checkpoint
    max_restores: int = 4  # restores with no good step between them before training gives up
    valid_per_class: int | None = None  # validation sample per class, fixed (None: VALID_SKETCHES
    # over the classes, 20-500 a class; the official files hold 2,500)
    precision: str = "fp32"  # "fp32", or "bf16": autocast's mixed precision (CPU and recent GPUs)
    compile: bool = False  # torch.compile the recurrent cells' step (minutes to compile, see docs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object, source: str) -> TrainConfig:
        """A run's saved training settings, checked: known keys, and counts that are counts."""
        if not isinstance(data, dict):
            raise SketchDataError("no 'train' object in the run's config", source)
        # Settings of earlier versions that no longer change anything: rasters are rendered with
        # each batch now, not cached.
        data = {k: v for k, v in data.items() if k not in RETIRED_SETTINGS}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SketchDataError(f"unknown training setting(s): {', '.join(unknown)}", source)
        config = cls(**data)
        bad = mistyped(config)
        numbers = [f.name for f in dataclasses.fields(cls) if f.type.startswith(("int", "float"))]
        for name in numbers:
            value = getattr(config, name)
            if name not in bad and value is not None and not (math.isfinite(value) and value >= 0):
                bad.append(name)
        counts = ("steps", "batch_size", "eval_every", "checkpoint_every", "log_every")
        bad += [k for k in counts if k not in bad and getattr(config, k) < 1]
        if "valid_per_class" not in bad and config.valid_per_class == 0:
            bad.append("valid_per_class")
        if "learning_rate" not in bad and not 0 < config.learning_rate < 1e3:
            bad.append("learning_rate")
        if bad:
            raise SketchDataError(f"bad training setting(s): {', '.join(bad)}", source)
        return config


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SketchDataError(f"device '{name}' requested but CUDA is not available")
    return device


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


def batch_loss(model: SketchModel, batch: Batch, step: int, *, train: bool = True) -> LossTerms:
    cfg = model.config
    out = model(batch.strokes, batch.lengths, batch.labels, batch.rasters)
    if train:
        return compute_loss(
            out, batch, cfg, kl_weight_at(step, cfg), train_autoencoder=not model.autoencoder_frozen
        )
    return compute_loss(out, batch, cfg, cfg.kl_weight, kl_floor=False)


class TrainingLoss(nn.Module):
    """A training forward as one module call, so that DistributedDataParallel can wrap it.

    Returns this rank's tensor to back-propagate (the autoencoder's error alone while it
    pretrains) and the whole batch's loss terms, detached: a mean over the ranks, each term being
    a share whose mean is the whole batch's value (see distributed.py). DDP, when it looks for
    unused parameters, must see the graph of the first alone.
    """

    def __init__(self, model: SketchModel, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise SketchDataError(
                f"unknown precision '{precision}'; choose {', '.join(PRECISIONS)}"
            )
        self.model = model
        self.precision = precision

    def forward(self, batch: Batch, step: int, pretraining: bool) -> tuple[torch.Tensor, LossTerms]:
        with precision_context(self.precision, batch.strokes.device):
            terms = batch_loss(self.model, batch, step)
        objective = terms.l_ae if pretraining else terms.objective
        if distributed.world_size() == 1:
            return objective, terms
        names = list(vars(terms))
        values = distributed.mean_over_ranks(torch.stack([vars(terms)[k].detach() for k in names]))
        return objective, LossTerms(**dict(zip(names, values.unbind(), strict=True)))


@torch.no_grad()
def evaluate_loss(
    model: SketchModel,
    loader: BatchLoader,
    device: torch.device,
    stop: Callable[[], bool] | None = None,
) -> dict[str, float] | None:
    """Mean loss terms over one pass of a split: no augmentation, no dropout, no KL floor.

    z_s and a_d are still sampled, from a fixed seed on a forked RNG: every validation draws the
    same noise, and the training RNG is left as it was, so a run that validates before it stops
    resumes exactly as one that never stopped. When `stop()` turns true between batches (Ctrl-C)
    the pass is abandoned and None returned.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        for batch in loader:
            if stop is not None and stop():
                model.train(was_training)
                return None
            terms = batch_loss(model, batch.to(device), 0, train=False).as_floats()
            release_free_memory()  # or the peak grows over the first batches (allocator.py)
            n = len(batch.lengths)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * n
            count += n
    model.train(was_training)
    return {k: v / count for k, v in sums.items()}


@contextmanager
def _stop_on_signal() -> Iterator[dict[str, bool]]:
    """SIGTERM (and SIGINT) ask the loop to save and stop at the next step boundary."""
    flag = {"stop": False}

    def handler(signum: int, frame: object) -> None:
        del signum, frame
        flag["stop"] = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Trainer:
    """Trains in one process, or as one rank of a data-parallel group (see distributed.py).

    Under a group `batch_size` stays the global batch, each rank trains on its share of it, and
    only rank 0 writes files and prints.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        train_config: TrainConfig,
        dataset: SketchDataset,
        run_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        self.cfg = model_config
        self.tcfg = train_config
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        distributed.check_batch_size(train_config.batch_size, len(dataset["train"]))
        self.progress = progress and distributed.is_main()
        self.device = distributed.rank_device(resolve_device(train_config.device))
        tune_allocator()  # see allocator.py: without it, long steps spend their time in page faults
        torch.manual_seed(train_config.seed)
        self.model = SketchModel(model_config).to(self.device)
        if train_config.compile:
            compile_cells(self.model)
        self._forward = distributed.wrap(
            TrainingLoss(self.model, train_config.precision),
            self.device,
            # The autoencoder pretrains alone, then is frozen: some weights get no gradient.
            find_unused=model_config.use_autoencoder
            and model_config.autoencoder_mode == "pretrain",
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train_config.learning_rate)
        # One pass over all gradients where torch has foreach kernels (1.5 -> 0.9 ms per step for
        # ai-sketcher at the small size on one CPU thread). Adam's fused kernel was faster still
        # (7.6 -> 2.6 ms) but broke bit-identical resuming, so it is not used.
        self._foreach = self.device.type in ("cpu", "cuda") or None
        ae = self.model.autoencoder
        ae_ids = {id(p) for p in ae.parameters()} if ae is not None else set()
        # Clipped apart (see _clip_gradients); split once, not at every step.
        self._clip_groups = [
            [p for p in self.model.parameters() if id(p) not in ae_ids],
            [p for p in self.model.parameters() if id(p) in ae_ids],
        ]
        raster_size = model_config.raster_size if model_config.reads_rasters else None
        valid = dataset.splits.get("valid")
        if valid is not None:  # bounded: a validation costs the same at any data size
            valid = valid.sample_per_class(
                train_config.valid_per_class or validation_per_class(dataset.num_classes)
            )
        self.train_loader = BatchLoader(
            dataset["train"],
            train_config.batch_size,
            raster_size=raster_size,
            seed=train_config.seed,
            scale=train_config.augment_scale,
            drop=train_config.augment_drop,
            group_by_length=train_config.group_by_length,
            balance_classes=train_config.balance_classes,
            shard=distributed.shard(),
        )
        self.valid_loader = (
            BatchLoader(
                valid,
                train_config.batch_size,
                raster_size=raster_size,
                train=False,
                pad_to=model_config.max_seq_len,  # l_s over all N_max (+ the end) rows, eq. 13
            )
            if valid is not None and len(valid)
            else None
        )
        self._stop = {"stop": False}  # set by a signal while `fit` runs
        self._prior_fitted_at = -1  # the step the z_r prior was last fitted at
        self.step = 0
        self.best_valid = math.inf
        self.lr_scale = 1.0
        self.skipped_steps = 0
        self.restores = 0
        # The kernels this run steps with (builds the fused ones if need be; they hold the cells and
        # the autoencoder's convolutions, the record's key keeps its first name):
        # bf16 autocast runs the reference cells, --compile compiles the steps, not the sequences.
        fusable = train_config.precision == "fp32" and fused.usable(next(self.model.parameters()))
        self.kernels = (
            "reference"
            if not fusable
            else "fused sequences, compiled steps"
            if train_config.compile
            else "fused"
        )
        if resume:
            self._resume()
        elif distributed.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", self.run_info())

    # ----- bookkeeping -----
    def run_info(self) -> dict[str, Any]:
        return {
            "model": self.cfg.to_dict(),
            "train": self.tcfg.to_dict(),
            "data": {
                "classes": self.dataset.class_names,
                "scale_factor": self.dataset.scale_factor,
                "max_seq_len": self.dataset.max_seq_len,
                "sources": self.dataset.sources,
                "sizes": {k: len(v) for k, v in self.dataset.splits.items()},
            },
            "code_version": __version__,
        }

    def state_info(self) -> dict[str, Any]:
        return {
            **self.run_info(),
            "step": self.step,
            "best_valid": self.best_valid if math.isfinite(self.best_valid) else None,
            "lr_scale": self.lr_scale,
            "skipped_steps": self.skipped_steps,
            "restores": self.restores,
            "recurrent_kernels": self.kernels,
            "loader": self.train_loader.get_state(),
        }

    def save(self, name: str) -> None:
        """Write a checkpoint; weights or optimizer state with a non-finite number never
        replace one on disk (the run goes on, and says so)."""
        if not distributed.is_main():
            return
        bad = [n for n, v in self.model.state_dict().items() if not torch.isfinite(v).all()]
        bad += [
            f"optimizer state of {i}"
            for i, state in enumerate(self.optimizer.state.values())
            if not all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v))
        ]
        if bad:
            print(
                f"warning: not saving {name} at step {self.step}: non-finite values in "
                f"{', '.join(bad[:3])}{' and more' if len(bad) > 3 else ''}; the checkpoint on "
                "disk is kept",
                flush=True,
            )
            return
        self._fit_priors()
        save_checkpoint(
            self.run_dir / f"{name}.safetensors", self.model, self.state_info(), self.optimizer
        )

    def _fit_priors(self) -> None:
        """Refit the priors of class-only drawing (model.sketch_prior, model.raster_prior) on
        training sketches."""
        if self._prior_fitted_at == self.step:
            return  # "best" and "last" saved at the same step share one fit
        self._prior_fitted_at = self.step
        fit_priors(self.model, self.dataset["train"])

    def _load(self, path: Path) -> None:
        """Weights, optimizer, RNG and loader state from a checkpoint; anything in it that does
        not fit this run is one error naming the file, and nothing is half restored."""
        tensors, info = read_checkpoint(path)
        try:
            counters = (
                int(info["step"]),
                math.inf if info["best_valid"] is None else float(info["best_valid"]),
                float(info["lr_scale"]),
                int(info["skipped_steps"]),
                int(info["restores"]),
            )
            loader = info["loader"]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise SketchDataError(f"checkpoint metadata is damaged ({exc!r})", str(path)) from None
        load_weights(self.model, tensors, str(path))
        try:
            restore_training_state(tensors, info, self.optimizer)
            self.train_loader.set_state(loader)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise SketchDataError(
                f"the optimizer, RNG or loader state does not fit this run ({exc})", str(path)
            ) from None
        self.step, self.best_valid, self.lr_scale, self.skipped_steps, self.restores = counters
        distributed.share_cuda_rng(self.device)

    def _resume(self) -> None:
        path = self.run_dir / "last.safetensors"
        if not path.is_file():
            raise SketchDataError("nothing to resume: no last.safetensors", str(self.run_dir))
        _, info = read_checkpoint(path)
        # Compared as configs, so that a field added since the run started (with its default)
        # does not stop the run from resuming.
        if ModelConfig.from_dict(info["model"]) != self.cfg:
            raise SketchDataError("the model config differs from the run's", str(path))
        if info["data"]["classes"] != self.dataset.class_names:
            raise SketchDataError("the classes differ from the run's", str(path))
        metrics = self.run_dir / "metrics.csv"
        if metrics.is_file() and metrics.stat().st_size:  # a run's whole folder is checked, even
            with open(metrics, newline="") as fh:  # when it has nothing left to train
                _check_metrics_header(next(csv.reader(fh), None), metrics)
        self._load(path)

    # ----- the loop -----
    def _set_learning_rate(self) -> float:
        t = self.tcfg
        lr = learning_rate_at(self.step, t.learning_rate, t.min_learning_rate, t.lr_decay)
        lr *= self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _update_autoencoder_phase(self) -> bool:
        """In "pretrain" mode the autoencoder alone trains first, then is frozen."""
        if self.model.autoencoder is None or self.cfg.autoencoder_mode != "pretrain":
            return False
        pretraining = self.step < self.cfg.autoencoder_pretrain_steps
        self.model.autoencoder_frozen = not pretraining
        return pretraining

    def _clip_gradients(self) -> torch.Tensor:
        """Clip the sketch model's and the autoencoder's gradients each to `grad_clip`.

        The autoencoder's summed squared error is about 1,000 per image against about 1 for the
        sketch loss: under one shared norm its gradient would take the whole clipping budget and
        shrink every step of the sketch model. Returns the total norm before clipping.
        """
        norms = [
            torch.nn.utils.clip_grad_norm_(group, self.tcfg.grad_clip, foreach=self._foreach)
            for group in self._clip_groups
            if group
        ]
        return torch.linalg.vector_norm(torch.stack(norms))

    def train_step(self) -> tuple[LossTerms | None, float]:
        """One optimizer step; returns (losses, grad norm) or (None, nan) for a skipped step."""
        self.model.train()
        pretraining = self._update_autoencoder_phase()
        batch = self.train_loader.next_batch().to(self.device)
        self._set_learning_rate()
        self.optimizer.zero_grad(set_to_none=True)
        with distributed.rank_rows(batch) as rows:
            objective, terms = self._forward(rows, self.step, pretraining)
        # The whole batch's value, so that every rank skips a non-finite step together.
        if not torch.isfinite(terms.l_ae if pretraining else terms.objective):
            return None, math.nan
        objective.backward()
        norm = self._clip_gradients()
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return None, math.nan
        self.optimizer.step()
        return terms, float(norm)

    def _recover(self, bar: tqdm, in_a_row: int) -> None:
        """Restore the last checkpoint and halve the learning rate; give up after `max_restores`
        restores in a row (`in_a_row` counts them, this one included)."""
        t = self.tcfg
        step = self.step
        if in_a_row > t.max_restores:
            raise TrainingDiverged(
                f"every step is non-finite: {t.max_bad_steps * t.max_restores} bad steps after "
                f"{t.max_restores} restores with the learning rate halved each time (scale now "
                f"{self.lr_scale:g}), at step {step}. Likely causes: a learning rate too large "
                f"({t.learning_rate:g}), a loss weight out of range in the model config, or "
                "non-finite data. The checkpoints on disk hold no non-finite weights and stay "
                "as they were.",
                str(self.run_dir),
            )
        self.restores += 1
        self.lr_scale *= 0.5
        last = self.run_dir / "last.safetensors"
        if last.is_file():
            keep = (self.lr_scale, self.restores, self.skipped_steps)
            self._load(last)
            self.lr_scale, self.restores, self.skipped_steps = keep
            bar.n = self.step  # the bar counts from the restored step again
            bar.refresh()
            done = f"restored the checkpoint of step {self.step}"
        else:
            done = "no checkpoint to restore yet: went on with the present weights"
        self._note(
            bar,
            f"warning: {t.max_bad_steps} non-finite steps in a row at step {step}; {done} and "
            f"halved the learning rate (scale now {self.lr_scale:g})",
        )

    @staticmethod
    def _note(bar: tqdm, text: str) -> None:
        if distributed.is_main():
            bar.write(text)

    def validate(self) -> dict[str, float] | None:
        """Validation losses; computed on rank 0 and shared, so best-checkpoint choices agree."""
        if self.valid_loader is None:
            return None
        valid = None
        if distributed.is_main():
            valid = evaluate_loss(
                self.model, self.valid_loader, self.device, lambda: self._stop["stop"]
            )
        return distributed.from_main(valid)

    def fit(self) -> dict[str, Any]:
        """Train until `steps` (or the time budget or a signal), then save and summarise."""
        from torch.utils.tensorboard import SummaryWriter

        t = self.tcfg
        deadline = time.monotonic() + 60 * t.max_minutes if t.max_minutes else math.inf
        started, start_step = time.monotonic(), self.step
        bad_in_row = restores_in_row = 0
        last_valid: dict[str, float] | None = None
        validated_at = -1
        reason = "finished"
        with ExitStack() as files:
            stop = self._stop = files.enter_context(_stop_on_signal())
            bar = files.enter_context(
                tqdm(total=t.steps, initial=self.step, disable=not self.progress, unit="step")
            )
            log: Any = _NoLog()
            writer: Any = _NoLog()
            if distributed.is_main():
                writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step or None)
                csv_path = self.run_dir / "metrics.csv"
                new_csv = _trim_metrics(csv_path, self.step)
                # Line-buffered: every row is on disk at once, for `tail -f` and crashed runs.
                log = csv.writer(files.enter_context(open(csv_path, "a", newline="", buffering=1)))
                if new_csv:
                    log.writerow(METRICS_HEADER)
            while self.step < t.steps:
                # Every rank stops at the same step, whichever of them got the signal first.
                signalled, out_of_time = distributed.any_rank(
                    stop["stop"], time.monotonic() > deadline
                )
                if signalled:
                    reason = "stopped by signal"
                    break
                if out_of_time:
                    reason = "time budget reached"
                    if self.step > max(start_step, validated_at):
                        # A run ended by its budget validates once more, so that it always
                        # leaves a best checkpoint of what it learnt.
                        last_valid = self._validate_and_log(log, writer, bar)
                    break
                terms, norm = self.train_step()
                if terms is None:
                    self.skipped_steps += 1
                    bad_in_row += 1
                    if bad_in_row >= t.max_bad_steps:
                        restores_in_row += 1
                        self._recover(bar, restores_in_row)
                        bad_in_row = 0
                    continue
                bad_in_row = restores_in_row = 0
                self.step += 1
                bar.update(1)
                values = terms.as_floats()
                if self.step % t.log_every == 0 or self.step == t.steps:
                    lr = self.optimizer.param_groups[0]["lr"]
                    klw = kl_weight_at(self.step, self.cfg)
                    log.writerow([self.step, "train", lr, klw, *LossTerms.row(values)])
                    for k, v in values.items():
                        writer.add_scalar(f"train/{k}", v, self.step)
                    writer.add_scalar("train/grad_norm", norm, self.step)
                    bar.set_postfix(
                        loss=f"{values['total']:.3f}",
                        l_r=f"{values['l_r']:.3f}",
                        l_kl=f"{values['l_kl']:.3f}",
                        skipped=self.skipped_steps,
                    )
                if self.step % t.eval_every == 0 or self.step == t.steps:
                    last_valid = self._validate_and_log(log, writer, bar)
                    validated_at = self.step
                if self.step % t.checkpoint_every == 0:
                    self.save("last")
            self.save("last")
            writer.close()
        distributed.barrier()  # no rank returns before the final checkpoint is on disk
        elapsed = time.monotonic() - started
        summary = {
            "reason": reason,
            "step": self.step,
            "steps_this_run": self.step - start_step,
            "seconds": round(elapsed, 1),
            "skipped_steps": self.skipped_steps,
            "restores": self.restores,
            "best_valid": self.best_valid if math.isfinite(self.best_valid) else None,
            "last_valid": last_valid,
        }
        return summary

    def _validate_and_log(self, log: Any, writer: Any, bar: tqdm) -> dict[str, float] | None:
        valid = self.validate()
        if valid is None:
            return None
        log.writerow([self.step, "valid", "", self.cfg.kl_weight, *LossTerms.row(valid)])
        for k, v in valid.items():
            writer.add_scalar(f"valid/{k}", v, self.step)
        if valid["total"] < self.best_valid:
            self.best_valid = valid["total"]
            self.save("best")
        self._note(
            bar,
            f"step {self.step}: valid loss {valid['total']:.4f} (l_r {valid['l_r']:.4f}, "
            f"l_kl {valid['l_kl']:.4f}), best {self.best_valid:.4f}",
        )
        return valid


METRICS_HEADER = ["step", "split", "lr", "kl_weight", *LossTerms.field_names()]


def _check_metrics_header(header: list[str] | None, path: Path) -> None:
    if header != METRICS_HEADER:
        raise SketchDataError(
            "not this trainer's metrics file (its header differs); move it away to go on",
            str(path),
        )


def _trim_metrics(path: Path, step: int) -> bool:
    """Make metrics.csv end at `step` (a resumed run redoes the steps after its checkpoint, whose
    rows would otherwise be there twice); returns whether it needs its header. A file that is not
    this trainer's CSV is refused by name rather than appended to."""
    if not path.exists() or path.stat().st_size == 0:
        return True
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    _check_metrics_header(rows[0] if rows else None, path)
    try:
        kept = [rows[0], *(r for r in rows[1:] if int(r[0]) <= step)]
    except (ValueError, IndexError):
        raise SketchDataError("a damaged row (no step number)", str(path)) from None
    if len(kept) < len(rows):
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            csv.writer(fh).writerows(kept)
    return False


class _NoLog:
    """Stands in for the CSV and TensorBoard writers on ranks other than 0."""

    def _ignore(self, *args: object) -> None:
        """Write nothing."""

    writerow = add_scalar = close = _ignore


# Sketches encoded per prior fit, over all classes: 256 a class up to 64 classes, then fewer, but
# never under 64 (the codes' size at the small model): the fit runs at every checkpoint, and at
# 345 classes x 256 it took two minutes and 670 MB.
FIT_SKETCHES = 16_384
FIT_PER_CLASS = (64, 256)


@torch.no_grad()
def fit_priors(model: SketchModel, train: Split, per_class: int | None = None) -> None:
    """Fit the priors of class-only drawing on up to `per_class` training sketches per class
    (default from FIT_SKETCHES; more than the codes have features, for the full covariance),
    encoded once for both: model.sketch_prior on posterior samples mu_s + sigma_s * eps (mu_s
    alone for a model that is not variational), model.raster_prior on z_r. The noise comes from
    its own generator, so fitting at a checkpoint leaves the run's random stream as it was."""
    if model.sketch_prior is None and model.raster_prior is None:
        return
    labels = train.labels
    classes = np.unique(labels)
    if per_class is None:
        per_class = int(np.clip(FIT_SKETCHES // max(len(classes), 1), *FIT_PER_CLASS))
    keep = np.concatenate([np.flatnonzero(labels == k)[:per_class] for k in classes])
    keep_labels = torch.from_numpy(labels[keep]).to(model.output.weight.device)
    # Encoded shortest first, so that each batch pads little; the codes go back in `keep` order.
    lengths = train.lengths()[keep]
    order = np.argsort(lengths, kind="stable")
    was_training = model.training
    mu, log_var, z_r = [], [], []
    for part in _padded_parts(lengths[order], order):
        rows = keep[part]
        latent = encode_sketches(model, train.take(rows), labels[rows].tolist())
        # Only the codes are kept: the rest of a latent (c, reconstructed rasters, encoder
        # states) would make this fit's memory grow with the number of classes.
        mu.append(latent.mu_s)
        log_var.append(latent.log_var_s)
        z_r.append(latent.z_r)
        del latent
        release_free_memory()
    model.train(was_training)
    back = torch.from_numpy(np.argsort(order))  # row i of the codes: sketch keep[i]
    if model.sketch_prior is not None:
        codes = torch.cat(mu)[back]
        if model.config.variational:
            spread = (0.5 * torch.cat(log_var)[back]).exp()
            eps = torch.randn(codes.shape, generator=torch.Generator().manual_seed(0)).to(codes)
            codes = codes + eps * spread
        model.sketch_prior.fit(codes, keep_labels)
    if model.raster_prior is not None:
        model.raster_prior.fit(torch.cat(z_r)[back], keep_labels)


# Sketches encoded at once when fitting the priors: at most 256, and at most this many padded
# points, so that the memory of one encoding does not grow with the longest sketch sampled.
FIT_PADDED_POINTS = 256 * 64


def _padded_parts(lengths: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """`order` (sketch indices by increasing length; `lengths[i]` is sketch `order[i]`'s) cut into
    parts of at most 256 sketches and at most FIT_PADDED_POINTS once padded to their longest."""
    parts, start = [], 0
    for end in range(1, len(order) + 1):
        size = end - start
        if size > 256 or (size * lengths[end - 1] > FIT_PADDED_POINTS and size > 1):
            parts.append(order[start : end - 1])
            start = end - 1
    parts.append(order[start:])
    return parts


def refit_checkpoint_priors(path: Path, train: Split) -> bool:
    """Fit the class priors of a checkpoint saved before its model had them fitted (older code),
    in place, as training saves them now: the weights, optimizer and RNG state stay as they were.
    False, and nothing written, when every prior the model has is fitted already."""
    tensors, info = read_checkpoint(path)
    model = SketchModel(ModelConfig.from_dict(info["model"]))
    load_weights(model, tensors, str(path))
    priors = [p for p in (model.sketch_prior, model.raster_prior) if p is not None]
    if all(p.fitted for p in priors):
        return False
    fit_priors(model, train)
    state = model.state_dict()
    tensors.update({f"model.{k}": state[k] for k in OPTIONAL_BUFFERS if k in state})
    rewrite_checkpoint(path, tensors, info)
    return True
