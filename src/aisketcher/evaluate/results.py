"""results.md: every experiment's section (its models, classes and budget, the table of
`columns.METRICS`, the spread over seeds, the diversity t-tests, the figures), after an
introduction that says what the columns are. A docs copy keeps the sections of experiments run
elsewhere and ends with a reading written by a person."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

from aisketcher.evaluate.columns import (
    REFERENCE,
    column_words,
    fmt,
    markdown_table,
    metrics_table,
    spread_table,
)
from aisketcher.evaluate.scales import EXPERIMENTS


def doc_folder(doc: Path) -> Path:
    """Where a docs copy of the results keeps its figures and summaries: docs/results.md ->
    docs/results/."""
    return doc.with_suffix("")


def _ttest_text(t: dict[str, Any]) -> str:
    return (
        f"t = {fmt(t['t'], 3)}, p = {fmt(t['p'], 4)} (means {fmt(t['mean_a'], 2)} vs "
        f"{fmt(t['mean_b'], 2)}, n = {t['n_a']} and {t['n_b']})."
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
    lines += [metrics_table(rows), ""]
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
                [[m, *(fmt(per_class[m].get(c), 2) for c in classes)] for m in models],
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


REFERENCES = (
    'The row "real sketches" holds the references: the classifier\'s accuracy on real test '
    "sketches (the ceiling of recognizability) and real validation against real test sketches "
    "(the floor of FID, and the precision, recall and diversity of real data)."
)


def intro() -> str:
    """results.md's opening: what the tables' columns and rows are (`columns.METRICS`)."""
    text = (
        f"Written by `aisketcher experiment`. Columns: {column_words()}. {REFERENCES} Models are "
        "evaluated at their best validation checkpoint. Every number, per class, is in each "
        "experiment's JSON file beside this one (`results/<experiment>.json` in the docs)."
    )
    return "# Results\n\n" + textwrap.fill(text, 99, break_on_hyphens=False) + "\n"


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
        for name in EXPERIMENTS
        if (out / f"{name}.json").is_file()
    }
    path = out / "results.md"
    path.write_text(intro() + "\n" + "\n".join(_section(s, "") for s in fresh.values()))
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
        for name in EXPERIMENTS
        if (folder / f"{name}.json").is_file()
    ]
    prefix = f"{folder.name}/"
    text = intro() + "\n" + "\n".join(_section(s, prefix) for s in kept)
    text = text.replace(f"{prefix}figures/", prefix)
    reading = folder / "reading.md"
    if reading.is_file():
        text += "\n" + reading.read_text()
    doc.write_text(text)
    return doc
