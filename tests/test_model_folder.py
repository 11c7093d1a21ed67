"""A model folder from elsewhere: a damaged or hostile config.json is refused with one clear error
naming it, before any weights are allocated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aisketcher.api import Sketcher
from aisketcher.cli import main
from aisketcher.errors import SketchDataError
from aisketcher.model.config import make_config
from aisketcher.model.sketcher import SketchModel

TINY = dict(enc_rnn_size=16, dec_rnn_size=32, z_size=8, raster_z_size=8, num_mixture=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = SketchModel(make_config("ai-sketcher", num_classes=2, **TINY))
    return Sketcher(model, ["cat", "eye"], 30.0).export(tmp_path_factory.mktemp("m") / "model")


def _with(folder: Path, tmp_path: Path, change) -> Path:
    """A copy of the model folder whose config.json is `change(config)` (text or an object)."""
    out = tmp_path / "changed"
    out.mkdir()
    (out / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    info = json.loads((folder / "config.json").read_text())
    changed = change(info)
    (out / "config.json").write_bytes(
        changed if isinstance(changed, bytes) else json.dumps(changed).encode()
    )
    return out


def _model(**fields):
    return lambda info: {**info, "model": {**info["model"], **fields}}


def _data(**fields):
    return lambda info: {**info, "data": {**info["data"], **fields}}


CASES = {
    "malformed JSON": (lambda info: b"{not json", "not a readable JSON"),
    "a list": (lambda info: [info], "no 'model' object"),
    "no model": (lambda info: {"data": info["data"]}, "no 'model' object"),
    "no data": (lambda info: {"model": info["model"]}, "no 'data' object"),
    "not UTF-8": (lambda info: b"\xff\xfe{}", "not a readable JSON"),
    "deep nesting": (lambda info: b"[" * 200_000, "not a readable JSON"),
    "size as text": (_model(dec_rnn_size="big"), "dec_rnn_size must be int"),
    "fractional size": (_model(dec_rnn_size=256.5), "dec_rnn_size must be int"),
    "negative size": (_model(dec_rnn_size=-5), "within"),
    "a terabyte model": (_model(dec_rnn_size=10**9), "within"),
    "absurd length": (_model(max_seq_len=10**12), "within"),
    "no length": (_model(max_seq_len=0), "within"),
    "unknown field": (_model(evil=1), r"unknown model config field\(s\): evil"),
    "scale as text": (_data(scale_factor="abc"), "scale_factor"),
    "zero scale": (_data(scale_factor=0), "scale_factor"),
    "negative scale": (_data(scale_factor=-3), "scale_factor"),
    "too few classes": (_data(classes=["cat"]), "1 class names for a model of 2"),
    "classes as a string": (_data(classes="cat"), "list of class names"),
    "a 5000-digit size": (lambda info: b'{"model": {"z_size": 1' + b"0" * 5000 + b"}}", "JSON"),
    "a 400-digit weight": (_model(kl_weight=10**400), "kl_weight must be within"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_config_is_refused_naming_the_file(
    case: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    change, message = CASES[case]
    bad = _with(folder, tmp_path, change)
    with pytest.raises(SketchDataError, match=message) as exc:
        Sketcher.load(bad)
    assert str(bad / "config.json") in str(exc.value)
    assert main(["draw", "cat", "--model", str(bad), "--out", str(tmp_path / "x.svg")]) == 2
    assert "config.json" in capsys.readouterr().err


def _first_weight(change):
    """Weights whose first floating-point tensor is `change(tensor)`."""

    def changed(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
        return {**tensors, name: change(tensors[name].clone())}

    return changed


def _nan(tensor: torch.Tensor) -> torch.Tensor:
    tensor.view(-1)[1] = float("nan")
    return tensor


# Weights from elsewhere (a model.safetensors changed after export), and what the refusal says.
WEIGHT_CASES = {
    "a NaN weight": (_first_weight(_nan), "NaN or infinite"),
    "an infinite weight": (_first_weight(lambda t: t.fill_(float("inf"))), "NaN or infinite"),
    "integer weights": (_first_weight(lambda t: t.round().to(torch.int32)), "not floating point"),
    "a wrong shape": (_first_weight(lambda t: t.reshape(-1)[:-1].clone()), "do not fit"),
    "a weight missing": (lambda tensors: dict(list(tensors.items())[1:]), "do not fit"),
}


def with_weights(folder: Path, out: Path, change) -> Path:
    """A copy of the model folder whose weights are `change(tensors)`."""
    from safetensors.torch import load_file, save_file

    out.mkdir()
    (out / "config.json").write_bytes((folder / "config.json").read_bytes())
    tensors = change(load_file(str(folder / "model.safetensors")))
    save_file(tensors, str(out / "model.safetensors"), metadata={"aisketcher": "{}"})
    return out


@pytest.mark.parametrize("case", list(WEIGHT_CASES))
def test_bad_weights_are_refused_naming_the_file(
    case: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    change, message = WEIGHT_CASES[case]
    bad = with_weights(folder, tmp_path / "changed", change)
    with pytest.raises(SketchDataError, match=message) as exc:
        Sketcher.load(bad)
    assert str(exc.value).startswith(f"{bad / 'model.safetensors'}: ")
    assert "\n" not in str(exc.value)
    assert main(["draw", "cat", "--model", str(bad), "--out", str(tmp_path / "x.svg")]) == 2
    assert "model.safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("writer", ["weights", "config"])
def test_an_export_on_a_full_disk_leaves_the_model_there_intact(
    writer: str, folder: Path, tmp_path: Path
) -> None:
    from safetensors import SafetensorError

    import aisketcher.api as api
    from test_store import full_disk

    target = tmp_path / "model"
    Sketcher.load(folder).export(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    sketcher = Sketcher(Sketcher.load(folder).model, ["dog", "owl"], 5.0)  # another model
    failing = (
        full_disk(api, "save_file", error=SafetensorError)
        if writer == "weights"
        else full_disk(Path, "write_text")
    )
    with failing, pytest.raises(SketchDataError, match="No space left") as exc:
        sketcher.export(target)
    assert str(exc.value).startswith(f"{target}: could not write the model")
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before  # no temporary left
    assert Sketcher.load(target).class_names == ["cat", "eye"]


def test_the_good_folder_loads(folder: Path) -> None:
    assert Sketcher.load(folder).class_names == ["cat", "eye"]


def test_a_folder_saved_before_the_z_r_prior_existed_still_loads(
    folder: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text((folder / "config.json").read_text())
    tensors = load_file(str(folder / "model.safetensors"))
    kept = {k: v for k, v in tensors.items() if "raster_prior" not in k}
    save_file(kept, str(old / "model.safetensors"), metadata={"aisketcher": "{}"})
    prior = Sketcher.load(old).model.raster_prior
    assert not prior.mean.any() and not prior.scale.any()  # a prior never fitted
