"""ModelConfig: every choice of the model in one dataclass, and the named presets.

A baseline or ablation is a preset of the same parts (spec section 2.8), never a copy of the code.
Field comments give the paper's value; `SIZES` holds the paper's, magenta's and a laptop size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aisketcher.errors import SketchDataError
from aisketcher.fields import mistyped, out_of_range
from aisketcher.limits import MAX_TEMPERATURE, MIN_TEMPERATURE
from aisketcher.loss_weights import LOSS_FIELDS, legacy_loss_weights
from aisketcher.model.inputs import DecoderInputs


@dataclass
class ModelConfig:
    name: str = "ai-sketcher"  # the preset this config came from
    # --- which parts the model has ---
    encoder: str = "rnn"  # "rnn" (bidirectional, paper), "cnn" (pix2seq), "none" (decoder only)
    conditional: bool = True  # class vector c on encoder output, decoder input, initial state
    use_autoencoder: bool = True  # CNN autoencoder over the 128x128 raster gives z_r (paper)
    use_influence: bool = True  # influence layer a_d, eq. 9-11 (paper)
    variational: bool = True  # KL term on z_s; False for Sketch-pix2seq (no KL)
    num_classes: int = 1  # k, length of c; set from the training data
    # --- sizes (paper: encoder 512 = 2 x 256, decoder 2048, n_z 256, n_a 512, z_r 128) ---
    cell: str = "layer_norm"  # "lstm", "layer_norm" (paper), "hyper" (magenta default)
    enc_rnn_size: int = 256  # units per encoder direction; h_enc_i has 2x this = n_a (paper 2x256)
    dec_rnn_size: int = 2048  # decoder units (paper 2048, magenta 512)
    z_size: int = 256  # n_z, size of z_s (paper 256, magenta 128)
    raster_z_size: int = 128  # size of z_r from the CNN autoencoder (paper 128)
    num_mixture: int = 20  # m, bivariate normals in the output GMM (paper 20)
    raster_size: int = 128  # side of the binarized raster X_r (paper 128)
    raster_output: str = "linear"  # X_r': the AE decoder's linear output, or "sigmoid" (paper open)
    max_seq_len: int = 250  # N_max: longest sketch kept; normalises l_c and l_s (magenta 250)
    # --- influence layer open points (spec section 3) ---
    influence_memory: str = "drawn"  # "drawn": forward states of the points before the target;
    # "bidirectional": the paper-literal h_enc_i, whose rows have read the targets (a copy channel)
    attention_causal: bool = True  # "bidirectional" only: alpha over i <= j (paper's text) or all i
    influence_sigma: str = "paper"  # "paper": sigma_a = exp(tanh(mu_a)/2); "learned": dense layer
    # --- sampling ---
    temperature: float = 0.4  # T when a drawing asks for none (not in the paper): the sigmas
    # are scaled by sqrt(T), the discrete logits divided by T
    discrete_temperature: str = "paper"  # pen and mixture logits / T ("paper", spec section 3)
    # or / (0.5 + 0.5 T) ("magenta-js", as magenta-js draws; imported models use it)
    pen_temperature: float | None = None  # the pen logits / this instead (not in the paper;
    # None: as above): a T far below 1 makes the rare "end" and "lift" rarer still, so drawings
    # run on
    guidance: float = 1.0  # w, class guidance (not in the paper): the output moved from the
    # "no class" prediction w times as far as to the class's; 1 is the paper's model
    prior_spread: float = 1.0  # class-only z_s and z_r drawn at this share of their fitted class
    # prior's spread (not in the paper: 1 is the prior as fitted, < 1 nearer the class's mean code)
    # --- regularisation ---
    recurrent_dropout: float = 0.1  # drop prob. on the LSTM candidate (magenta keep 0.9)
    class_dropout: float = 0.0  # share of training sketches whose c is the learned "no class"
    # (not in the paper: classifier-free guidance's training; > 0 allows guidance != 1)
    # --- the autoencoder's training (the loss weights, eq. 12-14: loss_weights.LossWeights) ---
    autoencoder_mode: str = "joint"  # "joint": AE loss added; "pretrain": AE first, then frozen
    autoencoder_pretrain_steps: int = 2000  # steps of AE-only training in "pretrain" mode

    @property
    def enc_state_size(self) -> int:
        """Size of every encoder state h_enc_i = [forward; backward]; also n_a."""
        return 2 * self.enc_rnn_size

    @property
    def memory_size(self) -> int:
        """n_a, the size of the influence layer's memory rows and of a_d (paper 512)."""
        return self.enc_rnn_size if self.influence_memory == "drawn" else self.enc_state_size

    @property
    def has_latent(self) -> bool:
        return self.encoder != "none"

    @property
    def reads_rasters(self) -> bool:
        """Whether the model takes the raster X_r (the autoencoder's input, the CNN encoder's)."""
        return self.use_autoencoder or self.encoder == "cnn"

    @property
    def guided(self) -> bool:
        """Whether c has the "no class" slot that class guidance draws with."""
        return self.conditional and self.class_dropout > 0

    @property
    def cond_size(self) -> int:
        """Size of c: one slot per class, and one for "no class" when trained with class dropout."""
        return (self.num_classes + self.guided) if self.conditional else 0

    @property
    def decoder_input_size(self) -> int:
        """Size of z = [z_s; z_r; a_d; c; s_i] (eq. 5; its parts: `DecoderInputs`)."""
        return DecoderInputs.of(self).size

    def validate(self) -> ModelConfig:
        """Every field of the type it is declared with and within RANGES (a config file from
        elsewhere must not make the model allocate terabytes), then the choices that go together."""
        wrong = mistyped(self)
        declared = {f.name: f.type for f in dataclasses.fields(self)}
        problems = [f"{n} must be {declared[n]}, got {getattr(self, n)!r}" for n in wrong]
        problems += out_of_range(self, RANGES, skip=wrong)
        if problems:
            raise SketchDataError(f"invalid model config: {'; '.join(problems)}")
        self.checked_guidance(self.guidance)
        checks = {
            "encoder": self.encoder in ("rnn", "cnn", "none"),
            "cell": self.cell in ("lstm", "layer_norm", "hyper"),
            "influence_sigma": self.influence_sigma in ("paper", "learned"),
            "influence_memory": self.influence_memory in ("drawn", "bidirectional"),
            "discrete_temperature": self.discrete_temperature in ("paper", "magenta-js"),
            "the 'drawn' memory is causal": self.attention_causal
            or self.influence_memory != "drawn"
            or not self.use_influence,
            "autoencoder_mode": self.autoencoder_mode in ("joint", "pretrain"),
            "raster_output": self.raster_output in ("linear", "sigmoid"),
            "use_influence needs encoder 'rnn'": not self.use_influence or self.encoder == "rnn",
            "class_dropout needs a conditional model": self.class_dropout == 0 or self.conditional,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise SketchDataError(f"invalid model config ({', '.join(bad)}): {self}")
        return self

    def checked_guidance(self, w: float) -> float:
        """w, if this model can draw with class guidance w (1 always; else it needs the "no class"
        slot that class dropout trains)."""
        w = checked_setting("guidance", w)
        if w != 1 and not self.guided:
            raise SketchDataError(
                f"guidance {w:g} needs a model trained with class dropout (class_dropout > 0, "
                "which learns the 'no class' prediction it moves away from); this one was not: "
                "use guidance 1"
            )
        return w

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def check_fields(names: Any) -> None:
        """Refuse field names ModelConfig does not have."""
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = sorted(set(names) - known)
        if unknown:
            raise SketchDataError(
                f"unknown model config field(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if not isinstance(data, dict):
            raise SketchDataError(
                f"a model config must be a JSON object, got {type(data).__name__}"
            )
        legacy_loss_weights(data)  # checked, then left to the training settings (resume)
        data = {k: v for k, v in data.items() if k not in LOSS_FIELDS}
        cls.check_fields(data)
        if data.get("use_influence") and "influence_memory" not in data:
            # Saved before the choice existed: the memory then was the paper-literal one.
            data = {**data, "influence_memory": "bidirectional"}
        return cls(**data).validate()


# Bounds of the numeric fields, far beyond any sensible model and short of absurd allocations.
RANGES: dict[str, tuple[float, float]] = {
    "num_classes": (1, 10_000),
    "enc_rnn_size": (1, 8192),
    "dec_rnn_size": (1, 8192),
    "z_size": (1, 4096),
    "raster_z_size": (1, 4096),
    "num_mixture": (1, 256),
    "raster_size": (16, 1024),
    "max_seq_len": (1, 100_000),
    "recurrent_dropout": (0.0, 0.99),
    "autoencoder_pretrain_steps": (0, 10**9),
    "guidance": (0.0, 100.0),
    "prior_spread": (0.0, 10.0),
    "temperature": (MIN_TEMPERATURE, MAX_TEMPERATURE),
    "pen_temperature": (MIN_TEMPERATURE, MAX_TEMPERATURE),
    "class_dropout": (0.0, 0.99),
}


def checked_setting(name: str, value: float) -> float:
    """`value` of the drawing setting `name` (guidance, prior_spread, temperature,
    pen_temperature), if within RANGES."""
    low, high = RANGES[name]
    if not low <= value <= high:  # NaN fails this too
        label = name.replace("_", " ")
        raise SketchDataError(f"{label} must be between {low:g} and {high:g}, got {value}")
    return float(value)


# Each preset switches parts of the same model on or off (paper section "Experiments").
PRESETS: dict[str, dict[str, Any]] = {
    "sketch-rnn": dict(conditional=False, use_autoencoder=False, use_influence=False),
    "sketch-rnn-decoder": dict(
        encoder="none", conditional=False, use_autoencoder=False, use_influence=False
    ),
    "sketch-rnn-cond": dict(use_autoencoder=False, use_influence=False),
    "sketch-pix2seq": dict(
        encoder="cnn",
        conditional=False,
        use_autoencoder=False,
        use_influence=False,
        variational=False,
    ),
    "ai-sketcher-no-influence": dict(use_influence=False),
    "ai-sketcher-no-autoencoder": dict(use_autoencoder=False),
    "ai-sketcher": {},
    # The paper read literally: attention over the bidirectional states i <= j, which have read
    # the points being predicted. For reproducing the paper's numbers, not for drawing.
    "ai-sketcher-paper-memory": dict(influence_memory="bidirectional"),
}

# Sizes: the paper's, magenta's sketch-rnn defaults, and one that trains well on a laptop CPU.
SIZES: dict[str, dict[str, Any]] = {
    "paper": dict(enc_rnn_size=256, dec_rnn_size=2048, z_size=256, raster_z_size=128),
    "magenta": dict(enc_rnn_size=256, dec_rnn_size=512, z_size=128, raster_z_size=128),
    "small": dict(enc_rnn_size=128, dec_rnn_size=256, z_size=64, raster_z_size=64),
}


def make_config(preset: str = "ai-sketcher", size: str = "small", **overrides: Any) -> ModelConfig:
    """A named preset at a named size, with any field overridden."""
    if preset not in PRESETS:
        raise SketchDataError(f"unknown config '{preset}'; choose from {', '.join(PRESETS)}")
    if size not in SIZES:
        raise SketchDataError(f"unknown size '{size}'; choose from {', '.join(SIZES)}")
    ModelConfig.check_fields(overrides)
    fields = {"name": preset, **SIZES[size], **PRESETS[preset], **overrides}
    return ModelConfig(**fields).validate()
