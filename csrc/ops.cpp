// Operator schemas of the `pyhash` namespace and the Python module `pyhash._C`.
#include <torch/extension.h>
#include <torch/library.h>

#include "cpu/popcount.h"

#ifndef PYHASH_VERSION
#define PYHASH_VERSION "unknown"
#endif

TORCH_LIBRARY(pyhash, m) {
  m.def("hamming_distance(Tensor a, Tensor b) -> Tensor");
  m.def("hamming_knn(Tensor queries, Tensor database, int k) -> (Tensor, Tensor)");
  m.def(
      "hamming_range(Tensor queries, Tensor database, int max_distance) -> (Tensor, Tensor, "
      "Tensor)");
  // Fused exponentiated pairwise hashing loss (docs/loss.md). Returns (loss, grad_z, grad_y);
  // the gradients are empty tensors unless compute_grad (grad_y also when y is None).
  m.def(
      "exp_pair_loss(Tensor z, Tensor labels, Tensor? y, Tensor? y_labels, float lam, float beta, "
      "float clamp, str surrogate, str weighting, bool y_is_codes, bool compute_grad) -> (Tensor, "
      "Tensor, Tensor)");
  // Retrieval statistics (pyhash.metrics): per-query histograms over distance of all and of
  // relevant database items, and, with ties broken by database position, the sum of precisions
  // at the ranks of the relevant items within topk and how many relevant items are within topk.
  m.def(
      "hamming_retrieval_stats(Tensor queries, Tensor database, Tensor query_labels, Tensor "
      "database_labels, int topk) -> (Tensor, Tensor, Tensor, Tensor)");
}

namespace {

pybind11::dict build_info() {
  pybind11::dict info;
  info["version"] = PYHASH_VERSION;
  info["torch_version"] = PYHASH_TORCH_VERSION;
  info["cuda_version"] = PYHASH_BUILT_CUDA_VERSION;
  info["cuda_arch_list"] = PYHASH_CUDA_ARCH_LIST;
#ifdef PYHASH_WITH_CUDA
  info["with_cuda"] = true;
#else
  info["with_cuda"] = false;
#endif
  info["cpu_isa_best"] = pyhash::cpu::isa_name(pyhash::cpu::best_supported_isa());
  return info;
}

std::string cpu_isa() { return pyhash::cpu::isa_name(pyhash::cpu::active_isa()); }

void set_cpu_isa(const std::string& name) {
  using pyhash::cpu::Isa;
  Isa isa;
  if (name == "scalar") {
    isa = Isa::Scalar;
  } else if (name == "avx2") {
    isa = Isa::Avx2;
  } else if (name == "avx512_vpopcntdq" || name == "avx512") {
    isa = Isa::Avx512;
  } else if (name == "amx_int8" || name == "amx") {
    isa = Isa::Amx;
  } else {
    throw std::invalid_argument("unknown CPU ISA '" + name +
                                "'; expected 'scalar', 'avx2', 'avx512_vpopcntdq' or 'amx_int8'");
  }
  if (!pyhash::cpu::set_isa(isa))
    throw std::invalid_argument("this CPU does not support '" + name + "'");
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "pyhash compiled kernels (ops are registered under torch.ops.pyhash)";
  module.def("build_info", &build_info, "How this extension was built.");
  module.def("cpu_isa", &cpu_isa, "The popcount instruction set the CPU kernels use now.");
  module.def("set_cpu_isa", &set_cpu_isa,
             "Force an instruction set ('scalar', 'avx2', 'avx512_vpopcntdq', 'amx_int8').");
}
