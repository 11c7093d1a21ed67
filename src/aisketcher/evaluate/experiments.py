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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aisketcher import modes
from aisketcher.api import Sketcher
from aisketcher.atomic import write_json
from aisketcher.data.dataset import SketchDataset
from aisketcher.errors import SketchDataError
from aisketcher.evaluate import columns, figures
from aisketcher.evaluate.classifier import SketchClassifier
from aisketcher.evaluate.columns import REFERENCE
from aisketcher.evaluate.modes import draw_class_only
from aisketcher.evaluate.report import REPORT_FILE, compare_diversity, json_ready
from aisketcher.evaluate.report_figures import latent_vectors
from aisketcher.evaluate.results import doc_folder, write_results
from aisketcher.evaluate.runs import (
    Context,
    eval_settings,
    evaluate_model,
    evaluation_dir,
    get_classifier,
    set_dataset,
    train_run,
)
from aisketcher.evaluate.scales import EXPERIMENTS
from aisketcher.evaluate.sets import load_sets


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
    dataset = set_dataset(ctx, classes, cache)
    runs = {c: train_run(ctx, set_name, c, dataset) for c in EXPERIMENTS[experiment].configs}
    return classes, runs, get_classifier(ctx, set_name, classes)


def run_ablation(ctx: Context) -> dict[str, Any]:
    cache: dict[str, SketchDataset] = {}
    prepared = _prepare(ctx, "ablation", "QD5", cache)
    if prepared is None:
        raise SketchDataError("this scale has no QD5 set")
    classes, runs, classifier = prepared
    reports = {c: evaluate_model(ctx, r, classifier, ctx.scale.samples) for c, r in runs.items()}
    sketchers = {c: Sketcher.load(r, device=ctx.device) for c, r in runs.items()}
    first = next(iter(sketchers.values()))
    _, sets = load_sets(first, classes, {}, eval_settings(ctx, ctx.scale.tsne_per_class))
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
            *(("QD5", c, columns.row(r)) for c, r in reports.items()),
            ("QD5", REFERENCE, columns.reference_row(next(iter(reports.values())))),
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
        reports = {
            c: evaluate_model(ctx, r, classifier, ctx.scale.samples) for c, r in runs.items()
        }
        rows += [(set_name, c, columns.row(report)) for c, report in reports.items()]
        rows.append((set_name, REFERENCE, columns.reference_row(next(iter(reports.values())))))
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
    base = evaluate_model(ctx, runs[second], classifier, n)
    other = evaluation_dir(ctx, runs[second], n) / REPORT_FILE
    main = evaluate_model(ctx, runs[first], classifier, n, compare=other)
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
            ("QD5", first, columns.row(main)),
            ("QD5", second, columns.row(base)),
            ("QD5", REFERENCE, columns.reference_row(base)),
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
            report = evaluate_model(rep, run, classifier, samples)
            rows.append({"set": set_name, "model": config, "seed": seed, **columns.row(report)})
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


def earlier_summary(name: str, out: Path, doc: Path | None) -> dict[str, Any]:
    """The summary of experiment `name` written before: in `out`, or else beside `doc`."""
    for folder in (out, *([doc_folder(doc)] if doc is not None else [])):
        path = folder / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    where = f"{out}" + (f" or {doc_folder(doc)}" if doc is not None else "")
    raise SketchDataError(f"no earlier {name}.json in {where} to add repeat seeds to", str(out))
