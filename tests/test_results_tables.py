"""The experiments' rows and tables are made as before from the same evaluations (issue 28: one
registry of metrics in place of `_row`, `_reference_row`, `COLUMNS` and `SPREAD_COLUMNS`): a fixed
small report and fixed summaries, the rows' JSON and results.md's sections as sha256 digests
recorded from the code before the change. Only the introduction's wording may move (it is made
from the registry's descriptions now); every column is described there."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from aisketcher.evaluate.columns import REFERENCE, reference_row, row
from aisketcher.evaluate.results import write_results
from aisketcher.evaluate.scales import EXPERIMENTS

ROWS_DIGEST = "b3f71cdad43b8f7f"
SECTIONS_DIGEST = "5ce163ebf4c3606f"


def report(shift: float = 0.0, *, encoder: bool = True) -> dict[str, Any]:
    """An evaluation.json's pooled numbers, as `evaluate_run` writes them."""
    per = {"all": 0.5 + shift, "cat": 0.4}
    rec = {"real": {"all": 0.9}, "draw": per, "complete_start": {"all": 0.3}, "complete": per}
    fid = {"draw": {"all": 6.123 + shift}, "floor": {"all": 1.25}}
    pr = {k: {"all": {"precision": 0.81 + shift, "recall": 0.7}} for k in ("draw", "floor")}
    out = {
        "model": {"step": 1000},
        "likelihood": {"all": {"total": 0.6 + shift, "l_r": 0.35, "l_kl": 0.25}},
        "recognizability": rec,
        "fid": fid,
        "precision_recall": pr,
        "diversity": {
            "draw": {"mean_of_classes": 29.9 + shift},
            "real": {"mean_of_classes": 30.25},
        },
        "copy_check": {
            "draw": {"ratio": 1.07, "near_copy_share": 0.02, "real_near_copy_share": 0.05}
        },
        "leak_check": {"gap_l_r": 0.0021} if encoder else None,
    }
    if encoder:
        rec["reconstruct"] = {"all": 0.58}
        rec["translate"] = {"all": 0.44 + shift}
        fid["reconstruct"] = {"all": float("nan")}
    return out


def summaries() -> dict[str, dict[str, Any]]:
    scale = {"steps": 1000, "batch_size": 100, "size": "small"}
    base = {"scale": scale, "seed": 0, "temperature": 0.4, "figures": [["tsne", "figures/t.png"]]}
    out = {}
    for k, (name, exp) in enumerate(EXPERIMENTS.items()):
        sets = exp.class_sets[:2]
        rows = [
            {"set": s, "model": c, **row(report(0.01 * i + k, encoder=i != 1))}
            for s in sets
            for i, c in enumerate(exp.configs)
        ]
        rows.append({"set": sets[0], "model": REFERENCE, **reference_row(report(k))})
        seed_rows = [{**r, "seed": seed} for seed in (0, 1, 2) for r in rows[:-1]]
        for r in seed_rows[len(rows) - 1 :]:
            r["total"] += 0.001 * r["seed"]
        out[name] = {
            **copy.deepcopy(base),
            "experiment": name,
            "classes": {s: ["cat", "pig"] for s in sets},
            "data_sizes": {s: {"test": 10, "train": 80, "valid": 9} for s in sets},
            "rows": rows,
            "seed_rows": seed_rows,
        }
    ttest = {"t": -1.99, "p": 0.047, "mean_a": 29.9, "mean_b": 30.08, "n_a": 250, "n_b": 250}
    div = out["diversity"]
    div |= {"samples_per_class": 50, "ttest": ttest, "seed_ttests": {"1": ttest}}
    div["per_class"] = {
        m: {"cat": 30.0, "pig": 29.5} for m in (*EXPERIMENTS["diversity"].configs, REFERENCE)
    }
    return out


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def written(tmp_path: Path) -> str:
    for name, summary in summaries().items():
        (tmp_path / f"{name}.json").write_text(json.dumps(summary))
    return write_results(tmp_path).read_text()


def test_the_rows_are_made_as_before() -> None:
    rows = [r for s in summaries().values() for r in s["rows"]]
    assert digest(json.dumps(rows, sort_keys=True)) == ROWS_DIGEST


def test_the_tables_are_written_as_before(tmp_path: Path) -> None:
    text = written(tmp_path)
    assert digest(text[text.index("\n## ") :]) == SECTIONS_DIGEST


if __name__ == "__main__":
    import tempfile

    rows = [r for s in summaries().values() for r in s["rows"]]
    print(f'ROWS_DIGEST = "{digest(json.dumps(rows, sort_keys=True))}"')
    with tempfile.TemporaryDirectory() as tmp:
        text = written(Path(tmp))
    print(f'SECTIONS_DIGEST = "{digest(text[text.index(chr(10) + "## ") :])}"')
