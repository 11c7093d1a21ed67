"""`aisketcher evaluate` end to end: a tiny run trained for 2 steps, and Google's magenta-js bicycle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from aisketcher import modes
from aisketcher.api import Sketcher
from aisketcher.cli import main
from aisketcher.cli.evaluate import summary
from aisketcher.data.dataset import Split, load_dataset
from aisketcher.errors import SketchDataError
from aisketcher.evaluate import report as report_module
from aisketcher.evaluate.classifier import (
    ClassifierConfig,
    ClassifierTraining,
    SketchClassifier,
    train_classifier,
)
from aisketcher.evaluate.figures import read_metrics
from aisketcher.evaluate.healing import MASKS_FILE
from aisketcher.evaluate.modes import INTERPOLATE_SEED, TRAINING_CODES_SEED
from aisketcher.evaluate.report import REPORT_FILE, evaluate_run
from aisketcher.evaluate.sets import EvalSettings, pick_training
from aisketcher.model.config import make_config
from aisketcher.train.trainer import TrainConfig, Trainer

TINY = dict(enc_rnn_size=16, dec_rnn_size=32, z_size=8, raster_z_size=8, num_mixture=3)
MAX_LEN = 40  # short sketches keep the tiny run fast (21 cat and 31 eye test sketches)
SAMPLES = 6
METRICS = ("likelihood", "recognizability", "fid", "precision_recall", "diversity", "interpolate")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="module")
def classifier(quickdraw_dir: Path, work: Path) -> SketchClassifier:
    config = ClassifierConfig([], raster_size=32, channels=(8, 16, 32, 32), feature_size=32)
    training = ClassifierTraining(epochs=2, max_per_class=40, batch_size=32)
    trained = train_classifier(
        ["cat", "eye", "bicycle"], quickdraw_dir, config=config, training=training
    )
    trained.save(work / "classifier")
    return SketchClassifier.load(work / "classifier")


@pytest.fixture(scope="module")
def run_dir(quickdraw_dir: Path, work: Path) -> Path:
    """An AI-Sketcher run on cat and eye, trained for 2 steps with a validation at each."""
    data = load_dataset("cat,eye", quickdraw_dir, max_seq_len=MAX_LEN)
    config = make_config("ai-sketcher", "small", num_classes=2, max_seq_len=data.longest, **TINY)
    train = TrainConfig(steps=2, batch_size=4, eval_every=1, log_every=1)
    Trainer(config, train, data, work / "run", progress=False).fit()
    return work / "run"


def settings(work: Path, **overrides: Any) -> EvalSettings:
    fields = dict(samples=SAMPLES, tsne_per_class=SAMPLES)
    return EvalSettings(**{**fields, **overrides})


@pytest.fixture(scope="module")
def report(run_dir: Path, classifier: SketchClassifier, work: Path) -> dict:
    return evaluate_run(run_dir, classifier, work / "eval", settings(work))


def test_report_has_every_metric_per_class(report: dict, work: Path) -> None:
    assert report["classes"] == ["cat", "eye"]
    assert report["model"]["config"] == "ai-sketcher" and report["model"]["step"] == 2
    assert report["settings"]["temperature"] == 0.4  # none asked for: the model's own
    assert report["counts"]["real"] == {"cat": SAMPLES, "eye": SAMPLES}
    for kind in ("real", "draw", "reconstruct", "training_codes"):
        assert set(report["recognizability"][kind]) == {"cat", "eye", "all"}
        assert all(0 <= v <= 1 for v in report["recognizability"][kind].values())
    for kind in ("floor", "draw", "reconstruct", "training_codes"):
        assert all(v >= 0 for v in report["fid"][kind].values())
        for pr in report["precision_recall"][kind].values():
            assert 0 <= pr["precision"] <= 1 and 0 <= pr["recall"] <= 1
    for kind in ("real", "draw", "reconstruct"):
        div = report["diversity"][kind]
        assert set(div["per_class"]) == {"cat", "eye"}
        assert len(div["per_sketch"]) == 2 * SAMPLES
    lengths = report["lengths"]
    assert lengths["real_mean"] > 1 and lengths["draw_mean"] >= 1
    assert 0 <= lengths["draw_at_max_share"] <= 1 and "lengths: real" in summary(report)
    assert json.loads((work / "eval" / REPORT_FILE).read_text()) == report


def test_report_scores_every_drawing_mode(report: dict) -> None:
    recog = report["recognizability"]
    for kind in ("translate", "translate_as_source", "complete_start", "complete"):
        assert set(recog[kind]) == {"cat", "eye", "all"}, kind
    endings = report["endings"]
    assert endings["starts"] == 2 * min(SAMPLES, 5) and endings["per_start"] == 4
    assert all(len(a) == 4 and min(a) >= 0 for a in endings["points_added"])
    assert 1 <= endings["mean_distinct_lengths"] <= 4
    assert set(report["copy_check"]) == {"draw", "reconstruct", "translate", "complete"}
    for check in report["copy_check"].values():
        assert check["ratio"] >= 0 and 0 <= check["near_copy_share"] <= 1
    leak = report["leak_check"]  # (its meaning: tests/test_leak_check.py)
    assert leak["count"] == 2 * SAMPLES
    assert leak["gap_l_r"] == pytest.approx(leak["other"]["l_r"] - leak["own"]["l_r"])


def test_interpolations_are_the_planners_and_scored(
    report: dict,
    run_dir: Path,
    classifier: SketchClassifier,
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ends = report["recognizability"]["interpolate_ends"]
    assert set(ends) == {"cat", "eye", "all"} and all(0 <= v <= 1 for v in ends.values())
    walk = report["interpolate"]
    assert walk["pairs"] == 2 * min(SAMPLES, 5) and walk["steps"] == 5
    assert set(walk["step_over_ends"]) == {"cat", "eye", "all"}
    assert all(v is None or v > 0 for v in walk["step_over_ends"].values())
    assert "interpolate: ends recognised" in summary(report)
    # A report from before the measure (no "interpolations" recorded) still has every other number
    # these settings give: an experiment reuses it.
    earlier = {k: v for k, v in report["settings"].items() if k != "interpolations"}
    assert settings(work, temperature=0.4).matches(earlier) and not settings(work, seed=1).matches(
        earlier
    )

    plans = []

    def planned(*args: Any) -> modes.Plan:
        plans.append((args, interpolate_pairs(*args)))
        return plans[-1][1]

    interpolate_pairs = modes.interpolate_pairs
    monkeypatch.setattr(modes, "interpolate_pairs", planned)
    few = settings(work, figures=False, interpolations=2)
    result = evaluate_run(run_dir, classifier, work / "interpolate", few)
    # One batch: the first two test sketches of cat (the model's class 0) to the first two of
    # eye, and those of eye to cat's, 5 steps each.
    assert len(plans) == 1 and plans[0][0][3:] == ([(0, 1)] * 2 + [(1, 0)] * 2, 5)
    (model, starts, ends, _, _), plan = plans[0]
    assert plan.labels == [0, 0, 1, 1, 1] * 2 + [1, 1, 0, 0, 0] * 2  # the nearer end's
    # each pair's rows are the one-pair plan's (`Sketcher.interpolate`'s)
    alone = modes.interpolate(model, starts[2], ends[2], (1, 0), 5).latent
    for part in ("c", "z_s", "z_r"):
        mixed = getattr(plan.latent, part)[10:15]
        assert torch.allclose(mixed, getattr(alone, part), atol=1e-5), part
    drawn = modes.run(model, plan, temperature=few.temperature, seed=INTERPOLATE_SEED)
    _, pred = classifier.features_and_predictions(drawn)
    pred = pred.reshape(4, 5)
    cat, eye = classifier.class_index("cat"), classifier.class_index("eye")
    right = (pred[:, 0] == [cat, cat, eye, eye]).sum() + (pred[:, -1] == [eye, eye, cat, cat]).sum()
    assert result["recognizability"]["interpolate_ends"]["all"] == pytest.approx(right / 8)
    assert result["interpolate"]["pairs"] == 4


def test_the_priors_limit_draws_from_the_codes_of_training_sketches(
    run_dir: Path,
    classifier: SketchClassifier,
    quickdraw_dir: Path,
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def recorded(sketcher: Sketcher, sketches: list, labels: list, *args: Any, **kw: Any) -> list:
        calls.append((sketches, labels, args))
        return decode(sketcher, sketches, labels, *args, **kw)

    decode = report_module.decode_encodings
    monkeypatch.setattr(report_module, "decode_encodings", recorded)
    few = settings(work, figures=False, heal_shares=[])
    result = evaluate_run(run_dir, classifier, work / "bound", few)
    assert "training codes" in summary(result)
    ((picks, labels, args),) = [c for c in calls if c[2][1] == few.seed + TRAINING_CODES_SEED]
    sketcher = Sketcher.load(run_dir)
    train = load_dataset(
        "cat,eye",
        quickdraw_dir,
        splits=("train",),
        scale_factor=sketcher.scale_factor,
        max_seq_len=sketcher.model.config.max_seq_len,
    )["train"]
    # SAMPLES of each class, each a training sketch of its class, not one sketch over and over
    assert labels == [0] * SAMPLES + [1] * SAMPLES
    for pick, label in zip(picks, labels, strict=True):
        assert any(
            np.array_equal(pick, train.sketches[i]) for i in np.flatnonzero(train.labels == label)
        )
    assert len({p.tobytes() for p in picks}) > SAMPLES
    # The figures are those of these sketches' reconstructions.
    _, pred = classifier.features_and_predictions(decode(sketcher, picks, labels, *args))
    cat, eye = classifier.class_index("cat"), classifier.class_index("eye")
    recog = result["recognizability"]["training_codes"]
    assert recog["cat"] == pytest.approx(np.mean(pred[:SAMPLES] == cat))
    assert recog["eye"] == pytest.approx(np.mean(pred[SAMPLES:] == eye))


def test_training_picks_are_seeded_and_need_every_class() -> None:
    sketches = [np.full((3, 3), i, np.float32) for i in range(6)]
    train = Split(sketches, np.array([0, 0, 0, 1, 1, 1]))
    labels = np.array([0, 0, 1, 1])
    picks = pick_training(train, labels, seed=3)
    assert [int(p[0, 0]) // 3 for p in picks] == [0, 0, 1, 1]
    same = pick_training(train, labels, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(picks, same, strict=True))
    assert pick_training(train, np.array([0, 2]), seed=3) is None  # class 2: no training sketch


def test_the_report_heals_at_each_share_and_saves_the_masks(report: dict, work: Path) -> None:
    healing = report["healing"]
    assert healing["shares"] == [0.1, 0.3] and healing["masks_file"] == MASKS_FILE
    saved = json.loads((work / "eval" / MASKS_FILE).read_text())
    for share in ("10%", "30%"):
        part = healing[share]
        assert part["sketches"] + part["left_whole"] == 2 * SAMPLES
        for kind in ("damaged", "healed", "completed"):
            for measure in ("recognizability", "retrieval_top1", "retrieval_top10"):
                values = part[kind][measure]
                assert set(values) == {"cat", "eye", "all"}, (kind, measure)
                assert all(v is None or 0 <= v <= 1 for v in values.values())
            # Six sketches a class: every source is among the ten nearest.
            assert part[kind]["retrieval_top10"]["all"] == 1.0
        masks = saved["masks"][share]
        assert len(masks) == 2 * SAMPLES
        assert [m["index"] for m in masks if m["class"] == "cat"] == list(range(SAMPLES))
        assert sum(bool(m["removed_strokes"]) for m in masks) == part["sketches"]
    whole = healing["whole_reconstructed"]
    assert set(whole) == {"retrieval_top1", "retrieval_top10"}
    assert whole["retrieval_top10"]["all"] == 1.0
    assert "heal 30% of strokes removed" in summary(report)
    # A report from before the measure still has every other number these settings give.
    earlier = {k: v for k, v in report["settings"].items() if k != "heal_shares"}
    assert settings(work, temperature=0.4).matches(earlier)


def test_likelihood_is_per_class_and_has_no_kl_floor(report: dict, quickdraw_dir: Path) -> None:
    test = load_dataset("cat,eye", quickdraw_dir, max_seq_len=MAX_LEN, splits=("test",))["test"]
    like = report["likelihood"]
    assert like["cat"]["count"] == int((test.labels == 0).sum())
    assert like["all"]["count"] == len(test)
    for name in ("cat", "eye", "all"):
        terms = like[name]
        assert terms["l_r"] == pytest.approx(terms["l_c"] + terms["l_s"])
        assert terms["l_kl"] == pytest.approx(terms["l_z"] + 0.1 * terms["l_a"])
        # With the KL floor (0.2) the total would be l_r + 0.2; the evaluation takes l_kl itself.
        assert terms["l_kl"] < 0.2
        assert terms["total"] == pytest.approx(terms["l_r"] + terms["l_kl"])
    weighted = sum(like[n]["total"] * like[n]["count"] for n in ("cat", "eye"))
    assert like["all"]["total"] == pytest.approx(weighted / like["all"]["count"])


def test_figures_are_pictures(report: dict, work: Path) -> None:
    names = report["figures"]
    assert set(names) == {"samples", "reconstructions", "tsne", "loss_curves"}
    for name in names.values():
        with Image.open(work / "eval" / name) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_same_seed_same_numbers(
    report: dict, run_dir: Path, classifier: SketchClassifier, work: Path
) -> None:
    again = evaluate_run(run_dir, classifier, work / "again", settings(work, figures=False))
    for key in METRICS:
        assert again[key] == report[key], key


def test_another_seed_and_a_diversity_ttest(
    report: dict, run_dir: Path, classifier: SketchClassifier, work: Path
) -> None:
    other = evaluate_run(
        run_dir,
        classifier,
        work / "seed1",
        settings(work, seed=1, figures=False),
        compare=work / "eval" / REPORT_FILE,
    )
    assert other["diversity"]["draw"]["per_sketch"] != report["diversity"]["draw"]["per_sketch"]
    assert other["likelihood"] == report["likelihood"]  # the likelihood does not sample drawings
    ttest = other["diversity_ttest"]
    assert ttest["n_a"] == ttest["n_b"] == 2 * SAMPLES
    assert 0 <= ttest["p"] <= 1 and ttest["same_settings"]


def test_magenta_js_model_is_evaluated_on_its_class(
    classifier: SketchClassifier, data_dir: Path, quickdraw_dir: Path, work: Path
) -> None:
    model = data_dir.parent / "models" / "magenta-js" / "bicycle.gen.json"
    result = evaluate_run(
        model, classifier, work / "bicycle", settings(work, data_dir=str(quickdraw_dir))
    )
    assert result["classes"] == ["bicycle"]
    assert result["model"]["config"] == "sketch-rnn-decoder"
    assert "reconstruct" not in result["recognizability"] and "no encoder" in result["skipped"]
    assert "training_codes" not in result["fid"]
    like = result["likelihood"]["bicycle"]
    assert like["l_z"] == 0 and like["l_a"] == 0
    # The imported model explains real bicycles (its test measured l_c 0.10, l_s 0.15 on 16).
    assert like["l_r"] < 0.4
    assert set(result["figures"]) == {"samples"}
    assert len(result["diversity"]["draw"]["per_sketch"]) == SAMPLES


def test_a_google_model_is_evaluated_by_name(
    classifier: SketchClassifier,
    data_dir: Path,
    quickdraw_dir: Path,
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`google:NAME` from a local mirror gives the numbers its downloaded file gives."""
    monkeypatch.setenv("AISKETCHER_MODELS_CACHE", str(work / "google-cache"))
    mirror = str(data_dir.parent / "models" / "magenta-js")
    fixed = settings(work, data_dir=str(quickdraw_dir), figures=False)
    named = evaluate_run("google:bicycle", classifier, work / "g", fixed, models_url=mirror)
    assert named["model"]["source"] == "google:bicycle" and named["model"]["step"] is None
    by_file = evaluate_run(
        work / "google-cache" / "bicycle.gen.json", classifier, work / "f", fixed
    )
    assert named["recognizability"] == by_file["recognizability"]
    assert named["fid"] == by_file["fid"]


