"""`aisketcher experiment` end to end at the toy scale (2 classes, 2 training steps per model)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from aisketcher.api import Sketcher
from aisketcher.checkpoint import META_KEY, checkpoint_digest, read_checkpoint
from aisketcher.cli import main
from aisketcher.data.dataset import load_dataset
from aisketcher.errors import SketchDataError
from aisketcher.evaluate.columns import SPREAD_COLUMNS, markdown_table, spread_table
from aisketcher.evaluate.experiments import growth_series, run_experiment
from aisketcher.evaluate.results import write_results
from aisketcher.evaluate.runs import Context, train_run
from aisketcher.evaluate.scales import EXPERIMENTS, QD20, SCALES


@pytest.fixture(scope="module")
def experiments(
    quickdraw_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, int]:
    """Every experiment at the toy scale into one folder, with a copy of the results for docs."""
    import torch

    out = tmp_path_factory.mktemp("experiments")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(
            [
                "experiment",
                "all",
                "--scale",
                "toy",
                "--out",
                str(out / "exp"),
                "--doc",
                str(out / "docs" / "results.md"),
                "--data",
                str(quickdraw_dir),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    return out / "exp", out / "docs", code


@pytest.mark.slow
def test_every_experiment_writes_results_and_figures(experiments: tuple[Path, Path, int]) -> None:
    out, docs, code = experiments
    assert code == 0
    toy_runs = {"QD5-" + c for e in EXPERIMENTS.values() for c in e.configs}
    assert {p.name for p in (out / "runs").iterdir()} == toy_runs
    ablation = json.loads((out / "ablation.json").read_text())
    assert [r["model"] for r in ablation["rows"][:-1]] == list(EXPERIMENTS["ablation"].configs)
    assert all(r["steps"] == 2 and r["total"] > 0 for r in ablation["rows"][:-1])
    assert [k for k, _ in ablation["figures"]] == ["tsne", "loss_curves", "translation"]
    assert ablation["rows"][-1]["model"] == "real sketches"  # the floors and the ceiling
    multiclass = json.loads((out / "multiclass.json").read_text())
    models = {r["model"] for r in multiclass["rows"]}
    assert models == {*EXPERIMENTS["multiclass"].configs, "real sketches"}
    assert [k for k, _ in multiclass["figures"]] == ["samples_QD5", "loss_QD5", "growth"]
    diversity = json.loads((out / "diversity.json").read_text())
    assert 0 <= diversity["ttest"]["p"] <= 1
    assert set(diversity["per_class"]) == {"ai-sketcher", "sketch-rnn-cond", "real sketches"}
    for results, folder in ((out / "results.md", out), (docs / "results.md", docs)):
        text = results.read_text()
        for experiment in EXPERIMENTS.values():
            assert f"## {experiment.title}" in text
        assert "Unpaired t-test (ai-sketcher vs sketch-rnn-cond" in text
        assert (
            "Sketches per split (the paper had 70,000 training sketches per class): QD5: " in text
        )
        links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
        assert len(links) == 3 + 3 + 1
        for link in links:
            assert (folder / link).is_file(), link


def test_a_written_reading_ends_the_docs_copy(experiments: tuple[Path, Path, int]) -> None:
    out, docs, _ = experiments
    (docs / "results" / "reading.md").write_text("## Reading\n\nWhat the numbers say.\n")
    text = write_results(out, docs / "results.md").read_text()
    assert text.endswith("## Reading\n\nWhat the numbers say.\n")
    assert "What the numbers say" not in (out / "results.md").read_text()


def test_the_docs_keep_the_experiments_run_elsewhere(
    experiments: tuple[Path, Path, int], tmp_path: Path
) -> None:
    """An experiment written later replaces its own section and leaves the others in the docs."""
    out, docs, _ = experiments
    shutil.copytree(docs, tmp_path / "docs")
    later = tmp_path / "later"
    summary = json.loads((out / "diversity.json").read_text())
    for _, rel in summary["figures"]:
        (later / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / rel, later / rel)
    summary["seed"] = 7
    (later / "diversity.json").write_text(json.dumps(summary))
    text = write_results(later, tmp_path / "docs" / "results.md").read_text()
    for experiment in EXPERIMENTS.values():
        assert f"## {experiment.title}" in text
    diversity = text[text.index(f"## {EXPERIMENTS['diversity'].title}") :]
    assert "size `small`, seed 7;" in diversity
    kept = json.loads((tmp_path / "docs" / "results" / "diversity.json").read_text())
    assert kept["seed"] == 7
    assert (tmp_path / "docs" / "results" / "ablation.json").is_file()
    assert EXPERIMENTS["ablation"].title not in (later / "results.md").read_text()


@pytest.mark.slow
def test_an_experiment_again_reuses_runs_and_evaluations(
    experiments: tuple[Path, Path, int], quickdraw_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    out, _, _ = experiments
    capsys.readouterr()
    args = ["experiment", "diversity", "--scale", "toy", "--out", str(out)]
    assert main([*args, "--data", str(quickdraw_dir)]) == 0
    printed = capsys.readouterr().out
    assert "training" not in printed and "evaluating" not in printed
    assert "QD5-ai-sketcher: already trained" in printed


@pytest.mark.slow
def test_evaluations_are_reused_however_the_folder_is_spelled(
    experiments: tuple[Path, Path, int],
    quickdraw_dir: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, _, _ = experiments
    monkeypatch.chdir(out.parent)  # a relative --out: the raster cache gets another path
    capsys.readouterr()
    args = ["experiment", "diversity", "--scale", "toy", "--out", out.name]
    assert main([*args, "--data", str(quickdraw_dir)]) == 0
    assert "evaluating" not in capsys.readouterr().out


@pytest.mark.slow
def test_a_run_from_before_the_fitted_priors_gets_them_and_a_new_evaluation(
    experiments: tuple[Path, Path, int], quickdraw_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """A run saved before checkpoints carried the z_s prior is not trained again: the priors the
    trainer would have saved are fitted into it, and its evaluation, made on the older bytes at
    the same step, is made again."""
    import torch
    from safetensors.torch import save_file

    out, _, _ = experiments
    run = out / "runs" / "QD5-ai-sketcher"
    saved = {p: read_checkpoint(p) for p in (run / "best.safetensors", run / "last.safetensors")}
    for path, (tensors, info) in saved.items():
        older = {k: v for k, v in tensors.items() if not k.startswith("model.sketch_prior.")}
        # and a diagonal z_r spread as the oldest checkpoints had, which the refit supersedes
        older["model.raster_prior.std"] = torch.full_like(tensors["model.raster_prior.mean"], 9.0)
        save_file(older, str(path), metadata={META_KEY: json.dumps(info)})
    for report_path in (out / "evals").glob("QD5-ai-sketcher-n*/evaluation.json"):
        report = json.loads(report_path.read_text())  # as if made on that older checkpoint
        report["model"]["checkpoint_sha256"] = checkpoint_digest(run)
        report_path.write_text(json.dumps(report))
    capsys.readouterr()
    args = ["experiment", "diversity", "--scale", "toy", "--out", str(out)]
    assert main([*args, "--data", str(quickdraw_dir)]) == 0
    printed = capsys.readouterr().out
    assert "QD5-ai-sketcher: class priors fitted into best and last" in printed
    assert "QD5-ai-sketcher: evaluating" in printed
    assert "QD5-sketch-rnn-cond: evaluated before" in printed  # its priors were fitted: kept
    assert "QD5-sketch-rnn-cond: class priors" not in printed
    for path, (tensors, info) in saved.items():
        again, info_again = read_checkpoint(path)
        assert info_again == info and again.keys() == {*tensors, "model.raster_prior.std"}
        for key, value in tensors.items():
            if key.startswith("model.sketch_prior."):  # the trainer's own fit at that step
                torch.testing.assert_close(again[key], value, rtol=1e-5, atol=1e-6)
            else:
                assert torch.equal(again[key], value), key
    loaded = Sketcher.load(run).model.raster_prior.scale
    torch.testing.assert_close(
        loaded, saved[run / "best.safetensors"][0]["model.raster_prior.scale"]
    )


def test_a_run_of_another_scale_is_not_resumed(
    experiments: tuple[Path, Path, int], quickdraw_dir: Path
) -> None:
    out, _, _ = experiments
    scale = dataclasses.replace(SCALES["toy"], model_overrides=(("z_size", 4),))
    ctx = Context(out=out, scale=scale, data_dir=str(quickdraw_dir))
    data = load_dataset(["cat", "airplane"], quickdraw_dir, max_seq_len=scale.max_seq_len)
    with pytest.raises(SketchDataError, match="another configuration or scale"):
        train_run(ctx, "QD5", "ai-sketcher", data)


@pytest.mark.slow
def test_repeat_seeds_train_again_and_give_the_spread(
    experiments: tuple[Path, Path, int], quickdraw_dir: Path
) -> None:
    out, _, _ = experiments
    args = ["experiment", "diversity", "--scale", "toy", "--out", str(out), "--repeat-seeds", "1"]
    assert main([*args, "--data", str(quickdraw_dir)]) == 0
    configs = EXPERIMENTS["diversity"].configs
    assert {p.name for p in (out / "seed1" / "runs").iterdir()} == {f"QD5-{c}" for c in configs}
    assert not (out / "seed1" / "classifiers").exists()  # one classifier measures every seed
    seed_rows = json.loads((out / "diversity.json").read_text())["seed_rows"]
    assert sorted((r["seed"], r["model"]) for r in seed_rows) == sorted(
        (seed, c) for seed in (0, 1) for c in configs
    )
    totals = {r["seed"]: r["total"] for r in seed_rows if r["model"] == "ai-sketcher"}
    assert totals[0] != totals[1]  # another seed: other initial weights, other batches
    # The t-test again on seed 1's own drawings: Student's two-sample t, written out.
    n = SCALES["toy"].diversity_samples
    a, b = (
        np.asarray(
            json.loads((out / "seed1" / "evals" / f"QD5-{c}-n{n}" / "evaluation.json").read_text())[
                "diversity"
            ]["draw"]["per_sketch"]
        )
        for c in configs
    )
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    t = (a.mean() - b.mean()) / np.sqrt(pooled * (1 / len(a) + 1 / len(b)))
    ttest = json.loads((out / "diversity.json").read_text())["seed_ttests"]["1"]
    assert ttest["t"] == pytest.approx(t) and (ttest["n_a"], ttest["n_b"]) == (len(a), len(b))
    text = (out / "results.md").read_text()
    assert "Spread over training seeds 0, 1" in text and "At training seed 1: t = " in text


@pytest.mark.slow
def test_repeat_seeds_alone_join_the_results_written_before(
    experiments: tuple[Path, Path, int],
    quickdraw_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    _, docs, _ = experiments
    shutil.copytree(docs, tmp_path / "docs")
    doc = tmp_path / "docs" / "results.md"
    earlier = json.loads((tmp_path / "docs" / "results" / "diversity.json").read_text())
    later = tmp_path / "later"
    args = ["experiment", "diversity", "--scale", "toy", "--out", str(later), "--doc", str(doc)]
    capsys.readouterr()
    assert main([*args, "--repeat-seeds", "2", "--repeats-only", "--data", str(quickdraw_dir)]) == 0
    assert not (later / "runs").exists()  # the main seed is not trained again
    configs = EXPERIMENTS["diversity"].configs
    assert {p.name for p in (later / "seed2" / "runs").iterdir()} == {f"QD5-{c}" for c in configs}
    summary = json.loads((tmp_path / "docs" / "results" / "diversity.json").read_text())
    assert summary["rows"] == earlier["rows"] and summary["figures"] == earlier["figures"]
    before = {r["seed"] for r in earlier.get("seed_rows", [{"seed": 0}])}
    assert {r["seed"] for r in summary["seed_rows"]} == before | {2}
    text = doc.read_text()
    assert "Spread over training seeds" in text and ", 2 (every model" in text
    for experiment in EXPERIMENTS.values():
        assert f"## {experiment.title}" in text
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (tmp_path / "docs" / link).is_file(), link


def test_repeat_seeds_join_only_results_of_the_same_making(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ctx = Context(out=tmp_path, scale=SCALES["toy"], seed=0)
    earlier = {"scale": dataclasses.asdict(SCALES["cpu"]), "seed": 0, "temperature": 0.4}
    with pytest.raises(SketchDataError, match="another scale, seed or temperature"):
        run_experiment("diversity", ctx, repeat_seeds=(1,), earlier=earlier)
    args = ["experiment", "diversity", "--out", str(tmp_path), "--repeat-seeds", "1"]
    assert main([*args, "--repeats-only"]) == 2
    assert f"no earlier diversity.json in {tmp_path}" in capsys.readouterr().err


def test_repeating_the_main_seed_is_refused(tmp_path: Path) -> None:
    ctx = Context(out=tmp_path, scale=SCALES["toy"], seed=3)
    with pytest.raises(SketchDataError, match="repeats --seed 3"):
        run_experiment("diversity", ctx, repeat_seeds=(1, 3))


def test_spread_table_gives_mean_and_sample_sd() -> None:
    rows = [
        {"set": "QD5", "model": "m", "seed": seed, **dict.fromkeys(SPREAD_COLUMNS, value)}
        for seed, value in ((0, 1.0), (1, 3.0))
    ]
    table = spread_table(rows)
    assert table.splitlines()[2].startswith("| QD5 | m | 2 | 2.000 ± 1.414 |")


def test_growth_series_follow_the_number_of_classes() -> None:
    row = dict.fromkeys(("total", "recog_draw", "fid_draw"), 1.0)
    rows = [
        ("QD5", "m", row),
        ("QD10", "m", {**row, "total": 0.5}),
        ("QD5", "real", {**row, "total": None}),
    ]
    series = growth_series(rows, {"QD5": ["a"] * 5, "QD10": ["a"] * 10})
    assert series["test loss"] == {"m": [(5, 1.0), (10, 0.5)]}  # the reference row has no loss
    assert series["recognizability of drawings"]["real"] == [(5, 1.0)]


def test_class_sets_and_scales() -> None:
    assert len(QD20) == len(set(QD20)) == 20
    assert SCALES["toy"].classes("QD5") == ["cat", "airplane"]
    assert SCALES["toy"].classes("QD20") is None
    assert SCALES["cpu"].classes("QD20") == QD20


def test_markdown_table() -> None:
    assert markdown_table(["a", "b"], [[1, None]]) == "| a | b |\n|---|---|\n| 1 | – |"


def test_experiment_help_has_examples(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    assert "aisketcher experiment ablation --scale toy" in capsys.readouterr().out


def test_estimate_times_every_model_and_trains_nothing(
    quickdraw_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "exp"
    args = ["experiment", "ablation", "--scale", "toy", "--out", str(out), "--estimate"]
    assert main([*args, "--data", str(quickdraw_dir), "--repeat-seeds", "1"]) == 0
    printed = capsys.readouterr().out
    for config in EXPERIMENTS["ablation"].configs:
        assert f"QD5 {config}: " in printed and "x 2 seed(s)" in printed
    assert "training all of it: about" in printed
    assert not (out / "runs").exists()
