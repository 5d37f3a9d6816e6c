// Retrieval statistics on the GPU: one warp per query walks the database twice in position
// order. Pass 1 builds the (all, relevant) histograms in shared memory; pass 2 assigns exact
// ranks, ties broken by position: lanes with equal distance are ordered by __match_any_sync and
// per-distance running counters carry the order from one 32-code step to the next.
#include "cuda/retrieval_kernels.h"
#include "cuda/code_distance.cuh"
#include "cuda/pair_labels.cuh"

namespace pyhash {
namespace cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr size_t kSmemLimit = 200 * 1024;

// Shared memory per warp: 4 arrays of (nbits + 1) ints: total, relevant, seen_total, seen_rel.
__global__ void retrieval_kernel(const uint64_t* __restrict__ queries,
                                 const uint64_t* __restrict__ database,
                                 const int64_t* __restrict__ ql, const int64_t* __restrict__ dl,
                                 int64_t nq, int64_t nd, int64_t nwords, int64_t nbits,
                                 int64_t words, int64_t topk, int64_t* __restrict__ total_out,
                                 int64_t* __restrict__ relevant_out,
                                 double* __restrict__ precision_sum, int64_t* __restrict__ hits) {
  extern __shared__ int smem[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t q = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (q >= nq) return;  // whole warps only: no block-wide synchronisation below
  const int64_t bins = nbits + 1;
  int* tot = smem + warp * 4 * bins;
  int* rel = tot + bins;
  int* seen_tot = rel + bins;
  int* seen_rel = seen_tot + bins;
  for (int64_t k = lane; k < 4 * bins; k += 32) tot[k] = 0;
  __syncwarp();
  const uint64_t* qc = queries + q * nwords;
  for (int64_t base = 0; base < nd; base += 32) {
    const int64_t j = base + lane;
    if (j < nd) {
      const uint32_t d = distance(qc, database + j * nwords, nwords);
      atomicAdd(&tot[d], 1);
      if (similar(ql, dl, q, j, words)) atomicAdd(&rel[d], 1);
    }
  }
  __syncwarp();
  // Exclusive prefix sums of the histograms (lane 0; bins is small) into seen_* as "before".
  if (lane == 0) {
    int acc_t = 0, acc_r = 0;
    for (int64_t k = 0; k < bins; ++k) {
      seen_tot[k] = acc_t;
      seen_rel[k] = acc_r;
      acc_t += tot[k];
      acc_r += rel[k];
    }
  }
  __syncwarp();
  for (int64_t k = lane; k < bins; k += 32) {
    total_out[q * bins + k] = tot[k];
    relevant_out[q * bins + k] = rel[k];
  }
  // From here seen_* hold "items before this distance plus items of this distance seen so far".
  double sum = 0.0;
  int64_t found = 0;
  const unsigned lanes_before = (1u << lane) - 1u;
  for (int64_t base = 0; base < nd; base += 32) {
    const int64_t j = base + lane;
    const bool valid = j < nd;
    const uint32_t d = valid ? distance(qc, database + j * nwords, nwords) : 0xffffffffu;
    const bool is_rel = valid && similar(ql, dl, q, j, words);
    const unsigned same = __match_any_sync(0xffffffffu, d);
    const unsigned rel_mask = __ballot_sync(0xffffffffu, is_rel);
    if (valid) {
      const int64_t rank = seen_tot[d] + __popc(same & lanes_before) + 1;
      if (is_rel && rank <= topk) {
        const int64_t rel_rank = seen_rel[d] + __popc(same & rel_mask & lanes_before) + 1;
        sum += static_cast<double>(rel_rank) / static_cast<double>(rank);
        ++found;
      }
    }
    __syncwarp();
    if (valid && (same & lanes_before) == 0) {  // one lane per distance value updates the counters
      seen_tot[d] += __popc(same);
      seen_rel[d] += __popc(same & rel_mask);
    }
    __syncwarp();
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    sum += __shfl_down_sync(0xffffffffu, sum, offset);
    found += __shfl_down_sync(0xffffffffu, found, offset);
  }
  if (lane == 0) {
    precision_sum[q] = sum;
    hits[q] = found;
  }
}

}  // namespace

bool retrieval_stats(const uint64_t* queries, const uint64_t* database, const int64_t* query_labels,
                     const int64_t* database_labels, int64_t nq, int64_t nd, int64_t nwords,
                     int64_t nbits, int64_t words, int64_t topk, int64_t* total, int64_t* relevant,
                     double* precision_sum, int64_t* hits, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(kWarpsPerBlock) * 4 * (nbits + 1) * sizeof(int);
  if (smem > kSmemLimit) return false;
  if (nq == 0) return true;
  cudaFuncSetAttribute(retrieval_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  const int64_t blocks = (nq + kWarpsPerBlock - 1) / kWarpsPerBlock;
  retrieval_kernel<<<static_cast<unsigned>(blocks), 32 * kWarpsPerBlock, smem, stream>>>(
      queries, database, query_labels, database_labels, nq, nd, nwords, nbits, words, topk, total,
      relevant, precision_sum, hits);
  return true;
}

}  // namespace cuda
}  // namespace pyhash
