// Torch glue for the CUDA Hamming kernels: checks, allocation, prefix sums and the final sort.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <climits>
#include <vector>

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

// Per query: the smallest t with at least `kept` codes of database[0, nd) at distance <= t.
at::Tensor knn_threshold(const at::Tensor& qw, const at::Tensor& dw, int64_t nd, int64_t kept,
                         at::Tensor* below, at::Tensor* ties_wanted, cudaStream_t stream) {
  const int64_t nq = qw.size(0), nwords = qw.size(1) / 8, nbits = nwords * 64;
  const auto long_opts = qw.options().dtype(at::kLong);
  at::Tensor hist = at::zeros({nq, nbits + 1}, long_opts);
  cuda::distance_histogram(words_ptr(qw), words_ptr(dw), nq, nd, nwords, nbits,
                           reinterpret_cast<unsigned long long*>(hist.data_ptr<int64_t>()), stream);
  check_launch();
  at::Tensor threshold = at::empty({nq}, qw.options().dtype(at::kInt));
  *below = at::empty({nq}, long_opts);
  *ties_wanted = at::empty({nq}, long_opts);
  cuda::knn_thresholds(reinterpret_cast<const unsigned long long*>(hist.data_ptr<int64_t>()), nq,
                       nbits, kept, threshold.data_ptr<int32_t>(), below->data_ptr<int64_t>(),
                       ties_wanted->data_ptr<int64_t>(), stream);
  check_launch();
  return threshold;
}

// Exact k-NN by histogram threshold, chunk counts and ordered emission (hamming_kernels.h).
// Writes the first `kept` columns of distances/positions.
void knn_by_threshold(const at::Tensor& qw, const at::Tensor& dw, int64_t kept,
                      at::Tensor& distances, at::Tensor& positions, cudaStream_t stream) {
  const int64_t nq = qw.size(0), nd = dw.size(0), nwords = qw.size(1) / 8, k = distances.size(1);
  const auto long_opts = qw.options().dtype(at::kLong);
  at::Tensor below, ties_wanted;
  const at::Tensor threshold = knn_threshold(qw, dw, nd, kept, &below, &ties_wanted, stream);
  const cuda::Chunking chunking = cuda::choose_chunking(nq, nd);
  at::Tensor below_count = at::empty({nq, chunking.nchunks}, qw.options().dtype(at::kInt));
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
  distances = std::get<0>(sorted);
  positions = at::gather(positions, 1, std::get<1>(sorted));
}

// The candidate route for small k (hamming_kernels.h). Rows whose candidates overflowed are
// recomputed by knn_by_threshold.
constexpr int64_t kCandidateMaxK = 128;
constexpr int64_t kCandidateMinDatabase = int64_t(1) << 18;
constexpr int64_t kCandidateSample = int64_t(1) << 16;
constexpr int64_t kCandidateBufferKeys = int64_t(1) << 27;  // 1 GiB of keys per query batch
constexpr int kPositionShift = 40;

void knn_by_candidates(const at::Tensor& qw, const at::Tensor& dw, int64_t kept,
                       at::Tensor& distances, at::Tensor& positions, cudaStream_t stream) {
  const int64_t nq = qw.size(0), nd = dw.size(0), nwords = qw.size(1) / 8;
  const int64_t sample = std::min(nd, std::max(kCandidateSample, nd / 32));
  const int64_t capacity = std::max<int64_t>(2048, 64 * kept);
  const int64_t batch = std::max<int64_t>(1, kCandidateBufferKeys / capacity);
  const auto long_opts = qw.options().dtype(at::kLong);
  std::vector<at::Tensor> overflowed;
  for (int64_t q0 = 0; q0 < nq; q0 += batch) {
    const int64_t nb = std::min(batch, nq - q0);
    const at::Tensor qb = qw.slice(0, q0, q0 + nb);
    at::Tensor below, ties_wanted;
    const at::Tensor threshold = knn_threshold(qb, dw, sample, kept, &below, &ties_wanted, stream);
    at::Tensor keys = at::full({nb, capacity}, INT64_MAX, long_opts);
    at::Tensor count = at::zeros({nb}, long_opts);
    cuda::knn_candidates(words_ptr(qb), words_ptr(dw), nb, nd, nwords, threshold.data_ptr<int32_t>(),
                         capacity, reinterpret_cast<unsigned long long*>(count.data_ptr<int64_t>()),
                         reinterpret_cast<long long*>(keys.data_ptr<int64_t>()), stream);
    check_launch();
    // Keys are unique (positions differ), so the k smallest are the exact (distance, position)
    // order whatever order the slots were filled in.
    const at::Tensor best = std::get<0>(at::topk(keys, kept, 1, /*largest=*/false, /*sorted=*/true));
    distances.slice(0, q0, q0 + nb).slice(1, 0, kept).copy_(at::bitwise_right_shift(best, kPositionShift));
    positions.slice(0, q0, q0 + nb).slice(1, 0, kept).copy_(at::bitwise_and(best, (int64_t(1) << kPositionShift) - 1));
    overflowed.push_back(at::nonzero(count > capacity).squeeze(1) + q0);
  }
  const at::Tensor redo = at::cat(overflowed);
  if (redo.numel() == 0) return;
  const at::Tensor qr = as_word_rows(qw.index_select(0, redo));
  at::Tensor d = at::full({redo.numel(), distances.size(1)}, INT32_MAX, distances.options());
  at::Tensor p = at::full({redo.numel(), positions.size(1)}, -1, positions.options());
  knn_by_threshold(qr, dw, kept, d, p, stream);
  distances.index_copy_(0, redo, d);
  positions.index_copy_(0, redo, p);
}

std::tuple<at::Tensor, at::Tensor> hamming_knn_cuda(const at::Tensor& queries,
                                                    const at::Tensor& database, int64_t k) {
  check_pair(queries, database);
  TORCH_CHECK(k >= 1, "k must be >= 1, got ", k);
  const c10::cuda::CUDAGuard guard(queries.device());
  const int64_t nq = queries.size(0), nd = database.size(0);
  at::Tensor distances = at::full({nq, k}, INT32_MAX, queries.options().dtype(at::kInt));
  at::Tensor positions = at::full({nq, k}, -1, queries.options().dtype(at::kLong));
  if (nq == 0 || nd == 0) return {distances, positions};
  const at::Tensor qw = as_word_rows(queries), dw = as_word_rows(database);
  const int64_t kept = std::min(k, nd);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  TORCH_CHECK(nd < (int64_t(1) << kPositionShift), "the database is too large (", nd, " codes)");
  if (kept <= kCandidateMaxK && nd >= kCandidateMinDatabase)
    knn_by_candidates(qw, dw, kept, distances, positions, stream);
  else
    knn_by_threshold(qw, dw, kept, distances, positions, stream);
  return {distances, positions};
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
