// Torch glue for the CUDA Hamming kernels: checks, allocation, prefix sums and the final sort.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <climits>

#include "cuda/hamming_kernels.h"
#include "hamming_common.h"

namespace pyhash {
namespace {

const uint64_t* words_ptr(const at::Tensor& t) {
  return reinterpret_cast<const uint64_t*>(t.data_ptr<uint8_t>());
}

void check_launch() {
  const cudaError_t err = cudaGetLastError();
  TORCH_CHECK(err == cudaSuccess, "pyhash CUDA kernel failed: ", cudaGetErrorString(err));
}

at::Tensor exclusive_cumsum_rows(const at::Tensor& counts) {
  at::Tensor inclusive = at::cumsum(counts, 1, at::kLong);
  return inclusive - counts.to(at::kLong);
}

at::Tensor hamming_distance_cuda(const at::Tensor& a, const at::Tensor& b) {
  check_pair(a, b);
  const c10::cuda::CUDAGuard guard(a.device());
  const at::Tensor aw = as_word_rows(a), bw = as_word_rows(b);
  at::Tensor out = at::empty({a.size(0), b.size(0)}, a.options().dtype(at::kInt));
  cuda::hamming_distance(words_ptr(aw), words_ptr(bw), a.size(0), b.size(0), aw.size(1) / 8,
                         out.data_ptr<int32_t>(), c10::cuda::getCurrentCUDAStream().stream());
  check_launch();
  return out;
}

std::tuple<at::Tensor, at::Tensor> hamming_knn_cuda(const at::Tensor& queries,
                                                    const at::Tensor& database, int64_t k) {
  check_pair(queries, database);
  TORCH_CHECK(k >= 1, "k must be >= 1, got ", k);
  const c10::cuda::CUDAGuard guard(queries.device());
  const int64_t nq = queries.size(0), nd = database.size(0), nbits = queries.size(1) * 8;
  at::Tensor distances = at::full({nq, k}, INT32_MAX, queries.options().dtype(at::kInt));
  at::Tensor positions = at::full({nq, k}, -1, queries.options().dtype(at::kLong));
  if (nq == 0 || nd == 0) return {distances, positions};
  const at::Tensor qw = as_word_rows(queries), dw = as_word_rows(database);
  const int64_t nwords = qw.size(1) / 8;
  const int64_t kept = std::min(k, nd);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const auto long_opts = queries.options().dtype(at::kLong);

  at::Tensor hist = at::zeros({nq, nbits + 1}, long_opts);
  cuda::distance_histogram(words_ptr(qw), words_ptr(dw), nq, nd, nwords, nbits,
                           reinterpret_cast<unsigned long long*>(hist.data_ptr<int64_t>()), stream);
  check_launch();
  at::Tensor threshold = at::empty({nq}, queries.options().dtype(at::kInt));
  at::Tensor below = at::empty({nq}, long_opts), ties_wanted = at::empty({nq}, long_opts);
  cuda::knn_thresholds(reinterpret_cast<const unsigned long long*>(hist.data_ptr<int64_t>()), nq,
                       nbits, kept, threshold.data_ptr<int32_t>(), below.data_ptr<int64_t>(),
                       ties_wanted.data_ptr<int64_t>(), stream);
  check_launch();

  const cuda::Chunking chunking = cuda::choose_chunking(nq, nd);
  at::Tensor below_count = at::empty({nq, chunking.nchunks}, queries.options().dtype(at::kInt));
  at::Tensor at_count = at::empty_like(below_count);
  cuda::chunk_counts(words_ptr(qw), words_ptr(dw), nq, nd, nwords, threshold.data_ptr<int32_t>(),
                     chunking, below_count.data_ptr<int32_t>(), at_count.data_ptr<int32_t>(), stream);
  check_launch();
  const at::Tensor below_offset = exclusive_cumsum_rows(below_count);
  const at::Tensor at_offset = exclusive_cumsum_rows(at_count);
  const at::Tensor row_start = at::arange(nq, long_opts) * k;
  cuda::emit(words_ptr(qw), words_ptr(dw), nq, nd, nwords, threshold.data_ptr<int32_t>(), chunking,
             row_start.data_ptr<int64_t>(), below_offset.data_ptr<int64_t>(),
             below.data_ptr<int64_t>(), at_offset.data_ptr<int64_t>(),
             ties_wanted.data_ptr<int64_t>(), distances.data_ptr<int32_t>(),
             positions.data_ptr<int64_t>(), stream);
  check_launch();
  // Each row holds its codes below t in position order, then its ties in position order: a
  // stable sort by distance yields (distance, position) order.
  auto sorted = at::sort(distances, /*stable=*/true, /*dim=*/1, /*descending=*/false);
  return {std::get<0>(sorted), at::gather(positions, 1, std::get<1>(sorted))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hamming_range_cuda(const at::Tensor& queries,
                                                                  const at::Tensor& database,
                                                                  int64_t max_distance) {
  check_pair(queries, database);
  TORCH_CHECK(max_distance >= 0, "max_distance must be >= 0, got ", max_distance);
  const c10::cuda::CUDAGuard guard(queries.device());
  const int64_t nq = queries.size(0), nd = database.size(0), nbits = queries.size(1) * 8;
  const auto long_opts = queries.options().dtype(at::kLong);
  if (nq == 0 || nd == 0) {
    return {at::zeros({nq + 1}, long_opts), at::empty({0}, queries.options().dtype(at::kInt)),
            at::empty({0}, long_opts)};
  }
  const at::Tensor qw = as_word_rows(queries), dw = as_word_rows(database);
  const int64_t nwords = qw.size(1) / 8;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int32_t limit = static_cast<int32_t>(std::min(max_distance, nbits) + 1);
  at::Tensor threshold = at::full({nq}, limit, queries.options().dtype(at::kInt));

  const cuda::Chunking chunking = cuda::choose_chunking(nq, nd);
  at::Tensor below_count = at::empty({nq, chunking.nchunks}, queries.options().dtype(at::kInt));
  cuda::chunk_counts(words_ptr(qw), words_ptr(dw), nq, nd, nwords, threshold.data_ptr<int32_t>(),
                     chunking, below_count.data_ptr<int32_t>(), nullptr, stream);
  check_launch();
  const at::Tensor per_query = below_count.sum(1, /*keepdim=*/false, at::kLong);
  at::Tensor lims = at::zeros({nq + 1}, long_opts);
  lims.slice(0, 1).copy_(at::cumsum(per_query, 0));
  const int64_t total = lims[nq].item<int64_t>();
  at::Tensor distances = at::empty({total}, queries.options().dtype(at::kInt));
  at::Tensor positions = at::empty({total}, long_opts);
  if (total == 0) return {lims, distances, positions};
  const at::Tensor below_offset = exclusive_cumsum_rows(below_count);
  const at::Tensor row_start = lims.slice(0, 0, nq).contiguous();
  cuda::emit(words_ptr(qw), words_ptr(dw), nq, nd, nwords, threshold.data_ptr<int32_t>(), chunking,
             row_start.data_ptr<int64_t>(), below_offset.data_ptr<int64_t>(), nullptr, nullptr,
             nullptr, distances.data_ptr<int32_t>(), positions.data_ptr<int64_t>(), stream);
  check_launch();
  // Segments are in position order; a stable sort by (query, distance) orders each by distance.
  const at::Tensor query_of = at::repeat_interleave(at::arange(nq, long_opts), per_query);
  const at::Tensor key = query_of * (nbits + 2) + distances.to(at::kLong);
  const at::Tensor order = std::get<1>(at::sort(key, /*stable=*/true, /*dim=*/0, false));
  return {lims, distances.index_select(0, order), positions.index_select(0, order)};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyhash, CUDA, m) {
  m.impl("hamming_distance", &hamming_distance_cuda);
  m.impl("hamming_knn", &hamming_knn_cuda);
  m.impl("hamming_range", &hamming_range_cuda);
}

}  // namespace pyhash
