// Portable popcount distances: plain C++ that any x86-64 or other CPU runs.
#include "cpu/popcount.h"

namespace pyhash {
namespace cpu {
namespace {

inline uint64_t popcount64(uint64_t x) {
  return static_cast<uint64_t>(__builtin_popcountll(x));
}

uint64_t block_scalar(const uint64_t* q, int64_t nwords, const uint64_t* block, int64_t stride,
                      int64_t count, uint64_t* out) {
  uint64_t smallest = UINT64_MAX;
  for (int64_t i = 0; i < count; ++i) {
    uint64_t d = 0;
    for (int64_t w = 0; w < nwords; ++w) d += popcount64(block[w * stride + i] ^ q[w]);
    out[i] = d;
    if (d < smallest) smallest = d;
  }
  return smallest;
}

}  // namespace

BlockDistanceFn block_distance_scalar(int64_t) { return &block_scalar; }

}  // namespace cpu
}  // namespace pyhash
