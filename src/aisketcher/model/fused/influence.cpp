// The influence layer (eq. 9-11) in training: its step on its own, and the default decoder's whole
// teacher-forced sequence (the layer and the layer-normalised cell) in one call each way.

#include "kernels.h"

namespace {

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

}  // namespace

namespace aisketcher_fused {

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

}  // namespace aisketcher_fused
