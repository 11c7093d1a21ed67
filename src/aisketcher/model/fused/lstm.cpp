// Fused LSTM steps on the CPU: the element-wise work of one step (layer norms, gate activations,
// recurrent dropout, state update) in one pass over each row, forward and backward, and whole
// sequences with the time loop in C++ and the recurrent weight's gradient as one matrix product.
//
// Formulas (magenta's cells; aisketcher/model/cells.py is the reference implementation):
//   layer_norm: a = LN_k(x W_xh + h W_hh) * gain + shift  (LN over each gate block k = i, j, f, o;
//               shift = bias + forget_bias on the f block)
//               c' = c * sig(a_f) + sig(a_i) * tanh(a_j) * mask
//               h' = tanh(LN(c') * cgain + cbias) * sig(a_o)
//   lstm:       a = x W_xh + h W_hh + bias
//               c' = c * sig(a_f + forget_bias) + sig(a_i) * tanh(a_j) * mask
//               h' = tanh(c') * sig(a_o)
// `mask` is the recurrent dropout mask (kept entries 1 / (1 - p)), or an empty tensor for none.
// All tensors are contiguous float32 on the CPU. Every inner loop runs over one row's contiguous
// units with simple bodies, so the compiler vectorises it (the transcendental functions through
// glibc's vector math library); the time loop of a sequence writes straight into its outputs.
// Last, a whole drawing step of the default model (its cells, memory and influence layer), and
// the influence layer's training step.

#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

using torch::Tensor;

inline float* ptr(const Tensor& t) {
  return t.defined() && t.numel() ? t.data_ptr<float>() : nullptr;
}

// Mean and 1 / sqrt(var + eps) of n values (two passes, biased variance as F.layer_norm).
inline void moments(const float* x, int64_t n, float eps, float& mean, float& rstd) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += x[i];
  const float m = s / n;
  float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < n; ++i) ss += (x[i] - m) * (x[i] - m);
  mean = m;
  rstd = 1.0f / std::sqrt(ss / n + eps);
}

// In place: dy -> dx of a layer norm without its affine part, given its output y and rstd.
inline void layer_norm_backward(float* d, const float* y, float rstd, int64_t n) {
  float sd = 0.0f, sdy = 0.0f;
#pragma omp simd reduction(+ : sd, sdy)
  for (int64_t i = 0; i < n; ++i) {
    sd += d[i];
    sdy += d[i] * y[i];
  }
  const float md = sd / n, mdy = sdy / n;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) d[i] = rstd * (d[i] - md - y[i] * mdy);
}

// The arguments are clamped where the results are exact in float32 already (sigmoid 0 or 1 to
// within 1e-38, tanh +-1): built with -ffast-math, exp and tanh are not asked to overflow. A NaN
// passes through (tested on its bits: fast math lets the compiler drop float comparisons with
// NaN), so a non-finite input gives NaN as on the reference path.
inline float clamp(float x, float bound) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return x;
  return x < -bound ? -bound : (x > bound ? bound : x);
}

inline void sigmoid(const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-clamp(x[i], 87.0f)));
}

inline void tanh_(const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(clamp(x[i], 15.0f));
}

// c' = c * f + i * g * mask from one row's activations a = [i, g, f, o] (mask: none if null).
inline void cell_update(const float* c, const float* a, const float* m, int64_t H, float* out) {
  if (m) {
#pragma omp simd
    for (int64_t u = 0; u < H; ++u) out[u] = c[u] * a[2 * H + u] + a[u] * a[H + u] * m[u];
  } else {
#pragma omp simd
    for (int64_t u = 0; u < H; ++u) out[u] = c[u] * a[2 * H + u] + a[u] * a[H + u];
  }
}

// Per-thread accumulators of parameter gradients, summed once the rows are done.
struct Accumulator {
  Tensor rows;
  explicit Accumulator(int64_t width, const Tensor& like)
      : rows(torch::zeros({at::get_num_threads(), width}, like.options())) {}
  float* mine() const {
    const int64_t thread = at::get_thread_num();
    TORCH_CHECK(thread < rows.size(0), "fused LSTM: more threads than accumulators");
    return rows.data_ptr<float>() + thread * rows.size(1);
  }
  Tensor total() const { return rows.sum(0); }
};

// ---------------------------------------------------------------------------------------------
// Layer-normalised LSTM. Saved per row for backward: the normalised gates (4H), the activations
// [sig i, tanh j, sig f, sig o] (4H), the five rstds (four gate blocks, the cell), the normalised
// cell (H) and tanh of the cell norm's output (H).

struct LnView {
  const float *gain, *shift, *cgain, *cbias;
  int64_t H;
  float eps;
};

struct LnSaved {
  float *normed, *act, *rstd, *chat, *tnc;  // each at row 0 of a (B, width) block
};

