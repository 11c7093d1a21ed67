"""Drawing: the sampler, every mode of the Python API, export/load, and the drawing commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aisketcher import Sketch
from aisketcher.api import Sketcher
from aisketcher.cli import main
from aisketcher.data.dataset import load_dataset
from aisketcher.errors import SketchDataError
from aisketcher.formats.npz import read_npz
from aisketcher.latents import class_latent, encode_sketches
from aisketcher.model.config import PRESETS, make_config
from aisketcher.model.sketcher import SketchModel
from aisketcher.sampler import Sampler, make_generator
from aisketcher.train.priors import fit_priors

TINY = dict(enc_rnn_size=16, dec_rnn_size=32, z_size=8, raster_z_size=8, num_mixture=3)


@pytest.fixture(scope="module")
def data(quickdraw_dir: Path):
    return load_dataset(["cat", "eye"], quickdraw_dir, splits=("train",))


def tiny_sketcher(preset: str, data) -> Sketcher:
    torch.manual_seed(0)
    cfg = make_config(preset, "small", num_classes=2, max_seq_len=data.longest, **TINY)
    return Sketcher(SketchModel(cfg), data.class_names, data.scale_factor)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_draws_in_every_mode(preset: str, data) -> None:
    sk = tiny_sketcher(preset, data)
    cats = sk.draw("cat", count=3, seed=1, temperature=0.5)
    assert len(cats) == 3 and all(isinstance(s, Sketch) and s.label == "cat" for s in cats)
    start = Sketch.from_strokes([[(0, 0), (30, 0), (30, 30)]])
    done = sk.complete(start, "eye", count=2, seed=2)
    assert all(np.allclose(s.stroke3[:3, :2], start.stroke3[:, :2], atol=1e-3) for s in done)
    if sk.model.config.has_latent:
        real = Sketch(data["train"].sketches[0] * [data.scale_factor, data.scale_factor, 1], "cat")
        assert len(sk.reconstruct([real], seed=3)) == 1
        assert [s.label for s in sk.translate(real, ["eye", "cat"], seed=4)] == ["eye", "cat"]
        assert len(sk.interpolate(real, real, 4, classes=("cat", "eye"), seed=5)) == 4
    else:
        with pytest.raises(SketchDataError, match="no encoder"):
            sk.reconstruct([start], "cat")


def test_same_seed_same_drawings(data) -> None:
    sk = tiny_sketcher("ai-sketcher", data)
    a = sk.draw("cat", count=2, seed=11)
    b = sk.draw("cat", count=2, seed=11)
    c = sk.draw("cat", count=2, seed=12)
    assert all(np.array_equal(x.stroke3, y.stroke3) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x.stroke3, y.stroke3) for x, y in zip(a, c, strict=True))


def test_batched_sampling_stops_each_sketch_at_its_end(data) -> None:
    sk = tiny_sketcher("sketch-rnn-cond", data)
    model = sk.model
    latent = class_latent(model, [0] * 5, 0)
    sampler = Sampler(
        model, latent, 5, generator=make_generator(torch.device("cpu"), 0), max_steps=40
    )
    drawn = sampler.run()
    assert len(drawn) == 5
    for s3 in drawn:
        assert 1 <= len(s3) <= 40 and s3[-1, 2] == 1 and np.isfinite(s3).all()


@pytest.mark.parametrize("preset", ["sketch-rnn", "ai-sketcher", "ai-sketcher-paper-memory"])
def test_decoding_some_rows_gives_those_rows_of_the_whole_batch(preset: str, data) -> None:
    """What the sampler does when rows end: their state leaves the batch, the others are exact."""
    sk = tiny_sketcher(preset, data)
    model = sk.model.eval()
    real = [data["train"].sketches[i] for i in range(4)]
    scale = [data.scale_factor, data.scale_factor, 1]
    latent = sk.encode([Sketch(r * scale, "cat") for r in real], [0, 1, 0, 1])
    latent = latent if model.config.has_latent else class_latent(model, [0, 1, 0, 1], 0)
    state = model.initial_state(latent, 4)
    keep = torch.tensor([1, 3])
    points = torch.randn(6, 4, 5)
    noise = torch.randn(6, 4, model.config.memory_size)
    with torch.no_grad():
        for step in range(6):
            if step == 3:
                part = (state.rows(keep), latent.rows(keep))
            y, state, _ = model.decode_step(points[step], state, latent, step, noise[step])
            if step >= 3:
                y_part, part_state, _ = model.decode_step(
                    points[step, keep], part[0], part[1], step, noise[step, keep]
                )
                part = (part_state, part[1])
                torch.testing.assert_close(y_part, y[keep])


def test_a_batch_stops_decoding_the_sketches_that_ended(data) -> None:
    sk = tiny_sketcher("ai-sketcher", data)
    latent = class_latent(sk.model, [0] * 8, 0)
    sampler = Sampler(sk.model, latent, 8, generator=make_generator(torch.device("cpu"), 3))
    decoded = []
    while not sampler.finished:
        decoded.append(len(sampler.active))
        points, drawing = sampler.step()
        assert (points[~drawing] == [0, 0, 0, 0, 1]).all()  # ended rows stay ended
    assert decoded[0] == 8 and decoded[-1] < 8  # ended rows left the batch
    lengths = sorted(len(s) for s in sampler.sketches())
    assert lengths[-1] == len(decoded) - 1  # the last step drew the end of the longest


def test_bad_requests_are_clear(data) -> None:
    sk = tiny_sketcher("ai-sketcher", data)
    with pytest.raises(SketchDataError, match="did you mean cat"):
        sk.draw("cta")
    with pytest.raises(SketchDataError, match="temperature"):
        sk.draw("cat", temperature=50)
    limit = sk.model.config.max_seq_len
    strokes_only = np.tile([[3.0, 1.0, 1.0]], (limit + 5, 1))  # every point a stroke of its own
    with pytest.raises(SketchDataError, match="at most"):
        sk.complete(Sketch(strokes_only), "cat")


def test_long_input_is_simplified_as_googles_data_and_says_so(data) -> None:
    sk = tiny_sketcher("ai-sketcher", data)
    limit = sk.model.config.max_seq_len
    t = np.linspace(0, 2 * np.pi, 3 * limit)
    circle = np.column_stack([100 + 80 * np.cos(t), 100 + 80 * np.sin(t)])
    wave = np.column_stack([np.linspace(0, 200, 2 * limit), 50 + 20 * np.sin(t[: 2 * limit] * 4)])
    sketch = Sketch.from_strokes([circle, wave])
    with pytest.warns(UserWarning, match=f"has {5 * limit} points.*simplified to"):
        start = sk.normalise(sketch)
    assert 10 <= len(start) <= limit
    # the simplified start keeps the drawing's place and size
    back = Sketch(start * [sk.scale_factor, sk.scale_factor, 1])
    assert np.allclose(back.bounds(), sketch.bounds(), atol=2)
    with pytest.warns(UserWarning):
        assert len(sk.complete(sketch, "cat", count=1, seed=0)) == 1


def test_export_and_load_round_trip(tmp_path: Path, data) -> None:
    sk = tiny_sketcher("ai-sketcher", data)
    with torch.no_grad():  # a fitted z_r prior travels with the weights
        sk.model.raster_prior.mean.uniform_(-0.5, 0.5)
        sk.model.raster_prior.scale.copy_(torch.diag_embed(torch.rand(2, 8) * 0.2))
    out = sk.export(tmp_path / "model")
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json"}
    loaded = Sketcher.load(out)
    assert loaded.class_names == ["cat", "eye"]
    for k, v in sk.model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k])
    a = loaded.draw("eye", count=2, seed=3)
    b = Sketcher.load(out).draw("eye", count=2, seed=3)
    assert all(np.array_equal(x.stroke3, y.stroke3) for x, y in zip(a, b, strict=True))


def test_drawing_commands(tmp_path: Path, data, capsys) -> None:
    model_dir = tiny_sketcher("ai-sketcher", data).export(tmp_path / "m")
    cat_file = str(Path(data.sources[0]))
    start = tmp_path / "start.json"
    start.write_text(json.dumps({"strokes": [[[10, 10], [60, 12], [62, 70]]]}))
    runs = [
        ["draw", "cat", "eye", "--count", "2", "--out", str(tmp_path / "d.svg")],
        ["draw", "cat", "--count", "3", "--out", str(tmp_path / "d.ndjson")],
        [
            "reconstruct",
            "--input",
            cat_file,
            "--class",
            "cat",
            "--count",
            "2",
            "--out",
            str(tmp_path / "r.png"),
        ],
        [
            "translate",
            "--input",
            cat_file,
            "--classes",
            "eye,cat",
            "--class-pull",
            "0",
            "--out",
            str(tmp_path / "t.svg"),
        ],
        [
            "complete",
            "--input",
            str(start),
            "--class",
            "cat",
            "--count",
            "2",
            "--out",
            str(tmp_path / "c.npz"),
        ],
        [
            "interpolate",
            "--a",
            cat_file,
            "--b",
            cat_file,
            "--b-index",
            "1",
            "--classes",
            "cat,eye",
            "--steps",
            "3",
            "--out",
            str(tmp_path / "i.svg"),
        ],
    ]
    for argv in runs:
        assert main([*argv, "--model", str(model_dir), "--seed", "1"]) == 0, argv
        assert Path(argv[argv.index("--out") + 1]).stat().st_size > 0
    assert (
        main(["draw", "unicorn", "--model", str(model_dir), "--out", str(tmp_path / "x.svg")]) == 2
    )
    assert "unicorn" in capsys.readouterr().err


def test_train_can_start_from_an_exported_model(tmp_path: Path, data, quickdraw_dir: Path) -> None:
    sk = tiny_sketcher("ai-sketcher", data)
    model_dir = sk.export(tmp_path / "m", record={"step": 7})
    out = tmp_path / "run"
    argv = ["train", "--init-from", str(model_dir), "--data", str(quickdraw_dir), "--out", str(out)]
    assert main([*argv, "--steps", "8", "--batch-size", "4", "--threads", "1"]) == 0
    state = json.loads((out / "last.json").read_text())
    assert state["step"] == 8 and state["data"]["classes"] == ["cat", "eye"]
    fresh = tmp_path / "fresh"
    argv = [*argv[:-1], str(fresh), "--reset", "autoencoder"]
    assert main([*argv, "--steps", "8", "--batch-size", "4", "--threads", "1"]) == 0
    before = sk.model.state_dict()
    after = Sketcher.load(fresh, checkpoint="last").model.state_dict()

    def moved(name: str) -> float:
        return float((after[name] - before[name]).norm() / before[name].norm())

    assert moved("autoencoder.encoder.fc.weight") > 0.5  # started afresh
    assert moved("decoder.weight_hh") < 0.1  # one step from the source's weights
    assert main(["train", "--out", str(tmp_path / "x"), "--reset", "autoencoder"]) == 2


def test_a_warm_start_may_change_the_classes_and_add_class_guidance(
    tmp_path: Path, data, quickdraw_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tiny_sketcher("ai-sketcher", data).export(tmp_path / "m", record={"step": 7})
    out = tmp_path / "run"
    argv = ["train", "--init-from", str(model_dir), "--data", str(quickdraw_dir), "--out", str(out)]
    more = ["--classes", "eye,apple", "--set", "class_dropout=0.2", "--steps", "8"]
    assert main([*argv, *more, "--batch-size", "4", "--threads", "1"]) == 0
    assert "classes it never saw start as its average class: apple" in capsys.readouterr().out
    info = json.loads((out / "config.json").read_text())
    assert info["data"]["classes"] == ["eye", "apple"] and info["model"]["class_dropout"] == 0.2
    # a run's schedules go on from its checkpoint's step (a run's config.json has no record)
    again = ["train", "--init-from", str(out), "--data", str(quickdraw_dir), "--steps", "10"]
    assert main([*again, "--out", str(tmp_path / "b"), "--batch-size", "4", "--threads", "1"]) == 0
    assert f"starting from the weights of {out} (step 8)" in capsys.readouterr().out
    drawn = tmp_path / "g.svg"
    for w in ("0", "2.5"):
        assert (
            main(["draw", "apple", "--model", str(out), "--guidance", w, "--out", str(drawn)]) == 0
        )
    assert (
        main(["draw", "cat", "--model", str(model_dir), "--guidance", "2", "--out", str(drawn)])
        == 2
    )
    assert "needs a model trained with class dropout" in capsys.readouterr().err


def test_complete_files_show_the_models_strokes_in_red(tmp_path: Path, data) -> None:
    """As in the web app: the user's start in black, the model's continuation in red."""
    sketcher = tiny_sketcher("ai-sketcher", data)
    with torch.no_grad():  # an untrained model may end at once; this one draws on
        sketcher.model.output.bias[2] = -1e4  # the pen logits come first; the third ends
    model_dir = sketcher.export(tmp_path / "m")
    start = tmp_path / "start.json"
    start.write_text(json.dumps({"strokes": [[[10, 10], [60, 12], [62, 70]], [[5, 5], [9, 40]]]}))
    for suffix in (".svg", ".png"):
        out = tmp_path / f"c{suffix}"
        argv = ["complete", "--input", str(start), "--class", "cat", "--count", "3"]
        assert main([*argv, "--model", str(model_dir), "--seed", "2", "--out", str(out)]) == 0
    cells = (tmp_path / "c.svg").read_text().split("<g transform=")[1:]
    assert len(cells) == 4
    assert "#d62728" not in cells[0]  # the start alone
    assert all("#d62728" in c and 'stroke="black"' in c for c in cells[1:])
    from PIL import Image

    with Image.open(tmp_path / "c.png") as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    red = (pixels[:, 0] > 150) & (pixels[:, 1] < 100) & (pixels[:, 2] < 100)
    assert red.sum() > 0


def test_argument_errors_come_before_any_work(tmp_path: Path, capsys) -> None:
    """Bad counts, formats and devices are refused at once, in one line, without a traceback."""
    cases = [
        (["draw", "cat", "--count", "0"], "must be at least 1"),
        (["draw", "cat", "--out", str(tmp_path / "x.jpg")], "unknown output format '.jpg'"),
        (["draw", "cat", "--count", "3", "--out", str(tmp_path / "x.gif")], "animates one"),
        (["draw", "cat", "--device", "cuda", "--out", str(tmp_path / "x.svg")], "CUDA"),
        (["draw", "cat", "unicorn", "--out", str(tmp_path / "x.svg")], "unicorn"),
        (["translate", "--input", "x.svg", "--class-pull", "1.5"], "must be from 0 to 1"),
        (["translate", "--input", "x.svg", "--class-pull", "nan"], "must be from 0 to 1"),
    ]
    for argv, message in cases:
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse refuses with exit code 2
            code = exc.code
        assert code == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not list(tmp_path.iterdir())  # nothing was written


def test_export_says_which_checkpoint_it_took(tmp_path: Path, data, capsys) -> None:
    run = tmp_path / "run"
    sk = tiny_sketcher("ai-sketcher", data)
    from aisketcher.checkpoint import save_checkpoint

    info = {
        "model": sk.model.config.to_dict(),
        "data": {"classes": sk.class_names, "scale_factor": sk.scale_factor},
        "step": 3,
    }
    run.mkdir()
    (run / "config.json").write_text(json.dumps(info))
    save_checkpoint(
        run / "last.safetensors", sk.model, info, torch.optim.Adam(sk.model.parameters())
    )
    assert main(["export", str(run), "--out", str(tmp_path / "m")]) == 0
    printed = capsys.readouterr().out
    with pytest.warns(UserWarning, match="no best checkpoint"):  # drawing from the run says so
        Sketcher.load(run)
    assert "no best checkpoint" in printed and "(last checkpoint, step 3)" in printed


def test_a_run_draws_the_same_from_any_folder(
    tmp_path: Path, quickdraw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aisketcher.train.trainer import TrainConfig, Trainer

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(home)
    data = load_dataset("cat,eye", Path(quickdraw_dir), max_seq_len=40)
    cfg = make_config("ai-sketcher", num_classes=2, max_seq_len=data.longest, **TINY)
    train = TrainConfig(steps=2, batch_size=4, eval_every=2)
    Trainer(cfg, train, data, "run", progress=False).fit()
    here = [s.stroke3 for s in Sketcher.load("run").draw("cat", 3, seed=4)]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    there = [s.stroke3 for s in Sketcher.load(home / "run").draw("cat", 3, seed=4)]
    assert all(np.array_equal(a, b) for a, b in zip(here, there, strict=True))
    assert main(["export", str(home / "run"), "--out", str(elsewhere / "m")]) == 0


def test_drawing_runs_on_one_thread_whatever_the_caller_set(data, monkeypatch) -> None:
    """One thread policy for the CLI and the Python API (measured: 1 thread is the fastest)."""
    sk = tiny_sketcher("ai-sketcher", data)
    seen = []
    step = Sampler.step

    def spy(self):
        seen.append(torch.get_num_threads())
        return step(self)

    monkeypatch.setattr(Sampler, "step", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sk.draw("cat", 2, seed=0)
        assert set(seen) == {1} and torch.get_num_threads() == 2  # restored afterwards
    finally:
        torch.set_num_threads(before)


def test_every_file_the_tool_writes_it_reads(tmp_path: Path, data, capsys) -> None:
    from aisketcher.formats.reader import read_sketches

    model_dir = tiny_sketcher("ai-sketcher", data).export(tmp_path / "m")
    for suffix in (".npz", ".ndjson", ".svg"):
        out = tmp_path / f"cats{suffix}"
        argv = ["draw", "cat", "--count", "3", "--seed", "1", "--out", str(out)]
        assert main([*argv, "--model", str(model_dir)]) == 0
        assert len(read_sketches(str(out))) >= 1, suffix
        if suffix != ".svg":
            assert main(["data", "inspect", str(out)]) == 0, suffix
    assert "3 sketches" in capsys.readouterr().out


def test_a_translation_takes_its_layout_from_the_target_class_unless_kept(data) -> None:
    # z_r of a translation: the target class's prior by default, the input's raster code with
    # keep_layout; z_s is the input's encoding under the target class either way.
    from aisketcher.latents import encode_sketches, translation_latent

    sk = tiny_sketcher("ai-sketcher", data)
    with torch.no_grad():  # a prior far from any raster's code: tanh codes stay within (-1, 1)
        sk.model.raster_prior.mean.copy_(torch.tensor([[-0.9] * 8, [0.9] * 8]))
    cat = data["train"].sketches[0]
    encoded = encode_sketches(sk.model, [cat, cat], [1, 1])
    moved = translation_latent(sk.model, [cat, cat], [1, 1], seed=0)
    kept = translation_latent(sk.model, [cat, cat], [1, 1], seed=0, keep_layout=True)
    torch.testing.assert_close(moved.z_s, encoded.z_s)
    torch.testing.assert_close(moved.z_r, torch.full((2, 8), 0.9))  # spread 0: the mean
    torch.testing.assert_close(kept.z_r, encoded.z_r)
    assert not torch.allclose(encoded.z_r, moved.z_r, atol=0.5)
    drawn = sk.translate(Sketch(cat * [data.scale_factor, data.scale_factor, 1]), ["eye"], seed=1)
    assert [s.label for s in drawn] == ["eye"]


def test_the_prior_spread_scales_class_only_codes_about_their_class_mean(data) -> None:
    sk = tiny_sketcher("ai-sketcher", data)
    model = sk.model
    fit_priors(model, data["train"])
    full = class_latent(model, [0, 1], 7)
    sk.prior_spread = 0.5
    half = class_latent(model, [0, 1], 7)
    mean = model.sketch_prior.mean[[0, 1]]
    torch.testing.assert_close(half.z_s - mean, 0.5 * (full.z_s - mean))
    sk.prior_spread = 0.0
    typical = class_latent(model, [0, 1], 7)
    torch.testing.assert_close(typical.z_s, mean)
    torch.testing.assert_close(typical.z_r, model.raster_prior.mean[[0, 1]].clamp(-1, 1))
    with pytest.raises(SketchDataError, match="prior spread"):
        sk.prior_spread = float("nan")


def same_arrays(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def same(a: list[Sketch], b: list[Sketch]) -> bool:
    return same_arrays([s.stroke3 for s in a], [s.stroke3 for s in b])


def test_a_drawing_that_names_no_temperature_draws_at_the_models(data, tmp_path: Path) -> None:
    sk = tiny_sketcher("ai-sketcher", data)
    assert sk.temperature == 0.4  # a model's default unless its config says otherwise
    sk.temperature = 0.9
    assert same(sk.draw("cat", 3, seed=5), sk.draw("cat", 3, temperature=0.9, seed=5))
    assert not same(sk.draw("cat", 3, seed=5), sk.draw("cat", 3, temperature=0.4, seed=5))
    for bad in (float("nan"), 0.0, 3.0):
        with pytest.raises(SketchDataError, match="temperature"):
            sk.temperature = bad
    folder = sk.export(tmp_path / "model")  # the CLI reads it from the model's config

    def cli_draws(*temperature: str) -> list[np.ndarray]:
        out = tmp_path / "drawn.npz"
        argv = ["draw", "cat", "--model", str(folder), "--count", "3", "--seed", "5"]
        assert main([*argv, *temperature, "--out", str(out)]) == 0
        return read_npz(out, ["test"])["test"]

    assert same_arrays(cli_draws(), cli_draws("--temperature", "0.9"))
    assert not same_arrays(cli_draws(), cli_draws("--temperature", "0.4"))


def test_the_pen_temperature_replaces_t_for_the_pen_alone(data) -> None:
    """A pen temperature equal to T changes nothing; another changes the pen's choices."""
    sk = tiny_sketcher("ai-sketcher", data)
    assert sk.pen_temperature is None  # the paper: T tempers the pen too
    plain = sk.draw("cat", 4, temperature=0.3, seed=2)
    sk.pen_temperature = 0.3
    assert same(plain, sk.draw("cat", 4, temperature=0.3, seed=2))
    sk.pen_temperature = 1.5
    assert not same(plain, sk.draw("cat", 4, temperature=0.3, seed=2))
    for bad in (float("nan"), 0.0, 3.0):
        with pytest.raises(SketchDataError, match="pen temperature"):
            sk.pen_temperature = bad
    sk.pen_temperature = None
    assert same(plain, sk.draw("cat", 4, temperature=0.3, seed=2))


