"""The autoencoder's 2x2 convolution kernels against PyTorch's nn.Conv2d / nn.ConvTranspose2d
(oneDNN): same values, same gradients of input, weight and bias, on every layer shape the
autoencoder has and on the whole autoencoder; the fallback where the kernels do not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aisketcher.model import fused
from aisketcher.model.autoencoder import LAYOUT, RasterAutoencoder, reconstruction_error
from aisketcher.model.fused.conv import kind_of, run_layers
from test_fused import fused_nodes

pytestmark = pytest.mark.skipif(fused.extension() is None, reason="no C++ compiler here")


def _layers(kind: str, c_in: int, c_out: int) -> nn.Sequential:
    torch.manual_seed(0)
    if kind == "up":
        layers = [nn.ConvTranspose2d(c_in, c_out, 2, stride=2)]
    elif kind == "same":
        layers = [nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(c_in, c_out, 2)]
    else:
        layers = [nn.Conv2d(c_in, c_out, 2, stride=2)]
    stack = nn.Sequential(*layers).to(memory_format=LAYOUT)
    with torch.no_grad():
        for p in stack.parameters():
            p.normal_()  # biases too, so a dropped or misplaced bias shows
    return stack


def _both(monkeypatch: pytest.MonkeyPatch, stack: nn.Module, x: torch.Tensor) -> list[list]:
    """Output and the gradients of input and parameters, through the kernels, then PyTorch."""
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv("AISKETCHER_FUSED", switch)
        stack.zero_grad()
        xi = x.detach().clone().requires_grad_()
        out = run_layers(stack, xi)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        (out * weight).sum().backward()
        grads = [p.grad.clone() for p in stack.parameters()]
        results.append([out.detach(), xi.grad, *grads, "_Conv2x2Backward" in fused_nodes(out)])
    return results


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = b.abs().max().clamp(min=1.0)
    assert (a - b).abs().max() <= 1e-5 * scale, ((a - b).abs().max(), scale)


@pytest.mark.parametrize(
    "kind, c_in, c_out",
    [
        ("down", 1, 4), ("down", 4, 8), ("down", 8, 8),
        ("same", 4, 4), ("same", 8, 8),
        ("up", 8, 8), ("up", 8, 4), ("up", 4, 1),
    ],
)  # fmt: skip
def test_each_layer_shape_gives_pytorchs_values_and_gradients(
    kind: str, c_in: int, c_out: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(2)  # the row split and the per-thread weight-gradient sums run
    stack = _layers(kind, c_in, c_out)
    # 5 images of 10 x 6 (not square, more rows than one thread's share): index mix-ups show
    x = torch.randn(5, c_in, 10, 6).contiguous(memory_format=LAYOUT)
    fast, reference = _both(monkeypatch, stack, x)
    assert fast[-1] and not reference[-1]  # the kernels ran, then PyTorch alone
    assert fast[0].shape == reference[0].shape
    for a, b in zip(fast[:-1], reference[:-1], strict=True):
        _close(a, b)


def test_the_whole_autoencoder_gives_pytorchs_values_and_gradients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = RasterAutoencoder(z_size=16)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # nonzero biases
    raster = (torch.rand(3, 1, 128, 128) < 0.1).float()
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv("AISKETCHER_FUSED", switch)
        model.zero_grad()
        z, recon = model(raster)
        (reconstruction_error(raster, recon) + z.square().sum()).backward()
        results.append([z.detach(), recon.detach(), *(p.grad.clone() for p in model.parameters())])
    for a, b in zip(*results, strict=True):
        _close(a, b)


def test_layers_the_kernels_do_not_hold_run_as_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AISKETCHER_FUSED", "1")
    assert kind_of(nn.Conv2d(4, 8, 2, stride=2), padded=False) == "down"
    assert kind_of(nn.Conv2d(4, 4, 2), padded=True) == "same"
    assert kind_of(nn.ConvTranspose2d(4, 1, 2, stride=2), padded=False) == "up"
    assert kind_of(nn.Conv2d(3, 8, 2, stride=2), padded=False) is None  # channels not compiled
    assert kind_of(nn.Conv2d(4, 8, 3, stride=2), padded=False) is None  # 3x3 kernel
    assert kind_of(nn.Conv2d(4, 8, 2), padded=False) is None  # stride 1 without SAME padding
    assert kind_of(nn.Conv2d(4, 8, 2, stride=2, bias=False), padded=False) is None
    assert kind_of(nn.ReLU(), padded=False) is None
    # an odd side: PyTorch drops the last row and column, and so does the fallback here
    stack = _layers("down", 4, 8)
    x = torch.randn(2, 4, 7, 9).contiguous(memory_format=LAYOUT)
    _close(run_layers(stack, x), stack(x))
    assert run_layers(stack, x).shape == (2, 8, 3, 4)


def test_stacks_the_kernels_would_misread_run_as_pytorch_runs_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AISKETCHER_FUSED", "1")
    torch.manual_seed(0)
    pad = nn.ZeroPad2d((0, 1, 0, 1))
    stacks = [
        nn.Sequential(nn.ConvTranspose2d(8, 8, 2, stride=2, output_padding=1)),  # 9 x 9 out
        nn.Sequential(nn.Conv2d(8, 8, 2, stride=2), pad),  # a padding with no convolution after
        nn.Sequential(pad, pad, nn.Conv2d(8, 8, 2)),  # two paddings, then SAME
        nn.Sequential(pad, nn.Conv2d(8, 8, 2, stride=2)),  # a padding before a stride-2 one
    ]
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=LAYOUT)
    for stack in stacks:
        expected = stack(x)
        got = run_layers(stack, x)
        assert got.shape == expected.shape, stack
        _close(got, expected)
    # a hook that changes the output is honoured: the layer runs as itself
    conv = nn.Conv2d(8, 8, 2, stride=2)
    conv.register_forward_hook(lambda module, args, out: out * 0)
    assert kind_of(conv, padded=False) is None
    assert run_layers(nn.Sequential(conv), x).abs().max() == 0


def test_inputs_the_layer_refuses_are_refused_not_read_past_their_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AISKETCHER_FUSED", "1")
    same = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(8, 8, 2))
    down = nn.Sequential(nn.Conv2d(8, 8, 2, stride=2))
    for stack, x in [
        (same, torch.randn(2, 1, 64, 64)),  # 1 channel where the layer takes 8
        (down, torch.randn(1, 4, 2, 2)),
        (same, torch.randn(2, 8, 3, 0)),  # no columns
    ]:
        with pytest.raises(RuntimeError):
            stack(x)  # PyTorch refuses it ...
        with pytest.raises(RuntimeError):
            run_layers(stack, x)  # ... and so does the path through the kernels
    # the kernels check what they index by themselves, whoever calls them
    ext = fused.extension()
    taps = torch.randn(2, 2, 8, 8)
    with pytest.raises(RuntimeError, match="channels"):
        ext.conv_same(torch.randn(2, 6, 6, 4), taps, torch.empty(0), False)
    with pytest.raises(RuntimeError, match="empty"):
        ext.conv_same(torch.randn(2, 6, 0, 8), taps, torch.empty(0), False)
    with pytest.raises(RuntimeError, match="odd"):
        ext.conv_down(torch.randn(2, 5, 6, 8), taps, torch.empty(0))
    with pytest.raises(RuntimeError, match="biases"):
        ext.conv_down(torch.randn(2, 6, 6, 8), taps, torch.zeros(3))
    with pytest.raises(RuntimeError, match="float32"):
        ext.conv_down(torch.randn(2, 6, 6, 8, dtype=torch.float64), taps, torch.empty(0))


def test_frozen_layers_still_pass_the_inputs_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _layers("same", 4, 4).requires_grad_(False)
    x = torch.randn(3, 4, 6, 6).contiguous(memory_format=LAYOUT)
    grads = []
    for switch in ("1", "0"):
        monkeypatch.setenv("AISKETCHER_FUSED", switch)
        xi = x.clone().requires_grad_()
        run_layers(stack, xi).square().sum().backward()
        grads.append(xi.grad)
    _close(*grads)
