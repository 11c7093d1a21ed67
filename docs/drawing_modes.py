"""Check the drawing modes of a model as a user meets them, and print the figures as Markdown.

python docs/drawing_modes.py --classifier runs/clf-qd20 [--model DIR] [--report EVAL.json ...]

- draw: `Sketcher.draw(cat, count=100, seed=5)` (as `aisketcher draw cat --count 100 --seed 5`):
  distinct lengths and pen-lift patterns, against 100 real test cats.
- translate: the first 20 real test cats into pig, face, apple and fish, at the default class pull
  and at the paper's 0; the share the classifier recognises as the target class (and as a cat).
- complete: the first test sketch of each class cut after half of its strokes, finished 8 ways:
  points added per ending.
- each `--report` (an `aisketcher evaluate` evaluation.json): recognizability per mode and the copy
  check, one column per report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from aisketcher import Sketch
from aisketcher.api import Sketcher
from aisketcher.data.dataset import load_dataset
from aisketcher.data.paths import default_data_dir
from aisketcher.evaluate.classifier import SketchClassifier
from aisketcher.evaluate.modes import half_drawn
from aisketcher.latents import TRANSLATE_PULL

TARGETS = ("pig", "face", "apple", "fish")


def _patterns(sketches: list[np.ndarray]) -> tuple[int, int]:
    lengths = {len(s) for s in sketches}
    lifts = {tuple(np.asarray(s)[:, 2].astype(int)) for s in sketches}
    return len(lengths), len(lifts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model (default: the built-in one)")
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--data", default=None, help="data folder (default ../shared/data)")
    parser.add_argument("--report", action="append", default=[], help="evaluation.json files")
    args = parser.parse_args()
    sk = Sketcher.load(args.model)
    clf = SketchClassifier.load(args.classifier)
    data = load_dataset(sk.class_names, args.data or default_data_dir(), splits=("test",))
    test = data["test"]

    def pixels(s3: np.ndarray, label: str) -> Sketch:
        return Sketch(s3 * [data.scale_factor, data.scale_factor, 1], label)

    lines = ["| check | figure |", "|---|---|"]
    cats = [s.stroke3 for s in sk.draw("cat", count=100, seed=5)]
    real_cats = [test.sketches[i] for i in np.flatnonzero(test.labels == 0)[:100]]
    lengths, lifts = _patterns(cats)
    real_lengths, real_lifts = _patterns(real_cats)
    lines.append(
        f"| draw cat, 100 at seed 5: distinct lengths / pen-lift patterns | {lengths} / {lifts} "
        f"(100 real test cats: {real_lengths} / {real_lifts}) |"
    )
    inputs = [pixels(test.sketches[i], "cat") for i in np.flatnonzero(test.labels == 0)[:20]]
    for pull, name in ((TRANSLATE_PULL, "the default"), (0.0, "the paper's")):
        translated = [t for s in inputs for t in sk.translate(s, TARGETS, seed=7, class_pull=pull)]
        _, pred = clf.features_and_predictions(translated)
        hits = [clf.classes[p] == t.label for p, t in zip(pred, translated, strict=True)]
        as_cat = np.mean([clf.classes[p] == "cat" for p in pred])
        lines.append(
            f"| translate 20 test cats into {', '.join(TARGETS)} (class pull {pull:g}, {name}): "
            f"recognised as the target / as a cat | {np.mean(hits):.2f} / {as_cat:.2f} "
            f"({len(translated)} drawings) |"
        )
    added = []
    for k, name in enumerate(sk.class_names):
        start = half_drawn(test.sketches[int(np.flatnonzero(test.labels == k)[0])])
        endings = sk.complete(pixels(start, name), name, count=8, seed=k)
        added.append([len(e) - len(start) for e in endings])
    distinct = np.mean([len(set(a)) for a in added])
    lines.append(
        f"| complete the first half of one test sketch per class, 8 endings each: distinct "
        f"lengths per start (mean) / endings adding nothing | {distinct:.2f} / "
        f"{np.mean([x == 0 for a in added for x in a]):.2f} |"
    )
    print("\n".join(lines))
    if args.report:
        reports = [json.loads(Path(p).read_text()) for p in args.report]
        print()
        print("| from `aisketcher evaluate` | " + " | ".join(args.report) + " |")
        print("|---|" + "---|" * len(reports))
        rows = [
            ("recognizability: real test sketches (ceiling)", ("recognizability", "real")),
            ("recognizability: class-only drawings", ("recognizability", "draw")),
            ("recognizability: half-drawn starts", ("recognizability", "complete_start")),
            ("recognizability: their completions", ("recognizability", "complete")),
            ("recognizability: translations, as the target", ("recognizability", "translate")),
            ("copy check, draw: nearest-training distance / real's", ("copy_check", "draw")),
            ("copy check, complete", ("copy_check", "complete")),
        ]
        for title, (group, key) in rows:
            cells = []
            for r in reports:
                value = r.get(group, {}).get(key)
                if value is None:
                    cells.append("n/a")
                elif group == "copy_check":
                    cells.append(
                        f"{value['ratio']:.2f} (near-copies {value['near_copy_share']:.2f})"
                    )
                else:
                    cells.append(f"{value['all']:.3f}")
            print(f"| {title} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
