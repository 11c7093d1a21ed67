"""The Python API: load a model in one call and draw with it.

    >>> from aisketcher.api import Sketcher
    >>> sk = Sketcher.load()                     # the built-in model; or a run dir, or a .gen.json
    >>> cats = sk.draw("cat", count=4, seed=7)   # list of aisketcher.Sketch
    >>> sk.translate(cats[0], ["pig", "apple"])  # the paper's Figure 2

Sketches go in and come out in pixel units (the data's own scale); the model works on offsets
divided by the training scale factor, which is stored with every model.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from aisketcher.errors import SketchDataError
from aisketcher.generate import (
    ReferenceBank,
    build_reference_bank,
    class_latent,
    encode_sketches,
    make_generator,
    sample_sequences,
)
from aisketcher.model.config import ModelConfig
from aisketcher.model.sketcher import Latent, SketchModel
from aisketcher.sketch import Sketch
from aisketcher.train.checkpoint import load_weights, read_checkpoint, write_json

SketchInput = Sketch | np.ndarray | Sequence
REFERENCE_FILE = "reference.safetensors"
WEIGHTS_FILE = "model.safetensors"


def builtin_model_dir() -> Path:
    return Path(str(resources.files("aisketcher") / "pretrained" / "default"))


def _as_sketch(item: SketchInput) -> Sketch:
    """A Sketch, a stroke-3 array, or a list of strokes of absolute (x, y) points."""
    if isinstance(item, Sketch):
        return item
    if isinstance(item, np.ndarray) and item.ndim == 2 and item.shape[1] == 3:
        return Sketch(item)
    return Sketch.from_strokes(item)


class Sketcher:
    """A model with what it needs to draw: class names, scale factor and reference encodings."""

    def __init__(
        self,
        model: SketchModel,
        class_names: list[str],
        scale_factor: float,
        *,
        bank: ReferenceBank | None = None,
        reference_sketches: tuple[list[np.ndarray], list[int]] | None = None,
        data_sources: list[str] | None = None,
        source: str = "",
    ) -> None:
        self.model = model.eval()
        self.class_names = class_names
        self.scale_factor = scale_factor
        self._bank = bank
        self._reference_sketches = reference_sketches
        self._data_sources = data_sources
        self.source = source

    # ----- loading -----
    @classmethod
    def load(
        cls, source: str | Path | None = None, *, device: str = "cpu", checkpoint: str = "best"
    ) -> Sketcher:
        """A run directory, an exported model folder, a magenta-js `.gen.json`, or None (built-in)."""
        path = builtin_model_dir() if source is None else Path(source)
        if path.suffix == ".json" and path.is_file():
            from aisketcher.model.magenta_js import load_magenta_js

            model, info = load_magenta_js(path)
            return cls(model.to(device), [info.name], info.input_scale, source=str(path))
        if not (path / "config.json").is_file():
            hint = " (the built-in model is missing from this install)" if source is None else ""
            raise SketchDataError(f"not a run or model folder: no config.json{hint}", str(path))
        info = json.loads((path / "config.json").read_text())
        model = SketchModel(ModelConfig.from_dict(info["model"]))
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            weights = path / f"{checkpoint}.safetensors"
            if not weights.is_file():
                weights = path / "last.safetensors"
        tensors, _ = read_checkpoint(weights)
        load_weights(model, tensors, str(weights))
        model.to(device)
        data = info["data"]
        bank = None
        if (path / REFERENCE_FILE).is_file():
            bank = _read_bank(path / REFERENCE_FILE)
        return cls(
            model,
            list(data["classes"]),
            float(data["scale_factor"]),
            bank=bank,
            data_sources=data.get("sources"),
            source=str(path),
        )

    def class_index(self, name: str | int) -> int:
        if isinstance(name, int):
            if not 0 <= name < len(self.class_names):
                raise SketchDataError(
                    f"class index {name} out of range 0..{len(self.class_names) - 1}"
                )
            return name
        key = name.strip().replace(" ", "_")
        names = [n.replace(" ", "_") for n in self.class_names]
        if key in names:
            return names.index(key)
        near = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise SketchDataError(
            f"the model does not know class '{name}' (it knows: {', '.join(self.class_names)}){hint}"
        )

    @property
    def device(self) -> torch.device:
        return self.model.output.weight.device

    # ----- references for class-only drawing -----
    def bank(self) -> ReferenceBank | None:
        cfg = self.model.config
        if not (cfg.use_influence or cfg.use_autoencoder):
            return None
        if self._bank is None:
            refs = self.reference_sketches()
            if refs is not None:
                self._bank = build_reference_bank(self.model, *refs)
        return self._bank

    def reference_sketches(self) -> tuple[list[np.ndarray], list[int]] | None:
        """Normalised reference sketches and labels: those given, or the run's training data."""
        if self._reference_sketches is None and self._data_sources:
            self._reference_sketches = self._training_references()
        return self._reference_sketches

    def _training_references(
        self, per_class: int = 32
    ) -> tuple[list[np.ndarray], list[int]] | None:
        """Up to `per_class` training sketches of each class, when the run's data is at hand."""
        from aisketcher.data.dataset import load_dataset

        if not all(Path(p).is_file() for p in self._data_sources or []):
            return None
        train = load_dataset(
            self._data_sources,
            splits=("train",),
            scale_factor=self.scale_factor,
            max_seq_len=self.model.config.max_seq_len,
        )["train"]
        keep = [
            i
            for c in range(len(self.class_names))
            for i in np.flatnonzero(train.labels == c)[:per_class]
        ]
        return [train.sketches[i] for i in keep], [int(train.labels[i]) for i in keep]

    def use_references(self, sketches: list[np.ndarray], labels: list[int]) -> None:
        """Normalised training sketches to take attention memory and z_r from when drawing."""
        self._reference_sketches = (sketches, labels)
        self._bank = None

    def export(self, out_dir: str | Path, record: dict | None = None, per_class: int = 8) -> Path:
        """Weights, config and reference encodings (not the sketches) in a self-contained folder."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()
        }
        save_file(tensors, str(out / WEIGHTS_FILE), metadata={"aisketcher": "{}"})
        info = {
            "model": self.model.config.to_dict(),
            "data": {"classes": self.class_names, "scale_factor": self.scale_factor},
            **({"record": record} if record else {}),
        }
        write_json(out / "config.json", info)
        refs = self.reference_sketches()
        if refs is not None:
            sketches, labels = refs
            keep = [
                i
                for c in range(len(self.class_names))
                for i in np.flatnonzero(np.asarray(labels) == c)[:per_class]
            ]
            bank = build_reference_bank(
                self.model, [sketches[i] for i in keep], [labels[i] for i in keep]
            )
            _write_bank(out / REFERENCE_FILE, bank)
        return out

    # ----- drawing -----
    def normalise(self, sketch: Sketch) -> np.ndarray:
        """Pixel-unit sketch -> the model's units (offsets / scale factor), length-checked."""
        s3 = sketch.clamped().stroke3.copy()
        s3[:, :2] /= self.scale_factor
        if len(s3) > self.model.config.max_seq_len:
            raise SketchDataError(
                f"sketch has {len(s3)} points; this model takes at most {self.model.config.max_seq_len}"
            )
        return s3

    def to_sketches(self, drawn: list[np.ndarray], labels: list[int]) -> list[Sketch]:
        """Model-unit stroke-3 arrays -> labelled Sketch objects in pixel units."""
        out = []
        for s3, label in zip(drawn, labels, strict=True):
            s3 = s3.copy()
            s3[:, :2] *= self.scale_factor
            out.append(Sketch(s3, self.class_names[label]))
        return out

    def _sample(
        self, latent: Latent, labels: list[int], temperature: float, seed: int | None, prefix=None
    ) -> list[Sketch]:
        _check_temperature(temperature)
        generator = make_generator(self.device, seed)
        drawn = sample_sequences(
            self.model,
            latent,
            len(labels),
            temperature=temperature,
            generator=generator,
            prefix=prefix,
        )
        return self.to_sketches(drawn, labels)

    def draw(
        self, cls: str | int, count: int = 1, *, temperature: float = 0.4, seed: int | None = None
    ) -> list[Sketch]:
        """Class-only drawing: z_s ~ N(0, I); memory and z_r from a random reference of the class."""
        labels = [self.class_index(cls)] * count
        return self._sample(self.class_latent(labels, seed), labels, temperature, seed)

    def class_latent(self, labels: list[int], seed: int | None) -> Latent:
        """What to decode from class labels alone (see `generate.class_latent`), seeded."""
        return class_latent(self.model, labels, seed, self.bank())

    def encode(self, sketches: list[Sketch], labels: list[int]) -> Latent:
        """Encode sketches (pixel units) under the given class indices; z_s = mu_s."""
        if not self.model.config.has_latent:
            raise SketchDataError(
                "this model has no encoder (decoder only): it can only draw and complete"
            )
        return encode_sketches(self.model, [self.normalise(s) for s in sketches], labels)

    def reconstruct(
        self,
        sketches: Sequence[SketchInput],
        cls: str | int | None = None,
        *,
        temperature: float = 0.4,
        seed: int | None = None,
    ) -> list[Sketch]:
        """Encode each sketch (under its own label, or `cls`) and decode it."""
        items = [_as_sketch(s) for s in sketches]
        labels = [self.class_index(cls if cls is not None else (s.label or 0)) for s in items]
        return self._sample(self.encode(items, labels), labels, temperature, seed)

    def translate(
        self,
        sketch: SketchInput,
        classes: Sequence[str | int] | None = None,
        *,
        temperature: float = 0.4,
        seed: int | None = None,
    ) -> list[Sketch]:
        """The paper's Figure 2: one input sketch decoded under each target class c."""
        item = _as_sketch(sketch)
        labels = [self.class_index(c) for c in (classes or range(len(self.class_names)))]
        latent = self.encode([item] * len(labels), labels)
        return self._sample(latent, labels, temperature, seed)

    def complete(
        self,
        prefix: SketchInput,
        cls: str | int = 0,
        count: int = 4,
        *,
        temperature: float = 0.4,
        seed: int | None = None,
    ) -> list[Sketch]:
        """Finish a started drawing `count` ways.

        The decoder is fed the user's points and continues from the class's latent (as `draw`):
        encoding the unfinished start instead would describe it as a whole sketch, and the
        decoder would end right after it.
        """
        labels = [self.class_index(cls)] * count
        prefix_s3 = self.normalise(_as_sketch(prefix))
        return self._sample(self.class_latent(labels, seed), labels, temperature, seed, prefix_s3)

    def interpolate(
        self,
        a: SketchInput,
        b: SketchInput,
        steps: int = 8,
        *,
        classes: tuple[str | int, str | int] | None = None,
        temperature: float = 0.1,
        seed: int | None = None,
    ) -> list[Sketch]:
        """Sketches along the line from a's latent to b's (z_s, z_r and c mixed linearly).

        The influence layer's memory cannot be mixed (the sketches differ in length): the first
        half of the path refers to a's encoder states, the second half to b's.
        """
        sa, sb = _as_sketch(a), _as_sketch(b)
        la = self.class_index(classes[0] if classes else (sa.label or 0))
        lb = self.class_index(classes[1] if classes else (sb.label or 0))
        ends = self.encode([sa, sb], [la, lb])
        weights = torch.linspace(0, 1, steps, device=self.device)[:, None]

        def mix(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else (1 - weights) * t[0] + weights * t[1]

        pick = (weights.flatten() >= 0.5).long()
        memory = ends.memory[pick] if ends.memory is not None else None
        lengths = ends.memory_lengths[pick] if ends.memory_lengths is not None else None
        latent = Latent(
            mix(ends.c), mix(ends.z_s), None, None, mix(ends.z_r), None, memory, lengths
        )
        labels = [la if w < 0.5 else lb for w in weights.flatten().tolist()]
        return self._sample(latent, labels, temperature, seed)


def _check_temperature(temperature: float) -> None:
    if not 0.01 <= temperature <= 2.0:
        raise SketchDataError(f"temperature must be within [0.01, 2.0], got {temperature}")


def _write_bank(path: Path, bank: ReferenceBank) -> None:
    tensors = {"lengths": bank.lengths, "labels": bank.labels}
    if bank.memory is not None:
        tensors["memory"] = bank.memory.half().contiguous()
    if bank.z_r is not None:
        tensors["z_r"] = bank.z_r.half().contiguous()
    save_file(tensors, str(path))


def _read_bank(path: Path) -> ReferenceBank:
    try:
        t = load_file(str(path))
        return ReferenceBank(
            memory=t["memory"].float() if "memory" in t else None,
            lengths=t["lengths"],
            z_r=t["z_r"].float() if "z_r" in t else None,
            labels=t["labels"],
        )
    except Exception as exc:
        raise SketchDataError(f"unreadable reference encodings: {exc}", str(path)) from None
