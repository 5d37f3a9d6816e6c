// CUDA kernels for Hamming distance, k-NN and range search (see hamming_kernels.h).
#include "cuda/hamming_kernels.h"
#include "cuda/code_distance.cuh"

#include <algorithm>

namespace pyhash {
namespace cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kQueriesPerWarp = 8;  // queries scanned together against each loaded code
constexpr int64_t kMinChunk = 1024;

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

__global__ void hamming_distance_kernel(const uint64_t* __restrict__ a,
                                        const uint64_t* __restrict__ b, int64_t na, int64_t nb,
                                        int64_t nwords, int32_t* __restrict__ out) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t i = blockIdx.y * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  if (i >= na || j >= nb) return;
  out[i * nb + j] = static_cast<int32_t>(distance(a + i * nwords, b + j * nwords, nwords));
}

// Loads up to kQueriesPerWarp query codes [q0, q0 + nq_here) into shared memory `dst`.
__device__ void load_queries(const uint64_t* queries, int64_t q0, int nq_here, int64_t nwords,
                             uint64_t* dst) {
  for (int64_t i = threadIdx.x; i < nq_here * nwords; i += blockDim.x) dst[i] = queries[q0 * nwords + i];
}

// Block: one group of queries (blockIdx.y) x a contiguous slice of the database (blockIdx.x).
// Shared memory: kQueriesPerWarp query codes, then a histogram of (nbits + 1) counters per query.
__global__ void histogram_kernel(const uint64_t* __restrict__ queries,
                                 const uint64_t* __restrict__ database, int64_t nq, int64_t nd,
                                 int64_t nwords, int64_t nbits, int64_t slice,
                                 unsigned long long* __restrict__ hist) {
  extern __shared__ uint64_t smem[];
  uint64_t* qs = smem;
  uint32_t* shist = reinterpret_cast<uint32_t*>(smem + kQueriesPerWarp * nwords);
  const int64_t q0 = static_cast<int64_t>(blockIdx.y) * kQueriesPerWarp;
  const int nq_here = static_cast<int>(imin(kQueriesPerWarp, nq - q0));
  const int64_t bins = nbits + 1;
  load_queries(queries, q0, nq_here, nwords, qs);
  for (int64_t i = threadIdx.x; i < nq_here * bins; i += blockDim.x) shist[i] = 0;
  __syncthreads();
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * slice;
  const int64_t end = imin(nd, begin + slice);
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const uint64_t* code = database + j * nwords;
    for (int u = 0; u < nq_here; ++u) atomicAdd(&shist[u * bins + distance(qs + u * nwords, code, nwords)], 1u);
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < nq_here * bins; i += blockDim.x)
    if (shist[i]) atomicAdd(&hist[q0 * bins + i], static_cast<unsigned long long>(shist[i]));
}

__global__ void threshold_kernel(const unsigned long long* __restrict__ hist, int64_t nq,
                                 int64_t nbits, int64_t kept, int32_t* __restrict__ threshold,
                                 int64_t* __restrict__ below, int64_t* __restrict__ ties_wanted) {
  const int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (q >= nq) return;
  const unsigned long long* h = hist + q * (nbits + 1);
  int64_t cumulative = 0;
  for (int64_t d = 0; d <= nbits; ++d) {
    const int64_t next = cumulative + static_cast<int64_t>(h[d]);
    if (next >= kept) {
      threshold[q] = static_cast<int32_t>(d);
      below[q] = cumulative;
      ties_wanted[q] = kept - cumulative;
      return;
    }
    cumulative = next;
  }
  // Fewer than `kept` codes in the database (not reached: kept <= nd).
  threshold[q] = static_cast<int32_t>(nbits + 1);
  below[q] = cumulative;
  ties_wanted[q] = 0;
}