def test_an_exported_model(
    run_dir: Path, classifier: SketchClassifier, quickdraw_dir: Path, work: Path
) -> None:
    exported = Sketcher.load(run_dir).export(work / "exported")
    result = evaluate_run(
        exported,
        classifier,
        work / "exported-eval",
        settings(work, classes=["eye"], figures=False, data_dir=str(quickdraw_dir)),
    )
    assert result["classes"] == ["eye"] and result["model"]["step"] is None
    # one class: nothing to translate into
    assert set(result["recognizability"]) == {
        "real",
        "draw",
        "reconstruct",
        "training_codes",
        "complete_start",
        "complete",
    }
    assert set(result["copy_check"]) == {"draw", "reconstruct", "complete"}
    # eye is the model's class 1 but the evaluation's class 0: each sketch is still compared with
    # the eye training sketches (not with none, which gave no distances at all)
    for check in result["copy_check"].values():
        assert check["real_median"] > 0 and check["ratio"] > 0


def test_a_class_the_classifier_does_not_know(
    run_dir: Path, quickdraw_dir: Path, work: Path
) -> None:
    narrow = train_classifier(
        ["eye", "bicycle"],
        quickdraw_dir,
        config=ClassifierConfig([], raster_size=32, channels=(4, 4, 4, 4), feature_size=4),
        training=ClassifierTraining(epochs=1, max_per_class=4),
    )
    with pytest.raises(SketchDataError, match="does not know class 'cat'"):
        evaluate_run(run_dir, narrow, work / "narrow", settings(work))


