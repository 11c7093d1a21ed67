"""Model parts: encoder masks, the influence layer, the CNN autoencoder, batches, presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aisketcher.data.batching import START_TOKEN, collate
from aisketcher.errors import SketchDataError
from aisketcher.model.autoencoder import (
    ENCODER_DEPTHS,
    RasterAutoencoder,
    RasterEncoder,
    reconstruction_error,
)
from aisketcher.model.config import PRESETS, ModelConfig, make_config
from aisketcher.model.encoder import SketchEncoder
from aisketcher.model.influence import AttentionTape, InfluenceLayer
from aisketcher.model.inputs import DecoderInputs, Latent
from aisketcher.model.priors import ClassGaussian
from aisketcher.model.sketcher import SketchModel
from aisketcher.strokes import stroke3_to_stroke5

TINY = dict(enc_rnn_size=16, dec_rnn_size=32, z_size=8, raster_z_size=8, num_mixture=3)


def tiny_config(preset: str = "ai-sketcher", **overrides: object) -> ModelConfig:
    return make_config(preset, "small", **{"num_classes": 2, **TINY, **overrides})


def random_sketch(rng: np.random.Generator, n: int) -> np.ndarray:
    s3 = np.zeros((n, 3), dtype=np.float32)
    s3[:, :2] = rng.normal(size=(n, 2))
    s3[rng.random(n) < 0.3, 2] = 1.0
    s3[-1, 2] = 1.0
    return s3


def tiny_batch(lengths: list[int], seed: int = 0, raster_size: int = 128):
    rng = np.random.default_rng(seed)
    sketches = [random_sketch(rng, n) for n in lengths]
    rasters = (rng.random((len(lengths), raster_size, raster_size)) < 0.1).astype(np.uint8)
    return collate(sketches, np.arange(len(lengths)) % 2, rasters)


# ----- batches -----


def test_collate_start_token_padding_and_mask() -> None:
    s1 = np.array([[1, 2, 0], [3, 4, 1], [5, 6, 1]], dtype=np.float32)
    s2 = np.array([[7, 8, 1]], dtype=np.float32)
    batch = collate([s1, s2], np.array([1, 0]))
    # S0 and longest + 1 rows: the longest sketch too ends in an end-of-sketch row, as every
    # sketch does in magenta's padded batches.
    assert batch.strokes.shape == (2, 5, 5)
    assert batch.lengths.tolist() == [3, 1]
    assert batch.labels.tolist() == [1, 0] and batch.labels.dtype == torch.long
    assert batch.rasters is None
    for row in batch.strokes[:, 0]:
        assert row.tolist() == START_TOKEN.tolist() == [0, 0, 1, 0, 0]
    np.testing.assert_array_equal(batch.strokes[0, 1:4].numpy(), stroke3_to_stroke5(s1))
    assert batch.strokes[0, 4].tolist() == [0, 0, 0, 0, 1]
    np.testing.assert_array_equal(batch.strokes[1, 1:2].numpy(), stroke3_to_stroke5(s2))
    assert batch.strokes[1, 2:].tolist() == [[0, 0, 0, 0, 1]] * 3  # p3 = 1 padding rows
    assert batch.mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    padded = collate([s1, s2], np.array([1, 0]), pad_to=6)  # N_max + 1 rows, as magenta
    assert padded.strokes.shape == (2, 8, 5)
    assert padded.strokes[0, 4:, 4].tolist() == [1, 1, 1, 1]
    assert padded.mask.sum(1).tolist() == [3, 1]


def test_collate_rasters_become_one_channel_floats() -> None:
    batch = tiny_batch([3, 2], raster_size=16)
    assert batch.rasters is not None
    assert batch.rasters.shape == (2, 1, 16, 16) and batch.rasters.dtype == torch.float32
    assert set(batch.rasters.unique().tolist()) <= {0.0, 1.0}


# ----- encoder -----


def test_encoder_zero_on_padding_and_last_real_point() -> None:
    torch.manual_seed(0)
    hidden = 6
    encoder = SketchEncoder("layer_norm", hidden).eval()
    lengths = torch.tensor([5, 2, 4])
    strokes = torch.randn(3, 6, 5)  # row 0 stands for S0, which the encoder does not read
    out = encoder(strokes, lengths)
    h_enc, states, drawn = out.h_enc, out.bidirectional(), out.drawn()
    assert h_enc.shape == (3, 2 * hidden) and states.shape == (3, 5, 2 * hidden)
    assert drawn.shape == (3, 5, hidden)
    for i, n in enumerate(lengths.tolist()):
        x = strokes[i, 1 : n + 1].unsqueeze(1)  # the sketch alone, unpadded, time-major
        fw, _ = encoder.forward_cell(x)
        bw, _ = encoder.backward_cell(x.flip(0))
        bw = bw.flip(0)
        torch.testing.assert_close(h_enc[i, :hidden], fw[-1, 0])  # forward: its last point
        torch.testing.assert_close(h_enc[i, hidden:], bw[0, 0])  # backward: back at the first
        torch.testing.assert_close(states[i, :n], torch.cat([fw, bw], -1)[:, 0])
        assert not states[i, n:].any()
        # drawn row t: the forward state after points 1..t (row 0: nothing drawn, zero state)
        assert not drawn[i, 0].any()
        torch.testing.assert_close(drawn[i, 1:n], fw[: n - 1, 0])


def test_encoder_ignores_padding_values() -> None:
    torch.manual_seed(0)
    encoder = SketchEncoder("lstm", 4).eval()
    lengths = torch.tensor([3, 5])
    strokes = torch.randn(2, 6, 5)
    noisy = strokes.clone()
    noisy[0, 4:] = 100.0
    a, b = encoder(strokes, lengths), encoder(noisy, lengths)
    torch.testing.assert_close(a.h_enc, b.h_enc)
    torch.testing.assert_close(a.bidirectional(), b.bidirectional())


# ----- influence layer -----


def _alpha(layer: InfluenceLayer, query: torch.Tensor, lengths: torch.Tensor, step: int):
    """With one-hot memory rows h_enc_i = e_i, mu_a = sum_i alpha_i e_i is alpha itself."""
    size = layer.W.out_features
    memory = torch.eye(size).expand(len(lengths), -1, -1)
    a_d, mu, _ = layer(query, memory, lengths, step, torch.zeros(len(lengths), size))
    assert torch.equal(a_d, mu)  # zero noise: a_d = mu_a
    return mu


@pytest.mark.parametrize("causal", [True, False])
def test_influence_mask_and_softmax(causal: bool) -> None:
    torch.manual_seed(0)
    size = 6
    layer = InfluenceLayer(4, size, causal=causal)
    lengths = torch.tensor([6, 3])
    query = torch.randn(2, 4)
    scores = layer.W(query).detach()  # h_dec^T W e_i
    for step in range(size):
        alpha = _alpha(layer, query, lengths, step).detach()
        for b, n in enumerate(lengths.tolist()):
            visible = min(n, step + 1) if causal else n
            expected = torch.softmax(scores[b, :visible], 0)
            torch.testing.assert_close(alpha[b, :visible], expected)
            assert not alpha[b, visible:].any()  # later and padded positions: zero weight


def test_influence_sigma_paper_and_learned() -> None:
    torch.manual_seed(0)
    memory, lengths, query = torch.randn(2, 5, 6), torch.tensor([5, 2]), torch.randn(2, 4)
    paper = InfluenceLayer(4, 6, sigma="paper")
    ones = torch.ones(2, 6)
    a_d, mu, log_var = paper(query, memory, lengths, 3, ones)
    torch.testing.assert_close(log_var, torch.tanh(mu))
    torch.testing.assert_close(a_d - mu, torch.exp(torch.tanh(mu) / 2))  # sigma_a, eq. 10
    learned = InfluenceLayer(4, 6, sigma="learned")
    a_d, mu, log_var = learned(query, memory, lengths, 3, ones)
    assert learned.log_var is not None
    torch.testing.assert_close(log_var, learned.log_var(mu))
    torch.testing.assert_close(a_d - mu, torch.exp(log_var / 2))


def test_influence_draws_noise_when_none_given() -> None:
    torch.manual_seed(0)
    layer = InfluenceLayer(4, 6)
    memory, lengths, query = torch.randn(2, 5, 6), torch.tensor([5, 2]), torch.randn(2, 4)
    a1, mu1, _ = layer(query, memory, lengths, 2)
    a2, mu2, _ = layer(query, memory, lengths, 2)
    assert torch.equal(mu1, mu2) and not torch.equal(a1, a2)
    assert layer.first_query(3).shape == (3, 4)


@pytest.mark.parametrize("causal", [True, False])
def test_influence_tape_gives_autograds_gradients(causal: bool) -> None:
    """The taped backward (one batched product for the memory) equals plain autograd's."""
    torch.manual_seed(0)
    layer = InfluenceLayer(4, 6, causal=causal)
    lengths = torch.tensor([5, 2, 4])
    steps = 7  # more decoder steps than encoder states, as with the end-of-sketch rows
    noise = torch.randn(steps, 3, 6)
    cell = torch.nn.Linear(6, 4)

    def run(taped: bool) -> list[torch.Tensor]:
        memory = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(1))
        memory.requires_grad_(True)
        tape = AttentionTape(memory, steps) if taped else None
        query, total = layer.first_query(3), torch.zeros(())
        for j in range(steps):
            a_d, mu, log_var = layer(query, memory, lengths, j, noise[j], tape)
            query = torch.tanh(cell(a_d))  # the next query depends on this step's output
            total = total + (a_d * torch.arange(6.0)).sum() + log_var.sum() + mu.square().sum()
        params = [memory, layer.W.weight, layer.initial_query, cell.weight]
        return [total, *torch.autograd.grad(total, params)]

    for taped, plain in zip(run(True), run(False), strict=True):
        torch.testing.assert_close(taped, plain)


