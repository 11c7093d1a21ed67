"""Fused kernels: the LSTM cells' element-wise work in one pass, forward and backward (`cells.cpp`),
the influence layer and the default decoder (`influence.cpp`), a whole drawing step and the
points it draws (`draw.cpp`), and the autoencoder's 2x2 convolutions (`conv.cpp`, used through
`conv.py`); their shared parts in `kernels.h`, their bindings in `module.cpp`.

The C++ sources are compiled into one module through `torch.utils.cpp_extension` and cached (in
``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/aisketcher/fused``, one folder per version of the
sources, flags and torch version), about a minute once per machine.
``AISKETCHER_FUSED`` says when: ``auto`` (the default) builds it the first time a model trains and
uses it everywhere once built, so a first drawing never waits for a compiler; ``1`` builds it on
first use of any kind; ``0`` never uses it. The plain-PyTorch cells in `aisketcher.model.cells` stay
the reference and the fallback: they run whenever the fused path cannot (not built, no compiler, a
GPU tensor, another dtype, autocast, `torch.compile` tracing). Tests hold the two to the same
values and gradients.

Two granularities, both autograd functions:

- a step (`ln_lstm_step`, `lstm_step`): the recurrent product, then one fused pass; used where each
  step's input depends on the last output (the decoder with its influence layer) and in sampling;
- a sequence (`ln_lstm_sequence`, `lstm_sequence`): the time loop in C++, and in backward the
  recurrent weight's gradient as one matrix product over all steps (the encoder, and decoders
  without an influence layer).

Besides the cells: the influence layer's training step (`influence_step`: attention, mu_a, sigma_a
and a_d in one pass per row, forward and backward), and for drawing a few sketches with the
default model its whole decoder step (the memory's encoder step, the influence layer, the cell, the
output layer) as one call (`ln_draw_step`). The CNN autoencoder's stride-2, transposed and
stride-1 SAME 2x2 convolutions run over channels-last rows with their channel counts compiled in
(`conv.py`: `run_layers`, falling back to the layers themselves).

The cells and layers call their own kernels. The model's decoder as a whole (its training loop,
its drawing step) runs on them through one dispatcher, `decoder.py` (`FusedDecoder`), which also
names the structures those kernels take.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from aisketcher.data.paths import user_cache_dir

NAME = "aisketcher_fused_lstm"
# Compiled together into one module; the header is part of what a build is of (its cache key).
SOURCES = tuple(
    Path(__file__).with_name(name)
    for name in ("cells.cpp", "influence.cpp", "draw.cpp", "conv.cpp", "module.cpp")
)
HEADERS = (Path(__file__).with_name("kernels.h"),)
_lock = threading.Lock()
_module: ModuleType | None = None
_settled = False  # loaded, built, or failed for good: `_module` is the answer from now on
_missing = False  # looked for a build without building, and found none
_EMPTY = torch.empty(0)


MODES = ("auto", "1", "0")


def mode() -> str:
    """``AISKETCHER_FUSED``: auto (default), 1 or 0; see the module's docstring."""
    value = os.environ.get("AISKETCHER_FUSED", "auto")
    return value if value in MODES else "auto"


def extension(build: bool = True) -> ModuleType | None:
    """The compiled kernels, imported straight from the cache when built (no compiler, no lock);
    built first if `build`. None when they are not built (and `build` is False) or cannot be."""
    global _module, _settled, _missing
    if _settled:  # every recurrent step asks: answered without the lock
        return _module
    with _lock:
        if _settled or (not build and _missing):
            return _module
        library = _library()
        if library.is_file():
            _module = _import(library)
        elif build:
            _module = _build(library.parent)
        else:
            _missing = True  # not built: drawing does not look again in this process
            return None
        _settled = True
        return _module


def _library() -> Path:
    """Where this source, these flags and this torch build their library: a new name for any
    change, so a stale build is never loaded and a rebuild never replaces a loaded file."""
    key = hashlib.sha256()
    for source in (*SOURCES, *HEADERS):
        key.update(source.read_bytes())
    key.update(" ".join([*_flags(), torch.__version__, sys.version]).encode())
    name = f"{NAME}_{key.hexdigest()[:12]}"
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    return (Path(root) if root else user_cache_dir() / "fused") / name / f"{name}.so"


def _import(library: Path) -> ModuleType | None:
    try:
        spec = importlib.util.spec_from_file_location(library.stem, library)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except (ImportError, OSError) as exc:
        return _fallback(exc)


