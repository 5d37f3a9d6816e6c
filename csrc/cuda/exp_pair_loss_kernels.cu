// CUDA kernels of the fused exponentiated pairwise loss (see exp_pair_loss_kernels.h).
//
// One block owns kTile rows of u and walks over v in tiles of kTile rows: both tiles sit in
// shared memory, each thread computes kTile * kTile / kThreads pair coefficients, then the block
// accumulates grad_u for its rows in shared memory. The gradient of v is the same kernel with u
// and v swapped, so no atomics are needed and results are deterministic.
#include "cuda/exp_pair_loss_kernels.h"
#include "cuda/pair_labels.cuh"

#include <algorithm>

namespace pyhash {
namespace cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float exp_fast(float x) { return __expf(x); }
__device__ __forceinline__ double exp_fast(double x) { return exp(x); }

__global__ void count_similar_kernel(const int64_t* __restrict__ lu, const int64_t* __restrict__ lv,
                                     int64_t n, int64_t m, int64_t words, bool symmetric,
                                     unsigned long long* __restrict__ count) {
  unsigned long long local = 0;
  const int64_t total = n * m;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = p / m, j = p % m;
    if (symmetric && i == j) continue;
    local += similar(lu, lv, i, j, words) ? 1ull : 0ull;
  }
  for (int offset = 16; offset > 0; offset /= 2) local += __shfl_down_sync(0xffffffffu, local, offset);
  if (threadIdx.x % 32 == 0 && local) atomicAdd(count, local);
}

// Shared memory: u tile [TILE][B+1], v tile [TILE][B+1], coefficients [TILE][TILE],
// grad accumulators [TILE][B], per-warp loss partials.
template <typename T, int TILE>
__global__ void loss_rows_kernel(const T* __restrict__ u, const T* __restrict__ v,
                                 const int64_t* __restrict__ lu, const int64_t* __restrict__ lv,
                                 int64_t n, int64_t m, int64_t nbits, int64_t words,
                                 LossKernelConstants c, T* __restrict__ grad_u,
                                 double* __restrict__ loss_partials) {
  extern __shared__ unsigned char smem_raw[];
  T* us = reinterpret_cast<T*>(smem_raw);
  const int64_t pitch = nbits + 1;  // padding against bank conflicts
  T* vs = us + TILE * pitch;
  T* coef = vs + TILE * pitch;
  T* acc = coef + TILE * TILE;
  __shared__ double warp_loss[kThreads / 32];

  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * TILE;
  const int rows = static_cast<int>(min(static_cast<int64_t>(TILE), n - i0));
  for (int64_t k = threadIdx.x; k < TILE * nbits; k += kThreads) {
    const int64_t r = k / nbits, b = k % nbits;
    us[r * pitch + b] = r < rows ? u[(i0 + r) * nbits + b] : T(0);
    acc[k] = T(0);
  }
  const T lam = static_cast<T>(c.lam), clamp = static_cast<T>(c.clamp);
  const T inv_bits = T(1) / static_cast<T>(nbits);
  double loss = 0.0;

  for (int64_t j0 = 0; j0 < m; j0 += TILE) {
    const int cols = static_cast<int>(min(static_cast<int64_t>(TILE), m - j0));
    __syncthreads();  // previous tile fully consumed
    for (int64_t k = threadIdx.x; k < TILE * nbits; k += kThreads) {
      const int64_t r = k / nbits, b = k % nbits;
      vs[r * pitch + b] = r < cols ? v[(j0 + r) * nbits + b] : T(0);
    }
    __syncthreads();
    for (int p = threadIdx.x; p < TILE * TILE; p += kThreads) {
      const int r = p / TILE, col = p % TILE;
      T value = T(0);
      if (r < rows && col < cols) {
        const int64_t i = i0 + r, j = j0 + col;
        T dot = T(0);
        for (int64_t b = 0; b < nbits; ++b) dot += us[r * pitch + b] * vs[col * pitch + b];
        const bool sim = similar(lu, lv, i, j, words);
        const T s = sim ? T(1) : T(-1);
        const T w = (c.symmetric && i == j) ? T(0)
                                            : static_cast<T>(sim ? c.weight_similar : c.weight_dissimilar);
        T e = -lam * s * dot * inv_bits;
        T pass = T(1);
        if (c.clamped) {
          pass = (e < -clamp || e > clamp) ? T(0) : T(1);
          e = min(max(e, -clamp), clamp);
        }
        const T we = w * exp_fast(e);
        loss += static_cast<double>(we);
        value = -lam * s * we * inv_bits * pass;
      }
      coef[p] = value;
    }
    __syncthreads();
    if (grad_u != nullptr) {
      for (int64_t k = threadIdx.x; k < rows * nbits; k += kThreads) {
        const int64_t r = k / nbits, b = k % nbits;
        T sum = T(0);
        for (int col = 0; col < cols; ++col) sum += coef[r * TILE + col] * vs[col * pitch + b];
        acc[k] += sum;
      }
    }
  }
  __syncthreads();
  if (grad_u != nullptr)
    for (int64_t k = threadIdx.x; k < rows * nbits; k += kThreads) grad_u[i0 * nbits + k] = acc[k];
  if (loss_partials != nullptr) {
    for (int offset = 16; offset > 0; offset /= 2) loss += __shfl_down_sync(0xffffffffu, loss, offset);
    if (threadIdx.x % 32 == 0) warp_loss[threadIdx.x / 32] = loss;
    __syncthreads();
    if (threadIdx.x == 0) {
      double total = 0.0;
      for (int w = 0; w < kThreads / 32; ++w) total += warp_loss[w];
      loss_partials[blockIdx.x] = total;
    }
  }
}

