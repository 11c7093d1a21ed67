"""Import Google's pretrained magenta-js Sketch-RNN models (`<class>.gen.json`, decoder only).

A file is a JSON list ``[info, shapes, weights]``: ``info`` holds ``mode`` (2: decoder only),
``version`` (6; or mode "gen", version 2), ``name``, ``max_seq_len`` and ``scale_factor``; ``shapes`` lists the five weight
shapes ``[[H, 3 + 6m], [3 + 6m], [5, 4H], [H, 4H], [4H]]`` (output kernel and bias, then the LSTM's
input kernel, recurrent kernel and bias); ``weights`` holds each as base64 little-endian int16,
where a weight is ``int16 * 10 / 32767``. The LSTM is TensorFlow's basic cell (gates i, j, f, o;
forget bias 1.0 added at run time), the output row has `Mixture.from_output`'s layout, and the
initial state is zero: exactly our "sketch-rnn-decoder" preset with a plain LSTM.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aisketcher.errors import SketchDataError
from aisketcher.model.config import RANGES, make_config

if TYPE_CHECKING:
    from aisketcher.model.sketcher import SketchModel

# Decoder-only files say mode 2 (format version 6) or "gen" (version 2); the weights are laid out
# alike. magenta-js itself reads neither field ("pre-trained models have a version between 1-6").
DECODER_ONLY_MODES = (2, "gen")
SUPPORTED_VERSIONS = range(1, 7)
# magenta-js stores weights as int16 scaled to +-MAX_WEIGHT.
MAX_WEIGHT = 10.0
INT16_MAX = 32767
# magenta-js divides canvas offsets by scale_factor / PIXEL_FACTOR (its default "pixel factor").
PIXEL_FACTOR = 2.0
# A sanity bound on the decoder size so a hostile header cannot make us allocate a huge model.
MAX_UNITS = 8192


@dataclass(frozen=True)
class MagentaInfo:
    """What a magenta-js model file says about itself, plus the sizes read from its weights."""

    name: str  # QuickDraw class the model was trained on
    scale_factor: float  # magenta-js's network-to-pixel factor, as stored in the file
    max_seq_len: int  # N_max of its training data
    version: int
    dec_rnn_size: int
    num_mixture: int
    source: str  # the file it came from

    @property
    def input_scale(self) -> float:
        """Divide QuickDraw offsets (0..255 canvas units) by this to get the network's units.

        magenta-js feeds canvas offsets divided by scale_factor / PIXEL_FACTOR and multiplies
        sampled offsets by the same. On the QuickDraw test sketches of the six published classes
        this factor is close to the likelihood-optimal one (docs/measurements.md).
        """
        return self.scale_factor / PIXEL_FACTOR


def _fail(problem: str, source: str) -> SketchDataError:
    return SketchDataError(f"not a magenta-js Sketch-RNN model: {problem}", source)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_info(info: object, source: str) -> tuple[str, float, int, int]:
    if not isinstance(info, dict):
        raise _fail("the first item must be an info object", source)
    mode, version = info.get("mode"), info.get("version")
    if isinstance(mode, bool) or mode not in DECODER_ONLY_MODES:
        raise _fail(
            f'mode {mode!r}; only decoder-only models (mode 2 or "gen") are supported', source
        )
    if not _is_int(version) or version not in SUPPORTED_VERSIONS:
        raise _fail(f"version {version!r}; supported: 1 to 6", source)
    name, scale, max_len = info.get("name"), info.get("scale_factor"), info.get("max_seq_len")
    if not isinstance(name, str) or not name:
        raise _fail("info 'name' must be a non-empty string", source)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise _fail(f"info 'scale_factor' must be a positive number, got {scale!r}", source)
    if not math.isfinite(scale):
        raise _fail("info 'scale_factor' is not finite", source)
    longest = RANGES["max_seq_len"][1]  # what a model may take: checked here, by name
    if not _is_int(max_len) or not 0 < max_len <= longest:
        raise _fail(
            f"info 'max_seq_len' must be a whole number from 1 to {longest:.0f}, got {max_len!r}",
            source,
        )
    return name, float(scale), max_len, version


def _parse_shapes(shapes: object, source: str) -> tuple[list[tuple[int, ...]], int, int]:
    """Check the five shapes against the decoder-only layout; return them, H and m."""
    ok = (
        isinstance(shapes, list)
        and len(shapes) == 5
        and all(isinstance(s, list) and all(_is_int(d) and d > 0 for d in s) for s in shapes)
    )
    if not ok:
        raise _fail("the second item must list five weight shapes of positive integers", source)
    found = [tuple(s) for s in shapes]
    hidden = found[0][0] if len(found[0]) == 2 else 0
    out_size = found[0][1] if len(found[0]) == 2 else 0
    num_mixture = (out_size - 3) // 6
    expected = [
        (hidden, 3 + 6 * num_mixture),
        (3 + 6 * num_mixture,),
        (5, 4 * hidden),
        (hidden, 4 * hidden),
        (4 * hidden,),
    ]
    most = RANGES["num_mixture"][1]
    if found != expected or not 1 <= num_mixture <= most or hidden > MAX_UNITS:
        raise _fail(
            f"weight shapes {shapes} do not match a decoder-only LSTM "
            "[[H, 3+6m], [3+6m], [5, 4H], [H, 4H], [4H]]",
            source,
        )
    return found, hidden, num_mixture


def _decode_weight(text: object, shape: tuple[int, ...], index: int, source: str) -> np.ndarray:
    if not isinstance(text, str):
        raise _fail(f"weight {index} is not a base64 string", source)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(f"weight {index} is not valid base64 ({exc})", source) from None
    count = math.prod(shape)
    if len(raw) != 2 * count:
        raise _fail(
            f"weight {index} holds {len(raw)} bytes, expected {2 * count} for shape {list(shape)}",
            source,
        )
    values = np.frombuffer(raw, dtype="<i2").astype(np.float64) * (MAX_WEIGHT / INT16_MAX)
    return values.astype(np.float32).reshape(shape)


def read_magenta_js(path: str | Path) -> tuple[MagentaInfo, list[np.ndarray]]:
    """Parse and check a magenta-js model file: its info and its five float32 weight arrays."""
    source = str(path)
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise SketchDataError(f"cannot read: {exc.strerror or exc}", source) from None
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _fail(f"invalid JSON ({exc})", source) from None
    if not isinstance(data, list) or len(data) != 3:
        raise _fail("expected a JSON list [info, shapes, weights]", source)
    name, scale, max_len, version = _parse_info(data[0], source)
    shapes, hidden, num_mixture = _parse_shapes(data[1], source)
    weights = data[2]
    if not isinstance(weights, list) or len(weights) != len(shapes):
        raise _fail(f"the third item must list {len(shapes)} base64 weights", source)
    arrays = [
        _decode_weight(text, shape, i, source)
        for i, (text, shape) in enumerate(zip(weights, shapes, strict=True))
    ]
    info = MagentaInfo(name, scale, max_len, version, hidden, num_mixture, source)
    return info, arrays


def load_magenta_js(path: str | Path) -> tuple[SketchModel, MagentaInfo]:
    """A magenta-js decoder-only model as our "sketch-rnn-decoder" SketchModel (in eval mode)."""
    # torch only here: reading and checking a file (as the model cache does before keeping one,
    # and the CLI before torch loads) needs NumPy alone.
    import torch

    from aisketcher.model.cells import LSTMCell
    from aisketcher.model.sketcher import SketchModel

    info, (out_w, out_b, w_xh, w_hh, bias) = read_magenta_js(path)
    config = make_config(
        "sketch-rnn-decoder",
        "magenta",
        cell="lstm",
        dec_rnn_size=info.dec_rnn_size,
        num_mixture=info.num_mixture,
        num_classes=1,
        recurrent_dropout=0.0,
        max_seq_len=info.max_seq_len,
        discrete_temperature="magenta-js",  # draw as magenta-js draws with these models
    )
    model = SketchModel(config)
    decoder = model.decoder
    # The import is only right if the decoder sees s_i alone and runs TF's basic LSTM.
    assert config.decoder_input_size == w_xh.shape[0]
    assert isinstance(decoder, LSTMCell) and decoder.forget_bias == 1.0
    with torch.no_grad():
        decoder.weight_ih.copy_(torch.from_numpy(w_xh))
        decoder.weight_hh.copy_(torch.from_numpy(w_hh))
        decoder.bias.copy_(torch.from_numpy(bias))
        # magenta-js computes h @ W (W is (H, out)); nn.Linear stores (out, H).
        model.output.weight.copy_(torch.from_numpy(out_w).T)
        model.output.bias.copy_(torch.from_numpy(out_b))
    return model.eval(), info
