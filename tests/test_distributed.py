"""Data-parallel training: 2 CPU processes (gloo) equal 1 process training on the same global batch.

The full ai-sketcher model (encoder and decoder dropout, z_s and a_d sampling, the autoencoder,
the KL floor, l_a's count of real steps) at tiny sizes: the 2-process run's weights, optimizer
moments and logged losses match the single-process run's within float tolerance, and its random
state is identical, so the ranks drew exactly the numbers one process draws.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from aisketcher.checkpoint import read_checkpoint
from aisketcher.data.dataset import SketchDataset, Split, load_dataset
from aisketcher.errors import SketchDataError
from aisketcher.model.config import ModelConfig, make_config
from aisketcher.train import distributed
from aisketcher.train.trainer import TrainConfig, Trainer

TINY = dict(enc_rnn_size=16, dec_rnn_size=32, z_size=8, raster_z_size=8, num_mixture=3)
MAX_LEN = 40
STEPS = 4
BATCH = 8  # global: 4 rows per rank
WORLD = 2
TOLERANCE = dict(atol=1e-5, rtol=1e-4)
MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}


def tiny_dataset(quickdraw_dir: Path) -> SketchDataset:
    """12 real training sketches of 2 classes (an epoch is one batch and a remainder), 4 valid."""
    d = load_dataset("cat,eye", quickdraw_dir, max_seq_len=MAX_LEN)

    def subset(split: Split, per_class: int) -> Split:
        keep = np.concatenate([np.flatnonzero(split.labels == k)[:per_class] for k in (0, 1)])
        return Split([split.sketches[i] for i in keep], split.labels[keep])

    splits = {"train": subset(d["train"], 6), "valid": subset(d["valid"], 2)}
    return SketchDataset(d.class_names, splits, d.scale_factor, d.max_seq_len, d.sources)


def make_trainer(
    run_dir: Path, dataset: SketchDataset, steps: int, *, resume: bool = False, **overrides: object
) -> Trainer:
    model = {k: overrides.pop(k) for k in list(overrides) if k in MODEL_FIELDS}
    cfg = make_config("ai-sketcher", "small", num_classes=2, max_seq_len=MAX_LEN, **TINY, **model)
    fields = dict(
        steps=steps,
        batch_size=BATCH,
        eval_every=2,  # validation (rank 0's, shared) decides best.safetensors twice
        checkpoint_every=1000,
        log_every=1,
    )
    train = TrainConfig(**{**fields, **overrides})
    return Trainer(cfg, train, dataset, run_dir, resume=resume, progress=False)


def poison_first_batch(trainer: Trainer, rows: slice) -> None:
    """NaN offsets in some rows of the first global batch: that step must be skipped."""
    real_next = trainer.train_loader.next_batch
    calls = [0]

    def next_batch():
        batch = real_next()
        calls[0] += 1
        if calls[0] == 1:  # a sharded loader's batch holds this rank's rows of the global one
            start = distributed.rank() * len(batch.lengths)
            batch.strokes[max(rows.start - start, 0) : max(rows.stop - start, 0), 1:, 0] = math.nan
        return batch

    trainer.train_loader.next_batch = next_batch


RUNS = ("joint", "pretrain", "resumed", "damaged")


def train_all(out: Path, dataset: SketchDataset) -> None:
    """The runs to compare, each in `out`: see RUNS."""
    # No KL floor here, so l_z and l_a (divided by the whole batch's count) pass gradients; the
    # other runs keep the default floor, which their l_kl (about 0.03) stays under.
    make_trainer(out / "joint", dataset, STEPS, kl_tolerance=0.0).fit()
    pretrain = {"autoencoder_mode": "pretrain", "autoencoder_pretrain_steps": 2}
    make_trainer(out / "pretrain", dataset, STEPS, **pretrain).fit()
    # A non-finite first batch (in a row of rank 1's share only), 2 steps, then a resumed run.
    first = make_trainer(out / "resumed", dataset, 2)
    poison_first_batch(first, slice(5, 6))
    first.fit()
    make_trainer(out / "resumed", dataset, STEPS, resume=True).fit()
    # Healing: every sketch damaged, so the encoder reads sources shorter than the targets, each
    # rank's padded to its own longest unless padded to the global batch's.
    make_trainer(out / "damaged", dataset, STEPS, damage=0.6, damage_share=1.0).fit()


def worker(rank: int, port: int, quickdraw_dir: Path, out: Path) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(WORLD),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    dataset = tiny_dataset(quickdraw_dir)
    with distributed.process_group("cpu"):
        assert distributed.world_size() == WORLD and distributed.rank() == rank
        assert distributed.any_rank(rank == 1, False) == [True, False]  # a stop anywhere is shared
        with pytest.raises(SketchDataError, match="batch size 7 does not divide among 2"):
            make_trainer(out / "refused", dataset, STEPS, batch_size=7)
        train_all(out, dataset)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(quickdraw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Every run in one process, then in 2 processes: (single folder, data-parallel folder)."""
    root = tmp_path_factory.mktemp("distributed")
    train_all(root / "single", tiny_dataset(quickdraw_dir))
    mp.start_processes(
        worker,
        args=(free_port(), quickdraw_dir, root / "ddp"),
        nprocs=WORLD,
        join=True,
        start_method="spawn",
    )
    return root / "single", root / "ddp"


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def assert_same_run(single: Path, parallel: Path) -> None:
    for name in ("last", "best"):
        expected, info_1 = read_checkpoint(single / f"{name}.safetensors")
        actual, info_2 = read_checkpoint(parallel / f"{name}.safetensors")
        assert info_1["step"] == info_2["step"] and info_1["loader"] == info_2["loader"]
        assert info_1["skipped_steps"] == info_2["skipped_steps"]
        # Adam's step counts too: a parameter without a gradient (the frozen autoencoder) is
        # left alone under DDP exactly as in one process.
        assert info_1["optimizer"] == info_2["optimizer"]
        assert expected.keys() == actual.keys()
        # Every rank drew for the whole batch, in one process's order: the same random state.
        assert torch.equal(expected.pop("rng.torch"), actual.pop("rng.torch"))
        for key, value in expected.items():  # weights and Adam's moments
            torch.testing.assert_close(actual[key], value, **TOLERANCE, msg=key)
    rows_1, rows_2 = metric_rows(single), metric_rows(parallel)
    assert [(r["step"], r["split"]) for r in rows_1] == [(r["step"], r["split"]) for r in rows_2]
    for row_1, row_2 in zip(rows_1, rows_2, strict=True):
        for key in ("objective", "total", "l_r", "l_c", "l_s", "l_z", "l_a", "l_kl", "l_ae"):
            torch.testing.assert_close(float(row_2[key]), float(row_1[key]), **TOLERANCE)
    # rank 1 wrote nothing: no second TensorBoard file, no duplicated metric rows (checked above)
    assert len(list((parallel / "tb").iterdir())) == len(list((single / "tb").iterdir()))


@pytest.mark.parametrize("run", RUNS)
def test_two_processes_train_exactly_as_one(run: str, runs: tuple[Path, Path]) -> None:
    single, parallel = runs
    assert_same_run(single / run, parallel / run)


def test_the_step_poisoned_on_one_rank_is_skipped_by_both(runs: tuple[Path, Path]) -> None:
    _, parallel = runs
    assert read_checkpoint(parallel / "resumed" / "last.safetensors")[1]["skipped_steps"] == 1


def test_batch_size_must_divide_among_the_processes(
    runs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, parallel = runs
    assert not (parallel / "refused").exists()  # both ranks refused it before writing anything
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    distributed.check_batch_size(100, 1000)
    with pytest.raises(SketchDataError, match="must be a multiple of 4"):
        distributed.check_batch_size(102, 1000)
    with pytest.raises(SketchDataError, match="fewer than one batch of 100"):
        distributed.check_batch_size(100, 60)
