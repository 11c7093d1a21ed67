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
from aisketcher.model.sketcher import SketchModel
from aisketcher.sketch import stroke3_to_stroke5

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


@pytest.mark.parametrize("kind", ["lstm", "layer_norm"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("granularity", ["sequence", "step"])
def test_fused_cells_give_the_reference_values_and_gradients(
    kind: str, dropout: float, granularity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run() -> list[torch.Tensor]:
        cell = make_cell(kind, 5, 24, dropout=dropout).train()
        with torch.no_grad():  # away from the initial values, where some gradients vanish
            for p in cell.parameters():
                p.add_(0.3 * torch.randn_like(p))
        x = torch.randn(9, 4, 5, requires_grad=True)
        state = cell.state_from_vector(torch.randn(4, cell.state_size, requires_grad=True))
        if granularity == "sequence":
            hs, (h, c) = cell(x, state)
        else:
            outputs = []
            for x_t in x.unbind(0):
                h, state = cell.step(x_t, state)
                outputs.append(h)
            hs, (h, c) = torch.stack(outputs), state
        weights = torch.randn_like(hs)
        ((hs * weights).sum() + (c * c).sum()).backward()
        return [hs, c, x.grad, *(p.grad for p in cell.parameters())]

    fast, reference = both_paths(monkeypatch, run)
    assert_close(fast, reference)
    if dropout:  # the masks were drawn alike: the outputs differ from a run without dropout
        monkeypatch.setenv("AISKETCHER_FUSED", "1")
        torch.manual_seed(1)
        assert not torch.allclose(run()[0], fast[0])


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
            loss = loss + out.mu_a.square().mean()
        loss.backward()
        return [loss.detach(), *(p.grad.clone() for p in model.parameters() if p.grad is not None)]

    fast, reference = both_paths(monkeypatch, run)
    assert_close(fast, reference)


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

    fast, reference = both_paths(monkeypatch, run)
    assert_close(fast, reference)


def test_the_switch_and_a_failed_build_fall_back_to_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = torch.randn(3, 4)
    assert fused.usable(x)
    assert not fused.usable(x.double()) and not fused.usable(x.to(torch.bfloat16))
    monkeypatch.setenv("AISKETCHER_FUSED", "0")
    assert not fused.usable(x)
    monkeypatch.delenv("AISKETCHER_FUSED")

    from torch.utils import cpp_extension

    def no_compiler(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Ninja is required to load C++ extensions")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    monkeypatch.setattr(fused, "_loaded", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fused.extension() is None
    assert "plain PyTorch cells" in str(caught[0].message) and "Ninja" in str(caught[0].message)
    assert not fused.usable(x)
    cell = make_cell("layer_norm", 5, 8).train()
    hs, _ = cell(torch.randn(4, 2, 5))  # runs, on the reference path
    assert hs.shape == (4, 2, 8)


@pytest.mark.parametrize("kind", ["lstm", "layer_norm"])
def test_saturated_gates_give_the_reference_values_not_nan(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inputs of 1e4 saturate every gate (exp would overflow): the fused path, built with fast
    math, must still give the exact saturated values."""

    def run() -> list[torch.Tensor]:
        cell = make_cell(kind, 5, 16)
        x = torch.randn(6, 3, 5) * 1e4
        hs, (_, c) = cell(x)
        return [hs, c]

    fast, reference = both_paths(monkeypatch, run)
    assert all(torch.isfinite(t).all() for t in fast)
    assert_close(fast, reference)
