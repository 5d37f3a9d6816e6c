// Tensor-core kernel of the fused exponentiated pairwise loss (float32, sm_80+), see
// exp_pair_loss_kernels.h.
//
// A block owns kRows rows of u (16 per warp) and walks over its split of v in tiles of kCols rows.
// Per tile, each warp computes its 16 x kCols affinities S = u v^T with TF32 tensor-core products,
// turns them into pair coefficients in shared memory, and accumulates dL/du = C v in registers.
// Both products use the 3-term TF32 split (x = hi + lo, hi*hi + hi*lo + lo*hi), which keeps
// float32 accuracy. No n x m buffer; no atomics (splits write separate partial rows).
#include "cuda/exp_pair_loss_kernels.h"
#include "cuda/pair_labels.cuh"

#include <mma.h>

#include <algorithm>

namespace pyhash {
namespace cuda {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kRows = 16 * kWarpsPerBlock;  // rows of u per block
constexpr int kCols = 64;                   // rows of v per tile
constexpr int kThreads = 32 * kWarpsPerBlock;
constexpr int kMaxFragments = kTensorCoreMaxBits / 16;
constexpr int kCoefPitch = kCols + 4;

__host__ __device__ constexpr int padded_bits(int nbits) { return (nbits + 15) / 16 * 16; }
__host__ __device__ constexpr int bits_pitch(int padded) { return padded + 4; }

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
using namespace nvcuda;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

// x = hi + lo with both parts representable in TF32.
template <typename Frag>
__device__ __forceinline__ void split(const Frag& x, Frag& hi, Frag& lo) {
#pragma unroll
  for (int t = 0; t < x.num_elements; ++t) {
    const float h = wmma::__float_to_tf32(x.x[t]);
    hi.x[t] = h;
    lo.x[t] = wmma::__float_to_tf32(x.x[t] - h);
  }
}

template <typename FragB>
__device__ __forceinline__ void mma3(FragC& acc, const FragA& a_hi, const FragA& a_lo, const FragB& b) {
  FragB b_hi, b_lo;
  split(b, b_hi, b_lo);
  wmma::mma_sync(acc, a_lo, b_hi, acc);
  wmma::mma_sync(acc, a_hi, b_lo, acc);
  wmma::mma_sync(acc, a_hi, b_hi, acc);
}

// acc[f] += A B[f] over K for one warp: A is 16 x K, row-major at a (leading dimension lda); the
// 8 x 16 block of B[f] at rows k..k+7 is loaded, in FragB's layout, from
// b + k * k_step + f * fragment_step with leading dimension ldb.
template <typename FragB, int K, int F>
__device__ __forceinline__ void warp_product(FragC (&acc)[F], const float* a, int lda, const float* b,
                                             int ldb, int k_step, int fragment_step) {
#pragma unroll
  for (int k = 0; k < K; k += 8) {
    FragA a_frag, a_hi, a_lo;
    wmma::load_matrix_sync(a_frag, a + k, lda);
    split(a_frag, a_hi, a_lo);
#pragma unroll
    for (int f = 0; f < F; ++f) {
      FragB b_frag;
      wmma::load_matrix_sync(b_frag, b + k * k_step + f * fragment_step, ldb);
      mma3(acc[f], a_hi, a_lo, b_frag);
    }
  }
}
#endif

// Grid: (row tiles of u, splits of v). grad_partials: [splits, n, nbits]; loss_partials:
// [splits * row tiles] (either may be null).
template <int FRAGMENTS>
__global__ void __launch_bounds__(kThreads)
loss_rows_tc_kernel(const float* __restrict__ u, const float* __restrict__ v,
                    const int64_t* __restrict__ lu, const int64_t* __restrict__ lv, int64_t n,
                    int64_t m, int nbits, int64_t words, LossKernelConstants c,
                    int64_t tiles_per_split, float* __restrict__ grad_partials,
                    double* __restrict__ loss_partials) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int kPadded = 16 * FRAGMENTS;
  constexpr int kPitch = bits_pitch(kPadded);
  extern __shared__ __align__(32) float smem[];
  float* us = smem;                    // [kRows][kPitch]
  float* vs = us + kRows * kPitch;     // [kCols][kPitch]
  float* cs = vs + kCols * kPitch;     // [kRows][kCoefPitch]
  __shared__ double warp_loss[kWarpsPerBlock];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t j_begin = static_cast<int64_t>(blockIdx.y) * tiles_per_split * kCols;
  const int64_t j_end = min(m, j_begin + tiles_per_split * kCols);

