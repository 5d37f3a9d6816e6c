// CUDA Hamming kernels behind plain-pointer launchers (no torch headers: keeps nvcc builds short).
//
// Codes are rows of `nwords` 64-bit words (zero-padded). k-NN and range search share one scheme
// with no Q x N distance matrix and a deterministic (distance, position) order:
//   1. distance histogram per query (k-NN only) -> threshold t, count below t, ties wanted at t;
//   2. per (query, database chunk): how many codes fall below t and at t;
//   3. emit: each chunk writes its codes at offsets from exclusive prefix sums of step 2, in
//      position order, so ties at t are taken by ascending position;
//   4. (torch glue) a stable sort of each query's output by distance.
//
// k-NN for small k on a large database takes a faster route (torch glue): the histogram of a
// prefix sample gives a threshold t with at least k codes at distance <= t, so the exact top-k is
// among the codes with d <= t; one pass appends those candidates as (distance, position) keys and
// a top-k of the keys finishes. A query whose candidates overflow their buffer falls back to the
// scheme above.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace pyhash {
namespace cuda {

// Database chunk handled by one warp in steps 2 and 3.
struct Chunking {
  int64_t chunk_len;
  int64_t nchunks;
};
Chunking choose_chunking(int64_t nq, int64_t nd);

// out[i * nb + j] = popcount(a_i ^ b_j).
void hamming_distance(const uint64_t* a, const uint64_t* b, int64_t na, int64_t nb, int64_t nwords,
                      int32_t* out, cudaStream_t stream);

// hist[q * (nbits + 1) + d] += number of database codes at distance d from query q (hist zeroed).
void distance_histogram(const uint64_t* queries, const uint64_t* database, int64_t nq, int64_t nd,
                        int64_t nwords, int64_t nbits, unsigned long long* hist,
                        cudaStream_t stream);

// From the histograms: threshold[q] = smallest t with count(d <= t) >= kept, below[q] = count(d <
// t), ties_wanted[q] = kept - below[q].
void knn_thresholds(const unsigned long long* hist, int64_t nq, int64_t nbits, int64_t kept,
                    int32_t* threshold, int64_t* below, int64_t* ties_wanted, cudaStream_t stream);

// Appends the key (d << 40 | position) of every database code with d <= threshold[q] to
// keys[q * capacity + slot] for slot < capacity; count[q] (zeroed) ends as the number of such
// codes, which exceeds capacity when some were dropped. Slot order is arbitrary.
void knn_candidates(const uint64_t* queries, const uint64_t* database, int64_t nq, int64_t nd,
                    int64_t nwords, const int32_t* threshold, int64_t capacity,
                    unsigned long long* count, long long* keys, cudaStream_t stream);

// below_count[q * nchunks + c] = codes of chunk c with d < threshold[q]; at_count likewise for
// d == threshold[q] (at_count may be null).
void chunk_counts(const uint64_t* queries, const uint64_t* database, int64_t nq, int64_t nd,
                  int64_t nwords, const int32_t* threshold, Chunking chunking,
                  int32_t* below_count, int32_t* at_count, cudaStream_t stream);

// Writes the codes of each (query, chunk) to out_distance/out_position:
//   d < t:  at row_start[q] + below_offset[q * nchunks + c] + rank within the chunk;
//   d == t: at row_start[q] + below_total[q] + at_offset[q * nchunks + c] + rank, if that
//           tie index is < ties_wanted[q] (ties_wanted null: no ties are written).
void emit(const uint64_t* queries, const uint64_t* database, int64_t nq, int64_t nd, int64_t nwords,
          const int32_t* threshold, Chunking chunking, const int64_t* row_start,
          const int64_t* below_offset, const int64_t* below_total, const int64_t* at_offset,
          const int64_t* ties_wanted, int32_t* out_distance, int64_t* out_position,
          cudaStream_t stream);

}  // namespace cuda
}  // namespace pyhash
