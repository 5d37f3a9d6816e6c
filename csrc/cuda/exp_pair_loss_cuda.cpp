// Torch glue of the CUDA fused loss: preparation (shared with the CPU path), pair counts, the
// row-side kernel run once for dL/du and once with u and v swapped for dL/dv.
//
// Two row-side kernels: the SIMT one (any float type and width) and the tensor-core one
// (float32, sm_80+, up to 128 bits). PYHASH_CUDA_LOSS=tensor selects the latter where it applies;
// the default is simt until the tensor-core kernel has been checked on a GPU
// (docs/performance.md).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>

#include "cuda/exp_pair_loss_kernels.h"
#include "loss_common.h"

namespace pyhash {
namespace {

void check_launch() {
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, "pyhash CUDA loss kernel failed: ", cudaGetErrorString(err));
}

// Whether PYHASH_CUDA_LOSS asks for the tensor-core kernel ("simt", the default, or "tensor").
bool tensor_cores_requested() {
  const char* choice = std::getenv("PYHASH_CUDA_LOSS");
  if (choice == nullptr || *choice == '\0' || std::strcmp(choice, "simt") == 0) return false;
  TORCH_CHECK(std::strcmp(choice, "tensor") == 0, "PYHASH_CUDA_LOSS must be 'simt' or 'tensor', got '",
              choice, "'");
  return true;
}

// An attribute of the current CUDA device (cudaDevAttrComputeCapabilityMajor, ...).
int device_attribute(cudaDeviceAttr attribute) {
  int device = 0, value = 0;
  TORCH_CHECK(cudaGetDevice(&device) == cudaSuccess && cudaDeviceGetAttribute(&value, attribute, device) == cudaSuccess,
              "pyhash: cannot query the CUDA device");
  return value;
}

bool use_tensor_cores(const LossInputs& in) {
  if (!tensor_cores_requested() || in.u.scalar_type() != at::kFloat) return false;
  if (in.u.size(1) > cuda::kTensorCoreMaxBits) return false;
  return device_attribute(cudaDevAttrComputeCapabilityMajor) >= 8;
}

// Row side on tensor cores: dL/du (when wanted) and the loss partial sums (when wanted).
at::Tensor loss_rows_tensor_cores(const at::Tensor& u, const at::Tensor& v, const at::Tensor& labels_u,
                                  const at::Tensor& labels_v, int64_t words,
                                  const cuda::LossKernelConstants& kc, bool want_grad,
                                  at::Tensor* loss_partials, cudaStream_t stream) {
  const int64_t n = u.size(0), m = v.size(0), nbits = u.size(1);
  const int64_t blocks = 4 * static_cast<int64_t>(device_attribute(cudaDevAttrMultiProcessorCount));
  const int64_t splits = cuda::loss_rows_tc_splits(n, m, blocks);
  at::Tensor partial = want_grad ? at::empty({splits, n, nbits}, u.options()) : at::Tensor();
  if (loss_partials != nullptr)
    *loss_partials = at::zeros({splits * cuda::loss_rows_tc_row_tiles(n)}, u.options().dtype(at::kDouble));
  cuda::loss_rows_tc(u.data_ptr<float>(), v.data_ptr<float>(), labels_u.data_ptr<int64_t>(),
                     labels_v.data_ptr<int64_t>(), n, m, nbits, words, kc, splits,
                     want_grad ? partial.data_ptr<float>() : nullptr,
                     loss_partials != nullptr ? loss_partials->data_ptr<double>() : nullptr, stream);
  check_launch();
  if (!want_grad) return at::Tensor();
  return splits == 1 ? partial[0] : partial.sum(0);
}

// Both sides on the SIMT kernel (float32 or float64): the loss partial sums, dL/du and (in the
// asymmetric form) dL/dv when compute_grad.
void loss_simt(const LossInputs& in, int64_t words, const cuda::LossKernelConstants& kc, bool compute_grad,
               at::Tensor* partials, at::Tensor* grad_u, at::Tensor* grad_v, cudaStream_t stream) {
  const int64_t n = in.u.size(0), m = in.v.size(0), nbits = in.u.size(1);
  *partials = at::zeros({std::max<int64_t>(1, cuda::loss_row_blocks(n, nbits, in.u.element_size()))},
                        in.u.options().dtype(at::kDouble));
  if (compute_grad) *grad_u = at::empty_like(in.u);
  if (compute_grad && !in.symmetric) *grad_v = at::empty_like(in.v);
  AT_DISPATCH_FLOATING_TYPES(in.u.scalar_type(), "exp_pair_loss_cuda", [&] {
    cuda::loss_rows<scalar_t>(in.u.data_ptr<scalar_t>(), in.v.data_ptr<scalar_t>(),
                              in.labels_u.data_ptr<int64_t>(), in.labels_v.data_ptr<int64_t>(), n,
                              m, nbits, words, kc,
                              compute_grad ? grad_u->data_ptr<scalar_t>() : nullptr,
                              partials->data_ptr<double>(), stream);
    check_launch();
    if (compute_grad && !in.symmetric) {
      cuda::loss_rows<scalar_t>(in.v.data_ptr<scalar_t>(), in.u.data_ptr<scalar_t>(),
                                in.labels_v.data_ptr<int64_t>(), in.labels_u.data_ptr<int64_t>(),
                                m, n, nbits, words, kc, grad_v->data_ptr<scalar_t>(), nullptr, stream);
      check_launch();
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> exp_pair_loss_cuda(
    const at::Tensor& z, const at::Tensor& labels, const c10::optional<at::Tensor>& y,
    const c10::optional<at::Tensor>& y_labels, double lam, double beta, double clamp,
    c10::string_view surrogate, c10::string_view weighting, bool y_is_codes, bool compute_grad) {
  const c10::cuda::CUDAGuard guard(z.device());
  const LossSetup setup =
      setup_loss(z, labels, y, y_labels, lam, beta, clamp, surrogate, weighting, y_is_codes);
  const LossInputs& in = setup.inputs;
  const int64_t n = in.u.size(0), m = in.v.size(0), nbits = in.u.size(1);
  const int64_t words = in.multilabel ? in.labels_u.size(1) : 0;
  const bool tensor_cores = use_tensor_cores(in);
  TORCH_CHECK(tensor_cores || cuda::loss_rows_supported(nbits, in.u.element_size()), "exp_pair_loss on CUDA supports up to ",
              "about 2000 bits (1000 in float64); got ", nbits);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t pairs = setup.pairs;

  int64_t similar = 0;
  if (setup.weighting == Weighting::Balanced && pairs > 0) {
    at::Tensor count = at::zeros({1}, in.u.options().dtype(at::kLong));
    cuda::count_similar_pairs(in.labels_u.data_ptr<int64_t>(), in.labels_v.data_ptr<int64_t>(), n,
                              m, words, in.symmetric,
                              reinterpret_cast<unsigned long long*>(count.data_ptr<int64_t>()), stream);
    check_launch();
    similar = count.item<int64_t>();
  }
  const PairConstants pc = pair_constants(pairs, similar, lam, clamp, setup.surrogate, setup.weighting,
                                          in.symmetric, nbits);
  const cuda::LossKernelConstants kc{pc.lam, pc.clamp, pc.weight_similar, pc.weight_dissimilar,
                                     pc.clamped, pc.symmetric};

  at::Tensor partials, grad_u, grad_v;
  if (tensor_cores) {
    grad_u = loss_rows_tensor_cores(in.u, in.v, in.labels_u, in.labels_v, words, kc, compute_grad, &partials, stream);
    if (compute_grad && !in.symmetric)
      grad_v = loss_rows_tensor_cores(in.v, in.u, in.labels_v, in.labels_u, words, kc, true, nullptr, stream);
  } else {
    loss_simt(in, words, kc, compute_grad, &partials, &grad_u, &grad_v, stream);
  }

  at::Tensor loss = partials.sum().to(z.scalar_type());
  // Symmetric form: the coefficients are symmetric, so the column side equals the row side.
  if (compute_grad && in.symmetric) grad_u = grad_u * 2;
  auto grads = finish_gradients(grad_u, grad_v, z, y, beta, setup.surrogate, y_is_codes);
  return {loss, std::get<0>(grads), std::get<1>(grads)};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyhash, CUDA, m) { m.impl("exp_pair_loss", &exp_pair_loss_cuda); }

}  // namespace pyhash