  for (int k = threadIdx.x; k < kRows * kPadded; k += kThreads) {
    const int r = k / kPadded, b = k % kPadded;
    us[r * kPitch + b] = (i0 + r < n && b < nbits) ? u[(i0 + r) * nbits + b] : 0.0f;
  }

  const float lam = static_cast<float>(c.lam), clamp = static_cast<float>(c.clamp);
  const float inv_bits = 1.0f / static_cast<float>(nbits);
  const float w_sim = static_cast<float>(c.weight_similar), w_dis = static_cast<float>(c.weight_dissimilar);
  float* my_u = us + warp * 16 * kPitch;
  float* my_c = cs + warp * 16 * kCoefPitch;
  FragC grad[FRAGMENTS];
#pragma unroll
  for (int f = 0; f < FRAGMENTS; ++f) wmma::fill_fragment(grad[f], 0.0f);
  double loss = 0.0;

  for (int64_t j0 = j_begin; j0 < j_end; j0 += kCols) {
    __syncthreads();  // every warp is done with the previous tile of v
    for (int k = threadIdx.x; k < kCols * kPadded; k += kThreads) {
      const int r = k / kPadded, b = k % kPadded;
      vs[r * kPitch + b] = (j0 + r < j_end && b < nbits) ? v[(j0 + r) * nbits + b] : 0.0f;
    }
    __syncthreads();

    // S = u v^T for this warp's 16 rows and the tile's kCols columns.
    FragC s[kCols / 16];
#pragma unroll
    for (int t = 0; t < kCols / 16; ++t) wmma::fill_fragment(s[t], 0.0f);
    warp_product<FragBCol, kPadded>(s, my_u, kPitch, vs, kPitch, 1, 16 * kPitch);
#pragma unroll
    for (int t = 0; t < kCols / 16; ++t) wmma::store_matrix_sync(my_c + t * 16, s[t], kCoefPitch, wmma::mem_row_major);
    __syncwarp();

    // Pair coefficients dL/da_ij * (1 / B), in place; invalid pairs get 0.
    for (int e = lane; e < 16 * kCols; e += 32) {
      const int r = e / kCols, col = e % kCols;
      const int64_t i = i0 + warp * 16 + r, j = j0 + col;
      float value = 0.0f;
      if (i < n && j < j_end) {
        const bool sim = similar(lu, lv, i, j, words);
        const float sign = sim ? 1.0f : -1.0f;
        const float w = (c.symmetric && i == j) ? 0.0f : (sim ? w_sim : w_dis);
        float ex = -lam * sign * my_c[r * kCoefPitch + col] * inv_bits;
        float pass = 1.0f;
        if (c.clamped) {
          pass = (ex < -clamp || ex > clamp) ? 0.0f : 1.0f;
          ex = fminf(fmaxf(ex, -clamp), clamp);
        }
        const float we = w * __expf(ex);
        loss += static_cast<double>(we);
        value = -lam * sign * we * inv_bits * pass;
      }
      my_c[r * kCoefPitch + col] = value;
    }
    __syncwarp();

    // grad += C v for this warp's rows.
    warp_product<FragBRow, kCols>(grad, my_c, kCoefPitch, vs, kPitch, kPitch, 16);
  }

