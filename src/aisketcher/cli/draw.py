"""`aisketcher draw|reconstruct|translate|complete|interpolate`: drawing with a model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from aisketcher.cli import arguments
from aisketcher.cli.arguments import (
    non_negative_int,
    output_file,
    picture_size,
    positive_int,
    seed,
    unit_interval,
)
from aisketcher.cli.models import MODEL_HELP, add_models_url, local_model
from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import SPLITS
from aisketcher.sketch import Sketch

if TYPE_CHECKING:
    from aisketcher.api import Sketcher


def load_sketcher(
    args: argparse.Namespace,
    *,
    one_sketch: bool,
    classes: list[str] | None = None,
    encoder_for: str | None = None,
) -> Sketcher:
    """The model, once the arguments that need no model are known to be good (`one_sketch`:
    whether the output file will hold a single sketch; `classes`: names to check against the
    model's own list, read from its files before torch loads; `encoder_for`: the mode, when it
    needs an encoder)."""
    from aisketcher.model_info import match_class, model_classes

    if Path(args.out).suffix.lower() == ".gif" and not one_sketch:
        raise SketchDataError(
            "a .gif animates one sketch and this writes several: write .svg or .png", args.out
        )
    known = model_classes(local_model(args, encoder_for))
    if known is not None:
        for name in classes or []:
            match_class(name, known)

    import torch

    from aisketcher.api import Sketcher
    from aisketcher.devices import resolve_device

    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)  # for encoding inputs; drawing runs on one (sampler.py)
    sketcher = Sketcher.load(args.model, device=str(device), models_url=args.models_url)
    if args.guidance is not None:
        sketcher.guidance = args.guidance
    if args.prior_spread is not None:
        sketcher.prior_spread = args.prior_spread
    if args.pen_temperature is not None:
        sketcher.pen_temperature = args.pen_temperature
    return sketcher


def save_drawings(
    sketches: list[Sketch],
    args: argparse.Namespace,
    cols: int | None = None,
    highlight_from: list[int | None] | None = None,
) -> None:
    from aisketcher.formats.writer import save_sketches

    out = Path(args.out)
    labels = (
        None if out.suffix.lower() in (".npz", ".ndjson") else [s.label or "" for s in sketches]
    )
    save_sketches(
        sketches,
        out,
        labels=labels,
        size=args.size,
        cols=cols,
        highlight_from=highlight_from,
        split=getattr(args, "npz_split", "test"),
    )
    print(f"{out}: {len(sketches)} sketch(es)")


def read_input(
    args: argparse.Namespace, path: str | None = None, index: int | None = None
) -> Sketch:
    from aisketcher.formats.reader import read_sketch

    return read_sketch(
        path or args.input, split=args.split, index=args.index if index is None else index
    )


def cmd_draw(args: argparse.Namespace) -> int:
    one = args.count == 1 and len(args.classes) == 1
    sketcher = load_sketcher(args, one_sketch=one, classes=args.classes)
    classes = args.classes or sketcher.class_names
    started = time.perf_counter()
    sketches = [
        s
        for i, cls in enumerate(classes)
        for s in sketcher.draw(
            cls,
            args.count,
            temperature=args.temperature,
            seed=None if args.seed is None else args.seed + i,
        )
    ]
    elapsed = time.perf_counter() - started
    points = sum(len(s) for s in sketches)
    print(f"drew {len(sketches)} sketch(es), {points} points, in {elapsed:.2f} s")
    save_drawings(sketches, args, cols=args.count if len(classes) > 1 else None)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from aisketcher.formats.reader import read_sketches
    from aisketcher.model_info import input_classes, model_classes

    found = read_sketches(args.input, split=args.split, limit=args.index + args.count)
    inputs = found[args.index :]
    if len(inputs) < args.count:
        where = f"split '{args.split}' of " if Path(args.input).suffix.lower() == ".npz" else ""
        held = f"{where}the file holds {len(found)} sketch(es)"
        raise SketchDataError(
            f"--index {args.index} is past the end: {held}"
            if not inputs
            else f"--count {args.count} from --index {args.index} goes past the end ({held}): "
            f"at most --count {len(inputs)}",
            args.input,
        )
    try:  # checked before the model loads
        classes = input_classes(
            [s.label for s in inputs],
            [args.cls] * len(inputs),
            model_classes(local_model(args, "reconstruct")),
            "give --class",
        )
    except SketchDataError as exc:
        raise SketchDataError(str(exc), args.input) from None
    sketcher = load_sketcher(
        args, one_sketch=False, classes=[str(c) for c in classes], encoder_for="reconstruct"
    )
    outputs = sketcher.reconstruct(inputs, args.cls, temperature=args.temperature, seed=args.seed)
    if Path(args.out).suffix.lower() in (".npz", ".ndjson"):
        save_drawings(outputs, args)
        return 0
    for s in inputs:
        s.label = f"input {s.label or ''}".strip()
    save_drawings([s for pair in zip(inputs, outputs, strict=True) for s in pair], args, cols=2)
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    item = read_input(args)
    item.label = "input"
    sketcher = load_sketcher(args, one_sketch=False, classes=args.classes, encoder_for="translate")
    from aisketcher.latents import TRANSLATE_PULL  # torch: only once the inputs are good

    classes = args.classes or None
    outputs = sketcher.translate(
        item,
        classes,
        temperature=args.temperature,
        seed=args.seed,
        keep_layout=args.keep_layout,
        class_pull=TRANSLATE_PULL if args.class_pull is None else args.class_pull,
    )
    save_drawings([item, *outputs], args, cols=len(outputs) + 1)
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    item = read_input(args)
    sketcher = load_sketcher(args, one_sketch=False, classes=[args.cls])
    start = sketcher.fit(item)  # simplified (with a warning) when longer than the model takes
    outputs = sketcher.complete(
        start, args.cls, args.count, temperature=args.temperature, seed=args.seed
    )
    item.label = "start"
    # The start in black, the model's endings in red from where the start ends, as the web app.
    given = [None] + [len(start)] * len(outputs)
    save_drawings([item, *outputs], args, cols=len(outputs) + 1, highlight_from=given)
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from aisketcher.model_info import input_classes, model_classes

    a = read_input(args, args.a, args.a_index)
    b = read_input(args, args.b, args.b_index)
    given = (args.classes[0], args.classes[-1]) if args.classes else (None, None)
    known = model_classes(local_model(args, "interpolate"))  # checked before the model loads
    checked = input_classes([a.label, b.label], given, known, "give --classes")
    sketcher = load_sketcher(
        args,
        one_sketch=args.steps == 1,
        classes=[str(c) for c in checked],
        encoder_for="interpolate",
    )
    classes = None if given == (None, None) else given
    outputs = sketcher.interpolate(
        a, b, args.steps, classes=classes, temperature=args.temperature, seed=args.seed
    )
    save_drawings(outputs, args, cols=len(outputs))
    return 0


def common_options(
    p: argparse.ArgumentParser, out_example: str, temperature: float | None = None
) -> None:
    """The options of every drawing command; `temperature`: its default, if not the model's."""
    p.add_argument("--model", default=None, help=MODEL_HELP)
    add_models_url(p)
    arguments.add_drawing_settings(p, temperature)
    p.add_argument("--seed", type=seed, default=None, help="seed for repeatable drawings")
    p.add_argument(
        "--out",
        default=out_example,
        type=output_file,
        help=f"output .svg/.png/.npz/.ndjson, or .gif (one sketch, animated; default {out_example})",
    )
    p.add_argument("--size", type=picture_size, default=None, help="pixels per sketch in pictures")
    p.add_argument("--device", default="cpu", type=arguments.device, help=arguments.DEVICE_HELP)
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="CPU threads for encoding input sketches (default 1); drawing itself always runs "
        "on one, the fastest",
    )


