"""Raster throughput on one core: NumPy batches vs Pillow per sketch, and the raster cache.

python benchmarks/raster.py [--data ../shared/data] [--classes cat,airplane | all] [--split train]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from aisketcher.formats.npz import read_npz
from aisketcher.raster import LINE_WIDTH, MARGIN, rasterize, rasterize_many
from aisketcher.strokes import stroke3_to_strokes

DEFAULT_CLASSES = "cat,airplane,bicycle,camera,dragon,eye,guitar,map"


def pillow_rasterize(stroke3: np.ndarray, size: int = 128) -> np.ndarray:
    """The alternative measured: the same geometry, lines drawn by Pillow on a mode "1" image."""
    strokes = stroke3_to_strokes(stroke3)
    points = np.concatenate(strokes)
    lo, hi = points.min(axis=0), points.max(axis=0)
    extent = (hi - lo).max()
    room = size - 1 - 2 * MARGIN - (LINE_WIDTH - 1)
    scale = room / extent if extent > 0 else 0.0
    shift = (size - 1) / 2 - (lo + hi) / 2 * scale
    image = Image.new("1", (size, size))
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        xy = np.rint(stroke * scale + shift).astype(int).ravel().tolist()
        if len(xy) == 2:
            draw.point(xy, fill=1)
        else:
            draw.line(xy, fill=1, width=LINE_WIDTH)
    return np.asarray(image, dtype=np.uint8)


def rate(label: str, count: int, fn: Callable[[], object], repeat: int = 3) -> float:
    best = min(_timed(fn) for _ in range(repeat))
    per_s = count / best
    print(f"{label:<46} {per_s:>12,.0f} sketches/s  ({best * 1e3:8.1f} ms for {count:,})")
    return per_s


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--classes", default=DEFAULT_CLASSES, help="comma-separated, or 'all'")
    parser.add_argument("--split", default="train", choices=("train", "valid", "test"))
    parser.add_argument("--batch", type=int, default=100, help="sketches per rasterize_many call")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    folder = args.data / "quickdraw"
    if args.classes == "all":
        files = sorted(folder.glob("*.npz"))
    else:
        files = [folder / f"{name.strip()}.npz" for name in args.classes.split(",")]
    sketches = [s for f in files for s in read_npz(f, [args.split])[args.split]]
    mean_len = np.mean([len(s) for s in sketches])
    print(f"{len(sketches):,} sketches, {len(files)} classes ({args.split}), {mean_len:.1f} points")
    print(f"cores: {sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}")

    n = len(sketches)
    batches = [sketches[i : i + args.batch] for i in range(0, n, args.batch)]
    rate(
        f"numpy rasterize_many, batches of {args.batch}",
        n,
        lambda: [rasterize_many(b) for b in batches],
    )
    rate("numpy rasterize_many, one call", n, lambda: rasterize_many(sketches))
    few = sketches[:2000]
    rate("numpy rasterize, one sketch per call", len(few), lambda: [rasterize(s) for s in few])
    rate(
        "pillow ImageDraw.line, one sketch per call",
        len(few),
        lambda: [pillow_rasterize(s) for s in few],
    )
    agree = np.mean(
        [(pillow_rasterize(s) == r).mean() for s, r in zip(few, rasterize_many(few), strict=True)]
    )
    print(f"pixels where the two agree: {agree:.2%} (they round line ends differently)")

    # Training renders each batch's rasters (data/batching.py); the alternative is a bit-packed
    # file of every sketch's, unpacked per batch: faster per batch, but it grows with the data
    # (2 KB a sketch: 2.8 GB for 20 official classes) and takes minutes to build.
    packed = np.packbits(rasterize_many(sketches), axis=-1)
    rate(
        f"cached and bit-packed: unpack batches of {args.batch}",
        n,
        lambda: [
            np.unpackbits(packed[i : i + args.batch], axis=-1) for i in range(0, n, args.batch)
        ],
    )
    print(f"a bit-packed cache: {packed.nbytes / n:.0f} bytes per sketch")


if __name__ == "__main__":
    main()
