"""Training and evaluating one model of an experiment: where it lives (`Context`), its settings
at the experiment's scale, its run (trained up to the budget, or resumed, or kept), its classifier
and its evaluation (reused while the checkpoint and the settings are the same)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisketcher.atomic import write_json
from aisketcher.checkpoint import checkpoint_digest, read_checkpoint
from aisketcher.data.dataset import SketchDataset, load_dataset
from aisketcher.errors import SketchDataError
from aisketcher.evaluate.classifier import SketchClassifier, train_classifier
from aisketcher.evaluate.report import REPORT_FILE, compare_diversity, evaluate_run, json_ready
from aisketcher.evaluate.scales import EXPERIMENTS, Scale
from aisketcher.evaluate.sets import EvalSettings
from aisketcher.model.config import ModelConfig, make_config
from aisketcher.train.config import TrainConfig
from aisketcher.train.priors import refit_checkpoint_priors
from aisketcher.train.trainer import Trainer


@dataclass
class Context:
    """Where an experiment reads and writes, and how."""

    out: Path
    scale: Scale
    data_dir: str | None = None
    device: str = "cpu"
    seed: int = 0
    temperature: float = 0.4
    max_minutes: float | None = None  # per training run
    log: Callable[[str], None] = print
    repeat: bool = False  # a repeat at another seed: runs and evaluations in seed<k>/

    @property
    def tree(self) -> Path:
        """Where this seed's runs and evaluations live."""
        return self.out / f"seed{self.seed}" if self.repeat else self.out

    def run_dir(self, set_name: str, config: str) -> Path:
        return self.tree / "runs" / f"{set_name}-{config}"

    def figure(self, name: str) -> Path:
        folder = self.out / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name


def set_dataset(ctx: Context, classes: list[str], cache: dict[str, SketchDataset]) -> SketchDataset:
    key = ",".join(classes)
    if key not in cache:
        cache[key] = load_dataset(classes, ctx.data_dir, max_seq_len=ctx.scale.max_seq_len)
    return cache[key]


def _configs(ctx: Context, config: str, dataset: SketchDataset) -> tuple[ModelConfig, TrainConfig]:
    """The model and training settings of `config` at the context's scale."""
    scale = ctx.scale
    model_cfg = make_config(
        config,
        scale.size,
        num_classes=dataset.num_classes,
        max_seq_len=dataset.longest,
        **dict(scale.model_overrides),
    )
    train_cfg = TrainConfig(
        steps=scale.steps,
        batch_size=scale.batch_size,
        seed=ctx.seed,
        eval_every=scale.eval_every,
        checkpoint_every=max(1, min(250, scale.steps)),
        device=ctx.device,
        max_minutes=ctx.max_minutes,
    )
    return model_cfg, train_cfg


def train_run(ctx: Context, set_name: str, config: str, dataset: SketchDataset) -> Path:
    """Train `config` on the set up to the scale's budget; an existing run is resumed or kept."""
    run = ctx.run_dir(set_name, config)
    scale = ctx.scale
    model_cfg, train_cfg = _configs(ctx, config, dataset)
    last = run / "last.safetensors"
    resume = last.is_file()
    if resume:
        _, info = read_checkpoint(last)
        if ModelConfig.from_dict(info["model"]) != model_cfg:
            raise SketchDataError(
                "holds a run of another configuration or scale; use another --out", str(run)
            )
        if int(info["step"]) >= scale.steps:
            ctx.log(f"{run.name}: already trained ({info['step']} steps)")
            _fit_older_priors(ctx, run, dataset)
            return run
    ctx.log(f"{run.name}: training {scale.steps} steps" + (" (resuming)" if resume else ""))
    summary = Trainer(model_cfg, train_cfg, dataset, run, resume=resume, progress=False).fit()
    if summary["reason"] == "stopped by signal":  # the user wants the experiment to stop
        raise SystemExit(f"{run.name}: stopped at step {summary['step']}; the same command resumes")
    if resume:  # a fresh run saves fitted priors; a resumed one's best may predate them
        _fit_older_priors(ctx, run, dataset)
    return run


