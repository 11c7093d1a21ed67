"""`aisketcher heal`: a sketch with strokes missing redrawn whole."""

from __future__ import annotations

import argparse

from aisketcher.cli.arguments import positive_int, seed, unit_interval
from aisketcher.cli.draw import (
    common_options,
    input_options,
    load_sketcher,
    read_input,
    save_drawings,
)
from aisketcher.errors import SketchDataError


def cmd_heal(args: argparse.Namespace) -> int:
    from aisketcher.cli.models import local_model
    from aisketcher.model_info import input_classes, model_classes

    item = read_input(args)
    # Checked before the model loads; a refused model is the model's fault, not the input's.
    known = model_classes(local_model(args, "heal"))
    try:
        (cls,) = input_classes([item.label], [args.cls], known, "give --class")
    except SketchDataError as exc:
        raise SketchDataError(str(exc), args.input) from None
    shown = [item]
    if args.remove:
        import numpy as np

        from aisketcher.damage import damage
        from aisketcher.sketch import Sketch

        rng = np.random.default_rng(args.damage_seed)
        item.label = "whole"
        damaged, mask = damage(item.stroke3, args.remove, rng)
        if not mask.any():
            raise SketchDataError("--remove: the sketch has one stroke, none can go", args.input)
        item = Sketch(damaged, "damaged")
        shown.append(item)
    else:
        item.label = "input"
    sketcher = load_sketcher(args, one_sketch=False, classes=[str(cls)], encoder_for="heal")
    outputs = sketcher.heal(item, cls, args.count, temperature=args.temperature, seed=args.seed)
    save_drawings([*shown, *outputs], args, cols=len(outputs) + len(shown))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "heal",
        help="redraw a sketch with strokes missing, whole",
        description="The encoder reads the damaged sketch (z_s) and its raster (z_r), and the "
        "decoder draws the whole sketch, several ways: what a model trained with damage "
        "(`train --damage`, as the built-in model is) learnt to do; another model reconstructs "
        "the damaged sketch, and heals it less.",
        epilog="examples:\n  aisketcher heal --input damaged.svg --class cat --count 4 --out healed.svg\n"
        "  aisketcher heal --input ../shared/data/quickdraw/cat.npz --index 3 --remove 0.3 "
        "--out healed.png   # rub out 30%% of a test sketch's strokes first",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    input_options(p)
    p.add_argument(
        "--class",
        dest="cls",
        default=None,
        help="what the sketch is (default: the input's label, or the model's only class)",
    )
    p.add_argument("--count", type=positive_int, default=4, help="healed versions (default 4)")
    p.add_argument(
        "--remove",
        type=unit_interval,
        default=None,
        metavar="SHARE",
        help="damage the input first: remove this share of its strokes at random (at least one, "
        "never all; e.g. 0.3), to see healing on a whole sketch",
    )
    p.add_argument(
        "--damage-seed", type=seed, default=0, help="which strokes --remove takes (default 0)"
    )
    common_options(p, "healed.svg")
    p.set_defaults(func=cmd_heal)
