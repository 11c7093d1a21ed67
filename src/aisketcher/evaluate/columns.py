"""The experiments' metrics, one registry: what each row of an experiment's JSON holds, the
columns of results.md's tables (the numbers and their spread over seeds), and the words that
describe them in its introduction.

A metric here is a pooled number of one evaluation (`evaluation.json`, written by
`report.evaluate_run`). To add one: compute it into the report, then one `Metric` in `METRICS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Report = dict[str, Any]
REFERENCE = "real sketches"  # the row of references: the classifier's ceiling, the floors


@dataclass(frozen=True)
class Metric:
    key: str  # its name in the experiment's JSON rows
    value: Callable[[Report], float | None]  # from one model's evaluation
    title: str | None = None  # its column in results.md's table; None: in the JSON rows only
    digits: int = 3  # decimals in the tables
    # Its value in the REFERENCE row, from the same evaluation (real sketches); None: blank.
    reference: Callable[[Report], float | None] | None = None
    spread: bool = False  # also in the table of the spread over training seeds
    # Its words in the introduction's list of columns; "": said with the metric before it.
    describes: str = ""


def _like(term: str) -> Callable[[Report], float]:
    return lambda r: r["likelihood"]["all"][term]


def _optional(kind: str, mode: str, field: str = "all") -> Callable[[Report], float | None]:
    """A number a model may lack (no encoder: no reconstructions, translations, leak check)."""
    return lambda r: (r.get(kind) or {}).get(mode, {}).get(field)


METRICS: tuple[Metric, ...] = (
    Metric(
        "total",
        _like("total"),
        "test loss",
        spread=True,
        describes="the paper's loss on the test split (no KL floor) and its terms",
    ),
    Metric("l_r", _like("l_r"), "l_r", spread=True),
    Metric("l_kl", _like("l_kl"), "l_kl"),
    Metric(
        "recog_draw",
        lambda r: r["recognizability"]["draw"]["all"],
        "recog. draw",
        reference=lambda r: r["recognizability"]["real"]["all"],
        spread=True,
        describes="top-1 accuracy of the project's sketch classifier on class-only drawings and "
        "on reconstructions",
    ),
    Metric("recog_recon", _optional("recognizability", "reconstruct"), "recog. recon", spread=True),
    Metric("recog_real", lambda r: r["recognizability"]["real"]["all"]),
    Metric(
        "fid_draw",
        lambda r: r["fid"]["draw"]["all"],
        "FID draw",
        2,
        reference=lambda r: r["fid"]["floor"]["all"],
        spread=True,
        describes="FID on the classifier's features against real test sketches",
    ),
    Metric("fid_recon", _optional("fid", "reconstruct"), "FID recon", 2),
    Metric("fid_floor", lambda r: r["fid"]["floor"]["all"]),
    # Drawings that ran to N_max without ending (an earlier report lacks it).
    Metric("draw_at_max", lambda r: (r.get("lengths") or {}).get("draw_at_max_share")),
    Metric(
        "precision",
        lambda r: r["precision_recall"]["draw"]["all"]["precision"],
        "precision",
        reference=lambda r: r["precision_recall"]["floor"]["all"]["precision"],
        spread=True,
        describes="precision and recall (k = 3) of the drawings",
    ),
    Metric(
        "recall",
        lambda r: r["precision_recall"]["draw"]["all"]["recall"],
        "recall",
        reference=lambda r: r["precision_recall"]["floor"]["all"]["recall"],
        spread=True,
    ),
    Metric(
        "diversity",
        lambda r: r["diversity"]["draw"]["mean_of_classes"],
        "pHash div.",
        2,
        reference=lambda r: r["diversity"]["real"]["mean_of_classes"],
        spread=True,
        describes="mean pairwise pHash distance of the drawings",
    ),
    Metric(
        "recog_translate",
        _optional("recognizability", "translate"),
        "recog. translate",
        spread=True,
        describes="recognizability of translations as their target class (each test sketch "
        "encoded under the next class), of test sketches cut after half of their strokes and of "
        "their completions",
    ),
    Metric("recog_start", _optional("recognizability", "complete_start"), "recog. half start"),
    Metric(
        "recog_complete", _optional("recognizability", "complete"), "recog. completed", spread=True
    ),
    Metric(
        "copy_draw",
        _optional("copy_check", "draw", "ratio"),
        "copy ratio",
        2,
        reference=lambda r: 1.0,  # real test sketches against themselves
        spread=True,
        describes="the copy check of class-only drawings (median distance to the nearest "
        "training sketch of the class over the same for real test sketches, in 32x32 blurred "
        "rasters: 1 is as new as unseen real drawings) and their share of near-copies (closer "
        "than 95% of real test sketches are)",
    ),
    Metric(
        "near_copies",
        _optional("copy_check", "draw", "near_copy_share"),
        "near-copies",
        2,
        reference=_optional("copy_check", "draw", "real_near_copy_share"),
    ),
    Metric(
        "leak_gap",
        lambda r: (r.get("leak_check") or {}).get("gap_l_r"),
        "leak gap",
        spread=True,
        describes="the leak check (test l_r with another sketch's influence memory minus with "
        "its own: large when the memory has read its targets)",
    ),
    Metric("steps", lambda r: r["model"]["step"]),
)

SPREAD_COLUMNS = tuple(m.key for m in METRICS if m.spread)


def row(report: Report) -> dict[str, Any]:
    """The pooled numbers of one evaluation: an experiment's row of one model."""
    return {m.key: m.value(report) for m in METRICS}


def reference_row(report: Report) -> dict[str, Any]:
    """Real validation vs real test sketches: the classifier's ceiling and the metrics' floors."""
    return {m.key: None if m.reference is None else m.reference(report) for m in METRICS}


def column_words() -> str:
    """What the table's columns are, for results.md's introduction."""
    return "; ".join(m.describes for m in METRICS if m.describes)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int) -> str | None:
    """A number to `digits` decimals; None (a blank cell) for a missing or non-finite one."""
    return None if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def metrics_table(rows: list[tuple[str, str, dict[str, Any]]]) -> str:
    """One row per (set, model, row) with every metric that has a column."""
    shown = [m for m in METRICS if m.title is not None]
    headers = ["set", "model", *(m.title for m in shown)]
    body = [[s, m, *(fmt(r[c.key], c.digits) for c in shown)] for s, m, r in rows]
    return markdown_table(headers, body)


def _spread(values: list[float], digits: int) -> str | None:
    """Mean ± sample standard deviation of one number over seeds."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan
    return f"{np.mean(finite):.{digits}f} ± {sd:.{digits}f}"


def spread_table(seed_rows: list[dict[str, Any]]) -> str:
    """One row per set and model: every seed's value of each spread column, as mean ± sd."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in seed_rows:
        groups.setdefault((r["set"], r["model"]), []).append(r)
    spread = [m for m in METRICS if m.spread]
    body = [
        [s, m, len(rows), *(_spread([r[c.key] for r in rows], c.digits) for c in spread)]
        for (s, m), rows in groups.items()
    ]
    return markdown_table(["set", "model", "seeds", *(c.title for c in spread)], body)