  if (grad_partials != nullptr) {
    // This warp's rows of us are read only by this warp: stage its gradient rows there.
    __syncwarp();
#pragma unroll
    for (int f = 0; f < FRAGMENTS; ++f) wmma::store_matrix_sync(my_u + f * 16, grad[f], kPitch, wmma::mem_row_major);
    __syncwarp();
    float* out = grad_partials + static_cast<int64_t>(blockIdx.y) * n * nbits;
    for (int e = lane; e < 16 * nbits; e += 32) {
      const int r = e / nbits, b = e % nbits;
      const int64_t i = i0 + warp * 16 + r;
      if (i < n) out[i * nbits + b] = my_u[r * kPitch + b];
    }
  }
  if (loss_partials != nullptr) {
    for (int offset = 16; offset > 0; offset /= 2) loss += __shfl_down_sync(0xffffffffu, loss, offset);
    if (lane == 0) warp_loss[warp] = loss;
    __syncthreads();
    if (threadIdx.x == 0) {
      double total = 0.0;
      for (int w = 0; w < kWarpsPerBlock; ++w) total += warp_loss[w];
      loss_partials[static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x] = total;
    }
  }
#else
  __trap();  // the host only launches this kernel on sm_80 or newer
#endif
}

size_t tc_smem_bytes(int nbits) {
  const int pitch = bits_pitch(padded_bits(nbits));
  return sizeof(float) * (static_cast<size_t>(kRows + kCols) * pitch + static_cast<size_t>(kRows) * kCoefPitch);
}

template <int FRAGMENTS>
void launch_tc(dim3 grid, size_t smem, cudaStream_t stream, const float* u, const float* v,
               const int64_t* lu, const int64_t* lv, int64_t n, int64_t m, int nbits, int64_t words,
               LossKernelConstants c, int64_t tiles_per_split, float* grad_partials,
               double* loss_partials) {
  cudaFuncSetAttribute(loss_rows_tc_kernel<FRAGMENTS>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  loss_rows_tc_kernel<FRAGMENTS><<<grid, kThreads, smem, stream>>>(
      u, v, lu, lv, n, m, nbits, words, c, tiles_per_split, grad_partials, loss_partials);
}

}  // namespace

int64_t loss_rows_tc_row_tiles(int64_t n) { return (n + kRows - 1) / kRows; }

int64_t loss_rows_tc_splits(int64_t n, int64_t m, int64_t target_blocks) {
  const int64_t col_tiles = std::max<int64_t>(1, (m + kCols - 1) / kCols);
  const int64_t wanted = (target_blocks + loss_rows_tc_row_tiles(n) - 1) / loss_rows_tc_row_tiles(n);
  return std::max<int64_t>(1, std::min(col_tiles, wanted));
}

void loss_rows_tc(const float* u, const float* v, const int64_t* labels_u, const int64_t* labels_v,
                  int64_t n, int64_t m, int64_t nbits, int64_t words, LossKernelConstants c,
                  int64_t splits, float* grad_partials, double* loss_partials, cudaStream_t stream) {
  if (n == 0) return;
  const int64_t col_tiles = std::max<int64_t>(1, (m + kCols - 1) / kCols);
  const int64_t tiles_per_split = (col_tiles + splits - 1) / splits;
  const dim3 grid(static_cast<unsigned>(loss_rows_tc_row_tiles(n)), static_cast<unsigned>(splits));
  const size_t smem = tc_smem_bytes(static_cast<int>(nbits));
  const int b = static_cast<int>(nbits);
  switch (padded_bits(b) / 16) {
    case 1: launch_tc<1>(grid, smem, stream, u, v, labels_u, labels_v, n, m, b, words, c, tiles_per_split, grad_partials, loss_partials); break;
    case 2: launch_tc<2>(grid, smem, stream, u, v, labels_u, labels_v, n, m, b, words, c, tiles_per_split, grad_partials, loss_partials); break;
    case 3: launch_tc<3>(grid, smem, stream, u, v, labels_u, labels_v, n, m, b, words, c, tiles_per_split, grad_partials, loss_partials); break;
    case 4: launch_tc<4>(grid, smem, stream, u, v, labels_u, labels_v, n, m, b, words, c, tiles_per_split, grad_partials, loss_partials); break;
    case 5: launch_tc<5>(grid, smem, stream, u, v, labels_u, labels_v, n, m, b, words, c, tiles_per_split, grad_partials, loss_partials); break;
    case 6: launch_tc<6>(grid, smem, stream, u, v, labels_u, labels_v, n, m, b, words, c, tiles_per_split, grad_partials, loss_partials); break;
    case 7: launch_tc<7>(grid, smem, stream, u, v, labels_u, labels_v, n, m, b, words, c, tiles_per_split, grad_partials, loss_partials); break;
    default: launch_tc<kMaxFragments>(grid, smem, stream, u, v, labels_u, labels_v, n, m, b, words, c, tiles_per_split, grad_partials, loss_partials);
  }
}

}  // namespace cuda
}  // namespace pyhash