def test_class_only_drawing_takes_z_s_from_the_fitted_prior_unless_standard(data) -> None:
    sk = tiny_sketcher("ai-sketcher", data)
    model, n_z = sk.model, sk.model.config.z_size
    noise = np.random.default_rng(7).standard_normal((2, n_z))  # class_latent's first draw
    assert not model.sketch_prior.fitted  # never fitted: the paper's N(0, I)
    torch.testing.assert_close(class_latent(model, [0, 1], 7).z_s, torch.tensor(noise).float())
    train = data["train"]
    fit_priors(model, train)
    assert model.sketch_prior.fitted
    # Its mean is the class's mean posterior sample: mu_s averaged, within 4 standard errors.
    for k in (0, 1):
        mine = [s for s, label in zip(train.sketches, train.labels, strict=True) if label == k]
        latent = encode_sketches(model, mine[:256], [k] * len(mine[:256]))
        spread = (latent.mu_s.var(0) + latent.log_var_s.exp().mean(0)).sqrt()
        error = (model.sketch_prior.mean[k] - latent.mu_s.mean(0)).abs()
        assert (error < 4 * spread / len(mine[:256]) ** 0.5 + 1e-4).all()
    prior = model.sketch_prior
    labels = torch.tensor([0, 1])
    expected = (
        prior.mean[labels]
        + (prior.scale[labels] @ torch.tensor(noise).float()[:, :, None])[:, :, 0]
    )
    torch.testing.assert_close(class_latent(model, [0, 1], 7).z_s, expected)
    standard = class_latent(model, [0, 1], 7, standard_z_s=True).z_s
    torch.testing.assert_close(standard, torch.tensor(noise).float())