def _fit_older_priors(ctx: Context, run: Path, dataset: SketchDataset) -> None:
    """Fit the class priors into a run's checkpoints saved before checkpoints carried them."""
    saved = [p for p in (run / "best.safetensors", run / "last.safetensors") if p.is_file()]
    fitted = [p.stem for p in saved if refit_checkpoint_priors(p, dataset["train"])]
    if fitted:
        ctx.log(f"{run.name}: class priors fitted into {' and '.join(fitted)}")


def estimate_cost(
    name: str, ctx: Context, seeds: int = 1, timed_steps: int = 2
) -> list[dict[str, Any]]:
    """What training an experiment's models would take on `ctx.device`: each model's step timed
    (after one untimed step) on its own real batches, times the scale's step budget and `seeds`.
    Classifiers and evaluations are not counted. Writes nothing under `ctx.out`."""
    rows, cache = [], {}
    experiment = EXPERIMENTS[name]
    with tempfile.TemporaryDirectory() as tmp:
        for set_name in experiment.class_sets:
            classes = ctx.scale.classes(set_name)
            if classes is None:
                continue
            dataset = set_dataset(ctx, classes, cache)
            for config in experiment.configs:
                model_cfg, train_cfg = _configs(ctx, config, dataset)
                run = Path(tmp) / f"{set_name}-{config}"
                trainer = Trainer(model_cfg, train_cfg, dataset, run, progress=False)
                trainer.train_step()
                start = time.perf_counter()
                for _ in range(timed_steps):
                    trainer.train_step()
                per_step = (time.perf_counter() - start) / timed_steps
                hours = per_step * ctx.scale.steps * seeds / 3600
                rows.append(
                    {"set": set_name, "config": config, "s_per_step": per_step, "hours": hours}
                )
                ctx.log(
                    f"{set_name} {config}: {per_step:.2f} s/step x {ctx.scale.steps} steps x "
                    f"{seeds} seed(s) = {hours:.1f} h on {ctx.device}"
                )
                del trainer
    return rows


def get_classifier(ctx: Context, set_name: str, classes: list[str]) -> SketchClassifier:
    folder = ctx.out / "classifiers" / set_name
    try:
        classifier = SketchClassifier.load(folder, device=ctx.device)
        if classifier.classes == classes:
            return classifier
    except SketchDataError:
        pass
    ctx.log(f"classifier for {set_name}: training")
    classifier = train_classifier(
        classes,
        ctx.data_dir,
        config=ctx.scale.classifier,
        training=dataclasses.replace(ctx.scale.classifier_training, seed=ctx.seed),
        device=ctx.device,
    )
    classifier.save(folder)
    return SketchClassifier.load(folder, device=ctx.device)


def eval_settings(ctx: Context, samples: int, figures_on: bool = True) -> EvalSettings:
    return EvalSettings(
        samples=samples,
        temperature=ctx.temperature,
        seed=ctx.seed,
        tsne_per_class=ctx.scale.tsne_per_class,
        data_dir=ctx.data_dir,
        figures=figures_on,
    )


def evaluation_dir(ctx: Context, run: Path, samples: int) -> Path:
    """Evaluations live by run and sample count, so experiments share them."""
    return ctx.tree / "evals" / f"{run.name}-n{samples}"


def _is_current(report: dict[str, Any], run: Path, settings: EvalSettings) -> bool:
    """Whether `report` evaluated the run's present checkpoint (its very bytes) with these
    settings. A report from before digests were recorded is never current: made again once."""
    same_settings = settings.matches(report.get("settings", {}))
    return same_settings and report["model"].get("checkpoint_sha256") == checkpoint_digest(run)


def evaluate_model(
    ctx: Context,
    run: Path,
    classifier: SketchClassifier,
    samples: int,
    compare: Path | None = None,
) -> dict[str, Any]:
    """Evaluate a run, or reuse an evaluation of the same checkpoint with the same settings."""
    out = evaluation_dir(ctx, run, samples)
    settings = eval_settings(ctx, samples, ctx.scale.eval_figures)
    path = out / REPORT_FILE
    report = json.loads(path.read_text()) if path.is_file() else None
    if report is None or not _is_current(report, run, settings):
        ctx.log(f"{run.name}: evaluating")
        return evaluate_run(run, classifier, out, settings, compare=compare, device=ctx.device)
    ctx.log(f"{run.name}: evaluated before")
    if compare is not None:
        report["diversity_ttest"] = json_ready(compare_diversity(report, compare))
        write_json(path, report)
    return report
