// Device helper shared by the CUDA search and retrieval kernels: the Hamming distance of two
// packed codes.
#pragma once

#include <cstdint>

namespace pyhash {
namespace cuda {

// Hamming distance of the codes a and b, `nwords` uint64 words each.
__device__ __forceinline__ uint32_t distance(const uint64_t* a, const uint64_t* b, int64_t nwords) {
  uint32_t d = 0;
  for (int64_t w = 0; w < nwords; ++w) d += __popcll(a[w] ^ b[w]);
  return d;
}

}  // namespace cuda
}  // namespace pyhash