// One warp per (query group, chunk): lanes take consecutive codes, so ballots give ranks in
// position order. With EMIT false it counts; with EMIT true it writes.
template <bool EMIT>
__global__ void chunk_kernel(const uint64_t* __restrict__ queries,
                             const uint64_t* __restrict__ database, int64_t nq, int64_t nd,
                             int64_t nwords, const int32_t* __restrict__ threshold,
                             int64_t chunk_len, int64_t nchunks, int32_t* __restrict__ below_count,
                             int32_t* __restrict__ at_count, const int64_t* __restrict__ row_start,
                             const int64_t* __restrict__ below_offset,
                             const int64_t* __restrict__ below_total,
                             const int64_t* __restrict__ at_offset,
                             const int64_t* __restrict__ ties_wanted,
                             int32_t* __restrict__ out_distance,
                             int64_t* __restrict__ out_position) {
  extern __shared__ uint64_t qs[];
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int64_t q0 = static_cast<int64_t>(blockIdx.y) * kQueriesPerWarp;
  const int nq_here = static_cast<int>(imin(kQueriesPerWarp, nq - q0));
  load_queries(queries, q0, nq_here, nwords, qs);
  __syncthreads();
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (c >= nchunks) return;
  const int64_t begin = c * chunk_len;
  const int64_t end = imin(nd, begin + chunk_len);
  const uint32_t lanes_before = (1u << lane) - 1u;

  int32_t t[kQueriesPerWarp];
  int64_t n_below[kQueriesPerWarp], n_at[kQueriesPerWarp];
  for (int u = 0; u < kQueriesPerWarp; ++u) {
    t[u] = u < nq_here ? threshold[q0 + u] : -1;
    n_below[u] = 0;
    n_at[u] = 0;
  }
  for (int64_t base = begin; base < end; base += kWarp) {
    const int64_t j = base + lane;
    const bool valid = j < end;
    const uint64_t* code = database + (valid ? j : begin) * nwords;
    for (int u = 0; u < nq_here; ++u) {
      const int32_t d = static_cast<int32_t>(distance(qs + u * nwords, code, nwords));
      const bool is_below = valid && d < t[u];
      const bool is_at = valid && d == t[u];
      const uint32_t below_mask = __ballot_sync(0xffffffffu, is_below);
      const uint32_t at_mask = __ballot_sync(0xffffffffu, is_at);
      if (EMIT) {
        const int64_t q = q0 + u;
        const int64_t qc = q * nchunks + c;
        if (is_below) {
          const int64_t slot = row_start[q] + below_offset[qc] + n_below[u] + __popc(below_mask & lanes_before);
          out_distance[slot] = d;
          out_position[slot] = j;
        }
        if (is_at && ties_wanted != nullptr) {
          const int64_t tie = at_offset[qc] + n_at[u] + __popc(at_mask & lanes_before);
          if (tie < ties_wanted[q]) {
            const int64_t slot = row_start[q] + below_total[q] + tie;
            out_distance[slot] = d;
            out_position[slot] = j;
          }
        }
      }
      n_below[u] += __popc(below_mask);
      n_at[u] += __popc(at_mask);
    }
  }
  if (!EMIT && lane == 0) {
    for (int u = 0; u < nq_here; ++u) {
      below_count[(q0 + u) * nchunks + c] = static_cast<int32_t>(n_below[u]);
      if (at_count != nullptr) at_count[(q0 + u) * nchunks + c] = static_cast<int32_t>(n_at[u]);
    }
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int kCandidateQueries = 16;   // queries per block, held in registers
constexpr int kCandidateThreads = 256;
constexpr int64_t kCandidateCodesPerThread = 32;

// Appends every code j of this block's database slice with distance <= threshold[q] to query q's
// candidate row as the key (distance << 40 | j); count[q] counts all of them, including any that
// did not fit in the row's `capacity` slots. Hits are rare, so the common path is pure popcount.
// NW > 0: words per code known at compile time; NW == 0: any count (queries in shared memory).
template <int NW>
__global__ void candidates_kernel(const uint64_t* __restrict__ queries,
                                  const uint64_t* __restrict__ database, int64_t nq, int64_t nd,
                                  int64_t nwords_rt, const int32_t* __restrict__ threshold,
                                  int64_t capacity, unsigned long long* __restrict__ count,
                                  long long* __restrict__ keys) {
  constexpr int QG = kCandidateQueries;
  constexpr int kRegWords = NW > 0 ? NW : 1;
  extern __shared__ uint64_t qs[];
  const int64_t nwords = NW > 0 ? NW : nwords_rt;
  const int64_t q0 = static_cast<int64_t>(blockIdx.y) * QG;
  const int nq_here = static_cast<int>(imin(QG, nq - q0));
  uint64_t qreg[QG][kRegWords];
  int32_t t[QG];
#pragma unroll
  for (int u = 0; u < QG; ++u) {
    t[u] = u < nq_here ? threshold[q0 + u] : -1;  // -1: an empty slot never matches
#pragma unroll
    for (int w = 0; w < kRegWords; ++w) qreg[u][w] = (NW > 0 && u < nq_here) ? queries[(q0 + u) * nwords + w] : 0;
  }
  if (NW == 0) {
    for (int64_t i = threadIdx.x; i < nq_here * nwords; i += blockDim.x) qs[i] = queries[q0 * nwords + i];
    __syncthreads();
  }
  const int64_t slice = kCandidateThreads * kCandidateCodesPerThread;
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * slice;
  const int64_t end = imin(nd, begin + slice);
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const uint64_t* code = database + j * nwords;
    uint32_t hits = 0;
    if (NW > 0) {
      uint64_t x[kRegWords];
#pragma unroll
      for (int w = 0; w < kRegWords; ++w) x[w] = code[w];
#pragma unroll
      for (int u = 0; u < QG; ++u) {
        int32_t d = 0;
#pragma unroll
        for (int w = 0; w < kRegWords; ++w) d += __popcll(x[w] ^ qreg[u][w]);
        hits |= static_cast<uint32_t>(d <= t[u]) << u;
      }
    } else {
      for (int u = 0; u < nq_here; ++u)
        hits |= static_cast<uint32_t>(static_cast<int32_t>(distance(qs + u * nwords, code, nwords)) <= t[u]) << u;
    }
    while (hits) {  // rare
      const int u = __ffs(hits) - 1;
      hits &= hits - 1;
      const uint64_t* q = NW > 0 ? queries + (q0 + u) * nwords : qs + u * nwords;
      const long long d = distance(q, code, nwords);
      const unsigned long long slot = atomicAdd(&count[q0 + u], 1ull);
      if (slot < static_cast<unsigned long long>(capacity)) keys[(q0 + u) * capacity + slot] = (d << 40) | j;
    }
  }
}

}  // namespace

