// Torch glue of the CUDA fused loss: preparation (shared with the CPU path), pair counts, the
// row-side kernel run once for dL/du and once with u and v swapped for dL/dv.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cuda/exp_pair_loss_kernels.h"
#include "loss_common.h"

namespace pyhash {
namespace {

void check_launch() {
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, "pyhash CUDA loss kernel failed: ", cudaGetErrorString(err));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> exp_pair_loss_cuda(
    const at::Tensor& z, const at::Tensor& labels, const c10::optional<at::Tensor>& y,
    const c10::optional<at::Tensor>& y_labels, double lam, double beta, double clamp,
    c10::string_view surrogate, c10::string_view weighting, bool y_is_codes, bool compute_grad) {
  const c10::cuda::CUDAGuard guard(z.device());
  const LossSetup setup =
      setup_loss(z, labels, y, y_labels, beta, clamp, surrogate, weighting, y_is_codes);
  const LossInputs& in = setup.inputs;
  const int64_t n = in.u.size(0), m = in.v.size(0), nbits = in.u.size(1);
  const int64_t words = in.multilabel ? in.labels_u.size(1) : 0;
  const int64_t element = in.u.element_size();
  TORCH_CHECK(cuda::loss_rows_supported(nbits, element), "exp_pair_loss on CUDA supports up to ",
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

  at::Tensor partials = at::zeros({std::max<int64_t>(1, cuda::loss_row_blocks(n, nbits, element))},
                                  in.u.options().dtype(at::kDouble));
  at::Tensor grad_u = compute_grad ? at::empty_like(in.u) : at::Tensor();
  at::Tensor grad_v = (compute_grad && !in.symmetric) ? at::empty_like(in.v) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(in.u.scalar_type(), "exp_pair_loss_cuda", [&] {
    cuda::loss_rows<scalar_t>(in.u.data_ptr<scalar_t>(), in.v.data_ptr<scalar_t>(),
                              in.labels_u.data_ptr<int64_t>(), in.labels_v.data_ptr<int64_t>(), n,
                              m, nbits, words, kc,
                              compute_grad ? grad_u.data_ptr<scalar_t>() : nullptr,
                              partials.data_ptr<double>(), stream);
    check_launch();
    if (compute_grad && !in.symmetric) {
      cuda::loss_rows<scalar_t>(in.v.data_ptr<scalar_t>(), in.u.data_ptr<scalar_t>(),
                                in.labels_v.data_ptr<int64_t>(), in.labels_u.data_ptr<int64_t>(),
                                m, n, nbits, words, kc, grad_v.data_ptr<scalar_t>(), nullptr, stream);
      check_launch();
    }
  });

  at::Tensor loss = partials.sum().to(z.scalar_type());
  // Symmetric form: the coefficients are symmetric, so the column side equals the row side.
  if (compute_grad && in.symmetric) grad_u = grad_u * 2;
  auto grads = finish_gradients(grad_u, grad_v, z, y, beta, setup.surrogate, y_is_codes);
  return {loss, std::get<0>(grads), std::get<1>(grads)};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyhash, CUDA, m) { m.impl("exp_pair_loss", &exp_pair_loss_cuda); }

}  // namespace pyhash