def input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input", required=True, help="a .npz, .ndjson, .svg or .json (list of strokes) file"
    )
    p.add_argument("--split", default="test", help="split of an .npz input (default test)")
    p.add_argument(
        "--index", type=non_negative_int, default=0, help="which sketch of the file (default 0)"
    )


def _classes(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "draw",
        help="draw sketches of a class from scratch",
        description="Class-only drawing: z_s and z_r are drawn from the class's priors (Gaussians "
        "fitted on the training sketches' codes; z_s from N(0, I) for a model without one); the "
        "influence layer attends to the points drawn so far, so no stored sketch is involved and "
        "every drawing is new.",
        epilog="examples:\n  aisketcher draw cat --count 20 --seed 7 --out cats.svg\n"
        "  aisketcher draw --count 5 --out grid.png            # every class, one row each\n"
        "  aisketcher draw bicycle --model ../shared/models/magenta-js/bicycle.gen.json --out b.svg\n"
        "  aisketcher draw owl --model google:owl --out owl.svg   # Google's, downloaded once",
        formatter_class=fmt,
    )
    p.add_argument("classes", nargs="*", help="class names (default: all the model's classes)")
    p.add_argument("--count", type=positive_int, default=1, help="sketches per class (default 1)")
    p.add_argument(
        "--split",
        dest="npz_split",
        choices=SPLITS,
        default="test",
        help="the split of an .npz output that holds the drawings, the other two written empty "
        "(default test, the split the input options read)",
    )
    common_options(p, "sketches.svg")
    p.set_defaults(func=cmd_draw)

    p = sub.add_parser(
        "reconstruct",
        help="encode sketches and decode them again",
        description="Encode each input sketch under its class (z_s = mu_s, z_r of its raster) "
        "and draw it anew from that encoding, point by point.",
        epilog="example:\n  aisketcher reconstruct --input ../shared/data/quickdraw/cat.npz --class cat "
        "--count 4 --out recon.svg",
        formatter_class=fmt,
    )
    input_options(p)
    p.add_argument(
        "--count", type=positive_int, default=1, help="consecutive sketches from --index"
    )
    p.add_argument("--class", dest="cls", default=None, help="class of the input sketches")
    common_options(p, "reconstruction.svg")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser(
        "translate",
        help="redraw one sketch as other classes (paper Figure 2)",
        description="Encode the input sketch under each target class (z_s with the target's "
        "class vector, pulled toward the target class's mean code by --class-pull; z_r, the "
        "raster's layout, from the target class's prior) and draw it anew.",
        epilog="example:\n  aisketcher translate --input ../shared/data/quickdraw/cat.npz --classes pig,face,apple "
        "--out translated.svg",
        formatter_class=fmt,
    )
    input_options(p)
    p.add_argument("--classes", type=_classes, default=None, help="target classes (default all)")
    p.add_argument(
        "--keep-layout",
        action="store_true",
        help="take z_r from the input's raster instead of the target class's prior: the drawing "
        "keeps more of the input's layout and is recognised as the target less often",
    )
    p.add_argument(
        "--class-pull",
        type=unit_interval,
        default=None,
        help="how far z_s moves from the input's code toward the target class's mean code: 0 is "
        "the paper's translation (the class vector alone; recognised as the target less often), "
        "at 1 z_s is the class's mean code and the input's forgotten; no effect on a model "
        "without a fitted z_s prior (default 0.5)",
    )
    common_options(p, "translation.svg")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser(
        "complete",
        help="finish a started drawing, several ways",
        description="Feed your strokes to the decoder and to the influence layer's memory, then let "
        "the model draw on from the class (z_s and z_r from the class's priors) until it "
        "decides to stop: each ending differs in what it adds and in length.",
        epilog="example:\n  aisketcher complete --input my_start.svg --class cat --count 4 --out endings.svg",
        formatter_class=fmt,
    )
    input_options(p)
    p.add_argument("--class", dest="cls", required=True, help="what the drawing should become")
    p.add_argument("--count", type=positive_int, default=4, help="alternative endings (default 4)")
    common_options(p, "completions.svg")
    p.set_defaults(func=cmd_complete)

    p = sub.add_parser(
        "interpolate",
        help="morph between two sketches through the latent space",
        description="Encode both sketches, then draw from points along the straight line between "
        "their latents (z_s, z_r and the class vector mixed linearly).",
        epilog="example:\n  aisketcher interpolate --a cat.json --b pig.json --classes cat,pig --steps 8 --out morph.svg",
        formatter_class=fmt,
    )
    p.add_argument("--a", required=True, help="first sketch file")
    p.add_argument("--b", required=True, help="second sketch file")
    p.add_argument(
        "--a-index", type=non_negative_int, default=0, help="which sketch of the a file (default 0)"
    )
    p.add_argument(
        "--b-index", type=non_negative_int, default=0, help="which sketch of the b file (default 0)"
    )
    p.add_argument("--split", default="test", help="split of .npz inputs")
    p.add_argument(
        "--classes", type=_classes, default=None, help="classes of a and b, e.g. cat,pig"
    )
    p.add_argument(
        "--steps", type=positive_int, default=8, help="sketches along the path (default 8)"
    )
    common_options(p, "interpolation.svg", temperature=0.1)  # the path shows best so
    p.set_defaults(func=cmd_interpolate)
