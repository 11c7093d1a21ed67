"""The model draws and trains bit for bit as it did before its structure was reshaped (issue 28:
eq. 5's layout named, the fused kernels behind one dispatcher): the built-in model in every mode
of the API, and a training step and drawings of a tiny model of every preset, each on the fused
path and on the reference path, as sha256 digests of the bytes they give.

The digests were recorded from the code before the change. Floating point rounds differently on
another CPU, compiler or torch build, so elsewhere (another `ENVIRONMENT`) the test is skipped. A
change meant to draw otherwise (new weights, another input to eq. 5) records them again:
`python tests/test_same_drawings.py` prints them.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch

from aisketcher import Sketch
from aisketcher.api import Sketcher
from aisketcher.latents import class_latent
from aisketcher.model import fused
from aisketcher.model.config import make_config
from aisketcher.model.sketcher import SketchModel
from aisketcher.sampler import sample

TINY = dict(enc_rnn_size=16, dec_rnn_size=32, z_size=8, raster_z_size=8, num_mixture=3)
# A house: a square, a roof, a door.
HOUSE = Sketch.from_strokes(
    [
        [(0, 40), (60, 40), (60, 100), (0, 100), (0, 40)],
        [(-5, 42), (30, 5), (65, 42)],
        [(22, 100), (22, 70), (38, 70), (38, 100)],
    ]
)
CAT_START = Sketch.from_strokes([[(10, 10), (60, 12), (62, 70)], [(30, 30), (35, 40)]])


RECORDED_PRESETS = (
    "sketch-rnn",
    "sketch-rnn-decoder",
    "sketch-rnn-cond",
    "sketch-pix2seq",
    "ai-sketcher-no-influence",
    "ai-sketcher-no-autoencoder",
    "ai-sketcher",
    "ai-sketcher-paper-memory",
)


def environment() -> str:
    """What the digests' floating point depends on besides the code."""
    flags = " ".join(fused._flags()) if fused.extension(build=False) else "no kernels"
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {flags}"


ENVIRONMENT = "torch 2.13.0+cpu, AVX512, -O3 -ffast-math -fopenmp-simd -mavx2 -mfma"
DIGESTS = {
    "1 builtin draw cat": "f54538440bd27fc6",
    "1 builtin draw pig": "ae955256d4c89ce6",
    "1 builtin draw ten": "41f08e16fab3f835",
    "1 builtin complete": "a48d955da0fe950e",
    "1 builtin translate": "f58ba3b5dbc26535",
    "1 builtin translate paper": "7a1f8ed3f37962a8",
    "1 builtin reconstruct": "9e18b19acf5d7696",
    "1 builtin interpolate": "a084e3f5e223f897",
    "1 sketch-rnn train": "ae0c842f1c8e163d",
    "1 sketch-rnn draw": "c5d14d6bab7f70e8",
    "1 sketch-rnn-decoder train": "9c2ff0d00b93894a",
    "1 sketch-rnn-decoder draw": "f58a3c4c314fb24b",
    "1 sketch-rnn-cond train": "3eb9baffbd8f7a10",
    "1 sketch-rnn-cond draw": "ac3a1012c31c59a7",
    "1 sketch-pix2seq train": "e5fb5bf15c4f4a75",
    "1 sketch-pix2seq draw": "9c149ea98be164a1",
    "1 ai-sketcher-no-influence train": "59bee0cda60da149",
    "1 ai-sketcher-no-influence draw": "41cbab5168e8f49b",
    "1 ai-sketcher-no-autoencoder train": "82f524d98ba5f32c",
    "1 ai-sketcher-no-autoencoder draw": "77fd6daaaf95d11e",
    "1 ai-sketcher train": "3dbed46489dea8da",
    "1 ai-sketcher draw": "d89bdf96c3911a22",
    "1 ai-sketcher-paper-memory train": "59a23321059b0bbc",
    "1 ai-sketcher-paper-memory draw": "cff7e1d6193be610",
    "0 builtin draw cat": "4287e988b147ad3b",
    "0 builtin draw pig": "a465f88f43c79051",
    "0 builtin draw ten": "3443eec2c98cb963",
    "0 builtin complete": "b58a8a2e26310e18",
    "0 builtin translate": "bd067c7cd87ee5cc",
    "0 builtin translate paper": "35d182aa130b41c5",
    "0 builtin reconstruct": "bc6967d82604fc23",
    "0 builtin interpolate": "978e941bde80059d",
    "0 sketch-rnn train": "289b11921fb8b9bb",
    "0 sketch-rnn draw": "15cc0352d3509a76",
    "0 sketch-rnn-decoder train": "9832cee9d4221060",
    "0 sketch-rnn-decoder draw": "adb1960d44e35a27",
    "0 sketch-rnn-cond train": "e01f4387caa1cc1a",
    "0 sketch-rnn-cond draw": "497150f7120066e9",
    "0 sketch-pix2seq train": "232a9aca6e65afd2",
    "0 sketch-pix2seq draw": "a078654c8ce6e7c5",
    "0 ai-sketcher-no-influence train": "278b05dc0a1a45b4",
    "0 ai-sketcher-no-influence draw": "a9895d19d9c03e47",
    "0 ai-sketcher-no-autoencoder train": "f14ad619f403ad9c",
    "0 ai-sketcher-no-autoencoder draw": "1afa8b300426f52f",
    "0 ai-sketcher train": "0de6f23db8a679e9",
    "0 ai-sketcher draw": "462b038e486d8a27",
    "0 ai-sketcher-paper-memory train": "b6953b62a39cb124",
    "0 ai-sketcher-paper-memory draw": "5372437a76d6e9ec",
}


