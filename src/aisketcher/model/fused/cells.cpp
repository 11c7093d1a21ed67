// The LSTM cells' kernels: one step forward and back, and whole sequences with the time loop in
// C++ and the recurrent weight's gradient as one matrix product; layer-normalised and plain.

#include "kernels.h"

namespace aisketcher_fused {

// ---------------------------------------------------------------------------------------------
// Layer-normalised LSTM (its rows: kernels.h).

// One step. Returns h', c', then the five saved tensors.
// `keep`: also return what backward needs (else h' and c' alone, for drawing).
std::vector<Tensor> ln_forward(const Tensor& gates, const Tensor& c, const Tensor& gain,
                               const Tensor& shift, const Tensor& cgain, const Tensor& cbias,
                               const Tensor& mask, double eps, bool keep) {
  const int64_t B = c.size(0), H = c.size(1);
  TORCH_CHECK(gates.size(0) == B && gates.size(1) == 4 * H, "fused LSTM: gates must be (B, 4H)");
  TORCH_CHECK(gates.is_contiguous() && c.is_contiguous(), "fused LSTM: contiguous inputs only");
  auto h_out = torch::empty({B, H}, c.options()), c_out = torch::empty({B, H}, c.options());
  const auto view = ln_view(gain, shift, cgain, cbias, eps);
  if (!keep) {
    ln_rows_forward(ptr(gates), ptr(c), ptr(mask), view, B, ptr(h_out), ptr(c_out), LnSaved{});
    return {h_out, c_out};
  }
  auto saved = ln_saved_tensors(-1, B, H, c);
  ln_rows_forward(ptr(gates), ptr(c), ptr(mask), view, B, ptr(h_out), ptr(c_out),
                  ln_saved_at(saved, 0, B, H));
  saved.insert(saved.begin(), {h_out, c_out});
  return saved;
}

// One step back. Returns dgates, dc, dgain, dshift, dcgain, dcbias.
std::vector<Tensor> ln_backward(const Tensor& dh, const Tensor& dc, const Tensor& c,
                                const Tensor& gain, const Tensor& cgain, const Tensor& mask,
                                const Tensor& normed, const Tensor& act, const Tensor& rstd,
                                const Tensor& chat, const Tensor& tnc) {
  const int64_t B = c.size(0), H = c.size(1);
  auto dgates = torch::empty({B, 4 * H}, c.options()), dc_prev = torch::empty({B, H}, c.options());
  Accumulator acc(10 * H, c);
  LnSaved s{ptr(normed), ptr(act), ptr(rstd), ptr(chat), ptr(tnc)};
  ln_rows_backward(ptr(dh), ptr(dc), ptr(c), ptr(mask), backward_view(gain, cgain), s, B,
                   ptr(dgates), ptr(dc_prev), acc);
  auto g = acc.total().split_with_sizes({4 * H, 4 * H, H, H});
  return {dgates, dc_prev, g[0], g[1], g[2], g[3]};
}

// Whole sequence: xp (T, B, 4H), h0, c0 (B, H), w_hh (H, 4H), masks (T, B, H) or empty. Returns
// the outputs (T, B, H), every cell (T + 1, B, H; cs[0] = c0) and the five saved tensors (T, ...).
std::vector<Tensor> ln_sequence_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0,
                                        const Tensor& w_hh, const Tensor& gain,
                                        const Tensor& shift, const Tensor& cgain,
                                        const Tensor& cbias, const Tensor& masks, double eps) {
  const int64_t T = xp.size(0), B = h0.size(0), H = h0.size(1);
  auto hs = torch::empty({T, B, H}, h0.options()), cs = torch::empty({T + 1, B, H}, h0.options());
  auto saved = ln_saved_tensors(T, B, H, h0);
  auto gates = torch::empty({B, 4 * H}, h0.options());
  const auto view = ln_view(gain, shift, cgain, cbias, eps);
  cs[0].copy_(c0);
  for (int64_t t = 0; t < T; ++t) {
    torch::addmm_out(gates, xp[t], t ? hs[t - 1] : h0, w_hh);
    ln_rows_forward(ptr(gates), ptr(cs) + t * B * H, masks.numel() ? ptr(masks) + t * B * H : nullptr,
                    view, B, ptr(hs) + t * B * H, ptr(cs) + (t + 1) * B * H,
                    ln_saved_at(saved, t, B, H));
  }
  saved.insert(saved.begin(), {hs, cs});
  return saved;
}

