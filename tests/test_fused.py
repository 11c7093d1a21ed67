"""The fused LSTM kernels against the plain-PyTorch cells they replace: same values, same gradients,
same random draws; and the fallback when the kernels are off or cannot be built."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from aisketcher.formats.npz import read_npz
from aisketcher.model import fused
from aisketcher.model.cells import make_cell
from aisketcher.model.config import make_config
from aisketcher.model.mixture import sample_points
from aisketcher.model.sketcher import SketchModel
from aisketcher.strokes import stroke3_to_stroke5

pytestmark = pytest.mark.skipif(fused.extension() is None, reason="no C++ compiler here")

TINY = dict(enc_rnn_size=16, dec_rnn_size=32, z_size=8, raster_z_size=8, num_mixture=3)


def both_paths(
    monkeypatch: pytest.MonkeyPatch, run: Callable[[], list[torch.Tensor]]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """`run()` on the fused path and on the reference path, from the same random state."""
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv("AISKETCHER_FUSED", switch)
        torch.manual_seed(0)
        results.append(run())
    return results[0], results[1]


def assert_close(fast: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    assert len(fast) == len(reference)
    for a, b in zip(fast, reference, strict=True):
        scale = b.abs().max().clamp(min=1.0)
        assert (a - b).abs().max() <= 2e-5 * scale, (a - b).abs().max()


FUSED_NODES = {
    "_LayerNormSequenceBackward",
    "_LSTMSequenceBackward",
    "_LayerNormStepBackward",
    "_LSTMStepBackward",
    "_InfluenceBackward",
    "_LayerNormInfluenceSequenceBackward",
    "_Conv2x2Backward",
}


def fused_nodes(t: torch.Tensor) -> set[str]:
    """The fused autograd nodes in the graph that made t."""
    seen, todo, found = set(), [t.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ in FUSED_NODES:
            found.add(type(node).__name__)
        todo.extend(n for n, _ in node.next_functions)
    return found


@pytest.mark.parametrize("kind", ["lstm", "layer_norm", "hyper"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("granularity", ["sequence", "step"])
@pytest.mark.parametrize("batch", [4, 37])
def test_fused_cells_give_the_reference_values_and_gradients(
    kind: str, dropout: float, granularity: str, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(2 if batch > 8 else 1)  # 37 rows: the kernels split them over threads
    graphs: list[set[str]] = []

    def run(p: float = dropout) -> list[torch.Tensor]:
        cell = make_cell(kind, 5, 24, dropout=p).train()
        with torch.no_grad():  # away from the initial values, where some gradients vanish
            for param in cell.parameters():
                param.add_(0.3 * torch.randn_like(param))
        x = torch.randn(9, batch, 5, requires_grad=True)
        v = torch.randn(batch, cell.state_size, requires_grad=True)
        state = cell.state_from_vector(v)
        if granularity == "sequence":
            hs, (h, c, *_) = cell(x, state)
        else:
            outputs = []
            for x_t in x.unbind(0):
                h, state = cell.step(x_t, state)
                outputs.append(h)
            hs, (h, c, *_) = torch.stack(outputs), state
        graphs.append(fused_nodes(hs))
        weights = torch.randn_like(hs)
        ((hs * weights).sum() + (c * c).sum()).backward()
        return [hs, c, x.grad, v.grad, *(p.grad for p in cell.parameters())]

    fast, reference = both_paths(monkeypatch, run)
    assert graphs[0] and not graphs[1]  # the fused run ran fused kernels, the reference none
    assert_close(fast, reference)
    if dropout:  # the same draws without dropout give other outputs: the masks were applied
        monkeypatch.setenv("AISKETCHER_FUSED", "1")
        torch.manual_seed(0)
        assert not torch.allclose(run(0.0)[0], fast[0])


@pytest.mark.parametrize(
    "preset", ["sketch-rnn", "sketch-rnn-cond", "ai-sketcher", "ai-sketcher-paper-memory"]
)
def test_a_training_step_of_every_kind_of_model_matches(
    preset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = SketchModel(make_config(preset, num_classes=2, **TINY)).train()
    strokes = torch.randn(3, 12, 5)
    strokes[..., 2:] = torch.nn.functional.one_hot(torch.randint(0, 3, (3, 12)), 3).float()
    lengths, labels = torch.tensor([11, 7, 4]), torch.tensor([0, 1, 1])
    rasters = torch.rand(3, 1, 128, 128) if model.config.use_autoencoder else None

    def run() -> list[torch.Tensor]:
        model.zero_grad()
        out = model(strokes, lengths, labels, rasters)
        loss = (
            out.mixture.logits.square().mean()
            + out.mixture.mu_x.square().mean()
            + out.latent.z_s.square().mean()
        )
        if out.mu_a is not None:
            loss = loss + out.mu_a.square().mean() + out.log_var_a.exp().mean()
        graphs.append(fused_nodes(loss))
        loss.backward()
        return [loss.detach(), *(p.grad.clone() for p in model.parameters() if p.grad is not None)]

    graphs: list[set[str]] = []
    fast, reference = both_paths(monkeypatch, run)
    assert_close(fast, reference)
    # the default cell's decoder with an influence layer runs as one fused sequence
    influence = {"_LayerNormInfluenceSequenceBackward"} if model.config.use_influence else set()
    assert graphs[0] & {"_InfluenceBackward", "_LayerNormInfluenceSequenceBackward"} == influence
    assert ("_Conv2x2Backward" in graphs[0]) == model.config.use_autoencoder  # fused/conv.cpp
    assert not graphs[1]  # the reference path: no fused node


@pytest.mark.parametrize("memory", ["drawn", "bidirectional"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_the_fused_teacher_forced_decoder_matches_the_step_by_step_loop(
    memory: str, dropout: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole influence decoder as one call each way, on 37 rows split over two threads:
    every output and gradient as the reference loop gives them, the bidirectional memory with
    sketches of unequal lengths; with dropout, other outputs than without."""
    torch.set_num_threads(2)
    config = make_config(
        "ai-sketcher", num_classes=2, influence_memory=memory, recurrent_dropout=dropout, **TINY
    )
    torch.manual_seed(0)
    model = SketchModel(config).train()
    with torch.no_grad():  # away from the initial values (zero first query, unit gains)
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    strokes = torch.randn(37, 15, 5)
    strokes[..., 2:] = torch.nn.functional.one_hot(torch.randint(0, 3, (37, 15)), 3).float()
    strokes.requires_grad_()  # the points' gradient too, which training does not ask for
    lengths, labels = torch.randint(3, 15, (37,)), torch.randint(0, 2, (37,))
    rasters = torch.rand(37, 1, 128, 128)
    graphs: list[set[str]] = []

    def run() -> list[torch.Tensor]:
        model.zero_grad()
        strokes.grad = None
        out = model(strokes, lengths, labels, rasters)
        weights = torch.randn_like(out.mixture.mu_x)
        loss = (out.mixture.mu_x * weights).sum() + out.mixture.logits.square().sum()
        loss = loss + (out.mu_a * out.log_var_a).sum() + out.log_var_a.exp().sum()
        graphs.append(fused_nodes(loss))
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return [out.mixture.mu_x, out.mu_a, out.log_var_a, strokes.grad, *grads]

    fast, reference = both_paths(monkeypatch, run)
    assert "_LayerNormInfluenceSequenceBackward" in graphs[0] and not graphs[1]
    assert_close(fast, reference)
    if dropout:
        model.decoder.dropout = 0.0
        monkeypatch.setenv("AISKETCHER_FUSED", "1")
        torch.manual_seed(0)
        assert not torch.allclose(run()[0], fast[0])


