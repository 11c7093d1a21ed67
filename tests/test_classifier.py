"""The evaluation classifier: it learns real classes, shuffled labels score chance, save/load, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aisketcher.cli import main
from aisketcher.data.dataset import load_dataset
from aisketcher.errors import SketchDataError
from aisketcher.evaluate.classifier import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ClassifierConfig,
    ClassifierTraining,
    SketchClassifier,
    train_classifier,
)
from aisketcher.evaluate.metrics import top1_accuracy

CLASSES = ["eye", "bicycle", "guitar"]
# Small enough to train in a few seconds on one core, big enough to learn these three classes
# (measured: test accuracy 0.91; chance is 1/3).
SMALL = ClassifierConfig([], raster_size=32, channels=(8, 16, 32, 32), feature_size=32)
QUICK = ClassifierTraining(epochs=10, max_per_class=100, batch_size=32)


@pytest.fixture(scope="module")
def classifier(quickdraw_dir: Path) -> SketchClassifier:
    return train_classifier(CLASSES, quickdraw_dir, config=SMALL, training=QUICK)


@pytest.fixture(scope="module")
def test_split(quickdraw_dir: Path):
    return load_dataset(CLASSES, quickdraw_dir, splits=("test",), scale_factor=1.0)["test"]


def test_it_recognizes_real_test_sketches(classifier: SketchClassifier, test_split) -> None:
    accuracy = top1_accuracy(classifier.predict(test_split.sketches), test_split.labels)
    assert accuracy > 0.75
    assert classifier.info["accuracy"]["test"] == pytest.approx(accuracy)
    assert classifier.info["data"]["sizes"]["train"] == 3 * 100
    assert len(classifier.info["history"]) == QUICK.epochs


def test_recognizability_of_shuffled_labels_is_near_chance(
    classifier: SketchClassifier, test_split
) -> None:
    predicted = classifier.predict(test_split.sketches)
    shuffled = np.random.default_rng(0).permutation(test_split.labels)
    # 210 sketches: one standard deviation of chance accuracy is 0.033.
    assert abs(top1_accuracy(predicted, shuffled) - 1 / 3) < 0.1


def test_features_are_the_penultimate_layer(classifier: SketchClassifier, test_split) -> None:
    sketches = test_split.sketches[:5]
    feats = classifier.features(sketches)
    assert feats.shape == (5, SMALL.feature_size) and feats.dtype == np.float64
    logits = classifier.model.head(torch.from_numpy(feats).float())
    assert np.array_equal(logits.argmax(1).numpy(), classifier.predict(sketches))


def test_it_does_not_depend_on_the_scale_of_a_sketch(
    classifier: SketchClassifier, test_split
) -> None:
    # Evaluated models draw in their own normalised units; rasters are fitted to the square.
    pixels = test_split.sketches[:4]
    normalised = [s * np.array([1 / 37.5, 1 / 37.5, 1], dtype=np.float32) for s in pixels]
    assert np.allclose(classifier.features(pixels), classifier.features(normalised), atol=1e-5)


def test_save_and_load_give_the_same_classifier(
    classifier: SketchClassifier, test_split, tmp_path: Path
) -> None:
    classifier.save(tmp_path)
    assert (tmp_path / WEIGHTS_FILE).is_file()
    info = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert info["config"]["classes"] == CLASSES and info["config"]["raster_size"] == 32
    loaded = SketchClassifier.load(tmp_path)
    assert loaded.classes == CLASSES and loaded.source == str(tmp_path)
    sketches = test_split.sketches[:20]
    assert np.array_equal(loaded.features(sketches), classifier.features(sketches))


def test_same_seed_same_classifier(quickdraw_dir: Path) -> None:
    tiny = ClassifierTraining(epochs=1, max_per_class=10, batch_size=8, seed=3)
    a = train_classifier(["eye", "guitar"], quickdraw_dir, config=SMALL, training=tiny)
    b = train_classifier(["eye", "guitar"], quickdraw_dir, config=SMALL, training=tiny)
    for (name, x), y in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), name


def test_unknown_class_names_the_classifier_command(classifier: SketchClassifier) -> None:
    assert classifier.class_index("guitar") == 2
    with pytest.raises(SketchDataError, match=r"does not know class 'cat'.*classifier train"):
        classifier.class_index("cat")


def test_bad_folders_get_clear_errors(classifier: SketchClassifier, tmp_path: Path) -> None:
    with pytest.raises(SketchDataError, match=r"not a classifier folder.*classifier train"):
        SketchClassifier.load(tmp_path)
    classifier.save(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(SketchDataError, match="unreadable classifier"):
        SketchClassifier.load(tmp_path)
    classifier.save(tmp_path)
    info = json.loads((tmp_path / CONFIG_FILE).read_text())
    info["config"]["channels"] = [4, 4, 4, 4]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(info))
    with pytest.raises(SketchDataError, match="do not match its config"):
        SketchClassifier.load(tmp_path)


def test_classifier_train_command(
    quickdraw_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "clf"
    code = main(
        [
            "classifier",
            "train",
            "--classes",
            "eye,guitar",
            "--data",
            str(quickdraw_dir),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--max-per-class",
            "16",
            "--raster-size",
            "32",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{") :])["out"] == str(out)
    assert SketchClassifier.load(out).classes == ["eye", "guitar"]


def test_classifier_help_has_examples(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["classifier", "train", "--help"])
    assert "aisketcher classifier train --classes" in capsys.readouterr().out
