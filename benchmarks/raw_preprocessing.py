"""How closely our raw -> simplified preprocessing reproduces Google's own simplified drawings.

Reads every drawing in `<data>/quickdraw-ndjson/raw/`, simplifies it with `aisketcher`, and compares
it with Google's version of the same key_id: the official simplified ndjson line when
`<data>/quickdraw-ndjson/simplified/` has it, else the sketch-rnn `.npz` sketch the manifest names
(whose absolute points are the simplified drawing's). Prints how many drawings come out identical,
how point counts differ, and how far the points lie from Google's (nearest-point distances).

    python benchmarks/raw_preprocessing.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aisketcher.data.paths import default_data_dir
from aisketcher.formats.ndjson import read_ndjson
from aisketcher.formats.npz import read_npz
from aisketcher.strokes import stroke3_to_strokes


def google_simplified(data_dir: Path, key_ids: set[str]) -> dict[str, list[np.ndarray]]:
    """Google's simplified strokes for those of `key_ids` found in the ndjson files or the manifest."""
    found: dict[str, list[np.ndarray]] = {}
    for path in sorted((data_dir / "quickdraw-ndjson" / "simplified").glob("*.ndjson")):
        for drawing in read_ndjson(path, raw=False):
            if drawing.key_id in key_ids:
                found[drawing.key_id] = drawing.strokes
    manifest = json.loads((data_dir / "quickdraw" / "manifest.json").read_text())
    for word, splits in manifest.items():
        wanted = {
            key: (split, i)
            for split, rows in splits.items()
            for i, (key, _source, _recognized) in enumerate(rows)
            if key in key_ids and key not in found
        }
        if not wanted:
            continue
        sketches = read_npz(data_dir / "quickdraw" / f"{word.replace(' ', '_')}.npz")
        for key, (split, i) in wanted.items():
            found[key] = stroke3_to_strokes(sketches[split][i])
    return found


@dataclass
class Comparison:
    """One drawing: ours against Google's."""

    identical: bool
    count_diff: int  # our points minus Google's
    hausdorff: float  # farthest any point of either lies from the other's nearest point
    distances: np.ndarray  # every point's distance to the other drawing's nearest point


def compare(ours: list[np.ndarray], google: list[np.ndarray]) -> Comparison:
    a, b = np.vstack(ours), np.vstack(google)
    identical = len(ours) == len(google) and all(
        x.shape == y.shape and np.array_equal(x, y) for x, y in zip(ours, google, strict=True)
    )
    pairwise = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    distances = np.concatenate([pairwise.min(axis=1), pairwise.min(axis=0)])
    return Comparison(identical, len(a) - len(b), float(distances.max()), distances)


def compare_raw_files(data_dir: Path) -> tuple[list[Comparison], int, float]:
    """Comparisons for the raw drawings whose Google version was found; raw total; seconds taken."""
    start = time.perf_counter()
    ours = [
        drawing
        for path in sorted((data_dir / "quickdraw-ndjson" / "raw").glob("*.ndjson"))
        for drawing in read_ndjson(path, raw=True)
    ]
    seconds = time.perf_counter() - start
    google = google_simplified(data_dir, {d.key_id for d in ours})
    found = [compare(d.strokes, google[d.key_id]) for d in ours if d.key_id in google]
    return found, len(ours), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="data directory")
    args = parser.parse_args()
    results, total, seconds = compare_raw_files(args.data)
    n = len(results)
    diffs = np.array([r.count_diff for r in results])
    hausdorff = np.array([r.hausdorff for r in results])
    distances = np.concatenate([r.distances for r in results])
    print(f"raw drawings: {total}, with Google's simplified version found: {n}")
    print(f"read + preprocess: {1000 * seconds / total:.2f} ms per drawing")
    print(f"identical to Google's:        {np.mean([r.identical for r in results]):.3f}")
    print(f"identical point counts:       {np.mean(diffs == 0):.3f}")
    print(
        f"point count diff, ours-Google: mean {diffs.mean():+.3f}, mean |diff| "
        f"{np.abs(diffs).mean():.3f}, max |diff| {np.abs(diffs).max()}"
    )
    print(f"nearest-point distance (px):  mean {distances.mean():.3f}, max {distances.max():.2f}")
    print(
        f"per-drawing max distance (px): median {np.median(hausdorff):.2f}, "
        f"p95 {np.percentile(hausdorff, 95):.2f}, within 2 px: {np.mean(hausdorff <= 2):.3f}"
    )


if __name__ == "__main__":
    main()
