// Drawing: one whole decoder step of the default model (layer-normalised cells, the "drawn"
// influence memory, sigma_a = exp(tanh(mu_a) / 2)) for a few rows, without autograd; and drawing
// the points from the decoder's outputs.

#include "kernels.h"

namespace {

using aisketcher_fused::LnCell;

// At batch 1 a drawing step is some 30 tensor operations of a few microseconds each around the
// weights; here it is plain loops over those weights, each row's vectors staying in the L1 cache.

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

LnView cell_view(const LnCell& cell) {
  return ln_view(cell.gain, cell.shift, cell.cgain, cell.cbias, cell.eps);
}

Tensor field(const py::handle& structure, const char* name) {
  return structure.attr(name).cast<Tensor>();
}

LnCell ln_cell(const py::handle& cell) {
  const py::object norms = cell.attr("norms");
  return {field(cell, "w_in"),      field(cell, "w_hh"),       field(norms, "gain"),
          field(norms, "shift"),    field(norms, "cell_gain"), field(norms, "cell_bias"),
          norms.attr("eps").cast<double>()};
}

// ---------------------------------------------------------------------------------------------
// Drawing points from decoder outputs (eq. 7-8), the loops of `mixture.sample_points` (its NumPy
// code is the reference): for each row of y (B, 3 + 6m), with four uniforms per row (B, 4), the
// component k by the inverse CDF of u0 over the mixture weights at logits / soft, the pen state by
// u1 likewise at logits / pen_soft, and the offset from component k with sigmas scaled by
// sqrt(tau) and two standard normals by Box-Muller of u2 and u3. Returns stroke-5 points (B, 5).

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

}  // namespace

namespace aisketcher_fused {

DrawWeights::DrawWeights(const py::object& w) {
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
  const auto dec = cell_view(w.decoder), enc = cell_view(w.memory);
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

Tensor sample_points(const Tensor& y, const Tensor& uniform, int64_t m, double tau, double soft,
                     double pen_soft, double log_sigma_min, double log_sigma_max, double rho_max) {
  TORCH_CHECK(y.is_contiguous() && uniform.is_contiguous() && y.size(1) == 3 + 6 * m &&
                  uniform.size(0) == y.size(0) && uniform.size(1) == 4,
              "fused sampling: y (B, 3 + 6m) and uniforms (B, 4), contiguous");
  const int64_t B = y.size(0), O = y.size(1);
  auto points = torch::zeros({B, 5}, y.options());
  const float temper = static_cast<float>(soft), pen_temper = static_cast<float>(pen_soft);
  const float root_tau = std::sqrt(static_cast<float>(tau));
  const float lo = log_sigma_min, hi = log_sigma_max, rho_bound = rho_max;
  for (int64_t b = 0; b < B; ++b) {
    const float *out = ptr(y) + b * O, *u = ptr(uniform) + b * 4;
    float* point = ptr(points) + b * 5;
    const int64_t k = inverse_cdf(out + 3, m, temper, u[0]);
    const int64_t pen = inverse_cdf(out, 3, pen_temper, u[1]);
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

}  // namespace aisketcher_fused
