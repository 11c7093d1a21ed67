"""Recurrent cells: shapes, agreement with torch and with magenta's equations, dropout, init."""

from __future__ import annotations

import pytest
import torch

from aisketcher.model import noise
from aisketcher.model.cells import (
    CELL_KINDS,
    LAYER_NORM_EPS,
    HyperLSTMCell,
    LayerNormLSTMCell,
    LSTMCell,
    RecurrentCell,
    make_cell,
)

IN, H, B, T = 5, 8, 3, 6
HYPER = {"hyper_num_units": 6, "hyper_embedding_size": 4}


def _cell(kind: str, dropout: float = 0.0, **kw: object) -> RecurrentCell:
    torch.manual_seed(0)
    extra = HYPER | kw if kind == "hyper" else kw
    return make_cell(kind, IN, H, dropout=dropout, **extra).double()


def _randomize(cell: RecurrentCell) -> RecurrentCell:
    """Perturb every parameter so that zero or constant inits cannot hide a layout mistake."""
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return cell


def _random_state(cell: RecurrentCell) -> tuple[torch.Tensor, ...]:
    return cell.state_from_vector(torch.randn(B, cell.state_size, dtype=torch.float64))


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_shapes(kind: str) -> None:
    cell = _cell(kind)
    x = torch.randn(T, B, IN, dtype=torch.float64)
    out, state = cell(x)
    assert out.shape == (T, B, H)
    assert sum(s.shape[1] for s in state) == cell.state_size
    assert all(s.shape[0] == B for s in state)
    assert torch.equal(state[0], out[-1])  # every state tuple starts with h
    h, state = cell.step(x[0], cell.initial_state(B, "cpu", torch.float64))
    assert h.shape == (B, H)
    empty, _ = cell(x[:0])
    assert empty.shape == (0, B, H)


def test_state_sizes() -> None:
    assert make_cell("lstm", IN, H).state_size == 2 * H
    assert make_cell("layer_norm", IN, H).state_size == 2 * H
    hyper = make_cell("hyper", IN, H)
    assert hyper.state_size == 2 * (H + 256)
    assert hyper.hyper_cell.hidden_size == 256 and hyper.hyper_embedding_size == 32


def test_lstm_matches_torch_lstm_cell() -> None:
    torch.manual_seed(1)
    ref = torch.nn.LSTMCell(IN, H).double()
    cell = LSTMCell(IN, H).double()
    # torch: gates i, f, g, o, weights (4H, IN); ours: TF's i, j (= g), f, o, weights (IN, 4H).
    order = [0, 2, 1, 3]
    with torch.no_grad():
        w_ih, w_hh = ref.weight_ih.view(4, H, IN), ref.weight_hh.view(4, H, H)
        bias = (ref.bias_ih + ref.bias_hh).view(4, H)
        cell.weight_ih.copy_(torch.cat([w_ih[k].T for k in order], 1))
        cell.weight_hh.copy_(torch.cat([w_hh[k].T for k in order], 1))
        bias = bias[order].clone()
        bias[2] -= cell.forget_bias  # the constant forget bias is added back at run time
        cell.bias.copy_(bias.reshape(-1))
    x = torch.randn(T, B, IN, dtype=torch.float64)
    h, c = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    out, (h_last, c_last) = cell(x, (h, c))
    for t in range(T):
        h, c = ref(x[t], (h, c))
        torch.testing.assert_close(out[t], h, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_last, h, rtol=0, atol=1e-12)
    torch.testing.assert_close(c_last, c, rtol=0, atol=1e-12)


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + LAYER_NORM_EPS)


def _ln_gates(pre: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> list[torch.Tensor]:
    """magenta's layer_norm_all: each of i, j, f, o normalized alone, gain and bias over 4H."""
    blocks = [_layer_norm(b) for b in pre.chunk(4, 1)]
    return list((torch.cat(blocks, 1) * gain + bias).chunk(4, 1))


def _ref_layer_norm_step(cell: LayerNormLSTMCell, x, h, c):
    pre = torch.cat([x, h], 1) @ torch.cat([cell.weight_ih, cell.weight_hh], 0)
    i, j, f, o = _ln_gates(pre, cell.gate_norm_gain, cell.gate_norm_bias)
    c = c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j)
    h = torch.tanh(_layer_norm(c) * cell.cell_norm_gain + cell.cell_norm_bias) * torch.sigmoid(o)
    return h, c


def test_layer_norm_cell_matches_magenta_equations() -> None:
    cell = _randomize(_cell("layer_norm"))
    x = torch.randn(B, IN, dtype=torch.float64)
    h, c = _random_state(cell)
    out, (_, c1) = cell.step(x, (h, c))
    ref_h, ref_c = _ref_layer_norm_step(cell, x, h, c)
    torch.testing.assert_close(out, ref_h)
    torch.testing.assert_close(c1, ref_c)


