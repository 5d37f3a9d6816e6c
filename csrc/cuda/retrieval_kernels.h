// CUDA kernel of the retrieval statistics (see csrc/cpu/retrieval_cpu.cpp for the contract).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace pyhash {
namespace cuda {

// One warp per query. Labels: int64 ids (words == 0) or bit masks with `words` words per row.
// total/relevant: int64 [nq, nbits + 1]; precision_sum: float64 [nq]; hits: int64 [nq].
// Returns false if the per-warp histograms do not fit in shared memory.
bool retrieval_stats(const uint64_t* queries, const uint64_t* database, const int64_t* query_labels,
                     const int64_t* database_labels, int64_t nq, int64_t nd, int64_t nwords,
                     int64_t nbits, int64_t words, int64_t topk, int64_t* total, int64_t* relevant,
                     double* precision_sum, int64_t* hits, cudaStream_t stream);

}  // namespace cuda
}  // namespace pyhash
