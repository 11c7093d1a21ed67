"""What a run writes as it trains: metrics.csv (one row per logged step and validation, every
loss term; trimmed on resume) and TensorBoard events under `tb/`."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aisketcher.atomic import atomic_path
from aisketcher.errors import SketchDataError
from aisketcher.train.loss import LossTerms

METRICS_HEADER = ["step", "split", "lr", "kl_weight", *LossTerms.field_names()]


def check_metrics_header(header: list[str] | None, path: Path) -> None:
    if header != METRICS_HEADER:
        raise SketchDataError(
            "not this trainer's metrics file (its header differs); move it away to go on",
            str(path),
        )


def trim_metrics(path: Path, step: int) -> bool:
    """Make metrics.csv end at `step` (a resumed run redoes the steps after its checkpoint, whose
    rows would otherwise be there twice); returns whether it needs its header. A file that is not
    this trainer's CSV is refused by name rather than appended to."""
    if not path.exists() or path.stat().st_size == 0:
        return True
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    check_metrics_header(rows[0] if rows else None, path)
    try:
        kept = [rows[0], *(r for r in rows[1:] if int(r[0]) <= step)]
    except (ValueError, IndexError):
        raise SketchDataError("a damaged row (no step number)", str(path)) from None
    if len(kept) < len(rows):
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            csv.writer(fh).writerows(kept)
    return False


class RunLog:
    """The run's metrics.csv and TensorBoard writer while `fit` runs (on rank 0; see `open_log`)."""

    def __init__(self, rows: Any, writer: Any) -> None:
        self.csv, self.writer = rows, writer

    def add(
        self,
        split: str,
        step: int,
        lr: float | str,
        kl_weight: float,
        values: dict[str, float],
        grad_norm: float | None = None,
    ) -> None:
        """One row of loss terms: a training step's ("train") or a validation's ("valid")."""
        self.csv.writerow([step, split, lr, kl_weight, *LossTerms.row(values)])
        for k, v in values.items():
            self.writer.add_scalar(f"{split}/{k}", v, step)
        if grad_norm is not None:
            self.writer.add_scalar(f"{split}/grad_norm", grad_norm, step)

    def close(self) -> None:
        self.writer.close()


@contextmanager
def open_log(run_dir: Path, step: int) -> Iterator[RunLog]:
    """The run's log from `step` on: metrics.csv trimmed to it (see `trim_metrics`), TensorBoard
    events past it purged."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"), purge_step=step or None)
    path = run_dir / "metrics.csv"
    new = trim_metrics(path, step)
    # Line-buffered: every row is on disk at once, for `tail -f` and crashed runs.
    with open(path, "a", newline="", buffering=1) as fh:
        rows = csv.writer(fh)
        if new:
            rows.writerow(METRICS_HEADER)
        yield RunLog(rows, writer)


class NoLog:
    """Stands in for the run's log on ranks other than 0: writes nothing."""

    def _ignore(self, *args: object) -> None:
        """Write nothing."""

    add = close = _ignore
