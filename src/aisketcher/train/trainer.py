"""The training loop: progress, validation, logs, checkpoints, exact resume, NaN recovery.

A run directory holds `config.json` (model, training and data settings, code version),
`last.safetensors` and `best.safetensors` (see checkpoint.py), `metrics.csv` with every loss term,
and TensorBoard event files under `tb/`.
"""

from __future__ import annotations

import csv
import math
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from aisketcher import __version__
from aisketcher.allocator import tune_allocator
from aisketcher.atomic import write_json
from aisketcher.checkpoint import (
    load_weights,
    non_finite,
    read_checkpoint,
    restore_training_state,
    save_checkpoint,
)
from aisketcher.data.dataset import SketchDataset
from aisketcher.devices import resolve_device
from aisketcher.errors import SketchDataError
from aisketcher.model.config import ModelConfig
from aisketcher.model.sketcher import SketchModel
from aisketcher.train import distributed
from aisketcher.train.config import TrainConfig
from aisketcher.train.data import run_loaders
from aisketcher.train.loss import LossTerms, evaluate_loss, kl_weight_at, learning_rate_at
from aisketcher.train.priors import fit_priors
from aisketcher.train.run_log import NoLog, RunLog, check_metrics_header, open_log
from aisketcher.train.step import GradientClip, TrainingLoss, compile_cells, kernel_name


class TrainingDiverged(SketchDataError):
    """Training cannot make a finite step: it stops, leaving the checkpoints as they were."""


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
        train_config.check_weights()
        shares = {k: getattr(train_config, k) for k in ("damage", "damage_share")}
        bad = [f"{k} {v}" for k, v in shares.items() if not 0.0 <= v <= 1.0]  # NaN too
        if bad:
            raise SketchDataError(f"shares must be from 0 to 1: {', '.join(bad)}")
        if train_config.damage > 0 and not (model_config.has_latent or model_config.reads_rasters):
            raise SketchDataError(
                "damage (healing) needs a model that reads its input: this one is decoder only"
            )
        distributed.check_batch_size(train_config.batch_size, len(dataset["train"]))
        self.progress = progress and distributed.is_main()
        self.device = distributed.rank_device(resolve_device(train_config.device))
        tune_allocator()  # see allocator.py: without it, long steps spend their time in page faults
        torch.manual_seed(train_config.seed)
        self.model = SketchModel(model_config).to(self.device)
        if train_config.compile:
            compile_cells(self.model)
        self._forward = distributed.wrap(
            TrainingLoss(self.model, train_config.loss_weights(), train_config.precision),
            self.device,
            # The autoencoder pretrains alone, then is frozen: some weights get no gradient.
            find_unused=model_config.use_autoencoder
            and model_config.autoencoder_mode == "pretrain",
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train_config.learning_rate)
        self._clip = GradientClip(self.model, self.device, train_config.grad_clip)
        self.train_loader, self.valid_loader = run_loaders(dataset, model_config, train_config)
        self._stop = {"stop": False}  # set by a signal while `fit` runs
        self._prior_fitted_at = -1  # the step the z_r prior was last fitted at
        self.step = 0
        self.best_valid = math.inf
        self.lr_scale = 1.0
        self.skipped_steps = 0
        self.restores = 0
        self.kernels = kernel_name(self.model, train_config)
        self.resumed = resume
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
        bad = non_finite(self.model, self.optimizer)
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
                check_metrics_header(next(csv.reader(fh), None), metrics)
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
        norm = self._clip()
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
                f"({t.learning_rate:g}), a loss weight out of range in the training settings, or "
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
                self.model,
                self.valid_loader,
                self.device,
                lambda: self._stop["stop"],
                weights=self.tcfg.loss_weights(),
            )
        return distributed.from_main(valid)

    def fit(self) -> dict[str, Any]:
        """Train until `steps` (or the time budget or a signal), then save and summarise."""
        t = self.tcfg
        deadline = time.monotonic() + 60 * t.max_minutes if t.max_minutes else math.inf
        started, start_step = time.monotonic(), self.step
        bad_in_row = restores_in_row = 0
        last_valid: dict[str, float] | None = None
        validated_at = -1
        reason = "finished"
        if self.resumed and distributed.is_main():  # the settings it goes on with (loss weights)
            write_json(self.run_dir / "config.json", self.run_info())
        with ExitStack() as files:
            stop = self._stop = files.enter_context(_stop_on_signal())
            bar = files.enter_context(
                tqdm(total=t.steps, initial=self.step, disable=not self.progress, unit="step")
            )
            log: RunLog | NoLog = NoLog()
            if distributed.is_main():
                log = files.enter_context(open_log(self.run_dir, self.step))
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
                        last_valid = self._validate_and_log(log, bar)
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
                    klw = kl_weight_at(self.step, self.tcfg)
                    log.add("train", self.step, lr, klw, values, norm)
                    bar.set_postfix(
                        loss=f"{values['total']:.3f}",
                        l_r=f"{values['l_r']:.3f}",
                        l_kl=f"{values['l_kl']:.3f}",
                        skipped=self.skipped_steps,
                    )
                if self.step % t.eval_every == 0 or self.step == t.steps:
                    last_valid = self._validate_and_log(log, bar)
                    validated_at = self.step
                if self.step % t.checkpoint_every == 0:
                    self.save("last")
            self.save("last")
            log.close()
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

    def _validate_and_log(self, log: RunLog | NoLog, bar: tqdm) -> dict[str, float] | None:
        valid = self.validate()
        if valid is None:
            return None
        log.add("valid", self.step, "", self.tcfg.kl_weight, valid)
        if valid["total"] < self.best_valid:
            self.best_valid = valid["total"]
            self.save("best")
        self._note(
            bar,
            f"step {self.step}: valid loss {valid['total']:.4f} (l_r {valid['l_r']:.4f}, "
            f"l_kl {valid['l_kl']:.4f}), best {self.best_valid:.4f}",
        )
        return valid
