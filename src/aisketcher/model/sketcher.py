"""The AI-Sketcher model: assembles the parts a ModelConfig asks for.

Every baseline is this class with parts switched off (see config.PRESETS). Tensors are batch-major
at the boundary. Training and sampling live outside (train/, sampler.py); they use `encode`,
`initial_state`, `decode` and `decode_step`. Those are the paper's equations in PyTorch; where the
fused kernels compute the same (`self.fused`, fused/decoder.py), they hand the call over.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aisketcher.model.autoencoder import RasterAutoencoder, RasterEncoder
from aisketcher.model.cells import make_cell
from aisketcher.model.config import ModelConfig
from aisketcher.model.encoder import EncoderStates, SketchEncoder
from aisketcher.model.fused.decoder import FusedDecoder
from aisketcher.model.influence import AttentionTape, InfluenceLayer
from aisketcher.model.inputs import DecoderInputs, DecoderState, Latent, with_room
from aisketcher.model.mixture import Mixture
from aisketcher.model.noise import standard_normal, standard_normal_like, uniform
from aisketcher.model.priors import ClassGaussian


@dataclass
class ModelOutput:
    mixture: Mixture  # over the L target positions
    latent: Latent
    mu_a: torch.Tensor | None  # (B, L, n_a)
    log_var_a: torch.Tensor | None  # (B, L, n_a)


class SketchModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = cfg = config.validate()
        dropout = cfg.recurrent_dropout
        self.encoder: nn.Module | None = None
        if cfg.encoder == "rnn":
            self.encoder = SketchEncoder(cfg.cell, cfg.enc_rnn_size, dropout)
        elif cfg.encoder == "cnn":
            self.encoder = RasterEncoder(cfg.enc_state_size, cfg.raster_size)
        self.sketch_prior = None
        if cfg.has_latent:  # eq. 3: [mu_s; log sigma_s^2] = W [h_enc; c] + b
            self.to_latent = nn.Linear(cfg.enc_state_size + cfg.cond_size, 2 * cfg.z_size)
            self.sketch_prior = ClassGaussian(cfg.num_classes, cfg.z_size)
        self.autoencoder = self.raster_prior = None
        if cfg.use_autoencoder:
            self.autoencoder = RasterAutoencoder(
                cfg.raster_z_size, cfg.raster_size, cfg.raster_output
            )
            # z_r comes out of tanh: draws stay inside (-1, 1)
            self.raster_prior = ClassGaussian(cfg.num_classes, cfg.raster_z_size, bound=1.0)
        self.influence = (
            InfluenceLayer(
                cfg.dec_rnn_size,
                cfg.memory_size,
                causal=cfg.attention_causal,
                sigma=cfg.influence_sigma,
            )
            if cfg.use_influence
            else None
        )
        self.decoder_inputs = DecoderInputs.of(cfg)  # z = [z_s; z_r; a_d; c; s_i] (eq. 5)
        self.decoder = make_cell(
            cfg.cell, self.decoder_inputs.size, cfg.dec_rnn_size, dropout=dropout
        )
        init_in = self.decoder_inputs.initial_size
        self.to_initial_state = nn.Linear(init_in, self.decoder.state_size) if init_in else None
        self.output = nn.Linear(cfg.dec_rnn_size, 3 + 6 * cfg.num_mixture)  # eq. 6
        self.autoencoder_frozen = False
        # The fused kernels of this design, chosen once; None: the equations below alone.
        self.fused = FusedDecoder.of(self)

    @property
    def drawn_memory(self) -> bool:
        """Whether the influence layer attends to what was drawn before each target (the default)."""
        return self.influence is not None and self.config.influence_memory == "drawn"

    # ----- encoding -----
    def class_vector(self, labels: torch.Tensor) -> torch.Tensor | None:
        """c, one-hot. A model trained with class dropout has one more slot, "no class"
        (`no_class`), which replaces the class of a `class_dropout` share of training sketches:
        it learns the unconditional prediction that class guidance moves away from."""
        cfg = self.config
        if not cfg.conditional:
            return None
        if self.training and cfg.class_dropout > 0:
            dropped = uniform(labels.shape[0], labels.device) < cfg.class_dropout
            labels = labels.masked_fill(dropped, self.no_class)
        return F.one_hot(labels, cfg.cond_size).float()

    @property
    def no_class(self) -> int:
        """The label of c's "no class" slot (models trained with class dropout)."""
        return self.config.num_classes

    def encode(
        self,
        strokes: torch.Tensor | None,
        lengths: torch.Tensor | None,
        labels: torch.Tensor,
        rasters: torch.Tensor | None,
        *,
        sample: bool = True,
    ) -> Latent:
        """strokes (B, T + 1, 5) with the start token; `sample=False` takes z_s = mu_s."""
        states = self.encoder(strokes, lengths) if self.config.encoder == "rnn" else None
        return self._latent(states, labels, rasters, sample)

    def _latent(
        self,
        states: EncoderStates | None,
        labels: torch.Tensor,
        rasters: torch.Tensor | None,
        sample: bool,
    ) -> Latent:
        cfg = self.config
        c = self.class_vector(labels)
        h_enc = memory = lengths = None
        if states is not None:
            h_enc = states.h_enc  # eq. 2
            if self.influence is not None and not self.drawn_memory:
                memory, lengths = states.bidirectional(), states.lengths
        elif cfg.encoder == "cnn":
            h_enc = self.encoder(rasters)
        z_s = mu = log_var = None
        if h_enc is not None:
            h_c = h_enc if c is None else torch.cat([h_enc, c], -1)  # h_c = [h_enc; c]
            mu, log_var = self.to_latent(h_c).chunk(2, -1)  # eq. 3
            if cfg.variational and sample:
                z_s = mu + torch.exp(log_var / 2) * standard_normal_like(mu)  # eq. 4
            else:
                z_s = mu
        z_r = recon = None
        if self.autoencoder is not None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.autoencoder_frozen):
                z_r, recon = self.autoencoder(rasters)
        return Latent(
            c=c,
            z_s=z_s,
            mu_s=mu,
            log_var_s=log_var,
            z_r=z_r,
            raster_recon=recon,
            memory=memory,
            memory_lengths=lengths,
        )

    # ----- decoding -----
    # The decoder's input z = [z_s; z_r; a_d; c; s_i] (eq. 5), laid out by `decoder_inputs`. Only
    # a_d and s_i change from step to step, so the rest is projected once per sketch
    # (`DecoderState.context`) and each step adds the projections of a_d and s_i alone.
    def initial_state(self, latent: Latent, batch: int) -> DecoderState:
        """h_0 = tanh(W [z_s; c] + b), or zeros for the decoder-only model."""
        like = self.output.weight
        if self.to_initial_state is None:
            rnn = self.decoder.initial_state(batch, like.device, like.dtype)
        else:
            initial = torch.cat(self.decoder_inputs.initial(latent), -1)
            rnn = self.decoder.state_from_vector(torch.tanh(self.to_initial_state(initial)))
        query = self.influence.first_query(batch) if self.influence is not None else None
        context = self.decoder.input_projection(self.decoder_inputs.fixed(latent, batch, like))
        memory = memory_rnn = None
        if self.drawn_memory:
            memory = like.new_zeros(batch, 0, self.config.enc_rnn_size)
            memory_rnn = self.encoder.forward_cell.initial_state(batch, like.device, like.dtype)
        return DecoderState(rnn, query, context, memory, memory_rnn)

    def _influence_step(
        self,
        query: torch.Tensor,
        memory: torch.Tensor | None,
        lengths: torch.Tensor | None,
        step: int,
        noise: torch.Tensor | None,
        tape: AttentionTape | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """The projection of a_d for this step, and (mu_a, log sigma_a^2) when attending."""
        if memory is None:
            # The paper-literal memory with no input sketch to encode: a_d ~ N(0, I).
            if noise is None:
                noise = standard_normal(query.shape[0], self.config.memory_size)
            a_d, stats = noise.to(query), None
        else:
            a_d, mu_a, log_var_a = self.influence(query, memory, lengths, step, noise, tape)
            stats = (mu_a, log_var_a)
        return self.decoder.partial_projection(a_d, self.decoder_inputs.start("a_d")), stats

    def _remember(self, point: torch.Tensor, state: DecoderState, step: int) -> DecoderState:
        """The "drawn" memory gains row `step`: the forward encoder state after reading point
        `step` (the input s_step), or the zero state at step 0, whose input is S0."""
        memory_rnn = state.memory_rnn
        if step == 0:
            h = memory_rnn[0]
        else:
            h, memory_rnn = self.encoder.forward_cell.step(point, memory_rnn)
        memory = with_room(state.memory, step)
        memory[:, step] = h
        return DecoderState(state.rnn, state.query, state.context, memory, memory_rnn)

    def _projected(self, inputs: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """The decoder's input projection at every step (L, B, 4H) but for a_d's part: the fixed
        inputs' (`state.context`) and the points'."""
        points = self.decoder.partial_projection(
            inputs.transpose(0, 1), self.decoder_inputs.start("s")
        )
        return state.context.unsqueeze(0) + points

    def decode_step(
        self,
        point: torch.Tensor,
        state: DecoderState,
        latent: Latent,
        step: int,
        influence_noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, DecoderState, tuple[torch.Tensor, torch.Tensor] | None]:
        """One step: point s_j (B, 5), j = `step` -> output y_j (B, 3 + 6m) for s_{j+1}, new state."""
        if self.fused is not None and self.fused.draws(point):
            return self.fused.draw_step(point, state, step, influence_noise)
        xp = state.context + self.decoder.partial_projection(point, self.decoder_inputs.start("s"))
        stats = None
        if self.influence is not None:
            memory, lengths = latent.memory, latent.memory_lengths
            if self.drawn_memory:
                state = self._remember(point, state, step)
                memory, lengths = state.memory, None
            a_part, stats = self._influence_step(
                state.query, memory, lengths, step, influence_noise
            )
            xp = xp + a_part
        h, rnn = self.decoder.recurrence(xp, state.rnn)
        return (
            self.output(h),
            DecoderState(rnn, h, state.context, state.memory, state.memory_rnn),
            stats,
        )

    def decode(
        self,
        inputs: torch.Tensor,
        latent: Latent,
        memory: torch.Tensor | None = None,
    ) -> tuple[Mixture, torch.Tensor | None, torch.Tensor | None]:
        """Teacher-forced decoding of inputs (B, L, 5) = s_0..s_{L-1}; eq. 5-7 at every step.

        `memory`: the "drawn" memory of these inputs when the caller has it (`EncoderStates.drawn`);
        otherwise it is computed here from the inputs.
        """
        state = self.initial_state(latent, inputs.shape[0])
        if self.influence is None:  # every step's input is known: the whole sequence at once
            hs = self.decoder.run(self._projected(inputs, state), state.rnn)[0]
            return (
                Mixture.from_output(self.output(hs.transpose(0, 1)), self.config.num_mixture),
                None,
                None,
            )
        lengths = None
        if self.drawn_memory and memory is None:
            drawn = self.encoder.forward_cell(inputs[:, 1:].transpose(0, 1))[0].transpose(0, 1)
            memory = torch.cat([drawn.new_zeros(drawn.shape[0], 1, drawn.shape[2]), drawn], 1)
        elif not self.drawn_memory:
            memory, lengths = latent.memory, latent.memory_lengths
        if self.fused is not None and self.fused.trains(inputs, memory):
            hs, mu_a, log_var_a = self.fused.decode(inputs, state, memory, lengths)
            y = self.output(hs.transpose(0, 1))
            mixture = Mixture.from_output(y, self.config.num_mixture)
            return mixture, mu_a.transpose(0, 1), log_var_a.transpose(0, 1)
        projected = self._projected(inputs, state)
        steps, mus, log_vars = [], [], []
        tape = None
        if memory is not None and torch.is_grad_enabled():
            tape = AttentionTape(memory, inputs.shape[1])
        query, rnn = state.query, state.rnn
        # unbind, not projected[j]: indexing would back-propagate a full-size zero tensor per step.
        for j, xp in enumerate(projected.unbind(0)):
            # a_d depends on the previous step's h_dec
            a_part, stats = self._influence_step(query, memory, lengths, j, None, tape)
            if stats is not None:
                mus.append(stats[0])
                log_vars.append(stats[1])
            query, rnn = self.decoder.recurrence(xp + a_part, rnn)
            steps.append(query)
        y = self.output(torch.stack(steps, 1))
        mixture = Mixture.from_output(y, self.config.num_mixture)
        if not mus:
            return mixture, None, None
        return mixture, torch.stack(mus, 1), torch.stack(log_vars, 1)

    def forward(
        self,
        strokes: torch.Tensor,
        lengths: torch.Tensor,
        labels: torch.Tensor,
        rasters: torch.Tensor | None = None,
        source: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> ModelOutput:
        """strokes (B, L + 1, 5) with the start token; predicts rows 1..L from rows 0..L-1.

        `source`: (strokes, lengths) laid out alike, what the encoder reads in place of the target
        (healing: the target damaged; `rasters` are then its rasters)."""
        read, read_lengths = source if source is not None else (strokes, lengths)
        states = self.encoder(read, read_lengths) if self.config.encoder == "rnn" else None
        latent = self._latent(states, labels, rasters, sample=True)
        # The encoder's forward pass over s_0..s_L is also the "drawn" memory of the inputs, when
        # it read them.
        memory = states.drawn() if self.drawn_memory and source is None else None
        mixture, mu_a, log_var_a = self.decode(strokes[:, :-1], latent, memory)
        return ModelOutput(mixture, latent, mu_a, log_var_a)