def test_translation_pulls_z_s_toward_the_target_class_mean(data) -> None:
    """class_pull p: z_s = (1 - p) mu_s(x | c) + p m_c, m_c the target's fitted prior mean; 0 is
    the paper's translation, and so is any pull on a model without a fitted z_s prior."""
    from aisketcher.latents import TRANSLATE_PULL, encode_sketches, translation_latent

    sk = tiny_sketcher("ai-sketcher", data)
    model = sk.model
    cat = data["train"].sketches[0]
    encoded = encode_sketches(model, [cat, cat], [0, 1]).mu_s
    unfitted = translation_latent(model, [cat, cat], [0, 1], seed=0, class_pull=0.5)
    torch.testing.assert_close(unfitted.z_s, encoded)
    means = torch.stack([torch.full((model.config.z_size,), v) for v in (-2.0, 3.0)])
    with torch.no_grad():
        model.sketch_prior.mean.copy_(means)
        model.sketch_prior.scale.copy_(torch.eye(model.config.z_size).expand(2, -1, -1))
    for pull in (0.0, 0.25, 1.0):
        latent = translation_latent(model, [cat, cat], [0, 1], seed=0, class_pull=pull)
        torch.testing.assert_close(latent.z_s, encoded + pull * (means - encoded))
        torch.testing.assert_close(latent.mu_s, encoded)  # eq. 3's mean, as encoded
    with pytest.raises(ValueError, match="between 0 and 1"):
        translation_latent(model, [cat], [0], seed=0, class_pull=1.5)
    with torch.no_grad():  # a class the prior never saw keeps the input's code
        model.sketch_prior.scale[1] = 0
    latent = translation_latent(model, [cat, cat], [0, 1], seed=0, class_pull=1.0)
    torch.testing.assert_close(latent.z_s, torch.stack([means[0], encoded[1]]))
    # Sketcher.translate pulls by TRANSLATE_PULL unless told otherwise.
    with torch.no_grad():
        model.sketch_prior.scale.copy_(torch.eye(model.config.z_size).expand(2, -1, -1))
    start = Sketch(cat * [data.scale_factor, data.scale_factor, 1])
    drawn = {p: sk.translate(start, ["eye"], seed=1, class_pull=p) for p in (0.0, TRANSLATE_PULL)}
    default = sk.translate(start, ["eye"], seed=1)
    assert np.array_equal(default[0].stroke3, drawn[TRANSLATE_PULL][0].stroke3)
    assert not np.array_equal(default[0].stroke3, drawn[0.0][0].stroke3)


def test_translate_help_gives_the_default_pull(capsys) -> None:
    from aisketcher.latents import TRANSLATE_PULL

    with pytest.raises(SystemExit):
        main(["translate", "--help"])
    assert f"(default {TRANSLATE_PULL:g})" in " ".join(capsys.readouterr().out.split())