void ln_rows_forward(const float* gates, const float* c, const float* mask, const LnView& p,
                     int64_t B, float* h_out, float* c_out, const LnSaved& s) {
  const int64_t H = p.H;
  const bool keep = s.normed != nullptr;  // else drawing: nothing is saved for a backward
  at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> pre(4 * H), scratch(keep ? 0 : 10 * H + 5);
    for (int64_t b = begin; b < end; ++b) {
      const float* g = gates + b * 4 * H;
      float* n = keep ? s.normed + b * 4 * H : scratch.data();
      float* a = keep ? s.act + b * 4 * H : scratch.data() + 4 * H;
      float* r = keep ? s.rstd + b * 5 : scratch.data() + 8 * H;
      for (int64_t k = 0; k < 4; ++k) {
        float mean, rs;
        moments(g + k * H, H, p.eps, mean, rs);
        r[k] = rs;
        const float *gk = g + k * H, *gain = p.gain + k * H, *shift = p.shift + k * H;
        float *nk = n + k * H, *vk = pre.data() + k * H;
#pragma omp simd
        for (int64_t u = 0; u < H; ++u) {
          nk[u] = (gk[u] - mean) * rs;
          vk[u] = nk[u] * gain[u] + shift[u];
        }
      }
      sigmoid(pre.data(), a, H);
      tanh_(pre.data() + H, a + H, H);
      sigmoid(pre.data() + 2 * H, a + 2 * H, 2 * H);
      float* co = c_out + b * H;
      cell_update(c + b * H, a, mask ? mask + b * H : nullptr, H, co);
      float mean, rs;
      moments(co, H, p.eps, mean, rs);
      r[4] = rs;
      float* y = keep ? s.chat + b * H : scratch.data() + 8 * H + 5;
      float *t = keep ? s.tnc + b * H : y + H, *z = pre.data();
#pragma omp simd
      for (int64_t u = 0; u < H; ++u) {
        y[u] = (co[u] - mean) * rs;
        z[u] = y[u] * p.cgain[u] + p.cbias[u];
      }
      tanh_(z, t, H);
      float* ho = h_out + b * H;
#pragma omp simd
      for (int64_t u = 0; u < H; ++u) ho[u] = t[u] * a[3 * H + u];
    }
  });
}

// From dh', dc' (B, H): the gate pre-activations' gradient (B, 4H) and dc (B, H); the parameter
// gradients [dgain (4H); dshift (4H); dcgain (H); dcbias (H)] are added to `acc`.
void ln_rows_backward(const float* dh, const float* dc, const float* c, const float* mask,
                      const LnView& p, const LnSaved& s, int64_t B, float* dgates, float* dc_prev,
                      const Accumulator& acc) {
  const int64_t H = p.H;
  at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
    float* g_gain = acc.mine();
    float *g_shift = g_gain + 4 * H, *g_cgain = g_gain + 8 * H, *g_cbias = g_gain + 9 * H;
    std::vector<float> buf(2 * H);
    float *dz = buf.data(), *dct = buf.data() + H;
    for (int64_t b = begin; b < end; ++b) {
      const float *a = s.act + b * 4 * H, *t = s.tnc + b * H, *y = s.chat + b * H;
      const float *dhb = dh + b * H, *dcb = dc + b * H, *cb = c + b * H;
      const float* m = mask ? mask + b * H : nullptr;
      float* da = dgates + b * 4 * H;  // dL/d(gate activations' inputs), then normed, then gates
#pragma omp simd
      for (int64_t u = 0; u < H; ++u) {
        const float o = a[3 * H + u];
        da[3 * H + u] = dhb[u] * t[u] * o * (1.0f - o);
        const float d = dhb[u] * o * (1.0f - t[u] * t[u]);  // into the cell norm's output
        g_cgain[u] += d * y[u];
        g_cbias[u] += d;
        dz[u] = d * p.cgain[u];
      }
      layer_norm_backward(dz, y, s.rstd[b * 5 + 4], H);
#pragma omp simd
      for (int64_t u = 0; u < H; ++u) {
        const float d = dcb[u] + dz[u];
        dct[u] = d;
        dc_prev[b * H + u] = d * a[2 * H + u];
      }
      if (m) {
#pragma omp simd
        for (int64_t u = 0; u < H; ++u) {
          const float i = a[u], j = a[H + u];
          da[u] = dct[u] * j * m[u] * i * (1.0f - i);
          da[H + u] = dct[u] * i * m[u] * (1.0f - j * j);
        }
      } else {
#pragma omp simd
        for (int64_t u = 0; u < H; ++u) {
          const float i = a[u], j = a[H + u];
          da[u] = dct[u] * j * i * (1.0f - i);
          da[H + u] = dct[u] * i * (1.0f - j * j);
        }
      }
#pragma omp simd
      for (int64_t u = 0; u < H; ++u) {
        const float f = a[2 * H + u];
        da[2 * H + u] = dct[u] * cb[u] * f * (1.0f - f);
      }
      const float* n = s.normed + b * 4 * H;
      for (int64_t k = 0; k < 4; ++k) {
        float* dk = da + k * H;
        const float *nk = n + k * H, *gain = p.gain + k * H;
        float *gg = g_gain + k * H, *gs = g_shift + k * H;
#pragma omp simd
        for (int64_t u = 0; u < H; ++u) {
          gg[u] += dk[u] * nk[u];
          gs[u] += dk[u];
          dk[u] *= gain[u];
        }
        layer_norm_backward(dk, nk, s.rstd[b * 5 + k], H);
      }
    }
  });
}