def test_evaluate_command(
    run_dir: Path,
    classifier: SketchClassifier,
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(work / "cache"))
    out = work / "cli"
    args = ["evaluate", str(run_dir), "--classifier", classifier.source, "--out", str(out)]
    assert main([*args, "--classes", "eye", "--samples", "4", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "recognizability: real (ceiling)" in printed and "FID (pooled)" in printed
    saved = json.loads((out / REPORT_FILE).read_text())
    assert saved["classes"] == ["eye"] and saved["settings"]["seed"] == 3


def test_evaluate_command_errors(run_dir: Path, work: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", str(run_dir), "--classifier", str(work / "nothing")]) == 2
    assert "classifier train" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", str(run_dir), "--classifier", "x", "--split", "train"])


def test_evaluate_help_has_examples(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    printed = capsys.readouterr().out
    assert "aisketcher evaluate runs/demo --classifier" in printed and "interpolations" in printed


def test_a_metrics_file_without_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("10,train,0.001,0.01,1.0\n")  # rows whose header row was lost
    with pytest.raises(SketchDataError, match="no header row") as err:
        read_metrics(path)
    assert str(path) in str(err.value)


def test_a_bad_comparison_report_is_refused_before_any_work(
    run_dir: Path, classifier: SketchClassifier, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aisketcher.evaluate.report as report_module

    bad = work / "bad.json"
    bad.write_text('{"diversity": {}}')

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the evaluation started")

    monkeypatch.setattr(report_module, "likelihood_by_class", no_work)
    with pytest.raises(SketchDataError, match="not an evaluation report"):
        evaluate_run(run_dir, classifier, work / "never", settings(work), compare=bad)
