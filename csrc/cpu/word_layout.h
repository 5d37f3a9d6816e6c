// Code-major -> word-major layout for the popcount kernels (plain C++, no ISA options: include it
// only from files compiled for the baseline).
#pragma once

#include <cstdint>

namespace pyhash {
namespace cpu {

// codes: `count` rows of `nwords` words. out[w * stride + i] = codes[i * nwords + w].
inline void to_word_major(const uint64_t* codes, int64_t count, int64_t nwords, uint64_t* out,
                          int64_t stride) {
  for (int64_t i = 0; i < count; ++i)
    for (int64_t w = 0; w < nwords; ++w) out[w * stride + i] = codes[i * nwords + w];
}

}  // namespace cpu
}  // namespace pyhash