def digest(arrays: list[np.ndarray] | list[torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for a in arrays:
        a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
        sha.update(np.ascontiguousarray(a).tobytes())
    return sha.hexdigest()[:16]


def builtin_drawings(sk: Sketcher) -> dict[str, list[Sketch]]:
    """Every drawing mode of the API; ten rows run the batched step until rows end."""
    return {
        "draw cat": sk.draw("cat", 3, seed=0),
        "draw pig": sk.draw("pig", 2, seed=5, temperature=0.8),
        "draw ten": sk.draw("apple", 10, seed=1),
        "complete": sk.complete(CAT_START, "cat", 3, seed=2),
        "translate": sk.translate(HOUSE, ["pig", "apple", "face"], seed=3),
        "translate paper": sk.translate(HOUSE, ["fish"], seed=3, class_pull=0.0),
        "reconstruct": sk.reconstruct([HOUSE, CAT_START], "cat", seed=4),
        "interpolate": sk.interpolate(HOUSE, CAT_START, 4, classes=("map", "cat"), seed=5),
    }


def tiny_model(preset: str) -> SketchModel:
    torch.manual_seed(0)
    config = make_config(preset, num_classes=3, max_seq_len=30, **TINY)
    model = SketchModel(config)
    with torch.no_grad():  # away from the initial values (zero first query, unit gains)
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
        model.output.bias[2] -= 2.0  # the end-of-sketch logit: longer drawings
    return model


def training_step(model: SketchModel) -> list[torch.Tensor]:
    """One training step's outputs and gradients, dropout and lambda_a drawn from seed 1."""
    torch.manual_seed(1)
    model.train().zero_grad()
    strokes = torch.randn(5, 14, 5)
    strokes[..., 2:] = torch.nn.functional.one_hot(torch.randint(0, 3, (5, 14)), 3).float()
    lengths, labels = torch.tensor([13, 9, 4, 13, 6]), torch.tensor([0, 1, 2, 1, 0])
    rasters = torch.rand(5, 1, 128, 128) if model.config.reads_rasters else None
    out = model(strokes, lengths, labels, rasters)
    loss = out.mixture.mu_x.square().sum() + out.mixture.logits.square().sum()
    if out.mu_a is not None:
        loss = loss + (out.mu_a * out.log_var_a).sum()
    loss.backward()
    return [loss, *(p.grad for p in model.parameters() if p.grad is not None)]


def tiny_drawings(model: SketchModel) -> list[np.ndarray]:
    model.eval()
    drawn = sample(model, class_latent(model, [0, 2, 1], seed=3), 3, temperature=0.6, seed=3)
    start = np.array([[0.5, 0.2, 0.0], [0.1, -0.4, 1.0]], dtype=np.float32)
    latent = class_latent(model, [1, 1], seed=4)
    return drawn + sample(model, latent, 2, temperature=0.6, seed=4, prefix=start)


def all_digests(setting: str) -> dict[str, str]:
    """Every digest with AISKETCHER_FUSED=`setting` ("1": fused, "0": reference)."""
    found: dict[str, str] = {}
    for name, sketches in builtin_drawings(Sketcher.load()).items():
        found[f"{setting} builtin {name}"] = digest([s.stroke3 for s in sketches])
    for preset in RECORDED_PRESETS:
        model = tiny_model(preset)
        found[f"{setting} {preset} train"] = digest(training_step(model))
        found[f"{setting} {preset} draw"] = digest(tiny_drawings(model))
    return found


@pytest.mark.parametrize("setting", ["1", "0"])
def test_drawing_and_training_give_the_recorded_bytes(
    setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if setting == "1" and fused.extension() is None:
        pytest.skip("no C++ compiler here")
    if environment() != ENVIRONMENT:
        pytest.skip(f"digests recorded on {ENVIRONMENT}; here {environment()}")
    monkeypatch.setenv("AISKETCHER_FUSED", setting)
    found = all_digests(setting)
    expected = {k: v for k, v in DIGESTS.items() if k.startswith(f"{setting} ")}
    assert found == expected


if __name__ == "__main__":
    torch.set_num_threads(1)  # as the tests run
    print(f'ENVIRONMENT = "{environment()}"')
    for setting in ("1", "0"):
        os.environ["AISKETCHER_FUSED"] = setting
        for name, value in all_digests(setting).items():
            print(f'    "{name}": "{value}",')
