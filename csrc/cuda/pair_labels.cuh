// Device helper shared by the CUDA loss and retrieval kernels: the label test of one pair
// (similar for the loss, relevant for the metrics).
#pragma once

#include <cstdint>

namespace pyhash {
namespace cuda {

// Whether rows i of lu and j of lv are similar: equal int64 ids (words == 0), or at least one
// shared bit of their `words` int64 mask words.
__device__ __forceinline__ bool similar(const int64_t* lu, const int64_t* lv, int64_t i, int64_t j,
                                        int64_t words) {
  if (words == 0) return lu[i] == lv[j];
  for (int64_t w = 0; w < words; ++w)
    if (lu[i * words + w] & lv[j * words + w]) return true;
  return false;
}

}  // namespace cuda
}  // namespace pyhash
