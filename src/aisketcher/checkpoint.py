"""Checkpoints: one safetensors file per checkpoint, written atomically; read by training (to
resume), by drawing (a run's weights) and by evaluation.

The file holds the model weights (`model.*`), the optimizer's tensors (`optim.*`) and torch's RNG
state; everything else (step, configs, scale factor, classes, optimizer scalars, the data loader's
RNG) is JSON in the file's metadata, so a checkpoint is self-contained, loads without pickle, and can
never be half-written: it is written to a temporary file and renamed over the old one. A readable
copy of the JSON is written beside it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from aisketcher.atomic import atomic_write, write_json
from aisketcher.errors import SketchDataError

META_KEY = "aisketcher"
WRITE_FAILURES = (OSError, SafetensorError)  # a full disk, as either reports it


def _optimizer_split(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer state_dict -> its tensors (flat names) and the JSON-able rest."""
    tensors: dict[str, torch.Tensor] = {}
    per_param: dict[str, dict[str, Any]] = {}
    for pid, values in state["state"].items():
        scalars = {}
        for key, value in values.items():
            if torch.is_tensor(value) and value.dim() > 0:
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[key] = float(value)
        per_param[str(pid)] = scalars
    return tensors, {"param_groups": state["param_groups"], "scalars": per_param}


def _optimizer_join(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for pid, scalars in meta["scalars"].items():
        state[int(pid)] = {k: torch.tensor(v) for k, v in scalars.items()}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    info: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Write weights, optimizer state and `info` (JSON-able) to `path` and `path.json`."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = dict(info)
    if optimizer is not None:
        optim_tensors, meta["optimizer"] = _optimizer_split(optimizer.state_dict())
        tensors.update(optim_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = state
    metadata = {META_KEY: json.dumps(meta)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), WRITE_FAILURES)
    write_json(path.with_suffix(".json"), {k: v for k, v in meta.items() if k != "optimizer"})


CHECKPOINTS = ("best", "last")  # a run's: the lowest validation loss so far, the latest step


def checkpoint_file(run: Path, wanted: str = "best") -> Path | None:
    """The file of a run's `wanted` checkpoint, else its last (a run that has not validated yet has
    no best); None when the folder holds neither."""
    for name in (wanted, "last"):
        path = run / f"{name}.safetensors"
        if path.is_file():
            return path
    return None


def non_finite(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """What in the weights or the optimizer's state holds a non-finite number: never saved."""
    bad = [n for n, v in model.state_dict().items() if not torch.isfinite(v).all()]
    bad += [
        f"optimizer state of {i}"
        for i, state in enumerate(optimizer.state.values())
        if not all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v))
    ]
    return bad


def checkpoint_step(run: Path) -> int | None:
    """The training step of the checkpoint a model folder is loaded from (`checkpoint_file`); None
    for a folder or file without one (an exported model, a magenta-js file)."""
    path = checkpoint_file(run)
    return None if path is None else int(read_checkpoint(path)[1].get("step", 0))


def checkpoint_digest(run: Path) -> str | None:
    """SHA-256 of that checkpoint: an evaluation is of these exact weights and priors (priors
    fitted later into an older checkpoint change them at the same step)."""
    path = checkpoint_file(run)
    if path is None:
        return None
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """All tensors and the JSON info of a checkpoint; a clear error for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise SketchDataError("no such checkpoint", str(path))
    try:
        tensors = load_file(path)
        with safe_open(path, "pt") as fh:
            metadata = fh.metadata() or {}
        info = json.loads(metadata[META_KEY])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise SketchDataError(f"unreadable checkpoint: {exc}", str(path)) from None
    return tensors, info


def rewrite_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], info: dict) -> None:
    """Write tensors and info as read by `read_checkpoint` (some of them changed) back to
    `path`, atomically, like every save."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {META_KEY: json.dumps(info)}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata), WRITE_FAILURES)


# Buffers newer than some saved runs; a run without them loads with the defaults (a prior never
# fitted: mean 0, spread 0; class-only drawing then takes z_s from N(0, I)).
OPTIONAL_BUFFERS = (
    "raster_prior.mean",
    "raster_prior.scale",
    "sketch_prior.mean",
    "sketch_prior.scale",
)


def load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    if "raster_prior.std" in state:  # a diagonal prior, saved before the full covariance
        std = state.pop("raster_prior.std")
        state.setdefault("raster_prior.scale", torch.diag_embed(std))  # unless refitted since
    defaults = model.state_dict()
    state.update({k: defaults[k] for k in OPTIONAL_BUFFERS if k in defaults and k not in state})
    misfits = _misfits(state, defaults)  # load_state_dict's own account runs over many lines
    if misfits:
        raise SketchDataError(f"weights do not fit the model: {misfits}", source)
    for name, value in state.items():  # load_state_dict would cast integers and copy NaN
        if name in defaults and defaults[name].is_floating_point():
            if not value.is_floating_point():
                raise SketchDataError(f"weight {name} is {value.dtype}, not floating point", source)
            if not torch.isfinite(value).all():
                raise SketchDataError(f"weight {name} holds NaN or infinite values", source)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        problem = " ".join(str(exc).split())
        raise SketchDataError(f"weights do not fit the model: {problem}", source) from None


def _misfits(state: dict[str, torch.Tensor], model: dict[str, torch.Tensor]) -> str:
    """Weights missing, not the model's, or of another shape, in a line ("" when none)."""

    def some(names: list[str]) -> str:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return ", ".join(names[:3]) + more

    missing = [k for k in model if k not in state]
    foreign = [k for k in state if k not in model]
    shapes = [
        f"{k} is {list(state[k].shape)}, the model's {list(model[k].shape)}"
        for k in model
        if k in state and state[k].shape != model[k].shape
    ]
    problems = [f"missing {some(missing)}"] if missing else []
    problems += [f"not the model's: {some(foreign)}"] if foreign else []
    return "; ".join([*problems, *shapes[:3]])


def restore_training_state(
    tensors: dict[str, torch.Tensor], info: dict[str, Any], optimizer: torch.optim.Optimizer
) -> None:
    optim = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    state = _optimizer_join(optim, info["optimizer"])
    # torch loads moment tensors of any shape and fails only at the next step (or never, when
    # they broadcast): check each against its parameter first.
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for pid, values in state["state"].items():
        if not 0 <= pid < len(params):
            raise ValueError(f"optimizer state for parameter {pid} of {len(params)}")
        for key, value in values.items():
            if value.dim() > 0 and value.shape != params[pid].shape:
                raise ValueError(
                    f"optimizer {key} of parameter {pid} has shape {tuple(value.shape)}, "
                    f"the parameter {tuple(params[pid].shape)}"
                )
    optimizer.load_state_dict(state)
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [
        tensors[f"rng.cuda.{i}"]
        for i in range(torch.cuda.device_count())
        if f"rng.cuda.{i}" in tensors
    ]
    if cuda_states:
        torch.cuda.set_rng_state_all(cuda_states)
