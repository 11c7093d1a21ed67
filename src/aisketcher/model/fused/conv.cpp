// The raster autoencoder's 2x2 convolutions on the CPU, channels-last float32 (B, H, W, C).
//
// With 1-8 channels a convolution is a few multiply-adds per value moved, so its cost is passes
// over memory and per-pixel overhead; these loops take the channel counts as template arguments
// (fully unrolled, vectorised over the output channels) and read each input once per output row.
// Weights come pre-arranged by the caller (aisketcher/model/fused/conv.py) as M[a][c][p][q],
// a 2x2 tap (a down, c across) mapping p input channels to q outputs; the three layer kinds of the
// paper's autoencoder reduce to three kernels and their adjoints:
//   stride 2:      z[b,i,j,q]     = sum_{a,c,p} y[b,2i+a,2j+c,p] M[a][c][p][q]   (down)
//   transposed:    y[b,2i+a,2j+c,p] = sum_q z[b,i,j,q] M[a][c][p][q]             (up)
//   stride 1 SAME: z[b,i,j,q]     = sum_{a,c,p} y[b,i+a,j+c,p] M[a][c][p][q], y = 0 past the
//                  bottom and right edges (TensorFlow's "SAME" for an even kernel)
// Each weight gradient is the sum over pixels of the outer products of the two sides.

#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <cstring>
#include <vector>

namespace {

using torch::Tensor;

// Q sums in one GCC vector (a register or a few): each input value is broadcast into one fused
// multiply-add per row of weights; compilers do not find this shape on their own at 1-8 channels.
template <int Q>
struct Lanes {
  typedef float type __attribute__((vector_size(sizeof(float) * Q)));
};
template <int Q>
using Vec = typename Lanes<Q>::type;

template <int Q>
inline Vec<Q> load(const float* p) {
  Vec<Q> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <int Q>
inline void store(float* p, Vec<Q> v) {
  std::memcpy(p, &v, sizeof v);
}

// sum + v[0..N) times the N rows of Q weights at m.
template <int N, int Q>
inline Vec<Q> accumulate(Vec<Q> sum, const float* v, const float* m) {
  for (int t = 0; t < N; ++t) sum += v[t] * load<Q>(m + t * Q);
  return sum;
}

template <int Q>
inline Vec<Q> start(const float* bias) {
  return bias ? load<Q>(bias) : Vec<Q>{};
}

// row(r) for every output row r = b * H + i, the rows split between threads.
template <typename Row>
void each_row(int64_t rows, const Row& row) {
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) row(r);
  });
}

// down: one output pixel from the 2x2 patch below-right of (2i, 2j) at stride 2; a patch's row
// is 2P contiguous values, so each tap row is one accumulate.
template <int P, int Q>
struct Down {
  static void run(const float* y, const float* m, const float* bias, float* z, int64_t B, int64_t H,
                  int64_t W) {
    const Vec<Q> first = start<Q>(bias);
    each_row(B * H, [&](int64_t r) {
      const int64_t b = r / H, i = r % H;
      const float* top = y + ((b * 2 * H + 2 * i) * 2 * W) * P;
      const float* bottom = top + 2 * W * P;
      float* out = z + r * W * Q;
      for (int64_t j = 0; j < W; ++j) {
        Vec<Q> acc = accumulate<2 * P, Q>(first, top + 2 * j * P, m);
        acc = accumulate<2 * P, Q>(acc, bottom + 2 * j * P, m + 2 * P * Q);
        store<Q>(out + j * Q, acc);
      }
    });
  }
};

// up: the 2x2 block of outputs (2i + a, 2j + c) from one input pixel (the adjoint of down); the
// weight comes as mt[q][a][c][p] so that each input channel adds one row of 4P outputs.
template <int P, int Q>
struct Up {
  static void run(const float* z, const float* mt, const float* bias, float* y, int64_t B,
                  int64_t H, int64_t W) {
    float biases[4 * P];
    for (int t = 0; t < 4 * P; ++t) biases[t] = bias ? bias[t % P] : 0.0f;
    const Vec<4 * P> first = load<4 * P>(biases);
    each_row(B * H, [&](int64_t r) {
      const int64_t b = r / H, i = r % H;
      const float* in = z + r * W * Q;
      float* top = y + ((b * 2 * H + 2 * i) * 2 * W) * P;
      float* bottom = top + 2 * W * P;
      for (int64_t j = 0; j < W; ++j) {
        float block[4 * P];
        store<4 * P>(block, accumulate<Q, 4 * P>(first, in + j * Q, mt));
        std::memcpy(top + 2 * j * P, block, sizeof(float) * 2 * P);
        std::memcpy(bottom + 2 * j * P, block + 2 * P, sizeof(float) * 2 * P);
      }
    });
  }
};