LnView ln_view(const Tensor& gain, const Tensor& shift, const Tensor& cgain, const Tensor& cbias,
               double eps) {
  return {ptr(gain), ptr(shift), ptr(cgain), ptr(cbias), cgain.size(0), static_cast<float>(eps)};
}

// Backward reads only the gains (the shifts and eps are in the saved normalised values).
LnView backward_view(const Tensor& gain, const Tensor& cgain) {
  return ln_view(gain, Tensor(), cgain, Tensor(), 0.0);
}

std::vector<Tensor> ln_saved_tensors(int64_t lead, int64_t B, int64_t H, const Tensor& like) {
  auto o = like.options();
  std::vector<int64_t> n4{B, 4 * H}, n5{B, 5}, n1{B, H};
  if (lead >= 0) n4.insert(n4.begin(), lead), n5.insert(n5.begin(), lead), n1.insert(n1.begin(), lead);
  return {torch::empty(n4, o), torch::empty(n4, o), torch::empty(n5, o), torch::empty(n1, o),
          torch::empty(n1, o)};
}

LnSaved ln_saved_at(const std::vector<Tensor>& t, int64_t step, int64_t B, int64_t H) {
  return {ptr(t[0]) + step * B * 4 * H, ptr(t[1]) + step * B * 4 * H, ptr(t[2]) + step * B * 5,
          ptr(t[3]) + step * B * H, ptr(t[4]) + step * B * H};
}

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

// ---------------------------------------------------------------------------------------------
// Drawing: one whole decoder step of the default model (layer-normalised cells, the "drawn"
// influence memory, sigma_a = exp(tanh(mu_a) / 2)) for a few rows, without autograd. At batch 1
// a step is some 30 tensor operations of a few microseconds each around 2 MB of weights; here it
// is plain loops over those weights, each row's vectors staying in the L1 cache.

// y (N) += x (K) W (K, N), W row-major: one contiguous pass over W.
inline void add_xw(const float* x, int64_t K, const float* W, int64_t N, float* y) {
  for (int64_t k = 0; k < K; ++k) {
    const float xk = x[k];
    if (xk == 0.0f) continue;  // the pen one-hot, the zero first encoder state
    const float* w = W + k * N;
#pragma omp simd
    for (int64_t n = 0; n < N; ++n) y[n] += xk * w[n];
  }
}

// y (O) = W (O, K) x (K) (+ b), W row-major as nn.Linear keeps it.
inline void linear(const float* W, const float* b, int64_t O, int64_t K, const float* x,
                   float* y) {
  for (int64_t o = 0; o < O; ++o) {
    const float* w = W + o * K;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < K; ++k) s += w[k] * x[k];
    y[o] = b ? s + b[o] : s;
  }
}

// Eq. 9-11 for one row: scores over its first n memory rows (n x A) against the projected query,
// softmax into alpha (n), mu_a (A), log sigma_a^2 = tanh(mu_a), a_d = mu_a + sigma_a * noise.
inline void attend_row(const float* q, const float* mem, int64_t n, int64_t A, const float* noise,
                       float* alpha, float* mu, float* lv, float* a) {
  float top = std::numeric_limits<float>::lowest();
  for (int64_t i = 0; i < n; ++i) {
    const float* h = mem + i * A;
    float v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (int64_t k = 0; k < A; ++k) v += h[k] * q[k];
    alpha[i] = v;
    top = v > top ? v : top;
  }
  float total = 0.0f;
  for (int64_t i = 0; i < n; ++i) total += alpha[i] = std::exp(alpha[i] - top);
  std::fill(mu, mu + A, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    const float w = alpha[i] /= total;
    const float* h = mem + i * A;
#pragma omp simd
    for (int64_t k = 0; k < A; ++k) mu[k] += w * h[k];
  }
  tanh_(mu, lv, A);
#pragma omp simd
  for (int64_t k = 0; k < A; ++k) a[k] = mu[k] + std::exp(0.5f * lv[k]) * noise[k];
}

// A layer-normalised LSTM cell as the drawing step takes it, read by field name from an `LnCell`
// (aisketcher/model/fused/decoder.py): the input weights of the inputs the step adds itself
// (I, 4H), the recurrent weights (H, 4H) and the norms (an `LnNorms`).
struct LnCell {
  Tensor w_in, w_hh, gain, shift, cgain, cbias;
  double eps;
  LnView view() const { return ln_view(gain, shift, cgain, cbias, eps); }
};

Tensor field(const py::handle& structure, const char* name) {
  return structure.attr(name).cast<Tensor>();
}

LnCell ln_cell(const py::handle& cell) {
  const py::object norms = cell.attr("norms");
  return {field(cell, "w_in"),      field(cell, "w_hh"),       field(norms, "gain"),
          field(norms, "shift"),    field(norms, "cell_gain"), field(norms, "cell_bias"),
          norms.attr("eps").cast<double>()};
}

// The drawing step's weights, read by field name from a `DrawWeights` once per drawing:
// the decoder's cell (its `w_in`: the rows of s_j in its input weights, 5 x 4H), the rows of a_d
// (n_a, 4H) and the influence layer's W (n_a, H); the encoder's forward cell that makes the
// memory (its `w_in`: 5 x 4E); the output layer (O, H), (O).
struct DrawWeights {
  LnCell decoder;
  Tensor w_a, w_query;
  LnCell memory;
  Tensor w_out, b_out;