def test_drawing_steps_give_the_reference_outputs(
    monkeypatch: pytest.MonkeyPatch, quickdraw_dir: Path
) -> None:
    """The built-in model decodes a real cat step by step as drawing does (no autograd, its own
    memory, given noise): the same outputs and states at every step on both paths. (Sampled
    sketches are not compared point for point: a 1e-7 difference can tip a discrete choice.)"""
    from aisketcher.api import Sketcher
    from aisketcher.latents import class_latent

    sketcher = Sketcher.load()
    model = sketcher.model
    cat = read_npz(quickdraw_dir / "cat.npz", ["test"])["test"][0] / sketcher.scale_factor
    points = torch.from_numpy(stroke3_to_stroke5(cat)[:40]).float()

    def run() -> list[torch.Tensor]:
        latent = class_latent(model, [0, 3], seed=1)
        state, outputs = model.initial_state(latent, 2), []
        point = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]]).expand(2, 5)
        with torch.no_grad():
            for step, row in enumerate(points):
                noise = torch.randn(2, model.config.memory_size)
                y, state, stats = model.decode_step(point, state, latent, step, noise)
                outputs += [y, state.rnn[1], state.memory_rnn[1], *stats]
                point = row.expand(2, 5)
        return [*outputs, state.memory[:, : len(points)]]

    calls = []
    step = fused.ln_draw_step
    monkeypatch.setattr(fused, "ln_draw_step", lambda *a: calls.append(1) or step(*a))
    fast, reference = both_paths(monkeypatch, run)
    assert len(calls) == len(points)  # every step of the fast run was the one fused call
    assert_close(fast, reference)


