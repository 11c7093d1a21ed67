"""Training to heal (`train --damage`): the encoder reads the damaged sketch, the decoder the whole
one, and only models with an encoder may train so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aisketcher.data.batching import collate
from aisketcher.data.dataset import load_dataset
from aisketcher.errors import SketchDataError
from aisketcher.model.config import make_config
from aisketcher.model.sketcher import SketchModel
from aisketcher.train.config import TrainConfig
from aisketcher.train.trainer import Trainer

TINY = dict(enc_rnn_size=16, dec_rnn_size=32, z_size=8, raster_z_size=8, num_mixture=3)


def _sketch(rng: np.random.Generator, n: int) -> np.ndarray:
    s3 = np.zeros((n, 3), dtype=np.float32)
    s3[:, :2] = rng.normal(size=(n, 2))
    s3[2::3, 2] = 1.0
    s3[-1, 2] = 1.0
    return s3


def test_the_encoder_reads_the_source_and_the_decoder_the_target() -> None:
    torch.manual_seed(0)
    config = make_config(
        "ai-sketcher-no-autoencoder", "small", num_classes=2, max_seq_len=20, **TINY
    )
    model = SketchModel(config).eval()
    rng = np.random.default_rng(0)
    targets = [_sketch(rng, n) for n in (12, 9)]
    damaged = [_sketch(rng, n) for n in (6, 4)]
    labels = np.array([0, 1])
    whole = collate(targets, labels, sources=damaged)
    source = collate(damaged, labels)
    latent = model.encode(source.strokes, source.lengths, source.labels, None, sample=False)
    torch.manual_seed(1)
    out = model(whole.strokes, whole.lengths, whole.labels, None, whole.source)
    assert torch.allclose(out.latent.mu_s, latent.mu_s, atol=1e-6)
    # The decoder still predicts the whole targets: one output row per target row.
    assert out.mixture.pen_log_prob().shape[1] == whole.strokes.shape[1] - 1
    # Without a source the encoder reads the targets.
    plain = model(whole.strokes, whole.lengths, whole.labels, None)
    own = model.encode(whole.strokes, whole.lengths, whole.labels, None, sample=False)
    assert torch.allclose(plain.latent.mu_s, own.mu_s, atol=1e-6)
    assert not torch.allclose(plain.latent.mu_s, latent.mu_s)


def test_a_decoder_only_model_cannot_train_to_heal(quickdraw_dir: Path, tmp_path: Path) -> None:
    data = load_dataset("cat", quickdraw_dir, max_seq_len=40)
    config = make_config(
        "sketch-rnn-decoder", "small", num_classes=1, max_seq_len=data.longest, **TINY
    )
    with pytest.raises(SketchDataError, match="decoder only"):
        Trainer(config, TrainConfig(steps=1, batch_size=4, damage=0.5), data, tmp_path / "r")


@pytest.mark.parametrize("field", ["damage", "damage_share"])
def test_a_share_above_one_is_refused(field: str) -> None:
    with pytest.raises(SketchDataError, match=field):
        TrainConfig.from_dict({field: 1.5}, "config.json")


def test_a_damaged_run_trains_and_records_its_damage(quickdraw_dir: Path, tmp_path: Path) -> None:
    data = load_dataset("cat,eye", quickdraw_dir, max_seq_len=40)
    config = make_config("ai-sketcher", "small", num_classes=2, max_seq_len=data.longest, **TINY)
    train = TrainConfig(steps=3, batch_size=4, eval_every=3, log_every=1, damage=0.5)
    trainer = Trainer(config, train, data, tmp_path / "run", progress=False)
    trainer.fit()
    assert trainer.step == 3 and trainer.skipped_steps == 0
    saved = TrainConfig.from_dict(trainer.run_info()["train"], "config.json")
    assert saved.damage == 0.5 and saved.damage_share == 0.5


@pytest.mark.parametrize(
    "fields", [{"damage": 1.5}, {"damage_share": -0.1}, {"damage": float("nan")}]
)
def test_a_trainer_refuses_shares_outside_0_1(
    quickdraw_dir: Path, tmp_path: Path, fields: dict
) -> None:
    data = load_dataset("cat", quickdraw_dir, max_seq_len=40)
    config = make_config("ai-sketcher", "small", num_classes=1, max_seq_len=data.longest, **TINY)
    with pytest.raises(SketchDataError, match="from 0 to 1"):
        Trainer(config, TrainConfig(steps=1, batch_size=4, **fields), data, tmp_path / "r")


@pytest.mark.parametrize("value", ["2", "-1", "nan"])
def test_the_command_refuses_a_share_outside_0_1(value: str, capsys) -> None:
    from aisketcher.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--out", "never", "--damage", value])
    assert "must be from 0 to 1" in capsys.readouterr().err
