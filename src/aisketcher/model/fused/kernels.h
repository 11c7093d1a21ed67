// The fused kernels' shared parts: the row helpers every kernel uses (layer norm moments, the
// gate activations, the cell update, per-thread gradient accumulators), the layer-normalised
// cell's rows forward and backward, one row of the influence layer, and the declarations of the
// kernels that module.cpp binds. The kernels: cells.cpp (the LSTM cells, a step and a sequence),
// influence.cpp (the influence layer's training step and the default decoder's sequence),
// draw.cpp (a whole drawing step, and drawing points); conv.cpp (the autoencoder's convolutions).
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
// The helpers have internal linkage: each source compiles its own copy, as when they were one file.

#pragma once

#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
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

}  // namespace

namespace aisketcher_fused {

using torch::Tensor;

// A layer-normalised LSTM cell as the drawing step takes it, read by field name from an `LnCell`
// (aisketcher/model/fused/decoder.py): the input weights of the inputs the step adds itself
// (I, 4H), the recurrent weights (H, 4H) and the norms (an `LnNorms`).
struct LnCell {
  Tensor w_in, w_hh, gain, shift, cgain, cbias;
  double eps;
};

// The drawing step's weights, read by field name from a `DrawWeights` once per drawing (draw.cpp):
// the decoder's cell (its `w_in`: the rows of s_j in its input weights, 5 x 4H), the rows of a_d
// (n_a, 4H) and the influence layer's W (n_a, H); the encoder's forward cell that makes the
// memory (its `w_in`: 5 x 4E); the output layer (O, H), (O).
struct DrawWeights {
  LnCell decoder;
  Tensor w_a, w_query;
  LnCell memory;
  Tensor w_out, b_out;

  explicit DrawWeights(const py::object& w);
};

using CellState = std::pair<Tensor, Tensor>;  // (h, c)

// The kernels, each documented where it is defined.
std::vector<Tensor> ln_forward(const Tensor& gates, const Tensor& c, const Tensor& gain,
                               const Tensor& shift, const Tensor& cgain, const Tensor& cbias,
                               const Tensor& mask, double eps, bool keep);
std::vector<Tensor> ln_backward(const Tensor& dh, const Tensor& dc, const Tensor& c,
                                const Tensor& gain, const Tensor& cgain, const Tensor& mask,
                                const Tensor& normed, const Tensor& act, const Tensor& rstd,
                                const Tensor& chat, const Tensor& tnc);
std::vector<Tensor> lstm_forward(const Tensor& gates, const Tensor& c, const Tensor& mask,
                                 double forget_bias);
std::vector<Tensor> lstm_backward(const Tensor& dh, const Tensor& dc, const Tensor& c,
                                  const Tensor& mask, const Tensor& act, const Tensor& tc);
std::vector<Tensor> ln_sequence_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0,
                                        const Tensor& w_hh, const Tensor& gain,
                                        const Tensor& shift, const Tensor& cgain,
                                        const Tensor& cbias, const Tensor& masks, double eps);
std::vector<Tensor> ln_sequence_backward(const Tensor& dhs, const Tensor& dc_last,
                                         const Tensor& h0, const Tensor& w_hh, const Tensor& gain,
                                         const Tensor& cgain, const Tensor& masks,
                                         const Tensor& hs, const Tensor& cs, const Tensor& normed,
                                         const Tensor& act, const Tensor& rstd,
                                         const Tensor& chat, const Tensor& tnc);
std::vector<Tensor> lstm_sequence_forward(const Tensor& xp, const Tensor& h0, const Tensor& c0,
                                          const Tensor& w_hh, const Tensor& masks,
                                          double forget_bias);
std::vector<Tensor> lstm_sequence_backward(const Tensor& dhs, const Tensor& dc_last,
                                           const Tensor& h0, const Tensor& w_hh,
                                           const Tensor& masks, const Tensor& hs,
                                           const Tensor& cs, const Tensor& act, const Tensor& tc);
std::vector<Tensor> ln_draw_step(const DrawWeights& w, const Tensor& point_in,
                                 const Tensor& context, const CellState& rnn,
                                 const Tensor& query_in, const CellState& memory_rnn,
                                 const Tensor& memory, int64_t step, const Tensor& noise_in);
std::vector<Tensor> influence_forward(const Tensor& query, const Tensor& memory,
                                      const Tensor& limit, const Tensor& noise);
Tensor influence_backward(const Tensor& d_a, const Tensor& d_mu, const Tensor& d_lv,
                          const Tensor& memory, const Tensor& limit, const Tensor& noise,
                          const Tensor& log_var, const Tensor& alpha, const Tensor& tape_alpha,
                          const Tensor& tape_d_scores, const Tensor& tape_d_mu,
                          const Tensor& tape_query, const Tensor& query, int64_t step);
std::vector<Tensor> ln_influence_forward(
    const Tensor& context, const Tensor& points, const Tensor& h0, const Tensor& c0,
    const Tensor& q0, const Tensor& w_hh, const Tensor& w_a, const Tensor& w_s, const Tensor& w_q,
    const Tensor& gain, const Tensor& shift, const Tensor& cgain, const Tensor& cbias,
    const Tensor& masks, const Tensor& memory, const Tensor& limits, const Tensor& noise,
    double eps);
std::vector<Tensor> ln_influence_backward(
    const Tensor& dhs, const Tensor& d_mu, const Tensor& d_lv, const Tensor& h0, const Tensor& q0,
    const Tensor& w_hh, const Tensor& w_a, const Tensor& w_q, const Tensor& gain,
    const Tensor& cgain, const Tensor& masks, const Tensor& memory, const Tensor& limits,
    const Tensor& noise, const Tensor& hs, const Tensor& cs, const Tensor& lv,
    const Tensor& inputs, const Tensor& alpha, const Tensor& proj, const Tensor& normed,
    const Tensor& act, const Tensor& rstd, const Tensor& chat, const Tensor& tnc);
Tensor sample_points(const Tensor& y, const Tensor& uniform, int64_t m, double tau, double soft,
                     double pen_soft, double log_sigma_min, double log_sigma_max, double rho_max);

}  // namespace aisketcher_fused
