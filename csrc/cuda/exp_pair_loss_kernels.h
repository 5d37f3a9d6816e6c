// CUDA kernels of the fused exponentiated pairwise loss, behind plain-pointer launchers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace pyhash {
namespace cuda {

struct LossKernelConstants {
  double lam, clamp, weight_similar, weight_dissimilar;
  bool clamped, symmetric;
};

// Number of (i, j) pairs with similar labels (i != j when symmetric), accumulated into *count.
// Labels: int64 ids (words == 0) or int64 bit masks with `words` words per row.
void count_similar_pairs(const int64_t* labels_u, const int64_t* labels_v, int64_t n, int64_t m,
                         int64_t words, bool symmetric, unsigned long long* count,
                         cudaStream_t stream);

// Row side of the loss: for every i, grad_u[i] = sum_j coef_ij v_j (when grad_u is not null)
// and loss_partials[block] = partial sums of w_ij exp(e_ij) (when loss_partials is not null).
// Tiles of u and v are staged in shared memory; no n x m buffer. Returns the number of blocks
// (the length loss_partials must have) for given n.
template <typename T>
void loss_rows(const T* u, const T* v, const int64_t* labels_u, const int64_t* labels_v,
               int64_t n, int64_t m, int64_t nbits, int64_t words, LossKernelConstants c,
               T* grad_u, double* loss_partials, cudaStream_t stream);

int64_t loss_row_blocks(int64_t n, int64_t nbits, int64_t element_size);

// Whether a row of nbits values of this size fits the kernel's shared-memory tiles.
bool loss_rows_supported(int64_t nbits, int64_t element_size);

// Tensor-core version of loss_rows for float32 on sm_80 or newer, up to kTensorCoreMaxBits bits
// (exp_pair_loss_tc.cu): TF32 products with a 3-term split, which keeps float32 accuracy. The
// rows of v are split over `splits` blocks per tile of u rows: block (t, s) writes the gradient
// rows of its tile to grad_partials[s] ([splits, n, nbits]) and its loss sum to
// loss_partials[s * loss_rows_tc_row_tiles(n) + t]; the caller sums them (either may be null).
constexpr int64_t kTensorCoreMaxBits = 128;
int64_t loss_rows_tc_row_tiles(int64_t n);
// Splits that give about target_blocks blocks in all.
int64_t loss_rows_tc_splits(int64_t n, int64_t m, int64_t target_blocks);
void loss_rows_tc(const float* u, const float* v, const int64_t* labels_u, const int64_t* labels_v,
                  int64_t n, int64_t m, int64_t nbits, int64_t words, LossKernelConstants c,
                  int64_t splits, float* grad_partials, double* loss_partials, cudaStream_t stream);

}  // namespace cuda
}  // namespace pyhash
