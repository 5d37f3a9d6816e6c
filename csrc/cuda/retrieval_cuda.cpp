// Torch glue of the CUDA retrieval statistics.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cuda/retrieval_kernels.h"
#include "retrieval_common.h"

namespace pyhash {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> hamming_retrieval_stats_cuda(
    const at::Tensor& queries, const at::Tensor& database, const at::Tensor& query_labels,
    const at::Tensor& database_labels, int64_t topk) {
  check_retrieval_inputs(queries, database, query_labels, database_labels, topk);
  const c10::cuda::CUDAGuard guard(queries.device());
  const int64_t nq = queries.size(0), nd = database.size(0), nbits = queries.size(1) * 8;
  const auto long_opts = queries.options().dtype(at::kLong);
  at::Tensor total = at::zeros({nq, nbits + 1}, long_opts);
  at::Tensor relevant = at::zeros({nq, nbits + 1}, long_opts);
  at::Tensor precision_sum = at::zeros({nq}, queries.options().dtype(at::kDouble));
  at::Tensor hits = at::zeros({nq}, long_opts);
  if (nq == 0 || nd == 0) return {total, relevant, precision_sum, hits};
  const at::Tensor qw = as_word_rows(queries), dw = as_word_rows(database);
  const at::Tensor ql = query_labels.contiguous(), dl = database_labels.contiguous();
  const bool ok = cuda::retrieval_stats(
      reinterpret_cast<const uint64_t*>(qw.data_ptr<uint8_t>()),
      reinterpret_cast<const uint64_t*>(dw.data_ptr<uint8_t>()), ql.data_ptr<int64_t>(),
      dl.data_ptr<int64_t>(), nq, nd, qw.size(1) / 8, nbits, ql.dim() == 2 ? ql.size(1) : 0, topk,
      total.data_ptr<int64_t>(), relevant.data_ptr<int64_t>(), precision_sum.data_ptr<double>(),
      hits.data_ptr<int64_t>(), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(ok, "retrieval statistics on CUDA support up to about 3200 bits, got ", nbits);
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, "pyhash CUDA retrieval kernel failed: ", cudaGetErrorString(err));
  return {total, relevant, precision_sum, hits};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyhash, CUDA, m) { m.impl("hamming_retrieval_stats", &hamming_retrieval_stats_cuda); }

}  // namespace pyhash