// Back through a sequence from dL/d outputs (T, B, H) and dL/d final cell (B, H). Returns dxp
// (T, B, 4H), dh0, dc0, dw_hh, dgain, dshift, dcgain, dcbias.
std::vector<Tensor> ln_sequence_backward(const Tensor& dhs, const Tensor& dc_last,
                                         const Tensor& h0, const Tensor& w_hh, const Tensor& gain,
                                         const Tensor& cgain, const Tensor& masks,
                                         const Tensor& hs, const Tensor& cs, const Tensor& normed,
                                         const Tensor& act, const Tensor& rstd,
                                         const Tensor& chat, const Tensor& tnc) {
  const int64_t T = hs.size(0), B = h0.size(0), H = h0.size(1);
  auto dxp = torch::empty({T, B, 4 * H}, h0.options());
  auto dh = dhs[T - 1].clone(), dc = dc_last.clone(), dc_next = torch::empty_like(dc);
  auto w_t = w_hh.t().contiguous();
  Accumulator acc(10 * H, h0);
  const std::vector<Tensor> saved{normed, act, rstd, chat, tnc};
  const auto view = backward_view(gain, cgain);
  for (int64_t t = T - 1; t >= 0; --t) {
    ln_rows_backward(ptr(dh), ptr(dc), ptr(cs) + t * B * H,
                     masks.numel() ? ptr(masks) + t * B * H : nullptr, view,
                     ln_saved_at(saved, t, B, H), B, ptr(dxp) + t * B * 4 * H, ptr(dc_next), acc);
    std::swap(dc, dc_next);
    torch::mm_out(dh, dxp[t], w_t);
    if (t) dh.add_(dhs[t - 1]);
  }
  // The recurrent weight's gradient for all steps in one product: [h0; h_1..h_{T-1}]^T dgates.
  auto h_prev = torch::cat({h0.unsqueeze(0), hs.narrow(0, 0, T - 1)}, 0).reshape({-1, H});
  auto dw = torch::mm(h_prev.t(), dxp.reshape({-1, 4 * H}));
  auto g = acc.total().split_with_sizes({4 * H, 4 * H, H, H});
  return {dxp, dh, dc, dw, g[0], g[1], g[2], g[3]};
}

}  // namespace aisketcher_fused

namespace {

// ---------------------------------------------------------------------------------------------
// Plain LSTM. Saved per row: the activations [sig i, tanh j, sig f, sig o] (4H) and tanh(c') (H).

void lstm_rows_forward(const float* gates, const float* c, const float* mask, int64_t B,
                       int64_t H, float forget_bias, float* h_out, float* c_out, float* act,
                       float* tc) {
  at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> shifted(H);
    for (int64_t b = begin; b < end; ++b) {
      const float* g = gates + b * 4 * H;
      float* a = act + b * 4 * H;
#pragma omp simd
      for (int64_t u = 0; u < H; ++u) shifted[u] = g[2 * H + u] + forget_bias;
      sigmoid(g, a, H);
      tanh_(g + H, a + H, H);
      sigmoid(shifted.data(), a + 2 * H, H);
      sigmoid(g + 3 * H, a + 3 * H, H);
      float *co = c_out + b * H, *t = tc + b * H;
      cell_update(c + b * H, a, mask ? mask + b * H : nullptr, H, co);
      tanh_(co, t, H);
      float* ho = h_out + b * H;
#pragma omp simd
      for (int64_t u = 0; u < H; ++u) ho[u] = t[u] * a[3 * H + u];
    }
  });
}

void lstm_rows_backward(const float* dh, const float* dc, const float* c, const float* mask,
                        const float* act, const float* tc, int64_t B, int64_t H, float* dgates,
                        float* dc_prev) {
  at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float *a = act + b * 4 * H, *t = tc + b * H, *dhb = dh + b * H, *dcb = dc + b * H;
      const float *cb = c + b * H, *m = mask ? mask + b * H : nullptr;
      float *dg = dgates + b * 4 * H, *dcp = dc_prev + b * H;
#pragma omp simd
      for (int64_t u = 0; u < H; ++u) {
        const float i = a[u], j = a[H + u], f = a[2 * H + u], o = a[3 * H + u];
        const float mu = m ? m[u] : 1.0f;
        const float d = dcb[u] + dhb[u] * o * (1.0f - t[u] * t[u]);
        dg[3 * H + u] = dhb[u] * t[u] * o * (1.0f - o);
        dg[u] = d * j * mu * i * (1.0f - i);
        dg[H + u] = d * i * mu * (1.0f - j * j);
        dg[2 * H + u] = d * cb[u] * f * (1.0f - f);
        dcp[u] = d * f;
      }
    }
  });
}

}  // namespace