def _build(directory: Path) -> ModuleType | None:
    from torch.utils import cpp_extension

    print(
        "aisketcher: compiling the fused LSTM kernels (once per machine, about a minute)",
        file=sys.stderr,
        flush=True,
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return cpp_extension.load(
            directory.name,
            [str(source) for source in SOURCES],
            extra_cflags=_flags(),
            build_directory=str(directory),
            verbose=False,
        )
    except Exception as exc:
        return _fallback(exc)


def _fallback(exc: BaseException) -> None:
    detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    warnings.warn(
        f"the fused LSTM kernels could not be built or loaded ({type(exc).__name__}: {detail}); "
        "using the plain PyTorch cells, which are slower",
        RuntimeWarning,
        stacklevel=4,
    )


@functools.cache
def _flags() -> list[str]:
    """Optimise and vectorise; -ffast-math lets the loops of exp and tanh call glibc's vector
    math library. AVX2 and FMA when this CPU has them (the build is cached per machine)."""
    flags = ["-O3", "-ffast-math", "-fopenmp-simd"]
    try:
        cpu = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpu = ""
    if " avx2" in cpu and " fma" in cpu:
        flags += ["-mavx2", "-mfma"]
    return flags


def usable(x: Tensor) -> bool:
    """Whether the fused kernels can run on tensors like x here and now."""
    setting = mode()
    return (
        setting != "0"
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled(x.device.type)
        and not torch.compiler.is_compiling()
        and extension(build=setting == "1" or torch.is_grad_enabled()) is not None
    )


def as_mask(mask: Tensor | None) -> Tensor:
    """A dropout mask as the kernels take it: an empty tensor for none."""
    return _EMPTY if mask is None else mask.contiguous()


class LnNorms(NamedTuple):
    """A layer-normalised LSTM cell's norms (kernels.h `LnView`)."""

    gain: Tensor  # (4H) of the gates
    shift: Tensor  # (4H) the gates' bias, the forget bias added on the f block
    cell_gain: Tensor  # (H) of the new cell
    cell_bias: Tensor  # (H)
    eps: float  # inside the square root


class _LayerNormStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, xp, h, c, w_hh, gain, shift, cgain, cbias, mask, eps):  # type: ignore[override]
        gates = torch.addmm(xp, h, w_hh)
        out = extension().ln_forward(gates, c, gain, shift, cgain, cbias, mask, eps, True)
        ctx.save_for_backward(h, c, w_hh, gain, cgain, mask, *out[2:])
        return out[0], out[1]

    @staticmethod
    def backward(ctx: Any, dh: Tensor, dc: Tensor):  # type: ignore[override]
        h, c, w_hh, gain, cgain, mask, *saved = ctx.saved_tensors
        dgates, dc_prev, *grads = extension().ln_backward(
            dh.contiguous(), dc.contiguous(), c, gain, cgain, mask, *saved
        )
        dh_prev = dgates @ w_hh.t() if ctx.needs_input_grad[1] else None
        dw = h.t() @ dgates if ctx.needs_input_grad[3] else None
        return dgates, dh_prev, dc_prev, dw, *grads, None, None


class _LSTMStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, xp, h, c, w_hh, mask, forget_bias):  # type: ignore[override]
        gates = torch.addmm(xp, h, w_hh)
        h_out, c_out, act, tc = extension().lstm_forward(gates, c, mask, forget_bias)
        ctx.save_for_backward(h, c, w_hh, mask, act, tc)
        return h_out, c_out

    @staticmethod
    def backward(ctx: Any, dh: Tensor, dc: Tensor):  # type: ignore[override]
        h, c, w_hh, mask, act, tc = ctx.saved_tensors
        dgates, dc_prev = extension().lstm_backward(
            dh.contiguous(), dc.contiguous(), c, mask, act, tc
        )
        dh_prev = dgates @ w_hh.t() if ctx.needs_input_grad[1] else None
        dw = h.t() @ dgates if ctx.needs_input_grad[3] else None
        return dgates, dh_prev, dc_prev, dw, None, None


class _LayerNormSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, xp, h0, c0, w_hh, gain, shift, cgain, cbias, masks, eps):  # type: ignore[override]
        hs, cs, *saved = extension().ln_sequence_forward(
            xp, h0, c0, w_hh, gain, shift, cgain, cbias, masks, eps
        )
        ctx.save_for_backward(h0, w_hh, gain, cgain, masks, hs, cs, *saved)
        return hs, cs[-1].clone()

    @staticmethod
    def backward(ctx: Any, dhs: Tensor, dc_last: Tensor):  # type: ignore[override]
        h0, w_hh, gain, cgain, masks, hs, cs, *saved = ctx.saved_tensors
        dxp, dh0, dc0, dw, *grads = extension().ln_sequence_backward(
            dhs.contiguous(), dc_last.contiguous(), h0, w_hh, gain, cgain, masks, hs, cs, *saved
        )
        return dxp, dh0, dc0, dw, *grads, None, None


class _LSTMSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, xp, h0, c0, w_hh, masks, forget_bias):  # type: ignore[override]
        hs, cs, act, tc = extension().lstm_sequence_forward(xp, h0, c0, w_hh, masks, forget_bias)
        ctx.save_for_backward(h0, w_hh, masks, hs, cs, act, tc)
        return hs, cs[-1].clone()

    @staticmethod
    def backward(ctx: Any, dhs: Tensor, dc_last: Tensor):  # type: ignore[override]
        h0, w_hh, masks, hs, cs, act, tc = ctx.saved_tensors
        dxp, dh0, dc0, dw = extension().lstm_sequence_backward(
            dhs.contiguous(), dc_last.contiguous(), h0, w_hh, masks, hs, cs, act, tc
        )
        return dxp, dh0, dc0, dw, None, None


