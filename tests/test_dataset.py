"""Multi-class datasets: labels, filtering, clamping and the training scale factor, on real data.

The reference values are computed independently, straight from NumPy's loading of the (trusted)
real files, following magenta's preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisketcher.data.dataset import SketchDataset, load_dataset
from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import write_npz

CLASSES = ["cat", "bicycle", "paint can", "The Eiffel Tower"]
STEMS = ["cat", "bicycle", "paint_can", "The_Eiffel_Tower"]
SPLITS = ("train", "valid", "test")


def reference(
    folder: Path, stems: list[str], max_seq_len: int = 250
) -> tuple[dict[str, list[np.ndarray]], dict[str, list[int]], float]:
    """Kept sketches (clamped, float64, not normalised), their labels and the scale factor."""
    kept: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    labels: dict[str, list[int]] = {s: [] for s in SPLITS}
    for label, stem in enumerate(stems):
        with np.load(folder / f"{stem}.npz", allow_pickle=True, encoding="latin1") as raw:
            for split in SPLITS:
                for s in raw[split]:
                    if len(s) <= max_seq_len:
                        s = s.astype(np.float64)
                        s[:, :2] = np.clip(s[:, :2], -1000, 1000)
                        kept[split].append(s)
                        labels[split].append(label)
    offsets = np.concatenate([s[:, :2].ravel() for s in kept["train"]])
    return kept, labels, float(np.std(offsets))


@pytest.fixture(scope="module")
def dataset(data_dir) -> SketchDataset:
    return load_dataset(CLASSES, data_dir)


@pytest.fixture(scope="module")
def expected(quickdraw_dir):
    return reference(quickdraw_dir, STEMS)


def assert_normalised(ds: SketchDataset, kept: dict[str, list[np.ndarray]], factor: float) -> None:
    for split in ds.splits:
        assert len(ds[split]) == len(kept[split])
        for ours, raw in zip(ds[split].sketches, kept[split], strict=True):
            assert ours.dtype == np.float32
            assert np.array_equal(ours[:, 2], raw[:, 2])
            np.testing.assert_allclose(ours[:, :2], raw[:, :2] / factor, rtol=1e-6, atol=1e-7)


def test_labels_follow_the_class_order(dataset, expected):
    _, labels, _ = expected
    assert dataset.class_names == STEMS
    assert dataset.num_classes == 4
    assert [Path(s).name for s in dataset.sources] == [f"{s}.npz" for s in STEMS]
    for split in SPLITS:
        assert dataset[split].labels.dtype == np.int64
        assert dataset[split].labels.tolist() == labels[split]
    # cat has 1,756 training sketches, all shorter than 250 points.
    assert np.count_nonzero(dataset["train"].labels == 0) == 1756


def test_scale_factor_is_the_std_of_clamped_training_offsets(dataset, expected):
    kept, _, factor = expected
    assert dataset.scale_factor == pytest.approx(factor, rel=1e-9)
    assert dataset.max_seq_len == 250
    # Every split, valid and test included, is divided by the training scale factor.
    assert_normalised(dataset, kept, factor)
    train = np.concatenate([s[:, :2].ravel() for s in dataset["train"].sketches])
    assert train.std() == pytest.approx(1.0, rel=1e-5)


def test_loading_is_deterministic(dataset, data_dir):
    again = load_dataset(CLASSES, data_dir)
    assert again.scale_factor == dataset.scale_factor
    for split in SPLITS:
        assert np.array_equal(again[split].labels, dataset[split].labels)
        pairs = zip(again[split].sketches, dataset[split].sketches, strict=True)
        assert all(np.array_equal(a, b) for a, b in pairs)


def test_max_seq_len_filters_every_split(data_dir, quickdraw_dir):
    ds = load_dataset("cat,bicycle", data_dir, max_seq_len=40)
    kept, labels, factor = reference(quickdraw_dir, ["cat", "bicycle"], max_seq_len=40)
    assert ds.max_seq_len == 40
    assert ds.longest == 40
    assert ds.scale_factor == pytest.approx(factor, rel=1e-9)
    for split in SPLITS:
        assert ds[split].lengths().max() <= 40
        assert ds[split].labels.tolist() == labels[split]
    assert_normalised(ds, kept, factor)
    assert len(ds["train"]) < 0.8 * (1756 + 560)  # the limit removes a good share


def test_scale_factor_passthrough_and_split_choice(dataset, data_dir, expected):
    kept, _, _ = expected
    given = dataset.scale_factor * 2
    ds = load_dataset(CLASSES, data_dir, scale_factor=given, splits=("test",))
    assert list(ds.splits) == ["test"]
    assert ds.scale_factor == given
    assert_normalised(ds, {"test": kept["test"]}, given)
    with pytest.raises(SketchDataError, match="no split 'train'"):
        ds["train"]


def test_valid_only_still_uses_the_training_scale_factor(dataset, data_dir):
    ds = load_dataset(CLASSES, data_dir, splits=("valid",))
    assert ds.scale_factor == dataset.scale_factor
    pairs = zip(ds["valid"].sketches, dataset["valid"].sketches, strict=True)
    assert all(np.array_equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan"), float("inf")])
def test_scale_factor_must_be_positive(data_dir, factor):
    with pytest.raises(SketchDataError, match="scale factor must be a positive number"):
        load_dataset("cat", data_dir, scale_factor=factor, splits=("test",))


def test_npz_paths_as_classes(dataset, data_dir, quickdraw_dir):
    paths = [quickdraw_dir / "cat.npz", str(quickdraw_dir / "bicycle.npz")]
    ds = load_dataset(paths, data_dir)
    by_name = load_dataset(["cat", "bicycle"], data_dir)
    assert ds.class_names == ["cat", "bicycle"]
    assert ds.scale_factor == by_name.scale_factor
    assert ds["test"].labels.tolist() == by_name["test"].labels.tolist()
    with pytest.raises(SketchDataError, match="no such file"):
        load_dataset([quickdraw_dir / "no_such_class.npz"], data_dir)


def test_class_list_string_is_split_and_a_repeated_class_refused(data_dir):
    ds = load_dataset(" cat, bicycle ,", data_dir, splits=("test",), scale_factor=1.0)
    assert ds.class_names == ["cat", "bicycle"]
    with pytest.raises(SketchDataError, match="class 'cat' is given twice"):
        load_dataset(" cat, bicycle ,cat,", data_dir)  # would count cat's data twice
    with pytest.raises(SketchDataError, match="no classes given"):
        load_dataset(" , ", data_dir)


@pytest.mark.parametrize(("typo", "suggestion"), [("bycicle", "bicycle"), ("kat", "cat")])
def test_unknown_class_suggests_near_names(data_dir, typo, suggestion):
    with pytest.raises(SketchDataError) as info:
        load_dataset(["cat", typo], data_dir)
    message = str(info.value)
    assert f"unknown class '{typo}'" in message
    assert "did you mean" in message
    assert suggestion in message.split("did you mean", 1)[1]


def test_longest(dataset):
    lengths = [len(s) for split in SPLITS for s in dataset[split].sketches]
    assert dataset.longest == max(lengths)
    assert dataset.longest <= dataset.max_seq_len


def test_offsets_are_clamped_before_the_scale_factor(tmp_path):
    far = np.array([[5000, -2000, 0], [3, 4, 1]], dtype=np.int16)
    near = np.array([[10, 20, 0], [-30, 40, 1]], dtype=np.int16)
    write_npz(tmp_path / "jumpy.npz", {"train": [far, near], "valid": [far], "test": [near]})
    ds = load_dataset([tmp_path / "jumpy.npz"], tmp_path)
    clamped = np.array([1000, -1000, 3, 4, 10, 20, -30, 40], dtype=np.float64)
    factor = clamped.std()
    assert ds.scale_factor == pytest.approx(factor, rel=1e-9)
    np.testing.assert_allclose(ds["valid"].sketches[0][:, :2] * factor, [[1000, -1000], [3, 4]])


def test_whole_quickdraw_folder(data_dir, quickdraw_dir):
    names = sorted(p.stem for p in quickdraw_dir.glob("*.npz"))
    assert len(names) == 345
    ds = load_dataset(names, data_dir)
    assert ds.class_names == names
    # 86,365 sketches in all (the data's README), 64 of them longer than 250 points.
    assert sum(len(ds[split]) for split in SPLITS) == 86_365 - 64
    assert ds.longest <= 250
    assert set(np.unique(ds["train"].labels)) == set(range(345))
    assert np.all(np.diff(ds["train"].labels) >= 0)  # grouped by class, in order
    assert np.isfinite(ds.scale_factor) and ds.scale_factor > 0


def test_a_dataset_shows_itself_briefly_and_a_missing_folder_is_named(
    quickdraw_dir: Path, tmp_path: Path
) -> None:
    data = load_dataset("cat,pig", quickdraw_dir)
    text = repr(data)
    assert len(text) < 300 and "2 classes: cat, pig" in text and "train" in text
    assert len(repr(data["train"])) < 100
    with pytest.raises(SketchDataError, match="data folder does not exist"):
        load_dataset("cat", tmp_path / "nowhere")


def test_sources_are_absolute_so_a_run_works_from_any_folder(
    quickdraw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(quickdraw_dir.parent)
    data = load_dataset("cat", Path("quickdraw"))
    assert all(Path(p).is_absolute() for p in data.sources)
    monkeypatch.chdir(tmp_path)
    assert all(Path(p).is_file() for p in data.sources)