def test_hyper_cell_matches_magenta_equations() -> None:
    """Block by block, as magenta's hyper_norm scopes are, against the batched implementation."""
    cell = _randomize(_cell("hyper"))
    assert isinstance(cell, HyperLSTMCell)
    inner, emb = cell.hyper_cell, cell.hyper_embedding_size
    x = torch.randn(B, IN, dtype=torch.float64)
    h, c, hyper_h, hyper_c = _random_state(cell)
    out, (_, c1, hyper_h1, hyper_c1) = cell.step(x, (h, c, hyper_h, hyper_c))

    ref_hyper_h, ref_hyper_c = _ref_layer_norm_step(inner, torch.cat([x, h], 1), hyper_h, hyper_c)
    torch.testing.assert_close(hyper_h1, ref_hyper_h)
    torch.testing.assert_close(hyper_c1, ref_hyper_c)

    def hyper_norm(layer: torch.Tensor, k: int) -> torch.Tensor:
        zw_w = cell.zw_weight[:, k * emb : (k + 1) * emb]
        zw = ref_hyper_h @ zw_w + cell.zw_bias[k * emb : (k + 1) * emb]
        result = (zw @ cell.alpha[k]) * layer
        if k >= 4:
            zb = ref_hyper_h @ cell.zb_weight[:, (k - 4) * emb : (k - 3) * emb]
            result = result + zb @ cell.beta[k - 4]
        return result

    xh = (x @ cell.weight_ih).chunk(4, 1)
    hh = (h @ cell.weight_hh).chunk(4, 1)
    bias = cell.bias.chunk(4)
    pre = torch.cat(
        [hyper_norm(xh[g], g) + hyper_norm(hh[g], 4 + g) + bias[g] for g in range(4)], 1
    )
    i, j, f, o = _ln_gates(pre, cell.gate_norm_gain, cell.gate_norm_bias)
    ref_c = c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j)
    normed_c = _layer_norm(ref_c) * cell.cell_norm_gain + cell.cell_norm_bias
    torch.testing.assert_close(c1, ref_c)
    torch.testing.assert_close(out, torch.tanh(normed_c) * torch.sigmoid(o))


def test_hyper_initial_scaling_is_one_tenth() -> None:
    # Without layer norm the gate pre-activations are visible through c: at init every block is
    # scaled by exactly 0.1 and the recurrent shift is zero (beta = 0).
    cell = _cell("hyper", use_layer_norm=False)
    x = torch.randn(B, IN, dtype=torch.float64)
    h, c, hyper_h, hyper_c = _random_state(cell)
    _, (_, c1, _, _) = cell.step(x, (h, c, hyper_h, hyper_c))
    pre = 0.1 * (x @ cell.weight_ih + h @ cell.weight_hh)
    i, j, f, _ = pre.chunk(4, 1)
    torch.testing.assert_close(c1, c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j))