Chunking choose_chunking(int64_t nq, int64_t nd) {
  // Aim for about 16k warps in flight; chunks never shorter than kMinChunk codes (except the
  // last) and never longer than 2^30 (counts are int32).
  const int64_t groups = std::max<int64_t>(1, ceil_div(nq, kQueriesPerWarp));
  int64_t nchunks = std::max<int64_t>(1, ceil_div(16384, groups));
  nchunks = std::min(nchunks, std::max<int64_t>(1, ceil_div(nd, kMinChunk)));
  int64_t chunk_len = std::max<int64_t>(1, ceil_div(nd, nchunks));
  chunk_len = std::min<int64_t>(chunk_len, int64_t(1) << 30);
  nchunks = std::max<int64_t>(1, ceil_div(nd, chunk_len));
  return {chunk_len, nchunks};
}

void hamming_distance(const uint64_t* a, const uint64_t* b, int64_t na, int64_t nb, int64_t nwords,
                      int32_t* out, cudaStream_t stream) {
  if (na == 0 || nb == 0) return;
  const dim3 block(32, 8);
  for (int64_t i0 = 0; i0 < na; i0 += 65535 * 8) {  // grid.y is limited to 65535
    const int64_t rows = std::min<int64_t>(na - i0, 65535 * 8);
    const dim3 grid(static_cast<unsigned>(ceil_div(nb, 32)), static_cast<unsigned>(ceil_div(rows, 8)));
    hamming_distance_kernel<<<grid, block, 0, stream>>>(a + i0 * nwords, b, rows, nb, nwords, out + i0 * nb);
  }
}

