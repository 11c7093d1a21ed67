"""Regenerate the README's pictures: real QuickDraw sketches and the built-in model's drawings.

python docs/figures.py [--data ../shared/data] [--model RUN_OR_MODEL_DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aisketcher import Sketch
from aisketcher.api import Sketcher
from aisketcher.cli.train import DEFAULT_CLASSES
from aisketcher.formats.npz import read_npz
from aisketcher.render import grid_png

DOCS = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder with quickdraw/")
    parser.add_argument("--model", default=None, help="model to draw with (default built-in)")
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.4)
    args = parser.parse_args()
    classes = DEFAULT_CLASSES.split(",")

    real = [
        [
            Sketch(s)
            for s in read_npz(Path(args.data) / "quickdraw" / f"{c}.npz", ["test"])["test"][
                : args.per_class
            ]
        ]
        for c in classes
    ]
    grid_png(real, row_labels=classes, cell=64).save(DOCS / "real-sketches.png")

    sketcher = Sketcher.load(args.model)
    drawn = [
        sketcher.draw(c, args.per_class, seed=i, temperature=args.temperature)
        for i, c in enumerate(classes)
    ]
    grid_png(drawn, row_labels=classes, cell=64).save(DOCS / "default-model.png")
    print(f"wrote {DOCS / 'real-sketches.png'} and {DOCS / 'default-model.png'}")


if __name__ == "__main__":
    main()
