"""Training: overfitting, every preset, exact resume, checkpoints, NaN recovery, the train command."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from aisketcher import checkpoint
from aisketcher.api import Sketcher
from aisketcher.checkpoint import read_checkpoint
from aisketcher.cli import main
from aisketcher.data.batching import collate
from aisketcher.data.dataset import SketchDataset, Split, load_dataset
from aisketcher.errors import SketchDataError
from aisketcher.model.config import PRESETS, ModelConfig, make_config
from aisketcher.model.sketcher import SketchModel
from aisketcher.train.loss import compute_loss, kl_weight_at, learning_rate_at
from aisketcher.train.trainer import TrainConfig, Trainer, TrainingDiverged

TINY = dict(enc_rnn_size=16, dec_rnn_size=32, z_size=8, raster_z_size=8, num_mixture=3)
MAX_LEN = 30  # short QuickDraw sketches keep every test fast


@pytest.fixture(scope="module")
def short_sketches(quickdraw_dir: Path) -> SketchDataset:
    return load_dataset("cat,eye", quickdraw_dir, max_seq_len=MAX_LEN)


def subset(split: Split, per_class: int) -> Split:
    keep = np.concatenate([np.flatnonzero(split.labels == k)[:per_class] for k in (0, 1)])
    return Split([split.sketches[i] for i in keep], split.labels[keep])


@pytest.fixture(scope="module")
def tiny_dataset(short_sketches: SketchDataset) -> SketchDataset:
    """Six real training sketches and two validation sketches of two classes."""
    d = short_sketches
    splits = {"train": subset(d["train"], 3), "valid": subset(d["valid"], 1)}
    return SketchDataset(d.class_names, splits, d.scale_factor, d.max_seq_len, d.sources)


def tiny_config(preset: str = "ai-sketcher", **overrides: object) -> ModelConfig:
    fields = {"num_classes": 2, "max_seq_len": MAX_LEN, **TINY, **overrides}
    return make_config(preset, "small", **fields)


def train_config(tmp_path: Path, steps: int, **overrides: object) -> TrainConfig:
    fields = dict(
        steps=steps,
        batch_size=3,
        eval_every=1000,
        checkpoint_every=1000,
        log_every=1,
    )
    return TrainConfig(**{**fields, **overrides})


def trainer(
    tmp_path: Path, dataset: SketchDataset, run: str, steps: int, preset: str = "ai-sketcher", **kw
) -> Trainer:
    resume = kw.pop("resume", False)
    return Trainer(
        tiny_config(preset),
        train_config(tmp_path, steps, **kw),
        dataset,
        tmp_path / run,
        resume=resume,
        progress=False,
    )


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different}"


def metric_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# ----- learning -----


def test_tiny_model_overfits_a_handful_of_sketches(short_sketches: SketchDataset) -> None:
    """120 Adam steps on 8 real cat sketches: the reconstruction loss falls far."""
    cats = short_sketches["train"]
    sketches = [s for s, k in zip(cats.sketches, cats.labels, strict=True) if k == 0][:8]
    batch = collate(sketches, np.zeros(8, dtype=np.int64))
    torch.manual_seed(0)
    cfg = tiny_config("sketch-rnn", num_classes=1)
    model = SketchModel(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def losses() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            torch.manual_seed(1)  # the same z_s sample before and after
            terms = compute_loss(model(batch.strokes, batch.lengths, batch.labels), batch, cfg, 1)
        model.train()
        return float(terms.l_r), float(terms.l_s)

    first_r, first_s = losses()
    for _ in range(120):
        optimizer.zero_grad()
        out = model(batch.strokes, batch.lengths, batch.labels)
        compute_loss(out, batch, cfg, 1.0).objective.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    last_r, last_s = losses()
    # measured over 4 seeds: l_r 3.5 -> 0.38..0.51, l_s 1.1 -> 0.29..0.34
    assert last_r < first_r / 4
    assert last_s < first_s / 2.5


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_trains_with_finite_loss(
    preset: str, tmp_path: Path, tiny_dataset: SketchDataset
) -> None:
    t = trainer(tmp_path, tiny_dataset, "run", 2, preset)
    summary = t.fit()
    assert summary["step"] == 2 and summary["skipped_steps"] == 0
    rows = metric_rows(tmp_path / "run")
    assert [r["split"] for r in rows] == ["train", "train", "valid"]
    for row in rows:
        assert all(math.isfinite(float(row[k])) for k in ("total", "l_r", "l_kl")), row
    assert math.isfinite(summary["last_valid"]["total"])
    for name in ("config.json", "last.safetensors", "last.json", "best.safetensors"):
        assert (tmp_path / "run" / name).is_file(), name
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert info["model"]["name"] == preset
    assert info["data"]["classes"] == ["cat", "eye"]
    # the run folder is a drawable model
    sketcher = Sketcher.load(tmp_path / "run")
    drawn = sketcher.draw("eye", count=2, seed=0)
    assert len(drawn) == 2 and all(s.label == "eye" for s in drawn)
    assert all(1 <= len(s) <= MAX_LEN and np.isfinite(s.stroke3).all() for s in drawn)


def test_pretrained_autoencoder_trains_alone_then_freezes(
    tmp_path: Path, tiny_dataset: SketchDataset
) -> None:
    cfg = tiny_config(autoencoder_mode="pretrain", autoencoder_pretrain_steps=1)
    t = Trainer(cfg, train_config(tmp_path, 2), tiny_dataset, tmp_path / "run", progress=False)
    before = weights(t.model)
    assert t.train_step()[0] is not None
    t.step += 1
    after_pretrain = weights(t.model)
    changed = {k for k in before if not torch.equal(before[k], after_pretrain[k])}
    assert changed and all(k.startswith("autoencoder.") for k in changed)
    assert t.train_step()[0] is not None
    final = weights(t.model)
    changed = {k for k in before if not torch.equal(after_pretrain[k], final[k])}
    assert changed and not any(k.startswith("autoencoder.") for k in changed)


# ----- exact resume and checkpoints -----


def test_resume_gives_identical_weights(tmp_path: Path, tiny_dataset: SketchDataset) -> None:
    """6 steps in one go == 3 steps, a new Trainer resuming from the checkpoint, 3 more steps.

    Dropout, z_s and a_d sampling, augmentation and batch order all draw random numbers, and the
    run validates before it stops, so the checkpoint must carry every RNG state.
    """
    run_a = trainer(tmp_path, tiny_dataset, "a", 6)
    run_a.fit()
    run_b = trainer(tmp_path, tiny_dataset, "b", 3)
    run_b.fit()
    assert run_b.step == 3
    resumed = trainer(tmp_path, tiny_dataset, "b", 6, resume=True)
    assert resumed.step == 3
    resumed.fit()
    assert resumed.step == 6
    assert_same_weights(weights(run_a.model), weights(resumed.model))
    tensors_a, _ = read_checkpoint(tmp_path / "a" / "last.safetensors")
    tensors_b, _ = read_checkpoint(tmp_path / "b" / "last.safetensors")
    assert_same_weights(tensors_a, tensors_b)  # optimizer moments and RNG too
    rows = [r for r in metric_rows(tmp_path / "b") if r["split"] == "train"]
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_an_empty_metrics_file_gets_its_header(tmp_path: Path, tiny_dataset: SketchDataset) -> None:
    """A run killed before its first row left metrics.csv empty: the next run writes the header."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("")
    Trainer(tiny_config(), train_config(tmp_path, 2), tiny_dataset, run, progress=False).fit()
    rows = metric_rows(run)
    assert [r["step"] for r in rows if r["split"] == "train"] == ["1", "2"]


