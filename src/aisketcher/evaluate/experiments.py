"""The paper's experiments at our scale (spec section 4): train, evaluate, write figures and tables.

- ablation: sketch-rnn-cond, ai-sketcher-no-influence, ai-sketcher-no-autoencoder, ai-sketcher on
  QD5 (the paper used FaceX, which is not public): translations (Figure 2), t-SNE of 30 latents per
  class per model (Figure 3a), loss curves (Figure 3b), a table of every metric.
- multiclass: sketch-rnn-cond, sketch-pix2seq, ai-sketcher on QD5, QD10, QD15 and QD20 (Figure 4:
  samples, and test loss, recognizability and FID against the number of classes), with the table.
- diversity: 50 sketches in each of the 5 QD5 classes from ai-sketcher and sketch-rnn-cond; mean
  pairwise pHash distance, unpaired t-test (Figure 5).

Every model of an experiment gets the same budget (steps, batch size, seed, layer size). Everything
lives under one output folder: `runs/<set>-<config>` (shared between experiments, so the QD5 runs
train once; an existing run is resumed up to the budget), `classifiers/<set>`,
`evals/<set>-<config>-n<samples>`, `figures/`, `<experiment>.json`, and `results.md`, which
collects the sections of every experiment done so far. Repeats at other training seeds (for the
spread of every number) keep their runs and evaluations in `seed<k>/` and share the classifiers:
a measuring instrument stays fixed while the models vary.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aisketcher import modes
from aisketcher.api import Sketcher
from aisketcher.atomic import write_json
from aisketcher.checkpoint import read_checkpoint
from aisketcher.data.dataset import SketchDataset, load_dataset
from aisketcher.errors import SketchDataError
from aisketcher.evaluate import figures
from aisketcher.evaluate.classifier import (
    ClassifierConfig,
    ClassifierTraining,
    SketchClassifier,
    train_classifier,
)
from aisketcher.evaluate.modes import draw_class_only
from aisketcher.evaluate.report import (
    REPORT_FILE,
    EvalSettings,
    checkpoint_digest,
    compare_diversity,
    evaluate_run,
    json_ready,
    latent_vectors,
    load_sets,
)
from aisketcher.model.config import ModelConfig, make_config
from aisketcher.train.config import TrainConfig
from aisketcher.train.priors import refit_checkpoint_priors
from aisketcher.train.trainer import Trainer

QD5 = ["cat", "airplane", "bicycle", "eye", "guitar"]
QD10 = [*QD5, "camera", "headphones", "television", "crayon", "paintbrush"]
QD15 = [*QD10, "calculator", "computer", "dragon", "map", "paint_can"]
QD20 = [*QD15, "face", "pig", "apple", "fish", "umbrella"]
CLASS_SETS = {"QD5": QD5, "QD10": QD10, "QD15": QD15, "QD20": QD20}


@dataclass(frozen=True)
class Experiment:
    configs: tuple[str, ...]
    class_sets: tuple[str, ...]
    title: str
    repeat_sets: tuple[str, ...] = ("QD5",)  # the sets trained again at --repeat-seeds


EXPERIMENTS = {
    "ablation": Experiment(
        (
            "sketch-rnn-cond",
            "ai-sketcher-no-influence",
            "ai-sketcher-no-autoencoder",
            "ai-sketcher",
            # The paper's memory read literally: how much of its gain is the copy channel.
            "ai-sketcher-paper-memory",
        ),
        ("QD5",),
        "Ablation (paper Figures 2 and 3, on QD5 instead of FaceX)",
    ),
    "multiclass": Experiment(
        ("sketch-rnn-cond", "sketch-pix2seq", "ai-sketcher"),
        ("QD5", "QD10", "QD15", "QD20"),
        "Multi-class generation (paper Figure 4)",
        ("QD5", "QD20"),  # the ends of the curve
    ),
    "diversity": Experiment(
        ("ai-sketcher", "sketch-rnn-cond"), ("QD5",), "Diversity (paper Figure 5)"
    ),
}


@dataclass(frozen=True)
class Scale:
    """How big the experiments are: one budget for every model."""

    size: str  # model layer sizes (config.SIZES)
    steps: int
    batch_size: int = 100
    eval_every: int = 500
    max_seq_len: int = 250
    model_overrides: tuple[tuple[str, Any], ...] = ()
    set_sizes: tuple[tuple[str, int], ...] | None = None  # keep only these sets, truncated
    samples: int = 100  # real and generated sketches per class in the evaluations
    diversity_samples: int = 50  # the paper: 50 per class
    tsne_per_class: int = 30  # the paper: 30
    eval_figures: bool = True  # each evaluation's own figures (the experiment's are always drawn)
    classifier: ClassifierConfig = dataclasses.field(default_factory=lambda: ClassifierConfig([]))
    classifier_training: ClassifierTraining = dataclasses.field(default_factory=ClassifierTraining)

    def classes(self, set_name: str) -> list[str] | None:
        """The classes of a set at this scale, or None when the scale leaves the set out."""
        if self.set_sizes is None:
            return CLASS_SETS[set_name]
        sizes = dict(self.set_sizes)
        return CLASS_SETS[set_name][: sizes[set_name]] if set_name in sizes else None


SCALES = {
    # Minutes in all: proves the pipeline end to end (tests); the numbers mean nothing.
    "toy": Scale(
        size="small",
        steps=2,
        batch_size=4,
        eval_every=2,
        max_seq_len=40,
        model_overrides=(
            ("enc_rnn_size", 16),
            ("dec_rnn_size", 32),
            ("z_size", 8),
            ("raster_z_size", 8),
            ("num_mixture", 3),
        ),
        set_sizes=(("QD5", 2),),
        samples=4,
        diversity_samples=4,
        tsne_per_class=4,
        eval_figures=False,
        classifier=ClassifierConfig([], raster_size=32, channels=(4, 8, 8, 8), feature_size=8),
        classifier_training=ClassifierTraining(epochs=1, max_per_class=16, batch_size=16),
    ),
    # The laptop size on a CPU: 1,000 steps of batch 100 take 10-30 minutes a model on one core.
    "cpu": Scale(size="small", steps=1000),
    # The paper's sizes and a Sketch-RNN-like budget: for a GPU.
    "paper": Scale(size="paper", steps=50_000, eval_every=1000),
}


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


# ----- training and evaluating one model -----
def _dataset(ctx: Context, classes: list[str], cache: dict[str, SketchDataset]) -> SketchDataset:
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
            dataset = _dataset(ctx, classes, cache)
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


def _settings(ctx: Context, samples: int, figures_on: bool = True) -> EvalSettings:
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


def _evaluate(
    ctx: Context,
    run: Path,
    classifier: SketchClassifier,
    samples: int,
    compare: Path | None = None,
) -> dict[str, Any]:
    """Evaluate a run, or reuse an evaluation of the same checkpoint with the same settings."""
    out = evaluation_dir(ctx, run, samples)
    settings = _settings(ctx, samples, ctx.scale.eval_figures)
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


# ----- what goes in the tables -----
def _row(report: dict[str, Any]) -> dict[str, Any]:
    """The pooled numbers of one evaluation."""
    like = report["likelihood"]["all"]
    rec, fid, pr = report["recognizability"], report["fid"], report["precision_recall"]
    return {
        "total": like["total"],
        "l_r": like["l_r"],
        "l_kl": like["l_kl"],
        "recog_draw": rec["draw"]["all"],
        "recog_recon": rec.get("reconstruct", {}).get("all"),
        "recog_real": rec["real"]["all"],
        "fid_draw": fid["draw"]["all"],
        "fid_recon": fid.get("reconstruct", {}).get("all"),
        "fid_floor": fid["floor"]["all"],
        "precision": pr["draw"]["all"]["precision"],
        "recall": pr["draw"]["all"]["recall"],
        "diversity": report["diversity"]["draw"]["mean_of_classes"],
        "recog_translate": rec.get("translate", {}).get("all"),
        "recog_start": rec.get("complete_start", {}).get("all"),
        "recog_complete": rec.get("complete", {}).get("all"),
        "copy_draw": report.get("copy_check", {}).get("draw", {}).get("ratio"),
        "near_copies": report.get("copy_check", {}).get("draw", {}).get("near_copy_share"),
        "leak_gap": (report.get("leak_check") or {}).get("gap_l_r"),
        "steps": report["model"]["step"],
    }


REFERENCE = "real sketches"


def _reference_row(report: dict[str, Any]) -> dict[str, Any]:
    """Real validation vs real test sketches: the classifier's ceiling and the metrics' floors."""
    floor = report["precision_recall"]["floor"]["all"]
    row: dict[str, Any] = dict.fromkeys(_row(report))
    row.update(
        recog_draw=report["recognizability"]["real"]["all"],
        fid_draw=report["fid"]["floor"]["all"],
        precision=floor["precision"],
        recall=floor["recall"],
        diversity=report["diversity"]["real"]["mean_of_classes"],
        copy_draw=1.0,
        near_copies=report.get("copy_check", {}).get("draw", {}).get("real_near_copy_share"),
    )
    return row


COLUMNS = (
    ("total", "test loss", 3),
    ("l_r", "l_r", 3),
    ("l_kl", "l_kl", 3),
    ("recog_draw", "recog. draw", 3),
    ("recog_recon", "recog. recon", 3),
    ("fid_draw", "FID draw", 2),
    ("fid_recon", "FID recon", 2),
    ("precision", "precision", 3),
    ("recall", "recall", 3),
    ("diversity", "pHash div.", 2),
    ("recog_translate", "recog. translate", 3),
    ("recog_start", "recog. half start", 3),
    ("recog_complete", "recog. completed", 3),
    ("copy_draw", "copy ratio", 2),
    ("near_copies", "near-copies", 2),
    ("leak_gap", "leak gap", 3),
)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: float | None, digits: int) -> str | None:
    return None if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _metrics_table(rows: list[tuple[str, str, dict[str, Any]]]) -> str:
    headers = ["set", "model", *(title for _, title, _ in COLUMNS)]
    body = [[s, m, *(_fmt(r[key], d) for key, _, d in COLUMNS)] for s, m, r in rows]
    return markdown_table(headers, body)


SPREAD_COLUMNS = (
    "total",
    "l_r",
    "recog_draw",
    "recog_recon",
    "fid_draw",
    "precision",
    "recall",
    "diversity",
    "recog_translate",
    "recog_complete",
    "copy_draw",
    "leak_gap",
)


def _spread(values: list[float], digits: int) -> str | None:
    """Mean ± sample standard deviation of one number over seeds."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan
    return f"{np.mean(finite):.{digits}f} ± {sd:.{digits}f}"


