"""The raster autoencoder's 2x2 convolutions through the kernels in `conv.cpp`.

At 1-8 channels oneDNN runs these layers at a small fraction of the memory's speed (a twentieth of
the kernels' for the last transposed convolution: docs/measurements.md), and the stride-1 layers
need a padded copy of their input; the kernels read
channels-last activations in place and pad implicitly. PyTorch's `nn.Conv2d` / `nn.ConvTranspose2d`
(with `nn.ZeroPad2d` for SAME) stay the reference and the fallback, with the same parameters.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from aisketcher.model import fused

_EMPTY = torch.empty(0)


def _taps(weight: Tensor) -> Tensor:
    """(out, in, 2, 2) conv or (in, out, 2, 2) transposed-conv weight -> M[a][c][p][q] mapping
    the first axis's channels from the second's (conv: p = in, q = out; transposed: p = out)."""
    return weight.permute(2, 3, 1, 0).contiguous()


def _rows(weight: Tensor) -> Tensor:
    """The same weight as mt[q][a][c][p]: one row of 4p outputs per channel q (for `conv_up`)."""
    return weight.permute(0, 2, 3, 1).contiguous()


def _weight(grad: Tensor) -> Tensor:
    """M[a][c][p][q]'s gradient back to the layer's (2, 2)-last layout."""
    return grad.permute(3, 2, 0, 1)


class _Conv2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, kind: str) -> Tensor:  # type: ignore[override]
        ext = fused.extension()
        xh = x.permute(0, 2, 3, 1).contiguous()  # free for channels-last input
        if kind == "down":
            out = ext.conv_down(xh, _taps(weight), bias)
        elif kind == "up":
            out = ext.conv_up(xh, _rows(weight), bias)
        else:
            out = ext.conv_same(xh, _taps(weight), bias, False)
        ctx.kind = kind
        ctx.save_for_backward(xh, weight)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor):  # type: ignore[override]
        ext = fused.extension()
        xh, weight = ctx.saved_tensors
        gh = grad.permute(0, 2, 3, 1).contiguous()
        kind = ctx.kind
        dx = None
        if ctx.needs_input_grad[0]:
            if kind == "down":  # the adjoint of a stride-2 conv is the transposed one
                dx = ext.conv_up(gh, _rows(weight), _EMPTY)
            elif kind == "up":
                dx = ext.conv_down(gh, _taps(weight), _EMPTY)
            else:  # taps read up-left: channels swapped, columns reversed
                taps = _taps(weight).transpose(2, 3).flip(1).contiguous()
                dx = ext.conv_same(gh, taps, _EMPTY, True)
            dx = dx.permute(0, 3, 1, 2)
        if not any(ctx.needs_input_grad[1:3]):
            return dx, None, None, None
        if kind == "up":  # the output is the y (larger) side
            dm, db = ext.conv_weight_grad(gh, xh, False, 0)
        else:
            dm, db = ext.conv_weight_grad(xh, gh, kind == "same", 1)
        return dx, _weight(dm), db, None


@functools.cache
def _pairs() -> frozenset[tuple[int, int]]:
    """The (P, Q) channel pairs the kernels are compiled for."""
    return frozenset(tuple(pair) for pair in fused.extension().conv_pairs())


def _plain(layer: nn.Module) -> bool:
    """No hooks on `layer`: the kernels would skip them."""
    return not (layer._forward_hooks or layer._forward_pre_hooks)


def kind_of(layer: nn.Module, padded: bool) -> str | None:
    """Which kernel runs `layer` (after a ZeroPad2d((0, 1, 0, 1)) when `padded`), or None when
    it is not one of the autoencoder's 2x2 shapes with channel counts the kernels hold. Only the
    plain torch layers without hooks qualify: a subclass or a hook may change what they compute."""
    if not _plain(layer):
        return None
    if type(layer) is nn.ConvTranspose2d:
        shape_ok = (
            layer.stride == (2, 2)
            and layer.padding == (0, 0)
            and layer.output_padding == (0, 0)
            and not padded
        )
        kind, pair = "up", (layer.out_channels, layer.in_channels)
        extra = pair
    elif type(layer) is nn.Conv2d:
        kind = "same" if padded else "down"
        shape_ok = layer.stride == ((1, 1) if padded else (2, 2)) and layer.padding == (0, 0)
        pair = (layer.in_channels, layer.out_channels)
        extra = pair[::-1] if padded else pair  # SAME's adjoint runs the pair swapped
    else:
        return None
    ok = (
        shape_ok
        and layer.kernel_size == (2, 2)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and layer.bias is not None
        and {pair, extra} <= _pairs()
    )
    return kind if ok else None


def conv2x2(x: Tensor, layer: nn.Conv2d | nn.ConvTranspose2d, kind: str) -> Tensor:
    """`layer` on x (B, C, H, W), channels-last like the autoencoder's activations, through the
    kernels: `kind` from `kind_of`; H and W must be even for "down"."""
    return _Conv2x2.apply(x, layer.weight, layer.bias, kind)


def _fits(x: Tensor, layer: nn.Module, kind: str | None) -> bool:
    """Whether the kernel `kind` takes x as `layer` would: a batch of nonempty images with the
    layer's input channels, and whole 2x2 patches for "down" (PyTorch drops an odd edge)."""
    if kind is None or x.dim() != 4 or x.shape[1] != layer.in_channels:
        return False
    height, width = x.shape[-2:]
    if height == 0 or width == 0:
        return False
    return kind != "down" or (height % 2 == 0 and width % 2 == 0)


def _same_padding(layer: nn.Module) -> bool:
    """Whether `layer` is the plain ZeroPad2d((0, 1, 0, 1)) that makes a 2x2 convolution SAME."""
    return type(layer) is nn.ZeroPad2d and layer.padding == (0, 1, 0, 1) and _plain(layer)


def run_layers(layers: nn.Sequential, x: Tensor) -> Tensor:
    """The autoencoder's layer stack on x, each 2x2 convolution (with the ZeroPad2d before a SAME
    one) through the kernels where they hold it; every other layer as itself."""
    if not fused.usable(x):
        return layers(x)
    pad: nn.Module | None = None  # a SAME padding held back for the convolution after it
    for layer in layers:
        if pad is not None:
            kind = kind_of(layer, padded=True)
            if _fits(x, layer, kind):
                x, pad = conv2x2(x, layer, kind), None
                continue
            x, pad = pad(x), None
        if _same_padding(layer):
            pad = layer
            continue
        kind = kind_of(layer, padded=False)
        x = conv2x2(x, layer, kind) if _fits(x, layer, kind) else layer(x)
    return pad(x) if pad is not None else x