template <int TILE>
size_t smem_bytes(int64_t nbits, int64_t element_size) {
  return static_cast<size_t>(element_size) * (2 * TILE * (nbits + 1) + TILE * TILE + TILE * nbits);
}

constexpr size_t kSmemLimit = 200 * 1024;  // below the 227 KiB opt-in of sm_80/sm_90

int choose_tile(int64_t nbits, int64_t element_size) {
  if (smem_bytes<32>(nbits, element_size) <= kSmemLimit) return 32;
  return 8;
}

}  // namespace

bool loss_rows_supported(int64_t nbits, int64_t element_size) {
  return smem_bytes<8>(nbits, element_size) <= kSmemLimit;
}

int64_t loss_row_blocks(int64_t n, int64_t nbits, int64_t element_size) {
  const int tile = choose_tile(nbits, element_size);
  return (n + tile - 1) / tile;
}

void count_similar_pairs(const int64_t* labels_u, const int64_t* labels_v, int64_t n, int64_t m,
                         int64_t words, bool symmetric, unsigned long long* count,
                         cudaStream_t stream) {
  if (n == 0 || m == 0) return;
  const int64_t blocks = std::min<int64_t>(4096, (n * m + kThreads - 1) / kThreads);
  count_similar_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      labels_u, labels_v, n, m, words, symmetric, count);
}

template <typename T>
void loss_rows(const T* u, const T* v, const int64_t* labels_u, const int64_t* labels_v,
               int64_t n, int64_t m, int64_t nbits, int64_t words, LossKernelConstants c,
               T* grad_u, double* loss_partials, cudaStream_t stream) {
  if (n == 0) return;
  const int tile = choose_tile(nbits, sizeof(T));
  const int64_t blocks = loss_row_blocks(n, nbits, sizeof(T));
  if (tile == 32) {
    const size_t smem = smem_bytes<32>(nbits, sizeof(T));
    cudaFuncSetAttribute(loss_rows_kernel<T, 32>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    loss_rows_kernel<T, 32><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(
        u, v, labels_u, labels_v, n, m, nbits, words, c, grad_u, loss_partials);
  } else {
    const size_t smem = smem_bytes<8>(nbits, sizeof(T));
    cudaFuncSetAttribute(loss_rows_kernel<T, 8>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    loss_rows_kernel<T, 8><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(
        u, v, labels_u, labels_v, n, m, nbits, words, c, grad_u, loss_partials);
  }
}

template void loss_rows<float>(const float*, const float*, const int64_t*, const int64_t*, int64_t,
                               int64_t, int64_t, int64_t, LossKernelConstants, float*, double*,
                               cudaStream_t);
template void loss_rows<double>(const double*, const double*, const int64_t*, const int64_t*,
                                int64_t, int64_t, int64_t, int64_t, LossKernelConstants, double*,
                                double*, cudaStream_t);

}  // namespace cuda
}  // namespace pyhash