  explicit DrawWeights(const py::object& w) {
    const py::object influence_decoder = w.attr("decoder");
    decoder = ln_cell(influence_decoder.attr("cell"));
    w_a = field(influence_decoder, "w_a");
    w_query = field(influence_decoder, "w_query");
    memory = ln_cell(w.attr("memory"));
    w_out = field(w, "w_out");
    b_out = field(w, "b_out");
    TORCH_CHECK(w_query.size(0) == memory.w_hh.size(0) && w_a.size(0) == w_query.size(0) &&
                    decoder.w_in.size(0) == 5 && memory.w_in.size(0) == 5,
                "fused drawing: unexpected sizes");
    for (const Tensor* t : {&decoder.w_in, &w_a, &decoder.w_hh, &memory.w_in, &memory.w_hh,
                            &w_query, &w_out})
      TORCH_CHECK(t->is_contiguous(), "fused drawing: contiguous weights only");
  }
};

using CellState = std::pair<Tensor, Tensor>;  // (h, c)

// One step for rows of the point s_j (B, 5), j = `step`, from the state: the decoder's projection
// of the inputs fixed per sketch (B, 4H), its cell's (h, c) (B, H), the query h_dec_{j-1} (B, H),
// the memory encoder's (h, c) (B, E) and the memory (B, room, E), whose row j this step writes
// (room > j); lambda_a (B, n_a). Returns y (B, O), h', c', the encoder's h', c', mu_a and
// log sigma_a^2.
std::vector<Tensor> ln_draw_step(const DrawWeights& w, const Tensor& point_in,
                                 const Tensor& context, const CellState& rnn,
                                 const Tensor& query_in, const CellState& memory_rnn,
                                 const Tensor& memory, int64_t step, const Tensor& noise_in) {
  const Tensor point = point_in.contiguous(), query = query_in.contiguous();
  const Tensor h = rnn.first.contiguous(), c = rnn.second.contiguous();
  const Tensor enc_h = memory_rnn.first.contiguous(), enc_c = memory_rnn.second.contiguous();
  const Tensor noise = noise_in.contiguous();
  const int64_t B = h.size(0), H = h.size(1), E = enc_h.size(1), A = w.w_query.size(0);
  const int64_t O = w.w_out.size(0), room = memory.size(1);
  TORCH_CHECK(step >= 0 && step < room, "fused drawing: the memory has no row for this step");
  TORCH_CHECK(memory.is_contiguous() && context.is_contiguous(),
              "fused drawing: contiguous memory and context only");
  auto o = h.options();
  auto y = torch::empty({B, O}, o), h_out = torch::empty({B, H}, o), c_out = torch::empty({B, H}, o);
  auto eh_out = enc_h.clone(), ec_out = enc_c.clone();
  auto mu = torch::empty({B, A}, o), log_var = torch::empty({B, A}, o);
  const auto dec = w.decoder.view(), enc = w.memory.view();
  std::vector<float> gates(4 * H), enc_gates(4 * E), projected(A), scores(step + 1), a(A);
  for (int64_t b = 0; b < B; ++b) {
    const float* s = ptr(point) + b * 5;
    float* mem = ptr(memory) + b * room * E;
    // The memory gains row j: the encoder's forward state after reading s_j (j > 0; row 0 is
    // the zero state, whose input is S0).
    if (step > 0) {
      std::fill(enc_gates.begin(), enc_gates.end(), 0.0f);
      add_xw(s, 5, ptr(w.memory.w_in), 4 * E, enc_gates.data());
      add_xw(ptr(enc_h) + b * E, E, ptr(w.memory.w_hh), 4 * E, enc_gates.data());
      ln_rows_forward(enc_gates.data(), ptr(enc_c) + b * E, nullptr, enc, 1,
                      ptr(eh_out) + b * E, ptr(ec_out) + b * E, LnSaved{});
    }
    std::memcpy(mem + step * E, ptr(eh_out) + b * E, E * sizeof(float));
    // Eq. 9-11 over rows 0..j, the query projected by W first.
    linear(ptr(w.w_query), nullptr, A, H, ptr(query) + b * H, projected.data());
    attend_row(projected.data(), mem, step + 1, A, ptr(noise) + b * A, scores.data(),
               ptr(mu) + b * A, ptr(log_var) + b * A, a.data());
    // Eq. 5: the gates from the fixed inputs' projection, s_j, a_d and h_dec_{j-1}.
    std::memcpy(gates.data(), ptr(context) + b * 4 * H, 4 * H * sizeof(float));
    add_xw(s, 5, ptr(w.decoder.w_in), 4 * H, gates.data());
    add_xw(a.data(), A, ptr(w.w_a), 4 * H, gates.data());
    add_xw(ptr(h) + b * H, H, ptr(w.decoder.w_hh), 4 * H, gates.data());
    ln_rows_forward(gates.data(), ptr(c) + b * H, nullptr, dec, 1, ptr(h_out) + b * H,
                    ptr(c_out) + b * H, LnSaved{});
    linear(ptr(w.w_out), ptr(w.b_out), O, H, ptr(h_out) + b * H, ptr(y) + b * O);
  }
  return {y, h_out, c_out, eh_out, ec_out, mu, log_var};
}

