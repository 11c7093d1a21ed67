"""Class guidance (classifier-free guidance on the decoder's output) and the warm start that gives a
trained model the "no class" slot it needs.

The guided sampler is checked against a loop written here from the definition (Ho & Salimans 2022:
the guided output is y_free + w (y_class - y_free), two decoders fed the same points), and at its
ends: w = 0 draws what the "no class" latent draws, w = 1 what the model draws unguided.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from aisketcher.data.batching import START_TOKEN
from aisketcher.errors import SketchDataError
from aisketcher.latents import class_latent
from aisketcher.model.config import make_config
from aisketcher.model.mixture import sample_points
from aisketcher.model.noise import batch_shard, uniform
from aisketcher.model.sketcher import SketchModel
from aisketcher.sampler import Sampler, make_generator, sample
from aisketcher.strokes import stroke5_to_stroke3
from aisketcher.train.warm_start import class_slots, warm_start

STEPS = 40


def guided_model(seed: int = 0, **overrides: object) -> SketchModel:
    torch.manual_seed(seed)
    fields = {"num_classes": 3, "class_dropout": 0.2, "max_seq_len": STEPS, **overrides}
    model = SketchModel(make_config("ai-sketcher", "small", **fields)).eval()
    with torch.no_grad():  # a decoder that ends its sketches at different steps
        model.output.bias[2] -= 0.6
    return model


def no_class_latent(model: SketchModel, labels: list[int], seed: int):
    latent = class_latent(model, labels, seed)
    c = torch.zeros_like(latent.c)
    c[:, model.no_class] = 1.0
    return dataclasses.replace(latent, c=c)


def close(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and np.allclose(x, y, atol=1e-4) for x, y in zip(a, b, strict=True)
    )


def test_guidance_zero_draws_the_no_class_prediction() -> None:
    model = guided_model()
    labels = [0, 1, 2, 0, 1]
    latent = class_latent(model, labels, 3)
    guided = sample(model, latent, len(labels), seed=5, guidance=0.0)
    free = sample(model, no_class_latent(model, labels, 3), len(labels), seed=5, guidance=1.0)
    assert len({len(s) for s in free}) > 1  # rows end at different steps: the drop is exercised
    assert close(guided, free)


def test_guidance_one_is_the_unguided_model() -> None:
    model = guided_model()
    latent = class_latent(model, [0, 1, 2], 3)
    sampler = Sampler(
        model, latent, 3, guidance=1.0, generator=make_generator(torch.device("cpu"), 1)
    )
    assert not sampler.guided
    conditional = sampler.run()
    assert not close(conditional, sample(model, latent, 3, seed=1, guidance=3.0))


@pytest.mark.parametrize("w", [0.5, 2.0, 3.0])
def test_guided_sampler_matches_the_definition(w: float) -> None:
    model = guided_model(seed=1)
    m = model.config.num_mixture
    latent = class_latent(model, [1], 7)
    free = no_class_latent(model, [1], 7)
    generator = make_generator(torch.device("cpu"), 11)
    states = [model.initial_state(latent, 1), model.initial_state(free, 1)]
    point = torch.as_tensor(START_TOKEN, dtype=torch.float32).reshape(1, 5)
    rows = []
    with torch.no_grad():
        for step in range(STEPS):
            noise = torch.randn((1, model.config.memory_size), generator=generator)
            y_class, states[0], _ = model.decode_step(point, states[0], latent, step, noise)
            y_free, states[1], _ = model.decode_step(point, states[1], free, step, noise)
            y = y_free + w * (y_class - y_free)
            point = sample_points(y, m, 0.4, generator)
            rows.append(point)
            if point[0, 4] > 0.5:
                break
    expected = stroke5_to_stroke3(torch.cat(rows).numpy())
    drawn = sample(model, latent, 1, seed=11, guidance=w)
    assert close(drawn, [expected])


def test_guidance_needs_a_model_trained_with_class_dropout() -> None:
    model = guided_model(class_dropout=0.0)
    latent = class_latent(model, [0], 0)
    with pytest.raises(SketchDataError, match="class dropout"):
        sample(model, latent, 1, seed=0, guidance=2.0)
    with pytest.raises(SketchDataError, match="guidance"):
        make_config("ai-sketcher", "small", guidance=2.0)
    with pytest.raises(SketchDataError, match="guidance"):
        sample(guided_model(), latent, 1, seed=0, guidance=float("nan"))
    with pytest.raises(SketchDataError, match="class_dropout"):
        make_config("sketch-rnn", "small", class_dropout=0.1)


def test_the_models_guidance_is_the_samplers_default() -> None:
    model = guided_model(guidance=2.5)
    latent = class_latent(model, [0, 2], 0)
    assert Sampler(model, latent, 2).guidance == 2.5
    assert close(sample(model, latent, 2, seed=4), sample(model, latent, 2, seed=4, guidance=2.5))


def test_class_dropout_replaces_a_share_of_classes_in_training_only() -> None:
    model = guided_model(class_dropout=0.25)
    labels = torch.zeros(20_000, dtype=torch.long)
    model.train()
    torch.manual_seed(0)
    dropped = model.class_vector(labels).argmax(1) == model.no_class
    assert 0.24 < dropped.float().mean().item() < 0.26
    assert model.class_vector(labels).shape == (20_000, 4)  # 3 classes and "no class"
    model.eval()
    assert (model.class_vector(labels).argmax(1) == 0).all()


def test_class_dropout_draws_are_the_global_batchs_under_a_shard() -> None:
    torch.manual_seed(3)
    whole = uniform(10, torch.device("cpu"))
    parts = []
    for offset in (0, 4):
        torch.manual_seed(3)
        with batch_shard(10, offset):
            parts.append(uniform(6 if offset == 4 else 4, torch.device("cpu")))
    assert torch.equal(torch.cat(parts), whole)


def test_a_warm_start_keeps_each_class_and_adds_no_class() -> None:
    source = guided_model(seed=2, class_dropout=0.0)
    source_classes = ["cat", "airplane", "bicycle"]
    for prior in (source.sketch_prior, source.raster_prior):  # as if fitted
        prior.mean.normal_()
        prior.scale.copy_(torch.eye(prior.scale.shape[1]).expand_as(prior.scale) * 0.5)
    target = SketchModel(dataclasses.replace(source.config, num_classes=3, class_dropout=0.1))
    classes = ["bicycle", "cat", "dog"]
    new = warm_start(target, source, classes, source_classes, "src")
    assert new == ["dog"]
    target.eval()
    for mine, theirs in ((0, 2), (1, 0)):  # each class draws as the source drew it
        ours = sample(target, class_latent(target, [mine] * 3, 9), 3, seed=9, guidance=1.0)
        expected = sample(source, class_latent(source, [theirs] * 3, 9), 3, seed=9)
        assert close(ours, expected)
    for name, (dim, start) in class_slots(target).items():
        weight = target.state_dict()[name]
        source_weight = source.state_dict()[name].narrow(dim, class_slots(source)[name][1], 3)
        mean = source_weight.mean(dim, keepdim=True)
        assert torch.equal(weight.narrow(dim, start + 2, 1), mean)  # dog: the average class
        assert torch.equal(weight.narrow(dim, start + 3, 1), mean)  # no class: the same
    assert not target.sketch_prior.scale[2].any()  # dog's prior waits for its fit


def test_a_warm_start_refuses_another_architecture() -> None:
    source = guided_model(class_dropout=0.0)
    target = SketchModel(dataclasses.replace(source.config, dec_rnn_size=128))
    with pytest.raises(SketchDataError, match=r"src.*only the classes"):
        warm_start(target, source, ["a", "b", "c"], ["a", "b", "c"], "src")