// Stride 1 SAME: z[i, j] from y[i..i+1, j..j+1] (zero past the edges). With `adjoint`, the
// gradient of y from that of z: y'[i, j] from z'[i-1..i, j-1..j]. Per tap row both read 2P
// contiguous values, or P at the one edge column: forward taps (a, 0), (a, 1) at columns j, j + 1;
// adjoint taps (a, 1), (a, 0) at j - 1, j, which the caller's weight holds in that order.
template <int P, int Q>
struct Same {
  static void run(const float* y, const float* m, const float* bias, float* z, int64_t B, int64_t H,
                  int64_t W, bool adjoint) {
    const Vec<Q> first = start<Q>(bias);
    const int64_t step = adjoint ? -1 : 1;
    each_row(B * H, [&](int64_t r) {
      const int64_t b = r / H, i = r % H;
      const float *rows[2], *taps[2];  // the tap rows a inside the image, and their weights
      int valid = 0;
      for (int a = 0; a < 2; ++a) {
        const int64_t row = i + step * a;
        if (row < 0 || row >= H) continue;
        rows[valid] = y + ((b * H + row) * W) * P;
        taps[valid++] = m + a * 2 * P * Q;
      }
      float* out = z + r * W * Q;
      const int64_t edge = adjoint ? 0 : W - 1;  // the column with one neighbour
      const int64_t shift = adjoint ? -1 : 0;    // where a pixel's 2P values start
      auto pixel = [&](int64_t j) {
        Vec<Q> acc = first;
        for (int k = 0; k < valid; ++k)
          acc = j == edge ? accumulate<P, Q>(acc, rows[k] + j * P, taps[k] + (adjoint ? P * Q : 0))
                          : accumulate<2 * P, Q>(acc, rows[k] + (j + shift) * P, taps[k]);
        store<Q>(out + j * Q, acc);
      };
      pixel(edge);
      const int64_t lo = adjoint ? 1 : 0, hi = adjoint ? W : W - 1;
      if (valid == 2) {  // the interior: both tap rows, no edge column
        const float *top = rows[0] + shift * P, *bottom = rows[1] + shift * P;
        for (int64_t j = lo; j < hi; ++j) {
          Vec<Q> acc = accumulate<2 * P, Q>(first, top + j * P, taps[0]);
          store<Q>(out + j * Q, accumulate<2 * P, Q>(acc, bottom + j * P, taps[1]));
        }
      } else {
        for (int64_t j = lo; j < hi; ++j) pixel(j);
      }
    });
  }
};