// ---------------------------------------------------------------------------------------------
// The influence layer's step in training (eq. 9-11 with sigma_a = exp(tanh(mu_a) / 2)): from the
// projected query W h_dec (B, A) and the memory (B, T, A), row b reading its first limit[b] rows,
// the attention, mu_a, log sigma_a^2 and a_d in one pass per row; backward the same way. The
// memory's gradient is left to the caller's tape (aisketcher/model/influence.py), which gets this
// step's attention weights and score gradients written into its (B, steps, T) tensors.

// Returns a_d, mu, log_var (B, A) and alpha (B, T; zero past each row's limit).
std::vector<Tensor> influence_forward(const Tensor& query, const Tensor& memory,
                                      const Tensor& limit, const Tensor& noise) {
  const int64_t B = query.size(0), A = query.size(1), T = memory.size(1);
  TORCH_CHECK(query.is_contiguous() && memory.is_contiguous() && noise.is_contiguous() &&
                  limit.is_contiguous() && limit.scalar_type() == torch::kLong,
              "fused influence: contiguous inputs and int64 limits only");
  TORCH_CHECK(memory.size(0) == B && memory.size(2) == A, "fused influence: sizes differ");
  auto o = query.options();
  auto a = torch::empty({B, A}, o), mu = torch::empty({B, A}, o), lv = torch::empty({B, A}, o);
  auto alpha = torch::zeros({B, T}, o);
  const int64_t* lim = limit.data_ptr<int64_t>();
  at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      attend_row(ptr(query) + b * A, ptr(memory) + b * T * A, std::min(lim[b], T), A,
                 ptr(noise) + b * A, ptr(alpha) + b * T, ptr(mu) + b * A, ptr(lv) + b * A,
                 ptr(a) + b * A);
    }
  });
  return {a, mu, lv, alpha};
}

// Rows of one influence step back, from the gradients of a_d, mu_a and log sigma_a^2 (B, A):
// adds the projected query's gradient to d_query (B, A) and writes the tape's row `step` (the
// tape's tensors are (B, steps, width)): alpha, the score gradients, mu_a's total gradient, the
// query.
void influence_rows_backward(const float* d_a, const float* d_mu, const float* d_lv,
                             const float* memory, int64_t T, const int64_t* lim,
                             const float* noise, const float* log_var, const float* alpha,
                             const float* query, int64_t B, int64_t A, float* tape_alpha,
                             float* tape_d_scores, float* tape_d_mu, float* tape_query,
                             int64_t steps, int64_t width, int64_t step, float* d_query) {
  at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t n = std::min(lim[b], T);
      const float *mem = memory + b * T * A, *al = alpha + b * T;
      const float *ga = d_a + b * A, *gm = d_mu + b * A, *gl = d_lv + b * A;
      const float *l = log_var + b * A, *e = noise + b * A;
      float* dm = tape_d_mu + (b * steps + step) * A;
      std::memcpy(tape_query + (b * steps + step) * A, query + b * A, A * sizeof(float));
      // a = mu + exp(lv / 2) e, lv = tanh(mu): everything reaches mu.
#pragma omp simd
      for (int64_t k = 0; k < A; ++k) {
        const float d_lv_total = gl[k] + ga[k] * e[k] * 0.5f * std::exp(0.5f * l[k]);
        dm[k] = gm[k] + ga[k] + d_lv_total * (1.0f - l[k] * l[k]);
      }
      float* ta = tape_alpha + (b * steps + step) * width;
      float* ds = tape_d_scores + (b * steps + step) * width;
      float weighted = 0.0f;
      for (int64_t i = 0; i < n; ++i) {
        const float* h = mem + i * A;
        float v = 0.0f;
#pragma omp simd reduction(+ : v)
        for (int64_t k = 0; k < A; ++k) v += h[k] * dm[k];
        ds[i] = v;  // d alpha_i for now
        weighted += al[i] * v;
      }
      float* dq = d_query + b * A;
      for (int64_t i = 0; i < n; ++i) {
        ta[i] = al[i];
        const float g = ds[i] = al[i] * (ds[i] - weighted);  // softmax backward
        const float* h = mem + i * A;
#pragma omp simd
        for (int64_t k = 0; k < A; ++k) dq[k] += g * h[k];
      }
    }
  });
}

