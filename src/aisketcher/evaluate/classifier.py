"""The project's own sketch classifier: a compact CNN over rasterized sketches.

No pretrained sketch classifier can be downloaded here, so the metrics that need one (recognizability,
FID, precision and recall) use this one, trained on the training split of the evaluated classes.
Sketches are rasterized with `raster.rasterize_many` (fitted to the square, aspect kept), so the
classifier does not care about a model's scale factor. Augmentation works on the strokes (independent
x/y scaling, point dropping as in training, a small rotation) and on the raster (a shift of a few
pixels). A classifier is stored as `classifier.safetensors` (weights) and `classifier.json` (its
settings, classes and accuracies); nothing is unpickled when it is loaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from aisketcher import __version__
from aisketcher.atomic import write_json
from aisketcher.data.batching import augment
from aisketcher.data.dataset import Split, load_dataset
from aisketcher.errors import SketchDataError
from aisketcher.raster import rasterize_many
from aisketcher.sketch import Sketch

WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "classifier.json"

SketchLike = np.ndarray | Sketch


@dataclass
class ClassifierConfig:
    classes: list[str]
    raster_size: int = 64  # side of the input raster
    line_width: int = 2  # brush of the rasterizer, in pixels
    margin: int = 4  # empty border of the raster; also bounds the random shift
    channels: tuple[int, ...] = (32, 64, 128, 128)  # one strided conv block each
    feature_size: int = 128  # the penultimate layer: the features of FID and precision/recall
    dropout: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SketchDataError(f"unknown classifier config fields: {', '.join(unknown)}")
        return cls(**{**data, "channels": tuple(data.get("channels", cls.channels))})


@dataclass
class ClassifierTraining:
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    augment_scale: float = 0.15  # independent x/y scaling, as in training the sketch models
    augment_drop: float = 0.1  # point dropping, as in training the sketch models
    rotation_degrees: float = 10.0  # random rotation of the strokes, +- this
    shift_pixels: int = 3  # random raster shift, +- this (less than the margin: nothing wraps)
    max_per_class: int | None = None  # use at most this many training sketches of each class

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SketchCNN(nn.Module):
    """Strided conv blocks (each halves the image), global average pooling, a hidden layer, logits.

    Strided convolutions rather than convolution + max pooling: faster for the same accuracy on a
    CPU shared with training runs (docs/measurements.md).
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        in_ch = 1
        for ch in config.channels:
            blocks += [
                nn.Conv2d(in_ch, ch, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(ch),
                nn.ReLU(inplace=True),
            ]
            in_ch = ch
        self.conv = nn.Sequential(*blocks)
        self.hidden = nn.Linear(in_ch, config.feature_size)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.feature_size, len(config.classes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) -> (B, feature_size), the layer before the logits."""
        pooled = self.conv(images).mean((2, 3))
        return F.relu(self.hidden(pooled))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(images)))


def _rotate(s3: np.ndarray, degrees: float) -> np.ndarray:
    angle = math.radians(degrees)
    rot = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    out = s3.astype(np.float32, copy=True)
    out[:, :2] = s3[:, :2] @ rot.astype(np.float32)
    return out


def _stroke3(item: SketchLike) -> np.ndarray:
    return item.stroke3 if isinstance(item, Sketch) else np.asarray(item)


class SketchClassifier:
    """A trained SketchCNN with its config: rasterizes sketches and classifies them."""

    def __init__(
        self, config: ClassifierConfig, model: SketchCNN, info: dict[str, Any], source: str = ""
    ) -> None:
        self.config = config
        self.model = model.eval()
        self.info = info
        self.source = source  # the folder it was loaded from

    @property
    def classes(self) -> list[str]:
        return self.config.classes

    @property
    def device(self) -> torch.device:
        return self.model.head.weight.device

    def class_index(self, name: str) -> int:
        key = name.strip().replace(" ", "_")
        names = [c.replace(" ", "_") for c in self.classes]
        if key not in names:
            raise SketchDataError(
                f"the classifier does not know class '{name}' (it knows: {', '.join(self.classes)});"
                " train one on these classes with `aisketcher classifier train`"
            )
        return names.index(key)

    def rasters(self, sketches: Sequence[SketchLike]) -> np.ndarray:
        cfg = self.config
        return rasterize_many(
            [_stroke3(s) for s in sketches],
            cfg.raster_size,
            line_width=cfg.line_width,
            margin=cfg.margin,
        )

    @torch.no_grad()
    def _run(
        self, sketches: Sequence[SketchLike], batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        self.model.eval()
        feats, logits = [], []
        for start in range(0, len(sketches), batch_size):
            images = _as_images(self.rasters(sketches[start : start + batch_size]), self.device)
            f = self.model.features(images)
            feats.append(f.cpu().numpy())
            logits.append(self.model.head(f).cpu().numpy())
        size = self.config.feature_size
        if not feats:
            return np.zeros((0, size)), np.zeros((0, len(self.classes)))
        return np.concatenate(feats).astype(np.float64), np.concatenate(logits)

    def features(self, sketches: Sequence[SketchLike], batch_size: int = 256) -> np.ndarray:
        """Penultimate-layer features, (n, feature_size) float64."""
        return self._run(sketches, batch_size)[0]

    def predict(self, sketches: Sequence[SketchLike], batch_size: int = 256) -> np.ndarray:
        """Top-1 class index of each sketch."""
        return self._run(sketches, batch_size)[1].argmax(1)

    def features_and_predictions(
        self, sketches: Sequence[SketchLike], batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        feats, logits = self._run(sketches, batch_size)
        return feats, logits.argmax(1)

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(tensors, str(out / WEIGHTS_FILE))
        write_json(out / CONFIG_FILE, {"config": self.config.to_dict(), **self.info})
        return out

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> SketchClassifier:
        folder = Path(path)
        config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise SketchDataError(
                f"not a classifier folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}); make one with "
                "`aisketcher classifier train --classes ... --out DIR`",
                str(folder),
            )
        try:
            info = json.loads(config_path.read_text())
            config = ClassifierConfig.from_dict(info.pop("config"))
            tensors = load_file(str(weights_path))
        except Exception as exc:  # safetensors' own error type derives from Exception only
            raise SketchDataError(f"unreadable classifier: {exc}", str(folder)) from None
        model = SketchCNN(config)
        try:
            model.load_state_dict(tensors)
        except RuntimeError as exc:
            raise SketchDataError(
                f"classifier weights do not match its config: {exc}", str(weights_path)
            ) from None
        return cls(config, model.to(device), info, str(folder))


def _as_images(rasters: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(rasters.astype(np.float32)).unsqueeze(1).to(device)


def accuracy(classifier: SketchClassifier, split: Split, labels: np.ndarray) -> float:
    """Top-1 accuracy on a split, `labels` given as the classifier's class indices."""
    if len(split) == 0:
        return math.nan
    return float((classifier.predict(split.sketches) == labels).mean())


def _augmented_rasters(
    sketches: list[np.ndarray],
    config: ClassifierConfig,
    train: ClassifierTraining,
    rng: np.random.Generator,
) -> np.ndarray:
    out = []
    for s in sketches:
        a = augment(s, rng, train.augment_scale, train.augment_drop)
        out.append(_rotate(a, rng.uniform(-1, 1) * train.rotation_degrees))
    rasters = rasterize_many(
        out, config.raster_size, line_width=config.line_width, margin=config.margin
    )
    shift = min(train.shift_pixels, config.margin - 1)
    if shift > 0:
        # np.roll wraps around, but the shift is smaller than the empty margin: nothing does.
        offsets = rng.integers(-shift, shift + 1, size=(len(rasters), 2))
        for i, (dy, dx) in enumerate(offsets):
            rasters[i] = np.roll(rasters[i], (dy, dx), axis=(0, 1))
    return rasters


def train_classifier(
    classes: str | Sequence[str],
    data_dir: str | Path | None = None,
    *,
    config: ClassifierConfig | None = None,
    training: ClassifierTraining | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> SketchClassifier:
    """Train on the training split of `classes`; keep the epoch with the best validation accuracy.

    Classes are weighted by inverse frequency in the loss, so a class with more sketches (cat has
    three times as many here) does not become the classifier's default answer.
    """
    training = training or ClassifierTraining()
    data = load_dataset(classes, data_dir)
    config = dataclasses.replace(config or ClassifierConfig([]), classes=list(data.class_names))
    train, valid, test = data["train"], data["valid"], data["test"]
    if training.max_per_class is not None:
        keep = np.concatenate(
            [
                np.flatnonzero(train.labels == k)[: training.max_per_class]
                for k in range(data.num_classes)
            ]
        )
        train = Split([train.sketches[i] for i in keep], train.labels[keep])
    torch.manual_seed(training.seed)
    rng = np.random.default_rng(training.seed)
    model = SketchCNN(config).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, training.epochs))
    counts = np.bincount(train.labels, minlength=data.num_classes).astype(np.float64)
    weights = torch.tensor(
        counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32
    )
    classifier = SketchClassifier(config, model, {})
    labels_t = torch.from_numpy(train.labels)
    best_acc, best_state = -1.0, None
    history: list[dict[str, float]] = []
    for epoch in range(training.epochs):
        model.train()
        rasters = _augmented_rasters(train.sketches, config, training, rng)
        order = rng.permutation(len(rasters))
        total, seen = 0.0, 0
        for start in range(0, len(order), training.batch_size):
            index = order[start : start + training.batch_size]
            images = _as_images(rasters[index], device)
            loss = F.cross_entropy(
                model(images), labels_t[index].to(device), weight=weights.to(device)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        schedule.step()
        valid_acc = accuracy(classifier, valid, valid.labels) if len(valid) else math.nan
        history.append(
            {"epoch": epoch + 1, "train_loss": total / seen, "valid_accuracy": valid_acc}
        )
        if progress:
            print(
                f"epoch {epoch + 1}/{training.epochs}: loss {total / seen:.4f}, valid accuracy {valid_acc:.3f}"
            )
        # Without a validation split the last epoch is kept.
        if not (valid_acc <= best_acc):
            best_acc = valid_acc
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    test_acc = accuracy(classifier, test, test.labels)
    sizes = {"train": len(train), "valid": len(valid), "test": len(test)}
    classifier.info = {
        "training": training.to_dict(),
        "history": history,
        "data": {"sources": data.sources, "sizes": sizes},
        "accuracy": {
            "valid": best_acc if math.isfinite(best_acc) else None,
            "test": test_acc if math.isfinite(test_acc) else None,
        },
        "code_version": __version__,
    }
    return classifier
