"""The batches a run trains on (augmented, grouped by length, in a resumable order) and the fixed
sample it validates on."""

from __future__ import annotations

from aisketcher.data.batching import BatchLoader
from aisketcher.data.dataset import SketchDataset
from aisketcher.model.config import ModelConfig
from aisketcher.train import distributed
from aisketcher.train.config import TrainConfig, validation_per_class


def run_loaders(
    dataset: SketchDataset, model_config: ModelConfig, train_config: TrainConfig
) -> tuple[BatchLoader, BatchLoader | None]:
    """The training split's loader, and the validation sample's (None without one)."""
    raster_size = model_config.raster_size if model_config.reads_rasters else None
    valid = dataset.splits.get("valid")
    if valid is not None:  # bounded: a validation costs the same at any data size
        valid = valid.sample_per_class(
            train_config.valid_per_class or validation_per_class(dataset.num_classes)
        )
    train_loader = BatchLoader(
        dataset["train"],
        train_config.batch_size,
        raster_size=raster_size,
        seed=train_config.seed,
        scale=train_config.augment_scale,
        drop=train_config.augment_drop,
        group_by_length=train_config.group_by_length,
        balance_classes=train_config.balance_classes,
        shard=distributed.shard(),  # each rank reads its own rows of the global batches
        damage=train_config.damage,
        damage_share=train_config.damage_share,
    )
    valid_loader = (
        BatchLoader(
            valid,
            train_config.batch_size,
            raster_size=raster_size,
            train=False,
            pad_to=model_config.max_seq_len,  # l_s over all N_max (+ the end) rows, eq. 13
        )
        if valid is not None and len(valid)
        else None
    )
    return train_loader, valid_loader