def ln_lstm_step(
    xp: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, norms: LnNorms, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """One layer-normalised LSTM step: (h', c') from projected input xp (B, 4H) and (h, c)."""
    xp, h, c = xp.contiguous(), h.contiguous(), c.contiguous()
    gain, shift, cgain, cbias, eps = norms
    if not torch.is_grad_enabled():  # sampling: no autograd bookkeeping at all
        out = extension().ln_forward(
            torch.addmm(xp, h, w_hh), c, gain, shift, cgain, cbias, as_mask(mask), eps, False
        )
        return out[0], out[1]
    return _LayerNormStep.apply(xp, h, c, w_hh, gain, shift, cgain, cbias, as_mask(mask), eps)


def lstm_step(
    xp: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, mask: Tensor | None, forget_bias: float
) -> tuple[Tensor, Tensor]:
    """One plain LSTM step (the forget bias added inside)."""
    xp, h, c = xp.contiguous(), h.contiguous(), c.contiguous()
    if not torch.is_grad_enabled():
        out = extension().lstm_forward(torch.addmm(xp, h, w_hh), c, as_mask(mask), forget_bias)
        return out[0], out[1]
    return _LSTMStep.apply(xp, h, c, w_hh, as_mask(mask), forget_bias)


class _Influence(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, query, memory, limit, noise, tape, step):  # type: ignore[override]
        a, mu, log_var, alpha = extension().influence_forward(query, memory, limit, noise)
        ctx.save_for_backward(query, memory, limit, noise, log_var, alpha)
        ctx.tape, ctx.step = tape, step
        return a, mu, log_var

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_a: Tensor, d_mu: Tensor, d_lv: Tensor):  # type: ignore[override]
        query, memory, limit, noise, log_var, alpha = ctx.saved_tensors
        tape = ctx.tape
        d_query = extension().influence_backward(
            d_a.contiguous(), d_mu.contiguous(), d_lv.contiguous(), memory, limit, noise,
            log_var, alpha, tape.alpha, tape.d_scores, tape.d_mu, tape.query, query, ctx.step,
        )  # fmt: skip
        return d_query, None, None, None, None, None


def influence_step(
    query: Tensor, memory: Tensor, limit: Tensor, noise: Tensor, tape: Any, step: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The influence layer's training step with sigma_a = exp(tanh(mu_a) / 2): (a_d, mu_a, log
    sigma_a^2) from the projected query (B, A) over the first `limit` rows of each row's memory
    (the tape's view, B x T x A); backward writes the step's row of the `AttentionTape`, which
    forms the memory's gradient."""
    return _Influence.apply(query.contiguous(), memory, limit, noise.contiguous(), tape, step)


def ln_draw_step(
    weights: Any,
    point: Tensor,
    context: Tensor,
    rnn: tuple[Tensor, ...],
    query: Tensor,
    memory_rnn: tuple[Tensor, ...],
    memory: Tensor,
    step: int,
    noise: Tensor,
) -> list[Tensor]:
    """One drawing step of the default model as one call (see `ln_draw_step` in draw.cpp) with
    its weights as draw.cpp holds them (`fused.decoder.DrawWeights`) and a `DecoderState`'s
    parts: y, h', c', the memory cell's h', c', mu_a, log sigma_a^2; the memory's row `step` is
    written."""
    return extension().ln_draw_step(
        weights, point, context, rnn, query, memory_rnn, memory, step, noise
    )


def sample_points(*args: Tensor | int | float) -> Tensor:
    """`mixture.sample_points`'s arithmetic as one loop over the rows (see `sample_points` in
    draw.cpp): points (B, 5) from y (B, 3 + 6m), uniforms (B, 4), m, tau, the discrete
    temperature and the bounds on log sigma and rho."""
    return extension().sample_points(*args)


def ln_lstm_sequence(
    xp: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, norms: LnNorms, masks: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Outputs (T, B, H) and the final cell of a layer-normalised LSTM over xp (T, B, 4H)."""
    gain, shift, cgain, cbias, eps = norms
    return _LayerNormSequence.apply(
        xp.contiguous(), h0.contiguous(), c0.contiguous(), w_hh, gain, shift, cgain, cbias,
        as_mask(masks), eps,
    )  # fmt: skip


def lstm_sequence(
    xp: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, masks: Tensor | None, forget_bias: float
) -> tuple[Tensor, Tensor]:
    """Outputs (T, B, H) and the final cell of a plain LSTM over xp (T, B, 4H)."""
    return _LSTMSequence.apply(
        xp.contiguous(), h0.contiguous(), c0.contiguous(), w_hh, as_mask(masks), forget_bias
    )