// From the gradients of a_d, mu_a and log sigma_a^2: the projected query's gradient (B, A).
// Writes the tape's row `step`: alpha, the score gradients, mu_a's total gradient and the query.
Tensor influence_backward(const Tensor& d_a, const Tensor& d_mu, const Tensor& d_lv,
                          const Tensor& memory, const Tensor& limit, const Tensor& noise,
                          const Tensor& log_var, const Tensor& alpha, const Tensor& tape_alpha,
                          const Tensor& tape_d_scores, const Tensor& tape_d_mu,
                          const Tensor& tape_query, const Tensor& query, int64_t step) {
  const int64_t B = d_a.size(0), A = d_a.size(1), T = memory.size(1);
  const int64_t steps = tape_alpha.size(1), width = tape_alpha.size(2);
  TORCH_CHECK(step < steps && T <= width, "fused influence: the tape has no room");
  for (const Tensor* t : {&d_a, &d_mu, &d_lv, &tape_alpha, &tape_d_scores, &tape_d_mu, &tape_query})
    TORCH_CHECK(t->is_contiguous(), "fused influence: contiguous gradients only");
  auto d_query = torch::zeros({B, A}, d_a.options());
  influence_rows_backward(ptr(d_a), ptr(d_mu), ptr(d_lv), ptr(memory), T,
                          limit.data_ptr<int64_t>(), ptr(noise), ptr(log_var), ptr(alpha),
                          ptr(query), B, A, ptr(tape_alpha), ptr(tape_d_scores), ptr(tape_d_mu),
                          ptr(tape_query), steps, width, step, ptr(d_query));
  return d_query;
}

// ---------------------------------------------------------------------------------------------
// The default decoder in training, the whole teacher-forced sequence in one call each way (its
// steps cannot be batched: step j's input a_d depends on h_dec_{j-1} through the influence
// layer). Step j: the query q_j (q_0 the learned first query, else h_{j-1}) projected, p_j =
// q_j W_q^T; the influence layer over each row's first limits[j, b] memory rows gives a_j, mu_j,
// log sigma_j^2 from lambda_a = noise[j]; then a layer-normalised LSTM step on the gates
// context + [a_j; s_j] [W_a; W_s] + h_{j-1} W_hh (eq. 5, the inputs fixed per sketch projected
// once into `context`). Backward collects every step's gate gradients, so the weights' gradients
// are one matrix product each over all steps, and the memory's gradient two batched products
// over the tape.

// context (B, 4H); points (L, B, P), the inputs s_j; h0, c0, q0 (B, H); w_hh (H, 4H); w_a
// (A, 4H); w_s (P, 4H); w_q (A, H); norms; masks (L, B, H) or empty; memory (B, T, A); limits
// (L, B) int64; noise (L, B, A). Returns hs (L, B, H), cs (L + 1, B, H; cs[0] = c0), mu, log_var
// (L, B, A), [a_j; s_j] (L, B, A + P), alpha (L, B, T), the projected queries (L, B, A) and the
// cell's five saved tensors (L, ...).
std::vector<Tensor> ln_influence_forward(
    const Tensor& context, const Tensor& points, const Tensor& h0, const Tensor& c0,
    const Tensor& q0, const Tensor& w_hh, const Tensor& w_a, const Tensor& w_s, const Tensor& w_q,
    const Tensor& gain, const Tensor& shift, const Tensor& cgain, const Tensor& cbias,
    const Tensor& masks, const Tensor& memory, const Tensor& limits, const Tensor& noise,
    double eps) {
  const int64_t L = points.size(0), P = points.size(2), B = h0.size(0), H = h0.size(1);
  const int64_t A = w_q.size(0), T = memory.size(1), AP = A + P;
  for (const Tensor* t : {&context, &points, &h0, &c0, &q0, &w_hh, &w_a, &w_s, &w_q, &memory,
                          &limits, &noise})
    TORCH_CHECK(t->is_contiguous(), "fused decoder: contiguous inputs only");
  TORCH_CHECK(limits.scalar_type() == torch::kLong && limits.size(0) == L && noise.size(0) == L &&
                  memory.size(0) == B && memory.size(2) == A && w_a.size(0) == A &&
                  w_s.size(0) == P,
              "fused decoder: unexpected sizes");
  auto o = h0.options();
  auto hs = torch::empty({L, B, H}, o), cs = torch::empty({L + 1, B, H}, o);
  auto mu = torch::empty({L, B, A}, o), lv = torch::empty({L, B, A}, o);
  auto proj = torch::empty({L, B, A}, o), inputs = torch::empty({L, B, AP}, o);
  auto alpha = torch::zeros({L, B, T}, o);
  auto saved = ln_saved_tensors(L, B, H, h0);
  auto gates = torch::empty({B, 4 * H}, o);
  const auto view = ln_view(gain, shift, cgain, cbias, eps);
  const auto w_q_t = w_q.t();
  const auto w_in = torch::cat({w_a, w_s}, 0);
  inputs.narrow(2, A, P).copy_(points);
  cs[0].copy_(c0);
  for (int64_t j = 0; j < L; ++j) {
    const Tensor h_prev = j ? hs[j - 1] : h0;
    auto p = proj[j];
    torch::mm_out(p, j ? h_prev : q0, w_q_t);
    const int64_t* lim = limits.data_ptr<int64_t>() + j * B;
    const int64_t row = j * B;
    at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        attend_row(ptr(proj) + (row + b) * A, ptr(memory) + b * T * A, std::min(lim[b], T), A,
                   ptr(noise) + (row + b) * A, ptr(alpha) + (row + b) * T,
                   ptr(mu) + (row + b) * A, ptr(lv) + (row + b) * A, ptr(inputs) + (row + b) * AP);
      }
    });
    torch::addmm_out(gates, context, h_prev, w_hh);
    gates.addmm_(inputs[j], w_in);
    ln_rows_forward(ptr(gates), ptr(cs) + j * B * H,
                    masks.numel() ? ptr(masks) + j * B * H : nullptr, view, B,
                    ptr(hs) + j * B * H, ptr(cs) + (j + 1) * B * H, ln_saved_at(saved, j, B, H));
  }
  saved.insert(saved.begin(), {hs, cs, mu, lv, inputs, alpha, proj});
  return saved;
}