@pytest.mark.parametrize(
    ("tau", "soft", "pen"),
    [(0.4, None, None), (1.0, 0.7, None), (1e-4, None, None), (0.2, None, 1.0)],
)
def test_drawn_points_are_the_reference_samplers(
    tau: float, soft: float | None, pen: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C++ point sampler against the NumPy one from the same uniforms: the same component
    and pen choices, the same offsets to float rounding, extreme outputs included (log sigmas
    beyond their bounds, rho saturated, logits far apart)."""
    m = 5
    torch.manual_seed(0)
    y = 3 * torch.randn(300, 3 + 6 * m)
    y[:30, 3 + 3 * m : 3 + 5 * m] = 200.0  # log sigma_x, log sigma_y far above the bound
    y[30:60, 3 + 5 * m :] = -50.0  # rho before tanh: saturated
    y[60:90, : 3 + m] *= 1e3

    def run() -> list[torch.Tensor]:
        with torch.no_grad():  # as the sampler draws
            return [sample_points(y, m, tau, torch.Generator().manual_seed(1), soft, pen)]

    calls = []
    kernel = fused.sample_points
    monkeypatch.setattr(fused, "sample_points", lambda *a: calls.append(1) or kernel(*a))
    fast, reference = both_paths(monkeypatch, run)
    assert calls == [1]  # the fast run drew through the C++ loop, the reference did not
    assert torch.equal(fast[0][:, 2:], reference[0][:, 2:])  # the pen states
    assert torch.isfinite(fast[0]).all()
    # the offsets, each row on its own scale (exp and tanh differ in the last bits)
    scale = reference[0].abs().amax(1, keepdim=True).clamp(min=1.0)
    assert ((fast[0] - reference[0]).abs() <= 1e-4 * scale).all()


def unloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused module as in a process that has not looked for the kernels yet."""
    for name, value in (("_module", None), ("_settled", False), ("_missing", False)):
        monkeypatch.setattr(fused, name, value)


def test_the_switch_and_a_failed_build_fall_back_to_the_reference(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    x = torch.randn(3, 4)
    monkeypatch.setenv("AISKETCHER_FUSED", "1")
    assert fused.usable(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused.usable(x)
    assert not fused.usable(x.double()) and not fused.usable(x.to(torch.bfloat16))
    monkeypatch.setenv("AISKETCHER_FUSED", "0")
    assert not fused.usable(x)
    monkeypatch.delenv("AISKETCHER_FUSED")

    from torch.utils import cpp_extension

    def no_compiler(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Ninja is required to load C++ extensions")

    # Not built here yet, and no compiler: a warning, and the reference cells.
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    monkeypatch.setattr(fused, "_library", lambda: tmp_path / "lstm_x" / "lstm_x.so")
    unloaded(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fused.extension(build=False) is None  # drawing does not try to build
        assert not caught
        assert fused.extension() is None
    assert "plain PyTorch cells" in str(caught[0].message) and "Ninja" in str(caught[0].message)
    assert not fused.usable(x)
    # A damaged build in the cache: the same.
    (tmp_path / "lstm_x" / "lstm_x.so").write_bytes(b"not a library")
    unloaded(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fused.extension() is None
    assert "could not be built or loaded" in str(caught[0].message)
    cell = make_cell("layer_norm", 5, 8).train()
    hs, _ = cell(torch.randn(4, 2, 5))  # runs, on the reference path
    assert hs.shape == (4, 2, 8)


@pytest.mark.parametrize("kind", ["lstm", "layer_norm"])
def test_saturated_and_non_finite_inputs_give_the_reference_values(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gates of 1e4 (exp would overflow) give the exact saturated values, and a NaN input gives
    NaN where the reference does, though the kernels are built with fast math."""

    def run() -> list[torch.Tensor]:
        cell = make_cell(kind, 5, 16)
        with torch.no_grad():
            if kind == "layer_norm":  # the gate norm would undo large inputs: scale its gain
                cell.gate_norm_gain.mul_(1e4)
        x = torch.randn(6, 3, 5) * 1e4
        saturated, _ = cell(x)
        x[2, 1, 3] = float("nan")
        with_nan, _ = cell(x)
        return [saturated, torch.isnan(with_nan).float(), torch.nan_to_num(with_nan)]

    fast, reference = both_paths(monkeypatch, run)
    assert torch.isfinite(fast[0]).all() and fast[1].any()
    assert_close(fast, reference)
