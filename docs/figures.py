"""Regenerate the README's pictures: real QuickDraw sketches and the built-in model's drawings, and
the two side by side (default-model.png: real test sketches on the left, the model's class-only
drawings at its default settings on the right, one row per class); healing.png: test sketches with
30% of their strokes removed as the evaluation removes them, healed three ways, and `complete` of
the same damaged sketch.

python docs/figures.py [--data ../shared/data] [--model RUN_OR_MODEL_DIR]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from aisketcher import Sketch
from aisketcher.api import Sketcher
from aisketcher.cli.train import DEFAULT_CLASSES
from aisketcher.damage import remove_strokes
from aisketcher.evaluate.healing import damage_masks
from aisketcher.formats.npz import read_npz
from aisketcher.render import grid_png

DOCS = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder with quickdraw/")
    parser.add_argument("--model", default=None, help="model to draw with (default built-in)")
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=None, help="default: the model's")
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
    real_grid = grid_png(real, row_labels=classes, cell=64)
    real_grid.save(DOCS / "real-sketches.png")

    sketcher = Sketcher.load(args.model)
    if args.temperature is not None:
        sketcher.temperature = args.temperature
    drawn = [sketcher.draw(c, args.per_class, seed=i) for i, c in enumerate(classes)]
    drawn_grid = grid_png(drawn, cell=64)
    titles = (
        "real QuickDraw test sketches",
        f"drawn by the model (temperature {sketcher.temperature:g}, guidance {sketcher.guidance:g})",
    )
    side_by_side(real_grid, drawn_grid, titles).save(DOCS / "default-model.png")
    healing_figure(sketcher, args.data, HEALED_CLASSES).save(DOCS / "healing.png")
    print(f"wrote {DOCS / 'real-sketches.png'}, {DOCS / 'default-model.png'} and healing.png")


HEALED_CLASSES = ("cat", "bicycle", "face", "umbrella", "airplane", "pig")
HEALED_SHARE = 0.3


def healing_figure(sketcher: Sketcher, data: str, classes: Sequence[str]) -> Image.Image:
    """A row per class: its first test sketch of several strokes, that sketch with 30% of its
    strokes removed by the evaluation's mask (seed 0), three healings and one completion."""
    rows, labels = [], []
    for i, name in enumerate(classes):
        test = read_npz(Path(data) / "quickdraw" / f"{name}.npz", ["test"])["test"]
        masks = damage_masks(list(test[:20]), HEALED_SHARE, seed=0)
        j = next(j for j, mask in enumerate(masks) if mask.sum() >= 2)
        whole = Sketch(test[j])
        damaged = Sketch(remove_strokes(test[j], masks[j]))
        healed = sketcher.heal(damaged, name, 3, seed=i)  # at the model's own temperature
        completed = sketcher.complete(damaged, name, 1, seed=i)
        rows += [whole, damaged, *healed, *completed]
        labels += [name, "30% removed", "healed", "healed", "healed", "complete"]
    return grid_png(rows, labels, cols=6, cell=96)


def side_by_side(left: Image.Image, right: Image.Image, titles: tuple[str, str]) -> Image.Image:
    """`left` and `right` next to each other under their titles, a gap between them."""
    gap, head = 24, 28
    out = Image.new("RGB", (left.width + gap + right.width, head + max(left.height, right.height)))
    out.paste((255, 255, 255), (0, 0, out.width, out.height))
    out.paste(left, (0, head))
    out.paste(right, (left.width + gap, head))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(14)
    draw.text(
        (left.width - right.width + 4, head // 2), titles[0], fill="black", font=font, anchor="lm"
    )
    draw.text((left.width + gap + 4, head // 2), titles[1], fill="black", font=font, anchor="lm")
    draw.line([(left.width + gap // 2, head), (left.width + gap // 2, out.height)], fill="gray")
    return out


if __name__ == "__main__":
    main()