// Back through the sequence from dL/d hs, mu, log_var (L, B, ...). Returns every step's gate
// gradients (L, B, 4H), the context's gradient, dh0, dc0, dq0 (B, H), dw_hh, dw_a, dw_s, dw_q,
// dgain, dshift, dcgain, dcbias and the memory's gradient.
std::vector<Tensor> ln_influence_backward(
    const Tensor& dhs, const Tensor& d_mu, const Tensor& d_lv, const Tensor& h0, const Tensor& q0,
    const Tensor& w_hh, const Tensor& w_a, const Tensor& w_q, const Tensor& gain,
    const Tensor& cgain, const Tensor& masks, const Tensor& memory, const Tensor& limits,
    const Tensor& noise, const Tensor& hs, const Tensor& cs, const Tensor& lv,
    const Tensor& inputs, const Tensor& alpha, const Tensor& proj, const Tensor& normed,
    const Tensor& act, const Tensor& rstd, const Tensor& chat, const Tensor& tnc) {
  const int64_t L = hs.size(0), B = h0.size(0), H = h0.size(1), A = w_q.size(0);
  const int64_t T = memory.size(1), AP = inputs.size(2);
  for (const Tensor* t : {&dhs, &d_mu, &d_lv})
    TORCH_CHECK(t->is_contiguous(), "fused decoder: contiguous gradients only");
  auto o = h0.options();
  auto dgates = torch::empty({L, B, 4 * H}, o), dproj = torch::zeros({L, B, A}, o);
  auto tape_alpha = torch::zeros({B, L, T}, o), tape_d_scores = torch::zeros({B, L, T}, o);
  auto tape_d_mu = torch::empty({B, L, A}, o), tape_query = torch::empty({B, L, A}, o);
  auto dh = dhs[L - 1].clone(), dc = torch::zeros({B, H}, o), dc_next = torch::empty_like(dc);
  auto back = torch::empty({B, H + A}, o), d_a = torch::empty({B, A}, o);
  auto dq = torch::empty({B, H}, o);
  // One product per step for the gradients of h_{j-1} and a_j: dgates [W_hh; W_a]^T.
  const auto w_back = torch::cat({w_hh, w_a}, 0).t();
  Accumulator acc(10 * H, h0);
  const std::vector<Tensor> saved{normed, act, rstd, chat, tnc};
  const auto view = backward_view(gain, cgain);
  Tensor dh0, dq0;
  for (int64_t j = L - 1; j >= 0; --j) {
    ln_rows_backward(ptr(dh), ptr(dc), ptr(cs) + j * B * H,
                     masks.numel() ? ptr(masks) + j * B * H : nullptr, view,
                     ln_saved_at(saved, j, B, H), B, ptr(dgates) + j * B * 4 * H, ptr(dc_next),
                     acc);
    std::swap(dc, dc_next);
    torch::mm_out(back, dgates[j], w_back);
    d_a.copy_(back.narrow(1, H, A));
    const int64_t row = j * B;
    influence_rows_backward(ptr(d_a), ptr(d_mu) + row * A, ptr(d_lv) + row * A, ptr(memory), T,
                            limits.data_ptr<int64_t>() + row, ptr(noise) + row * A,
                            ptr(lv) + row * A, ptr(alpha) + row * T, ptr(proj) + row * A, B, A,
                            ptr(tape_alpha), ptr(tape_d_scores), ptr(tape_d_mu), ptr(tape_query),
                            L, T, j, ptr(dproj) + row * A);
    torch::mm_out(dq, dproj[j], w_q);
    if (j) {
      torch::add_out(dh, back.narrow(1, 0, H), dq);
      dh.add_(dhs[j - 1]);
    } else {
      dh0 = back.narrow(1, 0, H).contiguous();
      dq0 = dq;
    }
  }
  // Every step's inputs of the products, h_{j-1} (h_0 first), [a_j; s_j] and q_j (q_0 first).
  auto h_prev = torch::cat({h0.unsqueeze(0), hs.narrow(0, 0, L - 1)}, 0).reshape({-1, H});
  auto q_prev = torch::cat({q0.unsqueeze(0), hs.narrow(0, 0, L - 1)}, 0).reshape({-1, H});
  auto flat = dgates.reshape({-1, 4 * H});
  auto dw_hh = torch::mm(h_prev.t(), flat), dw_in = torch::mm(inputs.reshape({-1, AP}).t(), flat);
  auto dw_q = torch::mm(dproj.reshape({-1, A}).t(), q_prev);
  auto d_memory = torch::bmm(tape_alpha.transpose(1, 2), tape_d_mu)
                      .add_(torch::bmm(tape_d_scores.transpose(1, 2), tape_query));
  auto g = acc.total().split_with_sizes({4 * H, 4 * H, H, H});
  return {dgates, dgates.sum(0), dh0, dc, dq0, dw_hh, dw_in.narrow(0, 0, A),
          dw_in.narrow(0, A, AP - A), dw_q, g[0], g[1], g[2], g[3], d_memory};
}

