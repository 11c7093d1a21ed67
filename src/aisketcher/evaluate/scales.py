"""The experiments (which models on which class sets) and their scales (one budget for every
model of an experiment: layer size, steps, samples), spec section 4."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aisketcher.evaluate.classifier import ClassifierConfig, ClassifierTraining

QD5 = ["cat", "airplane", "bicycle", "eye", "guitar"]
QD10 = [*QD5, "camera", "headphones", "television", "crayon", "paintbrush"]
QD15 = [*QD10, "calculator", "computer", "dragon", "map", "paint_can"]
QD20 = [*QD15, "face", "pig", "apple", "fish", "umbrella"]
CLASS_SETS = {"QD5": QD5, "QD10": QD10, "QD15": QD15, "QD20": QD20}


@dataclass(frozen=True)
class Experiment:
    configs: tuple[str, ...]
    class_sets: tuple[str, ...]
    title: str
    repeat_sets: tuple[str, ...] = ("QD5",)  # the sets trained again at --repeat-seeds


EXPERIMENTS = {
    "ablation": Experiment(
        (
            "sketch-rnn-cond",
            "ai-sketcher-no-influence",
            "ai-sketcher-no-autoencoder",
            "ai-sketcher",
            # The paper's memory read literally: how much of its gain is the copy channel.
            "ai-sketcher-paper-memory",
        ),
        ("QD5",),
        "Ablation (paper Figures 2 and 3, on QD5 instead of FaceX)",
    ),
    "multiclass": Experiment(
        ("sketch-rnn-cond", "sketch-pix2seq", "ai-sketcher"),
        ("QD5", "QD10", "QD15", "QD20"),
        "Multi-class generation (paper Figure 4)",
        ("QD5", "QD20"),  # the ends of the curve
    ),
    "diversity": Experiment(
        ("ai-sketcher", "sketch-rnn-cond"), ("QD5",), "Diversity (paper Figure 5)"
    ),
}


@dataclass(frozen=True)
class Scale:
    """How big the experiments are: one budget for every model."""

    size: str  # model layer sizes (config.SIZES)
    steps: int
    batch_size: int = 100
    eval_every: int = 500
    max_seq_len: int = 250
    model_overrides: tuple[tuple[str, Any], ...] = ()
    set_sizes: tuple[tuple[str, int], ...] | None = None  # keep only these sets, truncated
    samples: int = 100  # real and generated sketches per class in the evaluations
    diversity_samples: int = 50  # the paper: 50 per class
    tsne_per_class: int = 30  # the paper: 30
    eval_figures: bool = True  # each evaluation's own figures (the experiment's are always drawn)
    classifier: ClassifierConfig = dataclasses.field(default_factory=lambda: ClassifierConfig([]))
    classifier_training: ClassifierTraining = dataclasses.field(default_factory=ClassifierTraining)

    def classes(self, set_name: str) -> list[str] | None:
        """The classes of a set at this scale, or None when the scale leaves the set out."""
        if self.set_sizes is None:
            return CLASS_SETS[set_name]
        sizes = dict(self.set_sizes)
        return CLASS_SETS[set_name][: sizes[set_name]] if set_name in sizes else None


SCALES = {
    # Minutes in all: proves the pipeline end to end (tests); the numbers mean nothing.
    "toy": Scale(
        size="small",
        steps=2,
        batch_size=4,
        eval_every=2,
        max_seq_len=40,
        model_overrides=(
            ("enc_rnn_size", 16),
            ("dec_rnn_size", 32),
            ("z_size", 8),
            ("raster_z_size", 8),
            ("num_mixture", 3),
        ),
        set_sizes=(("QD5", 2),),
        samples=4,
        diversity_samples=4,
        tsne_per_class=4,
        eval_figures=False,
        classifier=ClassifierConfig([], raster_size=32, channels=(4, 8, 8, 8), feature_size=8),
        classifier_training=ClassifierTraining(epochs=1, max_per_class=16, batch_size=16),
    ),
    # The laptop size on a CPU: 1,000 steps of batch 100 take 10-30 minutes a model on one core.
    "cpu": Scale(size="small", steps=1000),
    # The paper's sizes and a Sketch-RNN-like budget: for a GPU.
    "paper": Scale(size="paper", steps=50_000, eval_every=1000),
}