// Weight gradients: sum over pixels of y-side (P) times z-side (Q) at each tap, per thread in
// float over a row and in double across rows; also the bias gradient of the side `bias_of`.
template <int P, int Q>
std::vector<Tensor> weight_grad(const Tensor& y, const Tensor& z, bool same, int bias_of) {
  const int64_t B = z.size(0), H = z.size(1), W = z.size(2);
  const int64_t height = same ? H : 2 * H, width = same ? W : 2 * W, stride = same ? 1 : 2;
  const float* ys = y.data_ptr<float>();
  const float* zs = z.data_ptr<float>();
  constexpr int size = 4 * P * Q + P + Q;
  const int threads = at::get_num_threads();
  std::vector<double> total(static_cast<size_t>(threads) * size, 0.0);
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    double* mine = total.data() + at::get_thread_num() * size;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / H, i = r % H;
      const float* zr = zs + r * W * Q;
      Vec<Q> acc[4 * P] = {};  // [a][c][p], Q lanes
      for (int a = 0; a < 2; ++a) {
        const int64_t row = stride * i + a;
        if (row >= height) continue;  // SAME's bottom edge
        const float* base = ys + (b * height + row) * width * P;
        Vec<Q>* taps = acc + a * 2 * P;  // (a, 0) then (a, 1): the 2P values at stride * j
        const int64_t inner = same ? W - 1 : W;
        for (int64_t j = 0; j < inner; ++j) {
          const Vec<Q> zq = load<Q>(zr + j * Q);
          const float* v = base + stride * j * P;
          for (int t = 0; t < 2 * P; ++t) taps[t] += v[t] * zq;
        }
        if (same) {  // the right edge: no column j + 1
          const Vec<Q> zq = load<Q>(zr + (W - 1) * Q);
          const float* v = base + (W - 1) * P;
          for (int t = 0; t < P; ++t) taps[t] += v[t] * zq;
        }
        if (bias_of == 0)  // the y side's sum: rows stride * i + a cover every row once
          for (int64_t k = 0; k < width; ++k)
            for (int p = 0; p < P; ++p) mine[4 * P * Q + p] += base[k * P + p];
      }
      if (bias_of != 0) {
        Vec<Q> sz = {};
        for (int64_t j = 0; j < W; ++j) sz += load<Q>(zr + j * Q);
        for (int q = 0; q < Q; ++q) mine[4 * P * Q + P + q] += sz[q];
      }
      for (int k = 0; k < 4 * P; ++k)
        for (int q = 0; q < Q; ++q) mine[k * Q + q] += acc[k][q];
    }
  });
  const int n_bias = bias_of == 0 ? P : Q;
  auto grad = torch::zeros({2, 2, P, Q}, z.options().dtype(torch::kFloat64));
  auto bias = torch::zeros({n_bias}, grad.options());
  double* g = grad.data_ptr<double>();
  double* gb = bias.data_ptr<double>();
  for (int t = 0; t < threads; ++t) {
    const double* part = total.data() + t * size;
    for (int k = 0; k < 4 * P * Q; ++k) g[k] += part[k];
    const double* sums = part + 4 * P * Q + (bias_of == 0 ? 0 : P);
    for (int k = 0; k < n_bias; ++k) gb[k] += sums[k];
  }
  return {grad.to(torch::kFloat32), bias.to(torch::kFloat32)};
}

// Dispatch on the (P, Q) pairs the autoencoder's layers and their adjoints use (`conv_pairs`);
// others are refused, and the caller keeps PyTorch's convolution for them.
template <template <int, int> class F, typename... Args>
bool dispatch(int64_t p, int64_t q, Args&&... args) {
#define AISKETCHER_CASE(PP, QQ) \
  if (p == PP && q == QQ) return F<PP, QQ>::run(std::forward<Args>(args)...), true;
  AISKETCHER_CASE(1, 4) AISKETCHER_CASE(4, 4) AISKETCHER_CASE(4, 8) AISKETCHER_CASE(8, 8)
#undef AISKETCHER_CASE
  return false;
}

template <int P, int Q>
struct Grad {
  static void run(const Tensor& y, const Tensor& z, bool same, int bias_of,
                  std::vector<Tensor>& out) {
    out = weight_grad<P, Q>(y, z, same, bias_of);
  }
};

const float* opt(const Tensor& t) {
  return t.defined() && t.numel() ? t.data_ptr<float>() : nullptr;
}

// The loops index raw pointers, so every shape they rely on is checked first: a mismatch is an
// error here, never a read past a buffer.
void check_dense(const Tensor& t, const char* op, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous(), op,
              ": ", what, " must be a contiguous float32 CPU tensor");
}

// channels < 0: any count.
void check_image(const Tensor& t, int64_t channels, const char* op) {
  check_dense(t, op, "the image");
  TORCH_CHECK(t.dim() == 4, op, ": the image must be (B, H, W, C), got ", t.dim(), " dims");
  TORCH_CHECK(t.size(1) > 0 && t.size(2) > 0, op, ": the image is empty (", t.size(1), " x ",
              t.size(2), ")");
  TORCH_CHECK(channels < 0 || t.size(3) == channels, op, ": the image has ", t.size(3),
              " channels, the weight takes ", channels);
}

