"""A warm start: a new run begins from another model's weights, on its own classes.

The class vector c enters the model in three products: eq. 3 ([h_enc; c] -> mu_s, sigma_s), the
decoder's initial state (tanh(W [z_s; c] + b)) and eq. 5 (the decoder's input z). Those weights
have one slot per class (and one for "no class" in a model trained with class dropout), and the
class priors one row per class. A warm start copies every other weight as it is and these slots by
class name, so a model pretrained on many classes can be fine-tuned on a few of them (or on others),
and a model can gain the "no class" slot that class guidance needs. A slot the source lacks (a class
it never saw, or "no class") starts at the mean of the source's class slots: the weights of an
average class. The priors of such a class start unfitted; the trainer fits them at every checkpoint.
"""

from __future__ import annotations

import torch

from aisketcher.errors import SketchDataError
from aisketcher.model.sketcher import SketchModel

PRIORS = ("sketch_prior.mean", "sketch_prior.scale", "raster_prior.mean", "raster_prior.scale")


def class_slots(model: SketchModel) -> dict[str, tuple[int, int]]:
    """The weights with one slot per entry of c: name -> (dimension, first slot)."""
    cfg = model.config
    if not cfg.conditional:
        return {}
    slots = {"decoder.weight_ih": (0, model.decoder_inputs.start("c"))}  # eq. 5
    if cfg.has_latent:
        slots["to_latent.weight"] = (1, cfg.enc_state_size)  # eq. 3, [h_enc; c]
    if model.to_initial_state is not None:
        slots["to_initial_state.weight"] = (1, cfg.z_size if cfg.has_latent else 0)  # [z_s; c]
    if cfg.cell == "hyper":  # its inner cell reads z too
        slots["decoder.hyper_cell.weight_ih"] = (0, model.decoder_inputs.start("c"))
    return slots


def slot_sources(
    target: SketchModel, source: SketchModel, classes: list[str], source_classes: list[str]
) -> list[int | None]:
    """For each entry of the target's c, the source's entry it starts from (None: the mean)."""
    where = {name: i for i, name in enumerate(source_classes)}
    picks: list[int | None] = [where.get(name) for name in classes]
    if target.config.guided:
        picks.append(source.no_class if source.config.guided else None)
    return picks


def _with_slots(
    weight: torch.Tensor, dim: int, start: int, source: SketchModel, picks: list[int | None]
) -> torch.Tensor:
    """`weight` of `source` with its slots of c (from `start` along `dim`) replaced by the slots
    `picks` (None: the mean of the source's class slots)."""
    cfg = source.config
    region = weight.narrow(dim, start, cfg.cond_size)
    mean = region.narrow(dim, 0, cfg.num_classes).mean(dim, keepdim=True)
    taken = [mean if p is None else region.narrow(dim, p, 1) for p in picks]
    end = start + cfg.cond_size
    after = weight.narrow(dim, end, weight.shape[dim] - end)
    return torch.cat([weight.narrow(dim, 0, start), *taken, after], dim)


def warm_start(
    target: SketchModel,
    source: SketchModel,
    classes: list[str],
    source_classes: list[str],
    source_name: str,
) -> list[str]:
    """Load `source`'s weights into `target`, c's slots and the priors' rows by class name; the
    classes the source never saw are returned. Anything else that differs in shape is refused."""
    slots, source_slots = class_slots(target), class_slots(source)
    if set(slots) != set(source_slots):
        raise SketchDataError(
            "--init-from: the source's class conditioning differs from this model's "
            f"({', '.join(sorted(source_slots)) or 'none'} against "
            f"{', '.join(sorted(slots)) or 'none'})",
            source_name,
        )
    picks = slot_sources(target, source, classes, source_classes)
    state = source.state_dict()
    out = target.state_dict()
    for name, mine in out.items():
        theirs = state.get(name)
        if theirs is None:
            raise SketchDataError(f"--init-from: the source has no {name}", source_name)
        if name in slots:
            theirs = _with_slots(theirs, *source_slots[name], source, picks)
        elif name in PRIORS:
            fresh = torch.zeros_like(mine)
            for i, p in enumerate(picks[: len(classes)]):
                if p is not None:
                    fresh[i] = theirs[p]
            theirs = fresh
        if theirs.shape != mine.shape:
            raise SketchDataError(
                f"--init-from: {name} is {tuple(theirs.shape)} in the source and "
                f"{tuple(mine.shape)} here: only the classes and class dropout may differ",
                source_name,
            )
        out[name] = theirs
    target.load_state_dict(out)
    return [name for name, p in zip(classes, picks, strict=False) if p is None]
