"""`aisketcher data ...`: download, inspect, convert and render sketch files."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from aisketcher.cli.arguments import non_negative_int, picture_size, positive_int, seed
from aisketcher.data.download import DEFAULT_BASE_URL, FORMATS, download_classes
from aisketcher.data.stats import SplitStats, normalizing_scale_factor, split_stats
from aisketcher.errors import SketchDataError
from aisketcher.formats.ndjson import Drawing, NdjsonReader
from aisketcher.formats.npz import SPLITS, read_npz, read_npz_labels, write_npz
from aisketcher.formats.reader import read_sketches
from aisketcher.formats.writer import save_sketches
from aisketcher.strokes import MAX_OFFSET

_RAW = argparse.RawDescriptionHelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data",
        help="download, inspect, convert and render sketch data",
        description="Download, inspect, convert and render sketch data files.",
        epilog="examples:\n"
        "  aisketcher data download cat --format sketchrnn --dest data/quickdraw\n"
        "  aisketcher data inspect data/quickdraw/cat.npz\n"
        "run 'aisketcher data ACTION --help' for each action's options",
        formatter_class=_RAW,
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    _register_download(actions)
    _register_inspect(actions)
    _register_convert(actions)
    _register_render(actions)
    _register_pack(actions)


def _register_download(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "download",
        help="download official Quick, Draw! files, one per class",
        description="Download official Quick, Draw! files, one per class, from Google's bucket.\n"
        "An interrupted download resumes where it stopped; complete files are skipped.\n"
        "Formats: sketchrnn (stroke-3 .npz, 70000/2500/2500 sketches), simplified and raw\n"
        "(.ndjson, every drawing of the class: often hundreds of MB per file).",
        epilog="example:\n"
        "  aisketcher data download cat 'paint can' --format sketchrnn --dest data/quickdraw\n"
        "class names are as in Quick, Draw! ('paint can' or paint_can)",
        formatter_class=_RAW,
    )
    p.add_argument("classes", nargs="+", metavar="CLASS", help="Quick, Draw! class names")
    p.add_argument(
        "--format", choices=list(FORMATS), default="sketchrnn", help="default: %(default)s"
    )
    p.add_argument("--dest", type=Path, required=True, metavar="DIR", help="folder to write into")
    p.add_argument("--base-url", default=DEFAULT_BASE_URL, help="default: %(default)s")
    p.add_argument(
        "--retries", type=non_negative_int, default=3, help="attempts after a network error"
    )
    p.set_defaults(func=_download)


def _download(args: argparse.Namespace) -> int:
    paths = download_classes(
        args.classes, args.format, args.dest, base_url=args.base_url, retries=args.retries
    )
    for path in paths:
        print(path)
    return 0


def _register_inspect(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "inspect",
        help="counts and statistics of a sketch file (.npz, .ndjson, .svg or .json)",
        description="Print per-split sketch counts, points per sketch and strokes per sketch\n"
        "(min, mean, median, 95th percentile, max), and Sketch-RNN's scale factor: the std of\n"
        f"all dx, dy offsets of the training split (all drawings of an .ndjson) clamped to "
        f"+-{MAX_OFFSET:g}.",
        epilog="example:\n  aisketcher data inspect ../shared/data/quickdraw/cat.npz",
        formatter_class=_RAW,
    )
    p.add_argument(
        "file",
        type=Path,
        metavar="FILE",
        help="a sketch-rnn .npz, an .ndjson, or a drawing the drawing commands take (.svg, .json)",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip unusable .ndjson lines")
    p.set_defaults(func=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    path: Path = args.file
    if path.suffix.lower() == ".ndjson":
        drawings, skipped = _read_ndjson(path, skip_bad=args.skip_bad)
        recognized = sum(d.recognized is True for d in drawings)
        words = sorted({d.word for d in drawings})
        print(
            f"{path}: Quick, Draw! .ndjson, {len(drawings)} drawings ({recognized} recognized), "
            f"word(s): {', '.join(words) or '-'}"
        )
        if skipped:
            print(f"skipped {skipped} bad line(s)")
        scale_of = [d.to_sketch().stroke3 for d in drawings]
        rows = {"all": split_stats(scale_of)}
        source = "all drawings"
    elif path.suffix.lower() == ".npz":
        splits = read_npz(path, None)  # every split the file has (drawings are saved as test)
        recorded = {name: read_npz_labels(path, name) for name in splits}
        classes = sorted({c for labels in recorded.values() for c in labels or []})
        named = f", classes: {', '.join(classes)}" if classes else ""
        print(f"{path}: sketch-rnn .npz, {sum(len(v) for v in splits.values())} sketches{named}")
        rows = {name: split_stats(sketches) for name, sketches in splits.items()}
        rows["all"] = split_stats([s for sketches in splits.values() for s in sketches])
        if splits.get("train"):
            scale_of, source = splits["train"], "the training split"
        else:
            scale_of, source = [s for v in splits.values() for s in v], "all its sketches"
    else:  # the one-drawing inputs the drawing commands take (.svg, .json strokes)
        scale_of = [s.stroke3 for s in read_sketches(path)]
        print(f"{path}: {path.suffix.lower()[1:]} drawing, {len(scale_of)} sketch(es)")
        rows = {"all": split_stats(scale_of)}
        source = "its points"
    _print_stats_table(rows)
    if not scale_of:  # an empty file: nothing to take a standard deviation of
        print("scale factor: none (no sketches)")
        return 0
    scale = normalizing_scale_factor(scale_of)
    print(f"scale factor: {scale:.4f} (std of dx, dy of {source}, clamped to +-{MAX_OFFSET:g})")
    return 0


def _print_stats_table(rows: dict[str, SplitStats]) -> None:
    head = "".join(f"{h:>7}" for h in ("min", "mean", "median", "95%", "max"))
    print(f"{'split':<6}{'sketches':>9}  points:{head}  strokes:{head}")
    for name, st in rows.items():
        cells = [
            "".join(_number(getattr(v, f)) for f in ("min", "mean", "median", "p95", "max"))
            for v in (st.length, st.strokes)
        ]
        print(f"{name:<6}{st.count:>9}         {cells[0]}          {cells[1]}")


def _number(value: float) -> str:
    """Seven characters, one decimal unless it rounds to a whole number; "-" for an empty split."""
    if math.isnan(value):
        return f"{'-':>7}"
    value = round(value, 1)
    return f"{value:>7g}" if value.is_integer() else f"{value:>7.1f}"


def _register_convert(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "convert",
        help="convert Quick, Draw! .ndjson files to a sketch-rnn .npz",
        description="Convert Quick, Draw! .ndjson drawings (simplified or raw) to stroke-3 and\n"
        "write them as a sketch-rnn .npz with train/valid/test splits. Each input file is\n"
        "shuffled and split on its own, so every class keeps the split fractions.",
        epilog="example:\n"
        "  aisketcher data convert 'paint can.ndjson' cat.ndjson --out two.npz --split 0.8,0.1,0.1",
        formatter_class=_RAW,
    )
    p.add_argument(
        "inputs", nargs="+", type=Path, metavar="IN.ndjson", help="Quick, Draw! .ndjson files"
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="OUT.npz", help="the sketch-rnn file to write"
    )
    p.add_argument("--split", default="0.8,0.1,0.1", help="train,valid,test fractions")
    p.add_argument("--split-seed", type=seed, default=0, help="shuffle seed (default: 0)")
    p.add_argument("--skip-bad", action="store_true", help="skip unusable lines instead of failing")
    p.set_defaults(func=_convert)


def split_fractions(text: str) -> tuple[float, float, float]:
    """Parse `train,valid,test` fractions: three non-negative numbers summing to 1."""
    try:
        train, valid, test = (float(v) for v in text.split(","))
    except ValueError:
        train = valid = test = -1.0
    # Written so that NaN fails too.
    if not (min(train, valid, test) >= 0 and abs(train + valid + test - 1) <= 1e-6):
        raise SketchDataError(f"--split wants three fractions summing to 1, got {text!r}")
    return train, valid, test


def split_sketches(
    sketches: Sequence[np.ndarray], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[np.ndarray]]:
    """Shuffle with `seed`, then cut train/valid/test; valid and test get rounded shares."""
    order = np.random.default_rng(seed).permutation(len(sketches))
    n_valid = round(len(sketches) * fractions[1])
    n_test = round(len(sketches) * fractions[2])
    n_train = len(sketches) - n_valid - n_test
    cuts = {"train": order[:n_train], "valid": order[n_train : n_train + n_valid]}
    cuts["test"] = order[n_train + n_valid :]
    return {name: [sketches[i] for i in idx] for name, idx in cuts.items()}


def _convert(args: argparse.Namespace) -> int:
    fractions = split_fractions(args.split)
    if args.out.suffix.lower() != ".npz":
        raise SketchDataError("the output of convert must be a .npz file", str(args.out))
    merged: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for path in args.inputs:
        drawings, skipped = _read_ndjson(path, skip_bad=args.skip_bad)
        if skipped:
            print(f"{path}: skipped {skipped} bad line(s)")
        if not drawings:
            raise SketchDataError("no drawings to convert", str(path))
        sketches = [d.to_sketch().stroke3 for d in drawings]
        for name, part in split_sketches(sketches, fractions, args.split_seed).items():
            merged[name].extend(part)
    try:
        write_npz(args.out, merged)
    except OSError as exc:  # a full disk: the file already there, if any, is as it was
        raise SketchDataError(f"cannot write: {exc.strerror or exc}", str(args.out)) from None
    counts = " / ".join(str(len(merged[name])) for name in SPLITS)
    print(f"{args.out}: {counts} sketches (train / valid / test)")
    return 0


def _register_render(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "render",
        help="draw sketches from a .npz or .ndjson file as SVG, PNG or an animated GIF",
        description="Draw one sketch (--index) or the first N x N sketches as a captioned grid\n"
        "(--grid N) of a sketch-rnn .npz split or an .ndjson file. The output's extension picks\n"
        "the format: .svg, .png, or .gif (one sketch, drawn stroke by stroke).",
        epilog="examples:\n"
        "  aisketcher data render ../shared/data/quickdraw/cat.npz --index 3 --out cat.gif\n"
        "  aisketcher data render ../shared/data/quickdraw/cat.npz --grid 4 --out cats.png",
        formatter_class=_RAW,
    )
    p.add_argument("file", type=Path, metavar="FILE", help="a sketch-rnn .npz or an .ndjson file")
    p.add_argument("--split", choices=SPLITS, default="test", help=".npz split (default: test)")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--index", type=non_negative_int, default=0, help="the sketch to draw (default: 0)"
    )
    which.add_argument(
        "--grid", type=positive_int, metavar="N", help="draw the first N x N sketches"
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="OUT.(svg|png|gif)",
        help="the picture to write; its extension picks the format",
    )
    p.add_argument(
        "--size", type=picture_size, metavar="PX", help="picture or grid cell size (256 / 128)"
    )
    p.set_defaults(func=_render)


def _render(args: argparse.Namespace) -> int:
    path: Path = args.file
    if args.grid is not None and args.grid < 1:
        raise SketchDataError(f"--grid must be at least 1, got {args.grid}")
    if args.size is not None and args.size < 8:
        raise SketchDataError(f"--size must be at least 8 pixels, got {args.size}")
    if args.grid is None and args.index < 0:
        raise SketchDataError(f"--index must be >= 0, got {args.index}")
    wanted = args.grid**2 if args.grid is not None else args.index + 1
    where = str(path) if path.suffix.lower() != ".npz" else f"{path} split {args.split!r}"
    sketches = read_sketches(path, split=args.split, limit=wanted)
    if args.grid is None:
        if args.index >= len(sketches):
            raise SketchDataError(
                f"--index {args.index} is out of range: {where} has {len(sketches)} sketches"
            )
        save_sketches(sketches[args.index], args.out, size=args.size)
    else:
        labels = [f"#{i}" for i in range(len(sketches))]
        save_sketches(sketches, args.out, labels=labels, size=args.size)
    print(f"{args.out}: {1 if args.grid is None else len(sketches)} sketch(es) from {where}")
    return 0


def _read_ndjson(path: Path, *, skip_bad: bool = False) -> tuple[list[Drawing], int]:
    """The drawings of an .ndjson file (raw ones simplified) and how many bad lines were skipped."""
    reader = NdjsonReader(path, skip_bad=skip_bad)
    drawings = tqdm(reader, desc=path.name, unit=" drawings", disable=None, leave=False)
    return list(drawings), reader.skipped


def _register_pack(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "pack",
        help="pack sketch-rnn class files into the sketch store (training does it on first use)",
        description="Pack sketch-rnn .npz class files into the sketch store: memory-mapped arrays\n"
        "that training, evaluation and the experiments read without loading the files, so that\n"
        "memory and start-up do not grow with the data. Training packs what it needs on first\n"
        "use; this does it ahead (e.g. on a machine with more memory, or for all 345 classes).\n"
        "A class already packed from the same file is checked and kept; a pack whose file\n"
        "changed, or that is damaged, is packed again. An interrupted run resumes at the first\n"
        "class not yet packed.",
        epilog="examples:\n"
        "  aisketcher data pack cat bicycle --data data/quickdraw\n"
        "  aisketcher data pack all --data data/quickdraw --store /fast/disk/sketches",
        formatter_class=_RAW,
    )
    p.add_argument(
        "classes", nargs="+", metavar="CLASS", help="class names or .npz files; 'all': every file"
    )
    p.add_argument("--data", type=Path, default=None, help="data folder (default: as train)")
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        help="store folder (default $AISKETCHER_STORE, or ~/.cache/aisketcher/sketches)",
    )
    p.set_defaults(func=_pack)


def _pack(args: argparse.Namespace) -> int:
    import time

    from aisketcher.data.dataset import class_folder, resolve_class_file
    from aisketcher.data.paths import default_data_dir
    from aisketcher.data.store import default_store_dir, open_class, pack_size

    root = args.data if args.data is not None else default_data_dir()
    if args.classes == ["all"]:
        folder = class_folder(root)
        paths = sorted(folder.glob("*.npz"))
        if not paths:
            raise SketchDataError("no .npz class files", str(folder))
    else:
        paths = [resolve_class_file(name, root)[1] for name in args.classes]
    store = args.store if args.store is not None else default_store_dir()
    started = time.perf_counter()
    sketches = size = 0
    for path in tqdm(paths, desc="packing", unit=" classes", disable=None):
        splits = open_class(path, None, store)
        sketches += sum(len(s) for s in splits.values())
        size += pack_size(path, store)
    print(
        f"{store}: {len(paths)} class(es), {sketches} sketches, {size / 2**20:.1f} MiB, "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0