namespace aisketcher_fused {

std::vector<Tensor> lstm_forward(const Tensor& gates, const Tensor& c, const Tensor& mask,
                                 double forget_bias) {
  const int64_t B = c.size(0), H = c.size(1);
  TORCH_CHECK(gates.size(0) == B && gates.size(1) == 4 * H, "fused LSTM: gates must be (B, 4H)");
  TORCH_CHECK(gates.is_contiguous() && c.is_contiguous(), "fused LSTM: contiguous inputs only");
  auto h_out = torch::empty({B, H}, c.options()), c_out = torch::empty({B, H}, c.options());
  auto act = torch::empty({B, 4 * H}, c.options()), tc = torch::empty({B, H}, c.options());
  lstm_rows_forward(ptr(gates), ptr(c), ptr(mask), B, H, static_cast<float>(forget_bias),
                    ptr(h_out), ptr(c_out), ptr(act), ptr(tc));
  return {h_out, c_out, act, tc};
}

std::vector<Tensor> lstm_backward(const Tensor& dh, const Tensor& dc, const Tensor& c,
                                  const Tensor& mask, const Tensor& act, const Tensor& tc) {
  const int64_t B = c.size(0), H = c.size(1);
  auto dgates = torch::empty({B, 4 * H}, c.options()), dc_prev = torch::empty({B, H}, c.options());
  lstm_rows_backward(ptr(dh), ptr(dc), ptr(c), ptr(mask), ptr(act), ptr(tc), B, H, ptr(dgates),
                     ptr(dc_prev));
  return {dgates, dc_prev};
}

std::vector<Tensor> lstm_sequence_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0,
                                          const Tensor& w_hh, const Tensor& masks,
                                          double forget_bias) {
  const int64_t T = xp.size(0), B = h0.size(0), H = h0.size(1);
  auto hs = torch::empty({T, B, H}, h0.options()), cs = torch::empty({T + 1, B, H}, h0.options());
  auto act = torch::empty({T, B, 4 * H}, h0.options()), tc = torch::empty({T, B, H}, h0.options());
  auto gates = torch::empty({B, 4 * H}, h0.options());
  cs[0].copy_(c0);
  for (int64_t t = 0; t < T; ++t) {
    torch::addmm_out(gates, xp[t], t ? hs[t - 1] : h0, w_hh);
    lstm_rows_forward(ptr(gates), ptr(cs) + t * B * H,
                      masks.numel() ? ptr(masks) + t * B * H : nullptr, B, H,
                      static_cast<float>(forget_bias), ptr(hs) + t * B * H,
                      ptr(cs) + (t + 1) * B * H, ptr(act) + t * B * 4 * H, ptr(tc) + t * B * H);
  }
  return {hs, cs, act, tc};
}

// Returns dxp (T, B, 4H), dh0, dc0, dw_hh.
std::vector<Tensor> lstm_sequence_backward(const Tensor& dhs, const Tensor& dc_last,
                                           const Tensor& h0, const Tensor& w_hh,
                                           const Tensor& masks, const Tensor& hs,
                                           const Tensor& cs, const Tensor& act, const Tensor& tc) {
  const int64_t T = hs.size(0), B = h0.size(0), H = h0.size(1);
  auto dxp = torch::empty({T, B, 4 * H}, h0.options());
  auto dh = dhs[T - 1].clone(), dc = dc_last.clone(), dc_next = torch::empty_like(dc);
  auto w_t = w_hh.t().contiguous();
  for (int64_t t = T - 1; t >= 0; --t) {
    lstm_rows_backward(ptr(dh), ptr(dc), ptr(cs) + t * B * H,
                       masks.numel() ? ptr(masks) + t * B * H : nullptr,
                       ptr(act) + t * B * 4 * H, ptr(tc) + t * B * H, B, H,
                       ptr(dxp) + t * B * 4 * H, ptr(dc_next));
    std::swap(dc, dc_next);
    torch::mm_out(dh, dxp[t], w_t);
    if (t) dh.add_(dhs[t - 1]);
  }
  auto h_prev = torch::cat({h0.unsqueeze(0), hs.narrow(0, 0, T - 1)}, 0).reshape({-1, H});
  auto dw = torch::mm(h_prev.t(), dxp.reshape({-1, 4 * H}));
  return {dxp, dh, dc, dw};
}

}  // namespace aisketcher_fused
