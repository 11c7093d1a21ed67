// The Python module of the fused kernels (aisketcher/model/fused/__init__.py builds it from the
// sources listed there): one binding per kernel.

#include "kernels.h"

using namespace aisketcher_fused;

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
