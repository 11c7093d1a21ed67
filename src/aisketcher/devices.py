"""Which torch device a command runs on: the CLI's `--device`, training's `device` setting."""

from __future__ import annotations

import torch

from aisketcher.errors import SketchDataError


def resolve_device(name: str) -> torch.device:
    """ "auto" (a GPU when there is one, else the CPU), or a torch device name checked against
    what this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SketchDataError(f"device '{name}' requested but CUDA is not available")
    return device
