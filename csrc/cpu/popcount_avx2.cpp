// AVX2 popcount distances: nibble lookup with vpshufb, byte sums with vpsadbw (4 codes a step).
#pragma GCC target("avx2,popcnt")
#include <immintrin.h>

#include "cpu/popcount.h"

namespace pyhash {
namespace cpu {
namespace {

inline __m256i popcount_epi64(__m256i v) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low_nibbles = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_and_si256(v, low_nibbles);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_nibbles);
  const __m256i bytes = _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
  return _mm256_sad_epu8(bytes, _mm256_setzero_si256());
}

uint64_t block_avx2(const uint64_t* q, int64_t nwords, const uint64_t* block, int64_t stride,
                    int64_t count, uint64_t* out) {
  int64_t i = 0;
  for (; i + 4 <= count; i += 4) {
    __m256i acc = _mm256_setzero_si256();
    for (int64_t w = 0; w < nwords; ++w) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + w * stride + i));
      const __m256i qv = _mm256_set1_epi64x(static_cast<long long>(q[w]));
      acc = _mm256_add_epi64(acc, popcount_epi64(_mm256_xor_si256(x, qv)));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), acc);
  }
  for (; i < count; ++i) {
    uint64_t d = 0;
    for (int64_t w = 0; w < nwords; ++w)
      d += static_cast<uint64_t>(_mm_popcnt_u64(block[w * stride + i] ^ q[w]));
    out[i] = d;
  }
  uint64_t smallest = UINT64_MAX;
  for (int64_t j = 0; j < count; ++j) smallest = out[j] < smallest ? out[j] : smallest;
  return smallest;
}

}  // namespace

BlockDistanceFn block_distance_avx2(int64_t) { return &block_avx2; }

}  // namespace cpu
}  // namespace pyhash