@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("training", [False, True])
def test_forward_equals_steps(kind: str, training: bool) -> None:
    extra = {"hyper_recurrent_dropout": True} if kind == "hyper" else {}
    cell = _randomize(_cell(kind, dropout=0.3, **extra)).train(training)
    x = torch.randn(T, B, IN, dtype=torch.float64)
    state = _random_state(cell)
    torch.manual_seed(7)  # same dropout masks in both runs
    out, final = cell(x, state)
    torch.manual_seed(7)
    for t in range(T):
        h, state = cell.step(x[t], state)
        torch.testing.assert_close(out[t], h, rtol=0, atol=1e-12)
    for a, b in zip(final, state, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_dropout_only_in_training(kind: str) -> None:
    cell = _randomize(_cell(kind, dropout=0.5))
    plain = _cell(kind)
    plain.load_state_dict(cell.state_dict())
    x = torch.randn(T, B, IN, dtype=torch.float64)
    cell.eval()
    assert torch.equal(cell(x)[0], cell(x)[0])
    torch.testing.assert_close(cell(x)[0], plain(x)[0], rtol=0, atol=0)
    cell.train()
    assert not torch.allclose(cell(x)[0], cell(x)[0])
    assert not torch.allclose(cell(x)[0], plain.train()(x)[0])


def test_dropout_hits_only_the_candidate() -> None:
    """Without memory loss: c' = c * sig(f + 1) + sig(i) * g * mask / (1 - p), c itself kept."""
    p = 0.5
    cell = _randomize(_cell("lstm", dropout=p)).train()
    x = torch.randn(B, IN, dtype=torch.float64)
    h, c = _random_state(cell)
    _, (_, c1) = cell.step(x, (h, c))
    i, j, f, _ = (x @ cell.weight_ih + cell.bias + h @ cell.weight_hh).chunk(4, 1)
    kept = c * torch.sigmoid(f + 1.0)
    added = torch.sigmoid(i) * torch.tanh(j) / (1 - p)
    dropped = torch.isclose(c1, kept, rtol=0, atol=1e-12)
    assert torch.allclose(c1[~dropped], (kept + added)[~dropped], rtol=0, atol=1e-12)
    assert dropped.any() and (~dropped).any()


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_masks_keep_one_minus_p_of_the_units_scaled_up(p: float) -> None:
    """Each entry kept with probability 1 - p, kept entries 1 / (1 - p) (so the mean stays 1);
    inside a batch shard, the shard's rows of the mask drawn for the whole batch."""
    torch.manual_seed(3)
    mask = noise.dropout_mask(torch.empty(400, 500), p)
    kept = mask != 0
    assert torch.all(mask[kept] == torch.tensor(1.0 / (1.0 - p)))
    n = mask.numel()  # within 5 standard deviations of the binomial count
    assert abs(kept.sum().item() - (1 - p) * n) < 5 * (n * p * (1 - p)) ** 0.5
    torch.manual_seed(3)
    whole = noise.dropout_mask(torch.empty(10, 8), p)
    torch.manual_seed(3)
    with noise.batch_shard(10, 4):
        part = noise.dropout_mask(torch.empty(3, 8), p)
    assert torch.equal(part, whole[4:7])


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_gradients_flow(kind: str) -> None:
    cell = _cell(kind, dropout=0.1).float().train()
    x = torch.randn(T, B, IN, requires_grad=True)
    v = torch.randn(B, cell.state_size, requires_grad=True)
    out, state = cell(x, cell.state_from_vector(torch.tanh(v)))
    (out.square().sum() + sum(s.sum() for s in state)).backward()
    for name, p in cell.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    for t in (x, v):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_state_vector_round_trip(kind: str) -> None:
    cell = _cell(kind)
    v = torch.randn(B, cell.state_size, dtype=torch.float64)
    state = cell.state_from_vector(v)
    assert sum(s.shape[1] for s in state) == cell.state_size
    assert torch.equal(cell.state_to_vector(state), v)
    zeros = cell.initial_state(B, "cpu", torch.float64)
    assert all(s.dtype == torch.float64 and not s.any() for s in zeros)


def test_state_vector_layouts_follow_magenta() -> None:
    v = torch.randn(B, 2 * H)
    h, c = make_cell("lstm", IN, H).state_from_vector(v)  # magenta LSTMCell: [c; h]
    assert torch.equal(c, v[:, :H]) and torch.equal(h, v[:, H:])
    h, c = make_cell("layer_norm", IN, H).state_from_vector(v)  # LayerNormLSTMCell: [h; c]
    assert torch.equal(h, v[:, :H]) and torch.equal(c, v[:, H:])
    hyp = HYPER["hyper_num_units"]
    hyper = make_cell("hyper", IN, H, **HYPER)
    v = torch.randn(B, hyper.state_size)  # [h; hyper_h; c; hyper_c]
    h, c, hyper_h, hyper_c = hyper.state_from_vector(v)
    assert torch.equal(h, v[:, :H]) and torch.equal(hyper_h, v[:, H : H + hyp])
    assert torch.equal(c, v[:, H + hyp : 2 * H + hyp]) and torch.equal(hyper_c, v[:, 2 * H + hyp :])


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_recurrent_init_is_blockwise_orthogonal(kind: str) -> None:
    cell = _cell(kind)
    cells = [cell, cell.hyper_cell] if isinstance(cell, HyperLSTMCell) else [cell]
    for c in cells:
        n = c.hidden_size
        for k in range(4):
            block = c.weight_hh[:, k * n : (k + 1) * n]
            eye = torch.eye(n, dtype=block.dtype)
            torch.testing.assert_close(block.T @ block, eye, rtol=0, atol=1e-5)
        assert not torch.allclose(c.weight_hh[:, :n], c.weight_hh[:, n : 2 * n])
        limit = (6 / (c.input_size + 4 * n)) ** 0.5  # glorot uniform
        assert c.weight_ih.abs().max() <= limit
    if isinstance(cell, LSTMCell | HyperLSTMCell):
        assert not cell.bias.any()  # forget bias is a run-time constant, not baked in


@pytest.mark.parametrize("kind", ["layer_norm", "hyper"])
def test_layer_norm_bounded_with_huge_inputs(kind: str) -> None:
    cell = _cell(kind).float().eval()
    x = torch.randn(T, B, IN)
    with torch.no_grad():
        big, _ = cell(x * 1e4)
        huge, state = cell(x * 1e8)
    assert all(torch.isfinite(s).all() for s in state)
    assert huge.abs().max() <= 1.0
    # Normalized gates make the output blind to the input's scale once it dominates.
    torch.testing.assert_close(big, huge, rtol=0, atol=1e-3)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown cell kind"):
        make_cell("gru", IN, H)
    with pytest.raises(ValueError, match="dropout"):
        make_cell("lstm", IN, H, dropout=1.0)
    with pytest.raises(ValueError, match="expected input"):
        make_cell("lstm", IN, H)(torch.zeros(B, IN))
    with pytest.raises(TypeError):
        make_cell("lstm", IN, H, hyper_num_units=4)
    assert isinstance(make_cell("layer_norm", IN, H), LayerNormLSTMCell)