# ----- CNN autoencoder -----


def test_autoencoder_shapes_and_layers() -> None:
    torch.manual_seed(0)
    ae = RasterAutoencoder(z_size=8, raster_size=128)
    x = (torch.rand(2, 1, 128, 128) < 0.1).float()
    z, recon = ae(x)
    assert z.shape == (2, 8) and z.abs().max() < 1  # tanh
    assert recon.shape == (2, 1, 128, 128)
    assert recon.min() < 0  # the linear output; the squared error is taken on it
    assert torch.allclose(
        RasterAutoencoder(8, 128, "sigmoid").decoder.fc.bias, torch.zeros(8 * 256)
    )
    sigmoid = RasterAutoencoder(z_size=8, raster_size=128, output="sigmoid")
    assert sigmoid(x)[1].min() >= 0 and sigmoid(x)[1].max() <= 1
    convs = [m for m in ae.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == list(ENCODER_DEPTHS)
    assert all(c.kernel_size == (2, 2) for c in convs)
    assert sorted(c.stride[0] for c in convs) == [1, 1, 1, 2, 2, 2]
    deconvs = [
        m for m in ae.decoder.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]
    assert len(deconvs) == 6 and deconvs[-1].out_channels == 1
    expected = ((recon - x) ** 2).sum((1, 2, 3)).mean()
    torch.testing.assert_close(reconstruction_error(x, recon), expected)


def test_the_autoencoder_sees_its_input_from_the_start(quickdraw_dir) -> None:
    """At initialisation z_r already differs between real rasters (He init, zero biases); at
    PyTorch's default initialisation the six ReLU layers shrink the input's trace to nothing and
    every raster gets nearly the same code, from which training did not recover."""
    from aisketcher.formats.npz import read_npz
    from aisketcher.raster import rasterize_many

    cats = read_npz(quickdraw_dir / "cat.npz", ["test"])["test"][:16]
    x = torch.from_numpy(rasterize_many(cats, 128).astype(np.float32)).unsqueeze(1)
    torch.manual_seed(0)
    ae = RasterAutoencoder(z_size=64)
    spread = ae.encoder(x).std(0).mean()
    torch.manual_seed(0)
    default = RasterAutoencoder(z_size=64)
    for layer in default.modules():
        if isinstance(layer, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear):
            layer.reset_parameters()  # PyTorch's own initialisation
    assert spread > 0.05 > 10 * default.encoder(x).std(0).mean()


def test_raster_encoder_for_pix2seq() -> None:
    encoder = RasterEncoder(12, raster_size=64)
    assert encoder(torch.zeros(3, 1, 64, 64)).shape == (3, 12)


# ----- the assembled model -----


@pytest.mark.parametrize("preset", list(PRESETS))
def test_forward_shapes_per_preset(preset: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(preset)
    model = SketchModel(cfg)
    batch = tiny_batch([4, 2, 3])
    out = model(batch.strokes, batch.lengths, batch.labels, batch.rasters)
    m = cfg.num_mixture
    assert out.mixture.logits.shape == (3, 5, m)  # longest + 1 targets
    assert out.mixture.pen_logits.shape == (3, 5, 3)
    latent = out.latent
    assert (latent.c is not None) == cfg.conditional
    assert (latent.z_s is not None) == cfg.has_latent
    if latent.z_s is not None:
        assert latent.z_s.shape == (3, cfg.z_size)
    assert (latent.z_r is not None) == cfg.use_autoencoder
    if latent.z_r is not None:
        assert latent.z_r.shape == (3, cfg.raster_z_size)
        assert latent.raster_recon.shape == (3, 1, 128, 128)
    if cfg.use_influence:
        assert out.mu_a.shape == out.log_var_a.shape == (3, 5, cfg.memory_size)
        if cfg.influence_memory == "drawn":  # built from the decoder's inputs, not per sketch
            assert cfg.memory_size == cfg.enc_rnn_size and latent.memory is None
        else:
            assert latent.memory.shape == (3, 5, cfg.enc_state_size) == (3, 5, cfg.memory_size)
    else:
        assert out.mu_a is None and out.log_var_a is None
    assert model.decoder.input_size == cfg.decoder_input_size


def test_decoder_input_size_is_eq5() -> None:
    cfg = tiny_config()
    assert cfg.decoder_input_size == 8 + 8 + 16 + 2 + 5  # [z_s; z_r; a_d; c; s_i]
    paper = tiny_config("ai-sketcher-paper-memory")  # a_d from bidirectional states, 2 x 16
    assert paper.decoder_input_size == 8 + 8 + 2 * 16 + 2 + 5
    assert tiny_config("sketch-rnn-decoder").decoder_input_size == 5


def test_eq5_parts_are_named_where_the_decoder_reads_them() -> None:
    """`DecoderInputs` names z's slices: the fixed parts' projection reads the latent's fields
    there, a_d and s_i at zero; the model's fused decoder exists for the kernels' design only."""
    model = SketchModel(tiny_config())
    inputs = model.decoder_inputs
    assert [name for name, _ in inputs.parts] == ["z_s", "z_r", "a_d", "c", "s"]
    assert inputs.rows("a_d") == slice(16, 32) and inputs.rows("s") == slice(34, 39)
    assert inputs.initial_size == 8 + 2  # [z_s; c]
    assert DecoderInputs.of(tiny_config("sketch-rnn-decoder")).parts == (("s", 5),)
    latent = Latent(torch.eye(2), torch.randn(2, 8), None, None, torch.randn(2, 8), *[None] * 3)
    z = torch.cat([latent.z_s, latent.z_r, torch.zeros(2, 16), latent.c, torch.zeros(2, 5)], 1)
    context = model.initial_state(latent, 2).context
    torch.testing.assert_close(context, model.decoder.input_projection(z), rtol=0, atol=0)
    assert model.fused is not None
    for other in (dict(cell="lstm"), dict(cell="hyper"), dict(influence_sigma="learned")):
        assert SketchModel(tiny_config(**other)).fused is None
    assert SketchModel(tiny_config("ai-sketcher-no-influence")).fused is None


@pytest.mark.parametrize("preset", ["ai-sketcher", "ai-sketcher-paper-memory", "sketch-rnn"])
def test_teacher_forced_decode_equals_step_by_step(preset: str) -> None:
    """Training (`decode`) and sampling (`decode_step`) run the same computation."""
    torch.manual_seed(0)
    model = SketchModel(tiny_config(preset)).eval()
    batch = tiny_batch([4, 2])
    with torch.no_grad():
        latent = model.encode(
            batch.strokes, batch.lengths, batch.labels, batch.rasters, sample=False
        )
        torch.manual_seed(1)
        mixture, mu_a, _ = model.decode(batch.strokes[:, :-1], latent)
        torch.manual_seed(1)
        state = model.initial_state(latent, 2)
        ys, mus = [], []
        for j in range(batch.strokes.shape[1] - 1):
            y, state, stats = model.decode_step(batch.strokes[:, j], state, latent, j)
            ys.append(y)
            if stats is not None:
                mus.append(stats[0])
    y = torch.stack(ys, 1)
    torch.testing.assert_close(mixture.pen_logits, y[..., :3])
    torch.testing.assert_close(mixture.logits, y[..., 3 : 3 + model.config.num_mixture])
    if mu_a is not None:
        torch.testing.assert_close(mu_a, torch.stack(mus, 1))


def test_encode_without_sampling_and_class_condition() -> None:
    torch.manual_seed(0)
    model = SketchModel(tiny_config("sketch-rnn-cond")).eval()
    batch = tiny_batch([3, 3])
    strokes = batch.strokes[:1].expand(2, -1, -1)
    lengths, labels = batch.lengths[:1].expand(2), torch.tensor([0, 1])
    latent = model.encode(strokes, lengths, labels, None, sample=False)
    assert torch.equal(latent.z_s, latent.mu_s)
    assert latent.c.tolist() == [[1, 0], [0, 1]]
    # the same sketch under two classes: c changes mu_s and the decoder's initial state
    assert not torch.allclose(latent.mu_s[0], latent.mu_s[1])
    h0 = model.initial_state(latent, 2).rnn[0]
    assert not torch.allclose(h0[0], h0[1])
    sampled = model.encode(strokes, lengths, labels, None)
    assert not torch.equal(sampled.z_s, sampled.mu_s)


def test_config_errors_and_round_trip() -> None:
    with pytest.raises(SketchDataError, match="unknown config"):
        make_config("no-such-model")
    with pytest.raises(SketchDataError, match="unknown size"):
        make_config("ai-sketcher", "huge")
    # the causal-memory rule is the influence layer's; a model without one may carry the flag
    assert not make_config("sketch-rnn", attention_causal=False).attention_causal
    with pytest.raises(SketchDataError, match="use_influence needs encoder"):
        make_config("sketch-pix2seq", use_influence=True)
    with pytest.raises(SketchDataError, match=r"unknown model config field\(s\): bogus"):
        ModelConfig.from_dict({"bogus": 1})
    cfg = tiny_config("sketch-pix2seq")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert not cfg.variational and cfg.encoder == "cnn"


def test_a_class_prior_draws_with_the_fitted_classes_covariance() -> None:
    # Known answer: codes drawn from two known correlated Gaussians; the prior's samples must
    # reproduce each class's mean and full covariance (a diagonal fit loses the correlation).
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.2, -0.1, 0.0], [-0.3, 0.1, 0.4]])
    factors = torch.tensor(
        [
            [[0.2, 0.0, 0.0], [0.15, 0.05, 0.0], [-0.1, 0.0, 0.1]],
            [[0.1, 0, 0], [0, 0.2, 0], [0, 0, 0.05]],
        ]
    )
    labels = torch.arange(2).repeat_interleave(4000)
    noise = torch.randn(len(labels), 3, generator=gen)
    codes = means[labels] + (factors[labels] @ noise[:, :, None])[:, :, 0]
    prior = ClassGaussian(3, 3)
    assert not prior.fitted
    prior.fit(codes, labels)
    assert prior.fitted
    draws = prior.sample(labels, torch.randn(len(labels), 3, generator=gen))
    for k in range(2):
        got = draws[labels == k]
        torch.testing.assert_close(got.mean(0), means[k], atol=0.02, rtol=0)
        expected = factors[k] @ factors[k].T
        torch.testing.assert_close(torch.cov(got.T), expected, atol=0.004, rtol=0)
    assert not prior.mean[2].any() and not prior.scale[2].any()  # a class never fitted


def test_a_diagonal_raster_prior_saved_before_loads_as_the_same_prior() -> None:
    from aisketcher.checkpoint import load_weights

    cfg = make_config("ai-sketcher", "small", num_classes=2, max_seq_len=20)
    model = SketchModel(cfg)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items() if k != "raster_prior.scale"}
    mean, std = torch.rand(2, cfg.raster_z_size) - 0.5, torch.rand(2, cfg.raster_z_size) * 0.2
    tensors["model.raster_prior.mean"], tensors["model.raster_prior.std"] = mean, std
    load_weights(model, tensors, "old.safetensors")
    noise = torch.randn(5, cfg.raster_z_size)
    labels = torch.tensor([0, 1, 1, 0, 1])
    expected = (mean[labels] + std[labels] * noise).clamp(-1, 1)
    torch.testing.assert_close(model.raster_prior.sample(labels, noise), expected)