def spread_table(seed_rows: list[dict[str, Any]]) -> str:
    """One row per set and model: every seed's value of each column, as mean ± sd."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in seed_rows:
        groups.setdefault((row["set"], row["model"]), []).append(row)
    digits = {key: d for key, _, d in COLUMNS}
    titles = {key: title for key, title, _ in COLUMNS}
    body = [
        [s, m, len(rows), *(_spread([r[k] for r in rows], digits[k]) for k in SPREAD_COLUMNS)]
        for (s, m), rows in groups.items()
    ]
    return markdown_table(["set", "model", "seeds", *(titles[k] for k in SPREAD_COLUMNS)], body)


# ----- figures that compare models -----
def _translations(
    sketchers: dict[str, Sketcher], source: np.ndarray, source_class: int, ctx: Context
) -> tuple[list[list[np.ndarray]], list[list[str]]]:
    """Figure 2: one real sketch (first column), translated by each model into every class."""
    rows, labels = [], []
    for sk in sketchers.values():
        k = len(sk.class_names)
        plan = modes.translate(sk.model, [source] * k, list(range(k)), ctx.seed)
        drawn = modes.run(sk.model, plan, temperature=ctx.temperature, seed=ctx.seed)
        rows.append([source, *drawn])
        labels.append([f"input: {sk.class_names[source_class]}", *sk.class_names])
    return rows, labels


def _class_samples(
    sketchers: dict[str, Sketcher], ctx: Context, per_class: int = 1
) -> tuple[list[list[np.ndarray]], list[str]]:
    """Figure 4: a row per model of class-only drawings, `per_class` of each class."""
    rows, names = [], []
    for name, sk in sketchers.items():
        labels = [c for c in range(len(sk.class_names)) for _ in range(per_class)]
        rows.append(draw_class_only(sk, labels, ctx.temperature, ctx.seed))
        names.append(name)
    return rows, names


# ----- the experiments -----
def _prepare(
    ctx: Context, experiment: str, set_name: str, cache: dict[str, SketchDataset]
) -> tuple[list[str], dict[str, Path], SketchClassifier] | None:
    classes = ctx.scale.classes(set_name)
    if classes is None:
        return None
    dataset = _dataset(ctx, classes, cache)
    runs = {c: train_run(ctx, set_name, c, dataset) for c in EXPERIMENTS[experiment].configs}
    return classes, runs, get_classifier(ctx, set_name, classes)


def run_ablation(ctx: Context) -> dict[str, Any]:
    cache: dict[str, SketchDataset] = {}
    prepared = _prepare(ctx, "ablation", "QD5", cache)
    if prepared is None:
        raise SketchDataError("this scale has no QD5 set")
    classes, runs, classifier = prepared
    reports = {c: _evaluate(ctx, r, classifier, ctx.scale.samples) for c, r in runs.items()}
    sketchers = {c: Sketcher.load(r, device=ctx.device) for c, r in runs.items()}
    first = next(iter(sketchers.values()))
    _, sets = load_sets(first, classes, {}, _settings(ctx, ctx.scale.tsne_per_class))
    panels = {
        c: (latent_vectors(sk, sets.real, sets.real_labels.tolist()), sets.real_labels)
        for c, sk in sketchers.items()
    }
    figs = {
        "tsne": figures.tsne_figure(panels, classes, ctx.figure("ablation-tsne.png"), ctx.seed),
        "loss_curves": figures.loss_curves(
            {c: r / "metrics.csv" for c, r in runs.items()}, ctx.figure("ablation-loss.png")
        ),
    }
    rows, captions = _translations(sketchers, sets.real[0], int(sets.real_labels[0]), ctx)
    figs["translation"] = figures.sample_grid(
        rows, list(sketchers), ctx.figure("ablation-translation.png"), captions=captions
    )
    return {
        "classes": {"QD5": classes},
        "rows": [
            *(("QD5", c, _row(r)) for c, r in reports.items()),
            ("QD5", REFERENCE, _reference_row(next(iter(reports.values())))),
        ],
        "figures": figs,
    }


def run_multiclass(ctx: Context) -> dict[str, Any]:
    cache: dict[str, SketchDataset] = {}
    rows, figs, class_sets = [], {}, {}
    for set_name in EXPERIMENTS["multiclass"].class_sets:
        prepared = _prepare(ctx, "multiclass", set_name, cache)
        if prepared is None:
            continue
        classes, runs, classifier = prepared
        class_sets[set_name] = classes
        reports = {c: _evaluate(ctx, r, classifier, ctx.scale.samples) for c, r in runs.items()}
        rows += [(set_name, c, _row(report)) for c, report in reports.items()]
        rows.append((set_name, REFERENCE, _reference_row(next(iter(reports.values())))))
        sketchers = {c: Sketcher.load(r, device=ctx.device) for c, r in runs.items()}
        samples, names = _class_samples(sketchers, ctx)
        figs[f"samples_{set_name}"] = figures.sample_grid(
            samples, names, ctx.figure(f"multiclass-samples-{set_name}.png")
        )
        figs[f"loss_{set_name}"] = figures.loss_curves(
            {c: r / "metrics.csv" for c, r in runs.items()},
            ctx.figure(f"multiclass-loss-{set_name}.png"),
        )
    if rows:
        figs["growth"] = figures.growth_figure(
            growth_series(rows, class_sets), ctx.figure("multiclass-growth.png")
        )
    return {"classes": class_sets, "rows": rows, "figures": figs}


GROWTH = (
    ("total", "test loss"),
    ("recog_draw", "recognizability of drawings"),
    ("fid_draw", "FID of drawings"),
)


def growth_series(
    rows: list[tuple[str, str, dict[str, Any]]], class_sets: dict[str, list[str]]
) -> dict[str, dict[str, list]]:
    """Figure 4's measures against the number of classes, per model, from the table's rows."""
    series: dict[str, dict[str, list]] = {title: {} for _, title in GROWTH}
    for set_name, model, row in rows:
        for key, title in GROWTH:
            if row[key] is not None:
                series[title].setdefault(model, []).append((len(class_sets[set_name]), row[key]))
    return series


def run_diversity(ctx: Context) -> dict[str, Any]:
    cache: dict[str, SketchDataset] = {}
    prepared = _prepare(ctx, "diversity", "QD5", cache)
    if prepared is None:
        raise SketchDataError("this scale has no QD5 set")
    classes, runs, classifier = prepared
    first, second = EXPERIMENTS["diversity"].configs
    n = ctx.scale.diversity_samples
    base = _evaluate(ctx, runs[second], classifier, n)
    other = evaluation_dir(ctx, runs[second], n) / REPORT_FILE
    main = _evaluate(ctx, runs[first], classifier, n, compare=other)
    per_class = {
        first: main["diversity"]["draw"]["per_class"],
        second: base["diversity"]["draw"]["per_class"],
        REFERENCE: base["diversity"]["real"]["per_class"],
    }
    figs = {
        "histogram": figures.distribution_figure(
            {
                first: main["diversity"]["draw"]["per_sketch"],
                second: base["diversity"]["draw"]["per_sketch"],
                "real test sketches": base["diversity"]["real"]["per_sketch"],
            },
            "mean pHash distance of a sketch to the others of its class",
            ctx.figure("diversity-histogram.png"),
        )
    }
    return {
        "classes": {"QD5": classes},
        "samples_per_class": n,
        "per_class": per_class,
        "ttest": main["diversity_ttest"],
        "rows": [
            ("QD5", first, _row(main)),
            ("QD5", second, _row(base)),
            ("QD5", REFERENCE, _reference_row(base)),
        ],
        "figures": figs,
    }


RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "ablation": run_ablation,
    "multiclass": run_multiclass,
    "diversity": run_diversity,
}


def repeat_rows(name: str, ctx: Context, seed: int) -> list[dict[str, Any]]:
    """The table rows of experiment `name` with every model trained and evaluated again at `seed`.

    No figures: the repeats only give the spread of the numbers."""
    scale = dataclasses.replace(ctx.scale, eval_figures=False)
    rep = dataclasses.replace(ctx, seed=seed, repeat=True, scale=scale)
    samples = scale.diversity_samples if name == "diversity" else scale.samples
    cache: dict[str, SketchDataset] = {}
    rows = []
    for set_name in EXPERIMENTS[name].repeat_sets:
        prepared = _prepare(rep, name, set_name, cache)
        if prepared is None:
            continue
        _, runs, classifier = prepared
        for config, run in runs.items():
            report = _evaluate(rep, run, classifier, samples)
            rows.append({"set": set_name, "model": config, "seed": seed, **_row(report)})
    return rows


def _with_repeats(
    name: str, ctx: Context, summary: dict[str, Any], seeds: Sequence[int]
) -> dict[str, Any]:
    """`summary` whose `seed_rows` (its own rows as the main seed's when it has none) hold the
    repeated sets only, with every seed of `seeds` trained and evaluated again."""
    first = [{**r, "seed": summary["seed"]} for r in summary["rows"] if r["model"] != REFERENCE]
    repeated = EXPERIMENTS[name].repeat_sets
    kept = [
        r
        for r in summary.get("seed_rows", first)
        if r["set"] in repeated and r["seed"] not in seeds
    ]
    summary = {**summary, "seed_rows": kept + [r for k in seeds for r in repeat_rows(name, ctx, k)]}
    if name == "diversity":  # the t-test again at every repeat seed, on its own drawings
        earlier = {int(k): t for k, t in summary.get("seed_ttests", {}).items()}
        summary["seed_ttests"] = {**earlier, **{k: repeat_ttest(ctx, k) for k in seeds}}
    return summary


def repeat_ttest(ctx: Context, seed: int) -> dict[str, Any]:
    """The diversity t-test between the two models trained and evaluated at `seed`."""
    rep = dataclasses.replace(ctx, seed=seed, repeat=True)
    n = ctx.scale.diversity_samples
    first, second = (
        evaluation_dir(rep, rep.run_dir("QD5", c), n) / REPORT_FILE
        for c in EXPERIMENTS["diversity"].configs
    )
    return json_ready(compare_diversity(json.loads(first.read_text()), second))


def run_experiment(
    name: str,
    ctx: Context,
    repeat_seeds: Sequence[int] = (),
    earlier: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, evaluate and draw one experiment; write `<name>.json` and rewrite `results.md`.

    With `repeat_seeds`, the models of the experiment's repeated sets are also trained and
    evaluated at those seeds, and the JSON holds every seed's rows (`seed_rows`) for the spread.
    With `earlier`, the summary of this experiment written before (same scale, seed and
    temperature), only the repeat seeds are trained: their rows join its spread."""
    if name not in RUNNERS:
        raise SketchDataError(f"unknown experiment '{name}'; choose from {', '.join(RUNNERS)}")
    if ctx.seed in repeat_seeds:
        raise SketchDataError(f"--repeat-seeds repeats --seed {ctx.seed}", str(ctx.out))
    ctx.out.mkdir(parents=True, exist_ok=True)
    if earlier is not None:
        made = (earlier["scale"], earlier["seed"], earlier["temperature"])
        scale = json.loads(json.dumps(dataclasses.asdict(ctx.scale)))  # as the JSON holds it
        if made != (scale, ctx.seed, ctx.temperature):
            raise SketchDataError(
                f"the earlier {name} results were made at another scale, seed or temperature "
                f"(seed {earlier['seed']}, temperature {earlier['temperature']}, "
                f"{earlier['scale']['steps']} steps of size {earlier['scale']['size']})",
                str(ctx.out),
            )
        summary = earlier
    else:
        result = RUNNERS[name](ctx)
        configs = EXPERIMENTS[name].configs
        summary = {
            "experiment": name,
            "data_sizes": {
                s: json.loads((ctx.run_dir(s, configs[0]) / "config.json").read_text())["data"][
                    "sizes"
                ]
                for s in result["classes"]
            },
            "scale": dataclasses.asdict(ctx.scale),
            "seed": ctx.seed,
            "temperature": ctx.temperature,
            **result,
            "rows": [{"set": s, "model": m, **r} for s, m, r in result["rows"]],
            # A list, not an object: write_json sorts keys, and the figures have an order.
            "figures": [
                [k, str(Path(v).relative_to(ctx.out))] for k, v in result["figures"].items()
            ],
        }
    if repeat_seeds:
        summary = _with_repeats(name, ctx, summary, repeat_seeds)
    write_json(ctx.out / f"{name}.json", summary)
    write_results(ctx.out)
    return summary


def doc_folder(doc: Path) -> Path:
    """Where a docs copy of the results keeps its figures and summaries: docs/results.md ->
    docs/results/."""
    return doc.with_suffix("")


def earlier_summary(name: str, out: Path, doc: Path | None) -> dict[str, Any]:
    """The summary of experiment `name` written before: in `out`, or else beside `doc`."""
    for folder in (out, *([doc_folder(doc)] if doc is not None else [])):
        path = folder / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    where = f"{out}" + (f" or {doc_folder(doc)}" if doc is not None else "")
    raise SketchDataError(f"no earlier {name}.json in {where} to add repeat seeds to", str(out))


# ----- results.md -----
def _ttest_text(t: dict[str, Any]) -> str:
    return (
        f"t = {_fmt(t['t'], 3)}, p = {_fmt(t['p'], 4)} (means {_fmt(t['mean_a'], 2)} vs "
        f"{_fmt(t['mean_b'], 2)}, n = {t['n_a']} and {t['n_b']})."
    )


def _section(summary: dict[str, Any], prefix: str) -> str:
    name = summary["experiment"]
    exp = EXPERIMENTS[name]
    scale = summary["scale"]
    present = [s for s in exp.class_sets if s in summary["classes"]]
    sets = "; ".join(f"{s}: {', '.join(summary['classes'][s])}" for s in present)
    lines = [
        f"## {exp.title}",
        "",
        f"Models: {', '.join(exp.configs)}. Classes: {sets}. Each model: {scale['steps']} steps of "
        f"batch {scale['batch_size']}, size `{scale['size']}`, seed {summary['seed']}; sampling "
        f"temperature {summary['temperature']}.",
        "",
    ]
    sizes = summary["data_sizes"]
    lines += [
        "Sketches per split (the paper had 70,000 training sketches per class): "
        + "; ".join(
            f"{s}: " + ", ".join(f"{k} {v}" for k, v in sorted(sizes[s].items())) for s in present
        )
        + ".",
        "",
    ]
    rows = [(r["set"], r["model"], r) for r in summary["rows"]]
    lines += [_metrics_table(rows), ""]
    if "seed_rows" in summary:
        seeds = sorted({r["seed"] for r in summary["seed_rows"]})
        lines += [
            f"Spread over training seeds {', '.join(map(str, seeds))} (every model trained and "
            f"evaluated again at each seed with the same budget; mean ± sample standard "
            f"deviation; the table above and the figures are seed {summary['seed']}):",
            "",
            spread_table(summary["seed_rows"]),
            "",
        ]
    if name == "diversity":
        t = summary["ttest"]
        per_class = summary["per_class"]
        classes = summary["classes"]["QD5"]
        models = [*exp.configs, REFERENCE]  # the JSON's keys come back sorted
        lines += [
            f"Mean pairwise pHash distance (of 64 bits) within each class, "
            f"{summary['samples_per_class']} sketches per class:",
            "",
            markdown_table(
                ["", *classes],
                [[m, *(_fmt(per_class[m].get(c), 2) for c in classes)] for m in models],
            ),
            "",
            f"Unpaired t-test ({exp.configs[0]} vs {exp.configs[1]}, one value per sketch): "
            f"{_ttest_text(t)}",
            "",
        ]
        lines += [
            f"At training seed {k}: {_ttest_text(r)}\n"
            for k, r in sorted(summary.get("seed_ttests", {}).items(), key=lambda x: int(x[0]))
        ]
    for key, path in summary["figures"]:
        lines += [f"![{name} {key}]({prefix}{path})", ""]
    return "\n".join(lines)


INTRO = """# Results

Written by `aisketcher experiment`. Columns: the paper's loss on the test split (no KL floor) and
its terms; top-1 accuracy of the project's sketch classifier on class-only drawings and on
reconstructions; FID on the classifier's features against real test sketches; precision and
recall (k = 3) of the drawings; mean pairwise pHash distance of the drawings; recognizability of
translations as their target class (each test sketch encoded under the next class), of test
sketches cut after half of their strokes and of their completions; the copy check of class-only
drawings (median distance to the nearest training sketch of the class over the same for real test
sketches, in 32x32 blurred rasters: 1 is as new as unseen real drawings) and their share of
near-copies (closer than 95% of real test sketches are); the leak check (test l_r with another
sketch's influence memory minus with its own: large when the memory has read its targets). The
row "real sketches" holds the references: the classifier's accuracy on real test sketches (the ceiling of
recognizability) and real validation against real test sketches (the floor of FID, and the
precision, recall and diversity of real data). Models are evaluated at their best validation
checkpoint. Every number, per class, is in each experiment's JSON file beside this one
(`results/<experiment>.json` in the docs).
"""


def write_results(out: Path, doc: Path | None = None) -> Path:
    """results.md in `out` from every `<experiment>.json` there; with `doc`, a copy for the docs.

    The copy's figures and summaries go to a folder named after it (docs/results.md ->
    docs/results/), and an experiment not run in `out` keeps the section its summary there gives,
    so experiments run at different times (or on different machines) add up in one document. A
    reading of the results written by a person, `reading.md` in that folder, ends the copy when it
    exists: the numbers stay generated, the words about them are kept apart.
    """
    fresh = {
        name: json.loads((out / f"{name}.json").read_text())
        for name in RUNNERS
        if (out / f"{name}.json").is_file()
    }
    path = out / "results.md"
    path.write_text(INTRO + "\n" + "\n".join(_section(s, "") for s in fresh.values()))
    if doc is None:
        return path
    folder = doc_folder(doc)
    folder.mkdir(parents=True, exist_ok=True)
    for name, summary in fresh.items():
        for _, rel in summary["figures"]:
            if (out / rel).is_file():  # else kept from an earlier run (repeat seeds only)
                shutil.copyfile(out / rel, folder / Path(rel).name)
        shutil.copyfile(out / f"{name}.json", folder / f"{name}.json")
    kept = [
        json.loads((folder / f"{name}.json").read_text())
        for name in RUNNERS
        if (folder / f"{name}.json").is_file()
    ]
    prefix = f"{folder.name}/"
    text = INTRO + "\n" + "\n".join(_section(s, prefix) for s in kept)
    text = text.replace(f"{prefix}figures/", prefix)
    reading = folder / "reading.md"
    if reading.is_file():
        text += "\n" + reading.read_text()
    doc.write_text(text)
    return doc