// ---------------------------------------------------------------------------------------------
// Drawing points from decoder outputs (eq. 7-8), the loops of `mixture.sample_points` (its NumPy
// code is the reference): for each row of y (B, 3 + 6m), with four uniforms per row (B, 4), the
// component k by the inverse CDF of u0 over the mixture weights at logits / soft, the pen state by
// u1 likewise, and the offset from component k with sigmas scaled by sqrt(tau) and two standard
// normals by Box-Muller of u2 and u3. Returns stroke-5 points (B, 5).

// The first index whose cumulative softmax weight exceeds u (n = 0..count - 1, clamped).
inline int64_t inverse_cdf(const float* logits, int64_t count, float soft, float u) {
  float top = std::numeric_limits<float>::lowest();
  for (int64_t i = 0; i < count; ++i) top = std::max(top, logits[i] / soft);
  float total = 0.0f;
  for (int64_t i = 0; i < count; ++i) total += std::exp(logits[i] / soft - top);
  const float target = u * total;
  float cumulative = 0.0f;
  int64_t below = 0;
  for (int64_t i = 0; i < count; ++i) {
    cumulative += std::exp(logits[i] / soft - top);
    below += cumulative < target;
  }
  return std::min(below, count - 1);
}

Tensor sample_points(const Tensor& y, const Tensor& uniform, int64_t m, double tau, double soft,
                     double log_sigma_min, double log_sigma_max, double rho_max) {
  TORCH_CHECK(y.is_contiguous() && uniform.is_contiguous() && y.size(1) == 3 + 6 * m &&
                  uniform.size(0) == y.size(0) && uniform.size(1) == 4,
              "fused sampling: y (B, 3 + 6m) and uniforms (B, 4), contiguous");
  const int64_t B = y.size(0), O = y.size(1);
  auto points = torch::zeros({B, 5}, y.options());
  const float temper = static_cast<float>(soft), root_tau = std::sqrt(static_cast<float>(tau));
  const float lo = log_sigma_min, hi = log_sigma_max, rho_bound = rho_max;
  for (int64_t b = 0; b < B; ++b) {
    const float *out = ptr(y) + b * O, *u = ptr(uniform) + b * 4;
    float* point = ptr(points) + b * 5;
    const int64_t k = inverse_cdf(out + 3, m, temper, u[0]);
    const int64_t pen = inverse_cdf(out, 3, temper, u[1]);
    const float* q = out + 3 + m + k;  // mu_x, mu_y, log sigma_x, log sigma_y, rho at stride m
    const float sx = std::exp(std::min(std::max(q[2 * m], lo), hi)) * root_tau;
    const float sy = std::exp(std::min(std::max(q[3 * m], lo), hi)) * root_tau;
    const float rho = std::min(std::max(std::tanh(q[4 * m]), -rho_bound), rho_bound);
    const float radius = std::sqrt(-2.0f * std::log1p(-u[2]));
    const float angle = 2.0f * static_cast<float>(M_PI) * u[3];
    const float e1 = radius * std::cos(angle), e2 = radius * std::sin(angle);
    point[0] = q[0] + sx * e1;
    point[1] = q[m] + sy * (rho * e1 + std::sqrt(1.0f - rho * rho) * e2);
    point[2 + pen] = 1.0f;
  }
  return points;
}

}  // namespace

// The autoencoder's convolutions, in conv.cpp.
Tensor conv_down(const Tensor& y, const Tensor& m, const Tensor& bias);
Tensor conv_up(const Tensor& z, const Tensor& mt, const Tensor& bias);
Tensor conv_same(const Tensor& y, const Tensor& m, const Tensor& bias, bool adjoint);
std::vector<Tensor> conv_weight_grad(const Tensor& y, const Tensor& z, bool same, int64_t bias_of);
std::vector<std::pair<int64_t, int64_t>> conv_pairs();

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("ln_forward", &ln_forward);
  m.def("ln_backward", &ln_backward);
  m.def("lstm_forward", &lstm_forward);
  m.def("lstm_backward", &lstm_backward);
  m.def("ln_sequence_forward", &ln_sequence_forward);
  m.def("ln_sequence_backward", &ln_sequence_backward);
  m.def("lstm_sequence_forward", &lstm_sequence_forward);
  m.def("lstm_sequence_backward", &lstm_sequence_backward);
  py::class_<DrawWeights>(m, "DrawWeights").def(py::init<const py::object&>());
  m.def("ln_draw_step", &ln_draw_step);
  m.def("influence_forward", &influence_forward);
  m.def("influence_backward", &influence_backward);
  m.def("ln_influence_forward", &ln_influence_forward);
  m.def("ln_influence_backward", &ln_influence_backward);
  m.def("sample_points", &sample_points);
  m.def("conv_down", &conv_down);
  m.def("conv_up", &conv_up);
  m.def("conv_same", &conv_same);
  m.def("conv_weight_grad", &conv_weight_grad);
  m.def("conv_pairs", &conv_pairs);
}