// Both layouts end in the output channels: Q for (2, 2, P, Q), P for up's (Q, 2, 2, P).
void check_weight(const Tensor& m, const Tensor& bias, bool rows, const char* op) {
  check_dense(m, op, "the weight");
  const bool shape = rows ? m.dim() == 4 && m.size(1) == 2 && m.size(2) == 2
                          : m.dim() == 4 && m.size(0) == 2 && m.size(1) == 2;
  TORCH_CHECK(shape, op, ": the weight must be ", rows ? "(Q, 2, 2, P)" : "(2, 2, P, Q)");
  const int64_t outputs = m.size(3);
  if (bias.defined() && bias.numel()) {
    check_dense(bias, op, "the bias");
    TORCH_CHECK(bias.numel() == outputs, op, ": ", bias.numel(), " biases for ", outputs,
                " output channels");
  }
}

}  // namespace

// z = down(y): y (B, 2H, 2W, P), m (2, 2, P, Q) -> (B, H, W, Q).
Tensor conv_down(const Tensor& y, const Tensor& m, const Tensor& bias) {
  check_weight(m, bias, false, "conv_down");
  check_image(y, m.size(2), "conv_down");
  TORCH_CHECK(y.size(1) % 2 == 0 && y.size(2) % 2 == 0, "conv_down: odd image size ", y.size(1),
              " x ", y.size(2));
  const int64_t B = y.size(0), H = y.size(1) / 2, W = y.size(2) / 2, Q = m.size(3);
  auto z = torch::empty({B, H, W, Q}, y.options());
  TORCH_CHECK(dispatch<Down>(m.size(2), Q, y.data_ptr<float>(), m.data_ptr<float>(), opt(bias),
                             z.data_ptr<float>(), B, H, W),
              "conv_down: unsupported channels");
  return z;
}

// y = up(z): z (B, H, W, Q), mt (Q, 2, 2, P) -> (B, 2H, 2W, P).
Tensor conv_up(const Tensor& z, const Tensor& mt, const Tensor& bias) {
  check_weight(mt, bias, true, "conv_up");
  check_image(z, mt.size(0), "conv_up");
  const int64_t B = z.size(0), H = z.size(1), W = z.size(2), P = mt.size(3);
  auto y = torch::empty({B, 2 * H, 2 * W, P}, z.options());
  TORCH_CHECK(dispatch<Up>(P, mt.size(0), z.data_ptr<float>(), mt.data_ptr<float>(), opt(bias),
                           y.data_ptr<float>(), B, H, W),
              "conv_up: unsupported channels");
  return y;
}

// Stride 1 SAME: y (B, H, W, P), m (2, 2, P, Q) -> (B, H, W, Q). With `adjoint` the taps read up
// and left instead (i - a, j - c): given the forward's weight with its channel axes swapped and its
// columns c reversed, this maps a gradient of the forward's output back to one of its input.
Tensor conv_same(const Tensor& y, const Tensor& m, const Tensor& bias, bool adjoint) {
  check_weight(m, bias, false, "conv_same");
  check_image(y, m.size(2), "conv_same");
  const int64_t B = y.size(0), H = y.size(1), W = y.size(2), Q = m.size(3);
  auto z = torch::empty({B, H, W, Q}, y.options());
  TORCH_CHECK(dispatch<Same>(m.size(2), Q, y.data_ptr<float>(), m.data_ptr<float>(), opt(bias),
                             z.data_ptr<float>(), B, H, W, adjoint),
              "conv_same: unsupported channels");
  return z;
}

// d m (2, 2, P, Q) and the bias gradient (of the y side if bias_of == 0, else the z side), for
// down/up (y at twice z's size) or SAME (same size).
std::vector<Tensor> conv_weight_grad(const Tensor& y, const Tensor& z, bool same, int64_t bias_of) {
  check_image(y, -1, "conv_weight_grad");
  check_image(z, -1, "conv_weight_grad");
  const int64_t scale = same ? 1 : 2;
  TORCH_CHECK(y.size(0) == z.size(0) && y.size(1) == scale * z.size(1) &&
                  y.size(2) == scale * z.size(2),
              "conv_weight_grad: the two sides' sizes do not match");
  std::vector<Tensor> out;
  TORCH_CHECK(dispatch<Grad>(y.size(3), z.size(3), y, z, same, static_cast<int>(bias_of), out),
              "conv_weight_grad: unsupported channels");
  return out;
}

std::vector<std::pair<int64_t, int64_t>> conv_pairs() { return {{1, 4}, {4, 4}, {4, 8}, {8, 8}}; }