void distance_histogram(const uint64_t* queries, const uint64_t* database, int64_t nq, int64_t nd,
                        int64_t nwords, int64_t nbits, unsigned long long* hist,
                        cudaStream_t stream) {
  if (nq == 0 || nd == 0) return;
  const size_t smem = kQueriesPerWarp * nwords * sizeof(uint64_t) +
                      kQueriesPerWarp * (nbits + 1) * sizeof(uint32_t);
  cudaFuncSetAttribute(histogram_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  const int threads = kWarp * kWarpsPerBlock;
  const int64_t groups = ceil_div(nq, kQueriesPerWarp);
  const int64_t slices = std::max<int64_t>(1, std::min<int64_t>(ceil_div(nd, 8192), ceil_div(4096, groups)));
  const int64_t slice = ceil_div(nd, slices);
  for (int64_t g0 = 0; g0 < groups; g0 += 65535) {
    const int64_t g_here = std::min<int64_t>(groups - g0, 65535);
    const int64_t q_begin = g0 * kQueriesPerWarp;
    const dim3 grid(static_cast<unsigned>(ceil_div(nd, slice)), static_cast<unsigned>(g_here));
    histogram_kernel<<<grid, threads, smem, stream>>>(queries + q_begin * nwords, database,
                                                      nq - q_begin, nd, nwords, nbits, slice,
                                                      hist + q_begin * (nbits + 1));
  }
}

void knn_candidates(const uint64_t* queries, const uint64_t* database, int64_t nq, int64_t nd,
                    int64_t nwords, const int32_t* threshold, int64_t capacity,
                    unsigned long long* count, long long* keys, cudaStream_t stream) {
  if (nq == 0 || nd == 0) return;
  const int64_t groups = ceil_div(nq, kCandidateQueries);
  const int64_t slices = ceil_div(nd, kCandidateThreads * kCandidateCodesPerThread);
  const size_t smem = nwords > 4 ? kCandidateQueries * nwords * sizeof(uint64_t) : 0;
  for (int64_t g0 = 0; g0 < groups; g0 += 65535) {
    const int64_t g_here = std::min<int64_t>(groups - g0, 65535);
    const int64_t q = g0 * kCandidateQueries;
    const dim3 grid(static_cast<unsigned>(slices), static_cast<unsigned>(g_here));
    const uint64_t* qp = queries + q * nwords;
    switch (nwords) {
      case 1: candidates_kernel<1><<<grid, kCandidateThreads, 0, stream>>>(qp, database, nq - q, nd, nwords, threshold + q, capacity, count + q, keys + q * capacity); break;
      case 2: candidates_kernel<2><<<grid, kCandidateThreads, 0, stream>>>(qp, database, nq - q, nd, nwords, threshold + q, capacity, count + q, keys + q * capacity); break;
      case 3: candidates_kernel<3><<<grid, kCandidateThreads, 0, stream>>>(qp, database, nq - q, nd, nwords, threshold + q, capacity, count + q, keys + q * capacity); break;
      case 4: candidates_kernel<4><<<grid, kCandidateThreads, 0, stream>>>(qp, database, nq - q, nd, nwords, threshold + q, capacity, count + q, keys + q * capacity); break;
      default:
        cudaFuncSetAttribute(candidates_kernel<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
        candidates_kernel<0><<<grid, kCandidateThreads, smem, stream>>>(qp, database, nq - q, nd, nwords, threshold + q, capacity, count + q, keys + q * capacity);
    }
  }
}

void knn_thresholds(const unsigned long long* hist, int64_t nq, int64_t nbits, int64_t kept,
                    int32_t* threshold, int64_t* below, int64_t* ties_wanted, cudaStream_t stream) {
  if (nq == 0) return;
  threshold_kernel<<<static_cast<unsigned>(ceil_div(nq, 128)), 128, 0, stream>>>(
      hist, nq, nbits, kept, threshold, below, ties_wanted);
}

namespace {

template <bool EMIT>
void launch_chunks(const uint64_t* queries, const uint64_t* database, int64_t nq, int64_t nd,
                   int64_t nwords, const int32_t* threshold, Chunking chunking,
                   int32_t* below_count, int32_t* at_count, const int64_t* row_start,
                   const int64_t* below_offset, const int64_t* below_total,
                   const int64_t* at_offset, const int64_t* ties_wanted, int32_t* out_distance,
                   int64_t* out_position, cudaStream_t stream) {
  if (nq == 0 || nd == 0) return;
  const size_t smem = kQueriesPerWarp * nwords * sizeof(uint64_t);
  const int64_t groups = ceil_div(nq, kQueriesPerWarp);
  const int64_t chunk_blocks = ceil_div(chunking.nchunks, kWarpsPerBlock);
  for (int64_t g0 = 0; g0 < groups; g0 += 65535) {
    const int64_t g_here = std::min<int64_t>(groups - g0, 65535);
    const int64_t q = g0 * kQueriesPerWarp;  // offset every per-query array by q
    const int64_t qc = q * chunking.nchunks;
    const dim3 grid(static_cast<unsigned>(chunk_blocks), static_cast<unsigned>(g_here));
    chunk_kernel<EMIT><<<grid, kWarp * kWarpsPerBlock, smem, stream>>>(
        queries + q * nwords, database, nq - q, nd, nwords, threshold + q, chunking.chunk_len,
        chunking.nchunks, below_count ? below_count + qc : nullptr,
        at_count ? at_count + qc : nullptr, row_start ? row_start + q : nullptr,
        below_offset ? below_offset + qc : nullptr, below_total ? below_total + q : nullptr,
        at_offset ? at_offset + qc : nullptr, ties_wanted ? ties_wanted + q : nullptr,
        out_distance, out_position);
  }
}

}  // namespace

void chunk_counts(const uint64_t* queries, const uint64_t* database, int64_t nq, int64_t nd,
                  int64_t nwords, const int32_t* threshold, Chunking chunking,
                  int32_t* below_count, int32_t* at_count, cudaStream_t stream) {
  launch_chunks<false>(queries, database, nq, nd, nwords, threshold, chunking, below_count,
                       at_count, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                       stream);
}

void emit(const uint64_t* queries, const uint64_t* database, int64_t nq, int64_t nd, int64_t nwords,
          const int32_t* threshold, Chunking chunking, const int64_t* row_start,
          const int64_t* below_offset, const int64_t* below_total, const int64_t* at_offset,
          const int64_t* ties_wanted, int32_t* out_distance, int64_t* out_position,
          cudaStream_t stream) {
  launch_chunks<true>(queries, database, nq, nd, nwords, threshold, chunking, nullptr, nullptr,
                      row_start, below_offset, below_total, at_offset, ties_wanted, out_distance,
                      out_position, stream);
}

}  // namespace cuda
}  // namespace pyhash