def test_resume_refuses_a_different_model(tmp_path: Path, tiny_dataset: SketchDataset) -> None:
    with pytest.raises(SketchDataError, match="nothing to resume"):
        trainer(tmp_path, tiny_dataset, "a", 1, resume=True)
    trainer(tmp_path, tiny_dataset, "a", 1).fit()
    with pytest.raises(SketchDataError, match="model config differs"):
        trainer(tmp_path, tiny_dataset, "a", 2, "sketch-rnn", resume=True)


def test_garbage_checkpoints_raise_a_clear_error(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "ckpt.safetensors"
    checkpoint.save_checkpoint(path, model, {"step": 1})
    tensors, info = read_checkpoint(path)
    assert info == {"step": 1}
    assert torch.equal(tensors["model.weight"], model.weight.detach())
    good = path.read_bytes()
    cases = {
        "truncated": good[: len(good) // 2],
        "garbage": b"\x00\x01not a checkpoint" * 10,
        "empty": b"",
        "huge header": (10**15).to_bytes(8, "little") + b"{}",
    }
    for name, data in cases.items():
        bad = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        bad.write_bytes(data)
        with pytest.raises(SketchDataError, match="unreadable checkpoint") as err:
            read_checkpoint(bad)
        assert str(bad) in str(err.value), name
    with pytest.raises(SketchDataError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.safetensors")


def test_checkpoint_without_metadata_or_with_foreign_weights(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, plain)
    with pytest.raises(SketchDataError, match="unreadable checkpoint"):
        read_checkpoint(plain)
    path = tmp_path / "ckpt.safetensors"
    checkpoint.save_checkpoint(path, torch.nn.Linear(3, 2), {"step": 1})
    tensors, _ = read_checkpoint(path)
    with pytest.raises(SketchDataError, match="weights do not fit") as err:
        checkpoint.load_weights(torch.nn.Linear(4, 2), tensors, str(path))
    assert str(err.value) == (
        f"{path}: weights do not fit the model: weight is [2, 3], the model's [2, 4]"
    )
    with pytest.raises(SketchDataError) as err:
        checkpoint.load_weights(torch.nn.Bilinear(3, 3, 2), tensors, str(path))
    assert str(err.value) == (  # in one line: torch's own message runs over several
        f"{path}: weights do not fit the model: weight is [2, 3], the model's [2, 3, 3]"
    )
    del tensors["model.bias"]
    tensors["model.extra"] = torch.zeros(1)
    with pytest.raises(SketchDataError) as err:
        checkpoint.load_weights(torch.nn.Linear(3, 2), tensors, str(path))
    assert "missing bias; not the model's: extra" in str(err.value) and "\n" not in str(err.value)


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "last.safetensors"
    checkpoint.save_checkpoint(path, model, {"step": 1})
    before = path.read_bytes()
    with torch.no_grad():
        model.weight.add_(1.0)

    def crash(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"half a checkpoint")  # a crash in the middle of writing
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", crash)
    # one line naming the file and saying the old checkpoint is kept, not a SafetensorError
    with pytest.raises(
        SketchDataError, match=r"last.safetensors: could not write.*disk full.*intact"
    ):
        checkpoint.save_checkpoint(path, model, {"step": 2})
    assert path.read_bytes() == before
    assert read_checkpoint(path)[1] == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.safetensors"]
    monkeypatch.undo()
    checkpoint.save_checkpoint(path, model, {"step": 2})
    assert read_checkpoint(path)[1] == {"step": 2}
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*"))
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not safetensors' private 0600


# ----- NaN guards -----


def nan_batches(t: Trainer, count: int) -> list[int]:
    """Make the next `count` training batches hold NaN offsets; returns a call counter."""
    calls = [0]
    real_next = t.train_loader.next_batch

    def next_batch():
        batch = real_next()
        calls[0] += 1
        if calls[0] <= count:
            batch.strokes[:, 1:, 0] = float("nan")
        return batch

    t.train_loader.next_batch = next_batch
    return calls


def test_non_finite_step_is_skipped(tmp_path: Path, tiny_dataset: SketchDataset) -> None:
    t = trainer(tmp_path, tiny_dataset, "run", 3)
    nan_batches(t, 1)
    before = weights(t.model)
    terms, norm = t.train_step()
    assert terms is None and math.isnan(norm)
    assert_same_weights(before, weights(t.model))
    assert not t.optimizer.state  # Adam never stepped


def test_non_finite_gradient_is_skipped(tmp_path: Path, tiny_dataset: SketchDataset) -> None:
    t = trainer(tmp_path, tiny_dataset, "run", 3)
    hook = t.model.output.bias.register_hook(lambda grad: grad * math.nan)
    before = weights(t.model)
    terms, norm = t.train_step()
    assert terms is None and math.isnan(norm)
    assert_same_weights(before, weights(t.model))
    assert all(p.grad is None for p in t.model.parameters())
    hook.remove()
    assert t.train_step()[0] is not None


def test_skipped_steps_are_counted(tmp_path: Path, tiny_dataset: SketchDataset) -> None:
    t = trainer(tmp_path, tiny_dataset, "run", 3)
    nan_batches(t, 2)
    summary = t.fit()
    assert summary["step"] == 3 and summary["skipped_steps"] == 2 and summary["restores"] == 0
    assert [int(r["step"]) for r in metric_rows(tmp_path / "run")] == [1, 2, 3, 3]


def test_repeated_non_finite_steps_restore_the_checkpoint(
    tmp_path: Path, tiny_dataset: SketchDataset
) -> None:
    t = trainer(tmp_path, tiny_dataset, "run", 3, max_bad_steps=3)
    t.fit()  # saves last.safetensors at step 3
    saved, _ = read_checkpoint(tmp_path / "run" / "last.safetensors")
    with torch.no_grad():  # the weights drift away from the checkpoint (as before a blow-up)
        for p in t.model.parameters():
            p.add_(0.5)
    restored: list[dict[str, torch.Tensor]] = []
    recover = t._recover

    def spy(bar: object, in_a_row: int) -> None:
        recover(bar, in_a_row)
        restored.append(weights(t.model))

    t._recover = spy
    nan_batches(t, 3)
    t.tcfg.steps = 4
    summary = t.fit()
    assert len(restored) == 1
    saved_model = {k.removeprefix("model."): v for k, v in saved.items() if k.startswith("model.")}
    assert_same_weights(restored[0], saved_model)
    assert t.restores == 1 and summary["restores"] == 1
    assert t.lr_scale == 0.5
    assert summary["skipped_steps"] == 3 and summary["step"] == 4
    lr = t.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(0.5 * learning_rate_at(3, 1e-3, 1e-5, 0.9999))
    _, info = read_checkpoint(tmp_path / "run" / "last.safetensors")
    assert info["lr_scale"] == 0.5 and info["restores"] == 1 and info["step"] == 4


def test_training_that_cannot_make_a_finite_step_stops_and_keeps_its_checkpoint(
    tmp_path: Path, tiny_dataset: SketchDataset
) -> None:
    t = trainer(tmp_path, tiny_dataset, "run", 2, max_bad_steps=2, max_restores=3)
    t.fit()
    last = tmp_path / "run" / "last.safetensors"
    before = last.read_bytes()
    nan_batches(t, 10**6)  # every batch from now on is non-finite
    t.tcfg.steps = 10
    with pytest.raises(TrainingDiverged, match=r"every step is non-finite.*learning rate") as exc:
        t.fit()
    assert str(tmp_path / "run") in str(exc.value)
    assert t.restores == 3 and t.lr_scale == 0.125  # bounded: 3 restores, then the error
    assert last.read_bytes() == before


def test_non_finite_weights_never_replace_a_checkpoint(
    tmp_path: Path, tiny_dataset: SketchDataset, capsys: pytest.CaptureFixture
) -> None:
    t = trainer(tmp_path, tiny_dataset, "run", 2)
    t.fit()
    last = tmp_path / "run" / "last.safetensors"
    before = last.read_bytes()
    with torch.no_grad():
        t.model.output.bias.fill_(math.inf)
    t.save("last")
    assert last.read_bytes() == before
    assert "not saving last" in capsys.readouterr().out


# ----- the train command -----


# With --classes cat,eye: a run of the train command in about a second (a tiny model, short sketches).
TINY_SIZES = ["enc_rnn_size=8", "dec_rnn_size=16", "z_size=4", "raster_z_size=4", "num_mixture=2"]
TINY_RUN = [
    *("--batch-size", "4", "--max-seq-len", "20", "--eval-every", "1000"),
    *(a for s in TINY_SIZES for a in ("--set", s)),
]


def test_train_command_runs_and_resumes(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # rasters go here
    out = tmp_path / "run"
    args = ["train", "--classes", "cat,eye", "--data", str(data_dir), "--out", str(out)]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)  # (the one_thread fixture restores its own setting afterwards)
    assert main([*args, "--steps", "2", *TINY_RUN]) == 0
    # one thread unless told: the start line says so, and how to change it
    assert "kernels, 1 CPU thread (the default, fastest when" in capsys.readouterr().out
    assert torch.get_num_threads() == 1
    for name in ("config.json", "last.safetensors", "metrics.csv"):
        assert (out / name).is_file(), name
    info = json.loads((out / "config.json").read_text())
    assert info["model"]["enc_rnn_size"] == 8 and info["model"]["num_classes"] == 2
    assert info["train"]["batch_size"] == 4
    assert read_checkpoint(out / "last.safetensors")[1]["step"] == 2

    assert main([*args, "--steps", "2"]) == 2  # refuses to overwrite a run
    assert "already holds a run" in capsys.readouterr().err

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)  # as torch set itself at import from OMP_NUM_THREADS (as torchrun's)
    assert main(["train", "--out", str(out), "--resume", "--steps", "3"]) == 0
    assert "kernels, 2 CPU threads (OMP_NUM_THREADS)" in capsys.readouterr().out
    assert torch.get_num_threads() == 2
    assert read_checkpoint(out / "last.safetensors")[1]["step"] == 3
    steps = [int(r["step"]) for r in metric_rows(out) if r["split"] == "train"]
    assert steps == [2, 3]  # log_every 10: rows at the end of each run


def _two_steps(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command line of a run of two steps in tmp_path/run (TINY_RUN), run."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = [
        "train",
        "--classes",
        "cat,eye",
        "--data",
        str(data_dir),
        "--out",
        str(tmp_path / "run"),
    ]
    assert main([*args, "--steps", "2", *TINY_RUN]) == 0
    return args


def _files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_resuming_a_finished_run_says_how_to_train_on_and_rewrites_nothing(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _two_steps(tmp_path, data_dir, monkeypatch)
    out = tmp_path / "run"
    files = _files(out)
    capsys.readouterr()
    for more in ([], ["--steps", "2"], ["--steps", "1"]):
        assert main(["train", "--out", str(out), "--resume", *more]) == 0
        said = capsys.readouterr().out
        assert f"{out}: the run is already finished at step 2" in said, more
        assert f"aisketcher train --out {out} --resume --steps M, with M > 2" in said
        assert "training from" not in said
    assert "past --steps 1" in said
    assert _files(out) == files
    # a warm start from an exported model that far would make a run without a step: refused
    assert main(["export", str(out), "--out", str(tmp_path / "model")]) == 0
    argv = ["train", "--init-from", str(tmp_path / "model"), "--data", str(data_dir)]
    assert main([*argv, "--out", str(tmp_path / "b"), "--steps", "2", "--batch-size", "4"]) == 2
    assert "its weights are already at step 2; give --steps M with M > 2" in capsys.readouterr().err


@pytest.mark.filterwarnings("default")  # the CLI prints warnings as one line
def test_resume_refuses_settings_other_than_the_runs_and_names_the_options_it_does_not_use(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    args = _two_steps(tmp_path, data_dir, monkeypatch)
    out = tmp_path / "run"
    files = _files(out)
    capsys.readouterr()
    # --lr was ignored on --resume: the run went on at its own rate without a word
    resume = ["train", "--out", str(out), "--resume", "--steps", "4"]
    assert main([*resume, "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aisketcher: error: {out / 'config.json'}: --lr asks for ")
    assert "learning_rate 0.01, the run has 0.001" in err and err.count("\n") == 1
    assert main([*resume, "--no-length-grouping"]) == 2
    assert "group_by_length False, the run has True" in capsys.readouterr().err
    assert _files(out) == files
    # The command line that made the run, resumed: its settings are the run's own; the model
    # and data options are not used, and it says so.
    assert main([*args, *TINY_RUN, "--steps", "3", "--resume"]) == 0
    err = capsys.readouterr().err
    assert (
        "aisketcher: warning: --classes, --data, --max-seq-len, --set not used: a resumed run "
        f"keeps the model and data of its {out / 'config.json'}"
    ) in err
    assert read_checkpoint(out / "last.safetensors")[1]["step"] == 3


def _first_losses(tr: Trainer, steps: int = 2) -> list[float]:
    losses = []
    for _ in range(steps):
        terms, _ = tr.train_step()
        assert terms is not None
        losses.append(terms.total.item())
        tr.step += 1
    return losses


@pytest.mark.parametrize("option", [{"precision": "bf16"}, {"compile": True}])
def test_bf16_and_compiled_training_match_fp32_eager(
    tmp_path: Path, tiny_dataset: SketchDataset, option: dict
) -> None:
    """The speed options change rounding only: the same first losses within tolerance."""
    config = tiny_config(recurrent_dropout=0.0)  # compiled graphs draw dropout masks their own way

    def first_losses(run: str, **kw: object) -> list[float]:
        tr = Trainer(config, train_config(tmp_path, 2, **kw), tiny_dataset, tmp_path / run)
        return _first_losses(tr)

    reference = first_losses("fp32")
    fast = first_losses("fast", **option)
    tolerance = 0.03 if "precision" in option else 1e-4  # bfloat16 keeps 8 bits of mantissa
    np.testing.assert_allclose(fast, reference, rtol=tolerance, atol=tolerance)


def test_unknown_precision_is_refused(tmp_path: Path, tiny_dataset: SketchDataset) -> None:
    with pytest.raises(SketchDataError, match="unknown precision 'fp8'"):
        trainer(tmp_path, tiny_dataset, "fp8", 1, precision="fp8")


def test_quick_training_validates_and_says_what_its_eta_counts(
    tmp_path: Path, quickdraw_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "quick"
    argv = ["train", "--quick", "--steps", "2", "--data", str(quickdraw_dir), "--out", str(out)]
    assert main([*argv, "--threads", "1", "--batch-size", "8"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["data"]["classes"] == ["cat", "eye"]
    assert info["train"]["eval_every"] == 100 and info["train"]["checkpoint_every"] == 100
    assert info["train"]["steps"] == 2  # an option given wins over the quick setting
    assert (out / "best.safetensors").is_file()  # the last step validates
    said = capsys.readouterr().out
    assert "to step 2" in said and "kernels, 1 CPU thread (--threads)" in said


@pytest.mark.parametrize(
    "option", ["--steps=-5", "--batch-size=0", "--eval-every=0", "--checkpoint-every=0"]
)
def test_training_numbers_are_refused_before_any_work(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", option, "--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and "must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_the_augmentation_is_set_on_the_command_line_and_kept_by_resume(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = ["train", "--classes", "cat,eye", "--data", str(data_dir), "--out", str(out)]
    more = ["--augment-scale", "0.3", "--augment-drop", "0"]
    assert main([*args, "--steps", "1", *TINY_RUN, *more]) == 0
    train = json.loads((out / "config.json").read_text())["train"]
    assert train["augment_scale"] == 0.3 and train["augment_drop"] == 0.0
    resumed = ["train", "--out", str(out), "--resume", "--steps", "2"]
    assert main([*resumed, "--augment-scale", "0.1"]) == 2
    assert "asks for augment_scale 0.1, the run has 0.3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ("--augment-scale=1", "from 0 to 0.9"),
        ("--augment-scale=nan", "from 0 to 0.9"),
        ("--augment-drop=2", "from 0 to 1"),
        ("--augment-drop=-0.1", "from 0 to 1"),
    ],
)
def test_augmentation_outside_its_range_is_refused(
    option: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", option, "--out", str(tmp_path / "r")])
    assert exc.value.code == 2 and said in capsys.readouterr().err
    for field, value in (("augment_scale", 1.0), ("augment_drop", 1.5)):
        with pytest.raises(SketchDataError, match=field):  # a run's config.json
            TrainConfig.from_dict({field: value}, "config.json")


def test_a_run_ended_by_its_time_budget_leaves_a_best_checkpoint(
    tmp_path: Path, tiny_dataset: SketchDataset
) -> None:
    cfg = train_config(tmp_path, 10**6, eval_every=10**6, max_minutes=0.02)
    summary = Trainer(tiny_config(), cfg, tiny_dataset, tmp_path / "run", progress=False).fit()
    assert summary["reason"] == "time budget reached" and summary["step"] > 0
    assert summary["last_valid"] is not None
    assert read_checkpoint(tmp_path / "run" / "best.safetensors")[1]["step"] == summary["step"]


def test_ctrl_c_while_the_command_line_is_built_prints_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import aisketcher.cli as cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["draw", "cat"]) == 130
    assert capsys.readouterr().err.strip() == "aisketcher: interrupted"


def test_ctrl_c_during_validation_stops_at_the_next_batch(
    tmp_path: Path, short_sketches: SketchDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    import aisketcher.train.loss as trainer_module

    d = short_sketches
    data = SketchDataset(
        d.class_names,
        {"train": subset(d["train"], 3), "valid": subset(d["valid"], 10)},
        d.scale_factor,
        d.max_seq_len,
        d.sources,
    )
    t = trainer(tmp_path, data, "run", 5, eval_every=1)
    t.valid_loader.batch_size = 2  # ten validation batches
    real, validation_batches = trainer_module.batch_loss, []

    def interrupting(model, batch, step, weights, *, train=True):
        if not train:
            validation_batches.append(1)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the first validation
        return real(model, batch, step, weights, train=train)

    monkeypatch.setattr(trainer_module, "batch_loss", interrupting)
    summary = t.fit()
    assert summary["reason"] == "stopped by signal" and summary["step"] == 1
    assert len(validation_batches) == 1  # the other nine were not computed
    assert read_checkpoint(tmp_path / "run" / "last.safetensors")[1]["step"] == 1


def test_a_resumed_run_has_each_step_once_in_its_metrics(
    tmp_path: Path, tiny_dataset: SketchDataset
) -> None:
    trainer(tmp_path, tiny_dataset, "run", 3).fit()  # its last checkpoint is of step 3
    metrics = tmp_path / "run" / "metrics.csv"
    # as if the process had logged step 4 and died before checkpointing it:
    metrics.write_text(metrics.read_text() + "4,train,0.001,0.01" + ",1" * 9 + "\n")
    trainer(tmp_path, tiny_dataset, "run", 5, resume=True).fit()
    steps = [int(r["step"]) for r in metric_rows(tmp_path / "run") if r["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5]


def test_a_foreign_metrics_file_is_refused_not_appended_to(
    tmp_path: Path, tiny_dataset: SketchDataset
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("garbage,without,our,header\n1,2,3,4\n")
    with pytest.raises(SketchDataError, match=r"metrics\.csv: not this trainer's metrics file"):
        trainer(tmp_path, tiny_dataset, "run", 2).fit()
    assert (run / "metrics.csv").read_text() == "garbage,without,our,header\n1,2,3,4\n"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda info: {k: v for k, v in info.items() if k != "loader"}, "metadata is damaged"),
        (lambda info: {**info, "step": "abc"}, "metadata is damaged"),
        (lambda info: {**info, "loader": {"rng": 5, "queue": []}}, "does not fit this run"),
    ],
)
def test_a_damaged_checkpoint_is_refused_on_resume(
    change, message: str, tmp_path: Path, tiny_dataset: SketchDataset
) -> None:
    t = trainer(tmp_path, tiny_dataset, "run", 2)
    t.fit()
    last = tmp_path / "run" / "last.safetensors"
    tensors, info = read_checkpoint(last)
    from safetensors.torch import save_file

    save_file(tensors, str(last), metadata={checkpoint.META_KEY: json.dumps(change(info))})
    with pytest.raises(SketchDataError, match=message):
        trainer(tmp_path, tiny_dataset, "run", 4, resume=True)


def test_a_run_saved_before_a_config_field_existed_resumes(
    tmp_path: Path, tiny_dataset: SketchDataset
) -> None:
    trainer(tmp_path, tiny_dataset, "run", 2).fit()
    last = tmp_path / "run" / "last.safetensors"
    tensors, info = read_checkpoint(last)
    del info["model"]["discrete_temperature"]  # a field added after this run was made
    from safetensors.torch import save_file

    save_file(tensors, str(last), metadata={checkpoint.META_KEY: json.dumps(info)})
    assert trainer(tmp_path, tiny_dataset, "run", 3, resume=True).fit()["step"] == 3


def test_validation_reads_a_fixed_sample_of_each_class(
    tmp_path: Path, short_sketches: SketchDataset
) -> None:
    """Bounded at any data size: the official files hold 2,500 validation sketches per class."""
    run = Trainer(
        tiny_config(), train_config(tmp_path, 1, valid_per_class=1), short_sketches, tmp_path / "r"
    )
    valid = run.valid_loader.split
    assert np.bincount(valid.labels).tolist() == [1, 1]
    again = Trainer(
        tiny_config(), train_config(tmp_path, 1, valid_per_class=1), short_sketches, tmp_path / "s"
    )
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            valid.take(np.arange(2)), again.valid_loader.split.take(np.arange(2)), strict=True
        )
    )


@pytest.mark.parametrize("field", ["max_seq_len", "num_classes"])
def test_set_refuses_the_fields_the_data_decides(field: str, tmp_path: Path, capsys) -> None:
    """It ended in a TypeError traceback (the field was given twice)."""
    from aisketcher.cli import main

    assert main(["train", "--out", str(tmp_path / "r"), "--set", f"{field}=99"]) == 2
    assert f"--set {field}: " in capsys.readouterr().err


def test_validation_and_prior_fits_stay_bounded_at_any_number_of_classes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """345 classes of 500 validation sketches were 1,725 batches per validation, and the prior fit
    encoded 256 sketches of each class at every checkpoint (88,000): both are bounded in all."""
    from aisketcher.train import config, priors

    assert config.validation_per_class(1) == 500
    assert config.validation_per_class(20) == 500  # the built-in model's recipe
    assert 345 * config.validation_per_class(345) <= config.VALID_SKETCHES
    model = SketchModel(make_config("ai-sketcher", "small", num_classes=345))
    labels = np.repeat(np.arange(345), 300)
    sketch = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], dtype=np.float32)
    encoded = []

    def encode(model: SketchModel, sketches: list, labels: list) -> object:
        encoded.append(len(sketches))
        n = len(sketches)
        codes = torch.zeros(n, model.config.z_size)
        return type("L", (), {"mu_s": codes, "log_var_s": codes, "z_r": codes})()

    monkeypatch.setattr(priors, "encode_sketches", encode)
    priors.fit_priors(model, Split([sketch] * len(labels), labels))
    assert sum(encoded) == 345 * 64 and max(encoded) <= 256
    assert model.sketch_prior.fitted


def test_a_run_resumes_with_other_loss_weights(
    tmp_path: Path, tiny_dataset: SketchDataset, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss weights are training settings: a run goes on with a new kl_weight (its model
    stays the run's), and the run's config.json then says so."""
    trainer(tmp_path, tiny_dataset, "run", 2).fit()
    again = trainer(tmp_path, tiny_dataset, "run", 3, resume=True, kl_weight=0.5)
    assert again.fit()["step"] == 3
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["kl_weight"] == 0.5
    train_rows = [r for r in metric_rows(tmp_path / "run") if r["split"] == "train"]
    assert float(train_rows[-1]["kl_weight"]) == pytest.approx(kl_weight_at(3, again.tcfg))

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "cli"
    args = ["train", "--classes", "cat,eye", "--data", str(data_dir), "--out", str(out)]
    assert main([*args, "--steps", "1", *TINY_RUN]) == 0
    resume = ["train", "--out", str(out), "--resume", "--steps", "2"]
    assert main([*resume, "--set", "kl_weight=0.25", "--set", "influence_beta=0.2"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["train"]["kl_weight"] == 0.25 and info["train"]["influence_beta"] == 0.2
    assert "kl_weight" not in info["model"]
    assert main([*resume, "--steps", "3", "--set", "cell=lstm"]) == 2  # the model is the run's


def test_a_run_saved_with_the_loss_weights_in_its_model_config_resumes_with_them(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs (and models) written before the loss weights moved to the training settings keep
    them in their model section: they load, and a resumed run trains with them."""
    from aisketcher.loss_weights import trained_weights

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "old"
    args = ["train", "--classes", "cat,eye", "--data", str(data_dir), "--out", str(out)]
    assert main([*args, "--steps", "1", *TINY_RUN]) == 0
    path = out / "config.json"
    info = json.loads(path.read_text())
    for name in ("kl_weight", "autoencoder_weight"):
        info["train"].pop(name)
        info["model"][name] = 0.5
    path.write_text(json.dumps(info))
    assert (
        trained_weights(info).kl_weight == 0.5 and trained_weights(info).autoencoder_weight == 0.5
    )
    assert Sketcher.load(out).loss_weights.kl_weight == 0.5
    assert main(["train", "--out", str(out), "--resume", "--steps", "2"]) == 0
    train = json.loads(path.read_text())["train"]
    assert train["kl_weight"] == 0.5 and train["autoencoder_weight"] == 0.5


def test_an_exported_model_keeps_the_loss_weights_it_was_trained_with(tmp_path: Path) -> None:
    from aisketcher.loss_weights import LossWeights

    model = SketchModel(tiny_config())
    weights = LossWeights(kl_weight=0.5, influence_beta=0.3)
    Sketcher(model, ["cat", "eye"], 40.0, loss_weights=weights).export(tmp_path / "model")
    assert Sketcher.load(tmp_path / "model").loss_weights == weights
