"""The Python API: load a model in one call and draw with it.

    >>> from aisketcher.api import Sketcher
    >>> sk = Sketcher.load()                     # the built-in model; or a run dir, a .gen.json
    >>> owl = Sketcher.load("google:owl")        # one of Google's models, downloaded on first use
    >>> cats = sk.draw("cat", count=4, seed=7)   # list of aisketcher.Sketch
    >>> sk.translate(cats[0], ["pig", "apple"])  # the paper's Figure 2

Sketches go in and come out in pixel units (the data's own scale); the model works on offsets
divided by the training scale factor, which is stored with every model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from aisketcher import modes
from aisketcher.atomic import atomic_path, json_text
from aisketcher.checkpoint import checkpoint_file, load_weights, read_checkpoint
from aisketcher.errors import SketchDataError
from aisketcher.google_models import google_model, is_google
from aisketcher.latents import TRANSLATE_PULL, encode_sketches
from aisketcher.loss_weights import LossWeights, trained_weights
from aisketcher.model.config import checked_setting
from aisketcher.model.sketcher import Latent, SketchModel
from aisketcher.model_info import builtin_model_dir, input_classes, match_class, read_model_config
from aisketcher.modes import Plan
from aisketcher.sketch import Sketch

SketchInput = Sketch | np.ndarray | Sequence
WEIGHTS_FILE = "model.safetensors"


def _as_sketch(item: SketchInput) -> Sketch:
    """A Sketch, a stroke-3 array, or a list of strokes of absolute (x, y) points."""
    if isinstance(item, Sketch):
        return item
    if isinstance(item, np.ndarray) and item.ndim == 2 and item.shape[1] == 3:
        return Sketch(item)
    return Sketch.from_strokes(item)


class Sketcher:
    """A model with what it needs to draw: class names and the scale factor of its data."""

    def __init__(
        self,
        model: SketchModel,
        class_names: list[str],
        scale_factor: float,
        *,
        source: str = "",
        loss_weights: LossWeights | None = None,
    ) -> None:
        self.model = model.eval()
        self.class_names = class_names
        self.scale_factor = scale_factor
        self.source = source
        # What the model was trained with: its loss on held-out sketches weighs the terms so.
        self.loss_weights = loss_weights or LossWeights()

    @property
    def guidance(self) -> float:
        """w, the class guidance of every drawing (the model's `config.guidance`, see
        `sampler.Sampler`); 1 draws as the paper's model, > 1 moves further from "no class"."""
        return self.model.config.guidance

    @guidance.setter
    def guidance(self, w: float) -> None:
        self.model.config.guidance = self.model.config.checked_guidance(w)

    @property
    def prior_spread(self) -> float:
        """The share of the class priors' spread that class-only drawings draw z_s and z_r at
        (the model's `config.prior_spread`; see latents.py): 1 as fitted, < 1 more typical."""
        return self.model.config.prior_spread

    @prior_spread.setter
    def prior_spread(self, spread: float) -> None:
        self.model.config.prior_spread = checked_setting("prior_spread", spread)

    @property
    def temperature(self) -> float:
        """T, the temperature of every drawing that asks for none (the model's
        `config.temperature`): lower is tidier and less varied."""
        return self.model.config.temperature

    @temperature.setter
    def temperature(self, t: float) -> None:
        self.model.config.temperature = _check_temperature(t)

    @property
    def pen_temperature(self) -> float | None:
        """The temperature of the pen states' choice (the model's `config.pen_temperature`; None:
        the drawing's temperature, as the paper)."""
        return self.model.config.pen_temperature

    @pen_temperature.setter
    def pen_temperature(self, value: float | None) -> None:
        checked = None if value is None else checked_setting("pen_temperature", value)
        self.model.config.pen_temperature = checked

    # ----- loading -----
    @classmethod
    def load(
        cls,
        source: str | Path | None = None,
        *,
        device: str = "cpu",
        checkpoint: str = "best",
        models_url: str | None = None,
    ) -> Sketcher:
        """A run directory, an exported model folder, a magenta-js `.gen.json`, one of Google's
        pretrained models as `google:NAME` (downloaded into the user's cache on first use, from
        `models_url`: see `google_models.models_url`), or None (the built-in model)."""
        path = builtin_model_dir() if source is None else Path(source)
        label = str(path)
        if is_google(source):
            path, label = google_model(source, url=models_url), source
        if path.suffix == ".json" and path.is_file():
            from aisketcher.model.magenta_js import load_magenta_js

            model, info = load_magenta_js(path)
            return cls(model.to(device), [info.name], info.input_scale, source=label)
        if not (path / "config.json").is_file():
            hint = " (the built-in model is missing from this install)" if source is None else ""
            raise SketchDataError(f"not a run or model folder: no config.json{hint}", str(path))
        config, classes, scale_factor = read_model_config(path / "config.json")
        try:
            loss_weights = trained_weights(json.loads((path / "config.json").read_text()))
        except SketchDataError as exc:
            raise SketchDataError(str(exc), str(path / "config.json")) from None
        model = SketchModel(config)
        weights = path / WEIGHTS_FILE
        if not weights.is_file():  # a run: its checkpoint, else its last
            weights = checkpoint_file(path, checkpoint) or path / f"{checkpoint}.safetensors"
            if weights.stem != checkpoint:
                warnings.warn(
                    f"{path}: no {checkpoint} checkpoint (the run has not validated yet); "
                    "using last",
                    stacklevel=2,
                )
        tensors, _ = read_checkpoint(weights)
        load_weights(model, tensors, str(weights))
        model.to(device)
        return cls(model, classes, scale_factor, source=str(path), loss_weights=loss_weights)

    def class_index(self, name: str | int) -> int:
        return match_class(name, self.class_names)

    @property
    def device(self) -> torch.device:
        return self.model.output.weight.device

    def export(
        self, out_dir: str | Path, record: dict | None = None, *, half: bool = False
    ) -> Path:
        """Weights (with the z_r prior) and config in a self-contained folder; `half` stores the
        weights as float16 (half the size; they load back into float32)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        dtype = torch.float16 if half else None
        tensors = {
            f"model.{k}": v.detach().cpu().to(dtype).contiguous()
            for k, v in self.model.state_dict().items()
        }
        info = {
            "model": self.model.config.to_dict(),
            "data": {"classes": self.class_names, "scale_factor": self.scale_factor},
            "loss_weights": dataclasses.asdict(self.loss_weights),  # what it was trained with
            **({"record": record} if record else {}),
        }
        # Both files are written whole before either replaces a model already there: a full
        # disk leaves that model as it was, never its weights with the new config.
        try:
            with (
                atomic_path(out / WEIGHTS_FILE) as weights,
                atomic_path(out / "config.json", fsync=True) as config,
            ):
                save_file(tensors, str(weights), metadata={"aisketcher": "{}"})
                config.write_text(json_text(info))
        except (OSError, SafetensorError) as exc:
            raise SketchDataError(
                f"could not write the model ({exc}); a model already there is intact", str(out)
            ) from None
        return out

    # ----- between the user's units and the model's -----
    def fit(self, sketch: Sketch) -> Sketch:
        """The sketch as the model can take it: itself, or, when longer than the model takes,
        simplified the way the official data is (resampling and RDP, `simplify_to_fit`) with a
        warning that says so."""
        limit = self.model.config.max_seq_len
        if len(sketch) <= limit:
            return sketch
        from aisketcher.formats.ndjson import simplify_to_fit

        simple = Sketch.from_strokes(simplify_to_fit(sketch.strokes(), limit), sketch.label)
        if len(simple) > limit:
            raise SketchDataError(
                f"sketch has {len(sketch)} points ({len(simple)} simplified); this model "
                f"takes at most {limit}"
            )
        warnings.warn(
            f"the sketch has {len(sketch)} points, more than this model takes ({limit}): "
            f"simplified to {len(simple)} as Google's data is (resampling and RDP)",
            stacklevel=5,  # the caller of a drawing mode (-> its plan -> normalise -> fit)
        )
        return simple

    def normalise(self, sketch: Sketch) -> np.ndarray:
        """Pixel-unit sketch -> the model's units (offsets / scale factor), fitted first (`fit`)."""
        s3 = self.fit(sketch).clamped().stroke3.copy()
        s3[:, :2] /= self.scale_factor
        return s3

    def to_sketches(self, drawn: list[np.ndarray], labels: list[int]) -> list[Sketch]:
        """Model-unit stroke-3 arrays -> labelled Sketch objects in pixel units."""
        out = []
        for s3, label in zip(drawn, labels, strict=True):
            s3 = s3.copy()
            s3[:, :2] *= self.scale_factor
            out.append(Sketch(s3, self.class_names[label]))
        return out

    def input_classes(
        self, sketches: Sequence[Sketch], given: Sequence[str | int | None], ask: str | None = None
    ) -> list[int]:
        """The class index each input sketch is encoded under (`model_info.input_classes`: the
        one given, else the model's only class, else the sketch's label; else an error)."""
        names = input_classes(
            [s.label for s in sketches], given, self.class_names, *([ask] if ask else [])
        )
        return [self.class_index(n) for n in names]

    def encode(self, sketches: list[Sketch], labels: list[int]) -> Latent:
        """Encode sketches (pixel units) under the given class indices; z_s = mu_s."""
        self._require_encoder()
        return encode_sketches(self.model, [self.normalise(s) for s in sketches], labels)

    def _require_encoder(self) -> None:
        if not self.model.config.has_latent:
            raise SketchDataError(
                "this model has no encoder (decoder only): it can only draw and complete",
                self.source or None,
            )

    # ----- plans: what each drawing mode decodes (`modes`), from the user's classes and sketches
    def plan_draw(self, cls: str | int, count: int, seed: int | None) -> Plan:
        return modes.draw(self.model, [self.class_index(cls)] * count, seed)

    def plan_complete(self, start: Sketch, cls: str | int, count: int, seed: int | None) -> Plan:
        """`start` primes the decoder, in the model's units (`plan.prefix`: fewer points than
        `start` when it had to be simplified to fit the model)."""
        labels = [self.class_index(cls)] * count
        return modes.complete(self.model, self.normalise(start), labels, seed)

    def plan_translate(
        self,
        sketch: Sketch,
        classes: Sequence[str | int] | None,
        seed: int | None,
        *,
        keep_layout: bool = False,
        class_pull: float = 0.0,
    ) -> Plan:
        """One sketch into each of `classes` (default: every class of the model)."""
        labels = [self.class_index(c) for c in (classes or range(len(self.class_names)))]
        self._require_encoder()
        s3 = self.normalise(sketch)
        return modes.translate(
            self.model,
            [s3] * len(labels),
            labels,
            seed,
            keep_layout=keep_layout,
            class_pull=class_pull,
        )

    def plan_reconstruct(self, sketches: Sequence[Sketch], cls: str | int | None) -> Plan:
        labels = self.input_classes(sketches, [cls] * len(sketches))
        self._require_encoder()
        return modes.reconstruct(self.model, [self.normalise(s) for s in sketches], labels)

    def plan_heal(self, damaged: Sketch, cls: str | int | None, count: int) -> Plan:
        labels = self.input_classes([damaged], [cls], "give the class")
        self._require_encoder()
        return modes.heal(self.model, self.normalise(damaged), labels * count)

    def plan_interpolate(
        self,
        a: Sketch,
        b: Sketch,
        steps: int,
        classes: tuple[str | int, str | int] | None,
    ) -> Plan:
        la, lb = self.input_classes([a, b], classes or (None, None), "give both classes")
        self._require_encoder()
        ends = [self.normalise(s) for s in (a, b)]
        return modes.interpolate(self.model, ends[0], ends[1], (la, lb), steps)

    # ----- drawing (`temperature` None: the model's own, `Sketcher.temperature`) -----
    def _draw(self, plan: Plan, temperature: float | None, seed: int | None) -> list[Sketch]:
        if temperature is not None:
            _check_temperature(temperature)
        drawn = modes.run(self.model, plan, temperature=temperature, seed=seed)
        return self.to_sketches(drawn, plan.labels)

    def draw(
        self,
        cls: str | int,
        count: int = 1,
        *,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> list[Sketch]:
        """Class-only drawing: z_s and z_r from the class's fitted priors (z_s from N(0, I) when the
        model has none); the model's own points fill the influence memory as it draws."""
        return self._draw(self.plan_draw(cls, count, seed), temperature, seed)

    def reconstruct(
        self,
        sketches: Sequence[SketchInput],
        cls: str | int | None = None,
        *,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> list[Sketch]:
        """Encode each sketch (under `cls`, else the model's only class, else its own label) and
        decode it."""
        plan = self.plan_reconstruct([_as_sketch(s) for s in sketches], cls)
        return self._draw(plan, temperature, seed)

    def translate(
        self,
        sketch: SketchInput,
        classes: Sequence[str | int] | None = None,
        *,
        temperature: float | None = None,
        seed: int | None = None,
        keep_layout: bool = False,
        class_pull: float = TRANSLATE_PULL,
    ) -> list[Sketch]:
        """One input sketch encoded under each target class c and drawn anew (the paper's
        Figure 2 at class_pull=0). z_s moves `class_pull` of the way toward c's prior mean (0:
        the class vector alone decides the class; 1: z_s is c's mean code, the input's z_s
        forgotten; no effect without a fitted z_s prior). z_r comes from c's prior unless
        `keep_layout` (the input's raster code, which pulls the drawing toward the input's
        layout)."""
        plan = self.plan_translate(
            _as_sketch(sketch), classes, seed, keep_layout=keep_layout, class_pull=class_pull
        )
        return self._draw(plan, temperature, seed)

    def complete(
        self,
        prefix: SketchInput,
        cls: str | int = 0,
        count: int = 4,
        *,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> list[Sketch]:
        """Finish a started drawing `count` ways; the model decides where each ending stops.

        The user's points prime the decoder and fill the influence memory; z_s and z_r come from
        the class as in `draw` (see `modes.complete`). Each sketch starts with the user's own
        points, as given, unless the start had to be simplified to fit the model (a warning
        says so).
        """
        start = _as_sketch(prefix)
        plan = self.plan_complete(start, cls, count, seed)
        sketches = self._draw(plan, temperature, seed)
        if len(plan.prefix) == len(start):  # not simplified
            # The model's start went through its units and offset clamp; the ending, offsets
            # from the pen, follows the user's last point just as well.
            for sketch in sketches:
                sketch.stroke3[: len(start)] = start.stroke3
        return sketches

    def heal(
        self,
        damaged: SketchInput,
        cls: str | int | None = None,
        count: int = 4,
        *,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> list[Sketch]:
        """Redraw a sketch with strokes or parts missing anywhere whole, `count` ways, as class
        `cls` (default: the model's only class, else the sketch's label).

        The encoder reads the damaged sketch (z_s) and its raster (z_r) and the decoder draws the
        whole sketch: what a model trained with damage (`train --damage`, the built-in model)
        learnt to do; another model reconstructs the damaged sketch, and heals it less (docs/results.md,
        "Healing")."""
        plan = self.plan_heal(_as_sketch(damaged), cls, count)
        return self._draw(plan, temperature, seed)

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
        """Sketches along the line from a's latent to b's (z_s, z_r and c mixed linearly; see
        `latents.mixed_latent`), each encoded under its class (`input_classes`)."""
        plan = self.plan_interpolate(_as_sketch(a), _as_sketch(b), steps, classes)
        return self._draw(plan, temperature, seed)


def _check_temperature(temperature: float) -> float:
    if not math.isfinite(temperature):
        raise SketchDataError(f"temperature must be a finite number, got {temperature}")
    return checked_setting("temperature", temperature)  # the model config's range
